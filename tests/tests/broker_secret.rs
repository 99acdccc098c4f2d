//! Brokers without client certificates (`[tls] client-auth = "none"`) prove they are
//! brokers with a shared secret (`[auth] broker-secret-file`), bound to each TLS session: a
//! 3-broker cluster with authentication on forms and replicates, clients without the secret
//! cannot make the brokers' own calls, and a broker restarted with a wrong secret is refused
//! by the others (it cannot rejoin) while the cluster keeps serving.

use std::time::Duration;

use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::ClientTls;
use rafka_client::Credentials;
use rafka_client::OffsetSpec;
use rafka_tests::Cluster;
use rafka_tests::broker::run_cli;
use rafka_tests::certs::Ca;
use rafka_tests::cluster::ClusterOptions;
use rafka_tests::http::http_get;
use rafka_tests::raw::raw_unary_on;
use rafka_tests::wait::poll;

const ADMIN_PW: &str = "admin-Pa55word-b5e";

/// The sum of a counter's samples whose line starts with `prefix` in a /metrics body.
fn counter(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_without_client_certificates_prove_a_shared_secret() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let broker = ca.issue(pki.path(), "broker", "broker", &["127.0.0.1"]);
    let admin_pw = pki.path().join("admin.pw");
    std::fs::write(&admin_pw, format!("{ADMIN_PW}\n")).unwrap();
    let secret = pki.path().join("cluster.secret");
    std::fs::write(&secret, "9f8e7d6c5b4a39281706f5e4d3c2b1a0\n").unwrap();
    let toml = format!(
        "[tls]\ncert-file = {:?}\nkey-file = {:?}\nclient-ca-file = {:?}\nclient-auth = \"none\"\n\
         [auth]\nenabled = true\nsuperusers = [\"admin\"]\nbootstrap-user = \"admin\"\n\
         bootstrap-password-file = {:?}\nbroker-secret-file = {:?}\n",
        broker.cert, broker.key, ca.pem, admin_pw, secret
    );
    let mut cluster =
        Cluster::start_with(ClusterOptions { brokers: 3, extra_toml: toml, ..Default::default() })
            .await;
    let bootstrap = cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--bootstrap",
            bootstrap.as_str(),
            "--tls-ca",
            ca.pem.to_str().unwrap(),
            "--user",
            "admin",
            "--password-file",
            admin_pw.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, stdin: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, &[], stdin).await
    };

    // The cluster formed (its brokers heartbeat and replicate through the secret): a topic
    // with three replicas takes writes.
    poll("the bootstrap user creates a replicated topic", Duration::from_secs(60), || async {
        let r = run(cli(&["topic", "create", "t", "--replication-factor", "3"]), "").await;
        anyhow::ensure!(r.code == Some(0), "{}", r.stderr);
        Ok(())
    })
    .await
    .unwrap();
    let r = run(cli(&["produce", "t", "--partition", "0"]), "one\ntwo\nthree\n").await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let admin = Client::with_config(ClientConfig {
        tls: Some(ClientTls::from_files(&ca.pem, None).unwrap()),
        credentials: Some(Credentials { user: "admin".into(), password: ADMIN_PW.into() }),
        ..ClientConfig::new(&bootstrap).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(admin.list_offset("t", 0, OffsetSpec::Latest).await.unwrap(), 3);

    // A TLS client without the secret (and without a certificate) cannot make broker calls.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", cluster.addrs()[0]))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(&ca.pem).unwrap(),
                    ))
                    .domain_name("127.0.0.1"),
            )
            .unwrap()
            .connect_lazy();
    for path in ["/rafka.raft.v1.RaftTransport/Vote", "/rafka.internal.v1.Internal/BrokerHeartbeat"]
    {
        let got =
            raw_unary_on(channel.clone(), path, bytes::Bytes::new(), Duration::from_secs(10)).await;
        assert_eq!(
            got.as_ref().map_err(tonic::Status::code).err(),
            Some(tonic::Code::Unauthenticated),
            "{path}: {got:?}"
        );
    }

    // Broker 3 restarted with a wrong secret: the others refuse its connections, it cannot
    // rejoin, and the two of them keep serving.
    std::fs::write(&secret, "not-the-cluster-secret-at-all-00\n").unwrap();
    let third = &mut cluster.brokers_mut()[2];
    third.terminate(Duration::from_secs(20)).await.unwrap();
    third.start().unwrap();
    let first_http = cluster.brokers()[0].http_addr();
    poll("broker 1 refusing broker 3's proofs", Duration::from_secs(60), || async {
        let (_, body) = http_get(first_http, "/metrics", Duration::from_secs(10)).await?;
        let refused = counter(&body, "rafka_broker_tls_refused_total{reason=\"broker-secret\"}");
        anyhow::ensure!(refused > 0.0, "no refusal counted yet");
        Ok(())
    })
    .await
    .unwrap();
    poll("broker 3 reported dead", Duration::from_secs(60), || async {
        let r = run(cli(&["cluster", "status", "--output", "json"]), "").await;
        anyhow::ensure!(r.code == Some(0), "{}", r.stderr);
        let status: serde_json::Value = serde_json::from_str(&r.stdout)?;
        let third = status["brokers"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["id"] == 3))
            .ok_or_else(|| anyhow::anyhow!("no broker 3 in {status}"))?;
        anyhow::ensure!(third["alive"] == false, "{third}");
        Ok(())
    })
    .await
    .unwrap();
    let r = run(cli(&["produce", "t", "--partition", "0"]), "four\n").await;
    assert_eq!(r.code, Some(0), "the two brokers with the secret serve: {}", r.stderr);
    assert_eq!(admin.list_offset("t", 0, OffsetSpec::Latest).await.unwrap(), 4);
}
