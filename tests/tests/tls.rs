//! TLS on the broker port, with certificates made in the test: a 3-broker cluster whose
//! brokers talk to each other over TLS serves rafka's CLI, kcat, confluent-kafka and
//! kafka-python over TLS and refuses plaintext of either protocol; mTLS lets in certificates
//! of the configured CA only; certificates rotate on a running broker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::ClientTls;
use rafka_client::OffsetSpec;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_tests::Cluster;
use rafka_tests::broker::run_cli;
use rafka_tests::certs::Ca;
use rafka_tests::certs::Issued;
use rafka_tests::cluster::ClusterOptions;
use rafka_tests::kafka::kcat;
use rafka_tests::kafka::must_kcat;
use rafka_tests::kafka::must_python;
use rafka_tests::kafka::request;
use rafka_tests::kafka::send_until_closed;
use rafka_tests::wait::poll;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// ApiVersions v0 (no body): the first request of every Kafka client.
fn api_versions() -> Vec<u8> {
    request(18, 0, 7, &[])
}

/// The `[tls]` table of a broker with `broker`'s certificate and `ca`.
fn tls_toml(broker: &Issued, ca: &Path, client_auth: &str) -> String {
    format!(
        "[tls]\ncert-file = {:?}\nkey-file = {:?}\nclient-ca-file = {:?}\nclient-auth = {:?}\n",
        broker.cert, broker.key, ca, client_auth
    )
}

fn client_tls(ca: &Path, identity: Option<&Issued>) -> ClientTls {
    ClientTls::from_files(ca, identity.map(|i| (i.cert.as_path(), i.key.as_path())))
        .expect("reading the test's PEM files")
}

async fn client(addrs: &[SocketAddr], tls: Option<ClientTls>, total: Duration) -> Client {
    let bootstrap = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let config = ClientConfig {
        tls,
        total_timeout: total,
        request_timeout: total.min(Duration::from_secs(10)),
        ..ClientConfig::new(&bootstrap).unwrap()
    };
    Client::with_config(config).await.expect("a client config")
}

fn record(topic: &str, value: &'static str) -> ProducerRecord {
    ProducerRecord { topic: topic.into(), value: Some(value.into()), ..Default::default() }
}

/// Runs the `rafka` CLI with `args` and `stdin`; (exit code, stdout, stderr).
async fn rafka(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let run = run_cli(args, &[], stdin).await;
    (run.code, run.stdout, run.stderr)
}

/// A rustls client for raw Kafka frames over TLS, trusting `ca`, presenting `identity`.
fn raw_tls_client(ca: &Path, identity: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(i) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&i.cert).unwrap().map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_file(&i.key).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends `frame` over a new TLS session and reads the answer's size and body. Also returns
/// the certificate the broker presented.
async fn tls_round_trip(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    frame: &[u8],
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(addr.ip().to_string())?;
    let mut s =
        tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await??;
    let served = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    s.write_all(frame).await?;
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut size)).await??;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await??;
    Ok((body, served))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_rafka_and_kafka_clients_and_refuses_plaintext() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let broker_cert = ca.issue(pki.path(), "broker", "broker", &["127.0.0.1", "localhost"]);
    // `optional`: brokers present their certificates to each other, clients need none.
    let cluster = Cluster::start_with(ClusterOptions {
        brokers: 3,
        extra_toml: tls_toml(&broker_cert, &ca.pem, "optional"),
        ..Default::default()
    })
    .await;
    let addrs = cluster.addrs();
    let bootstrap = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let ca_path = ca.pem.to_str().unwrap();

    // rafka's CLI over TLS; a 3-replica topic only takes writes once the brokers replicate
    // to each other, over TLS as well.
    let tls_args = |more: &[&str]| -> Vec<String> {
        let mut v =
            vec!["--bootstrap".to_string(), bootstrap.clone(), "--tls-ca".into(), ca_path.into()];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>, stdin: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rafka(&args, stdin).await
    };
    let (code, _, err) =
        run(tls_args(&["topic", "create", "t", "--replication-factor", "3"]), "").await;
    assert_eq!(code, Some(0), "topic create over TLS: {err}");
    let (code, _, err) = run(tls_args(&["produce", "t"]), "one\ntwo\nthree\n").await;
    assert_eq!(code, Some(0), "produce over TLS: {err}");
    let (code, out, err) =
        run(tls_args(&["consume", "t", "--max-messages", "3", "--format", "%v"]), "").await;
    assert_eq!((code, out.as_str()), (Some(0), "one\ntwo\nthree\n"), "consume over TLS: {err}");

    // kcat (librdkafka) over TLS, verifying the brokers' names.
    let kafka_tls = ["-X", "security.protocol=ssl", "-X", &format!("ssl.ca.location={ca_path}")];
    let mut produce = vec!["-b", &bootstrap, "-P", "-t", "t"];
    produce.extend_from_slice(&kafka_tls);
    must_kcat(&produce, "four\nfive\n").await;
    let mut consume = vec!["-b", &bootstrap, "-C", "-t", "t", "-o", "beginning", "-e", "-q"];
    consume.extend_from_slice(&kafka_tls);
    let read = must_kcat(&consume, "").await;
    assert_eq!(read.lines().collect::<Vec<_>>(), ["one", "two", "three", "four", "five"]);

    // confluent-kafka and kafka-python over TLS, each on a topic of its own.
    for (client, topic) in [("confluent", "tc"), ("kafka-python", "tp")] {
        let (code, _, err) =
            run(tls_args(&["topic", "create", topic, "--replication-factor", "3"]), "").await;
        assert_eq!(code, Some(0), "{err}");
        let out =
            must_python("secure_roundtrip.py", &[client, &bootstrap, topic, "20", ca_path]).await;
        let expected: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{client} over TLS");
    }

    // Plaintext to the TLS port: a Kafka request is closed unanswered, a produce too, and a
    // plaintext gRPC client gets nowhere. Nothing is stored.
    let secure = client(&addrs, Some(client_tls(&ca.pem, None)), Duration::from_secs(30)).await;
    let end_before = secure.list_offset("t", 0, OffsetSpec::Latest).await.unwrap();
    assert_eq!(end_before, 5);
    for addr in &addrs {
        let got = send_until_closed(*addr, &api_versions(), Duration::from_secs(10)).await.unwrap();
        assert!(got.is_empty(), "a plaintext Kafka request was answered: {got:?}");
    }
    let plain = ClientConfig {
        total_timeout: Duration::from_secs(3),
        ..ClientConfig::new(&bootstrap).unwrap()
    };
    let refused = Client::with_config(plain).await;
    assert!(refused.is_err(), "a plaintext gRPC client reached the cluster");
    let (code, _, err) = rafka(&["--bootstrap", &bootstrap, "topic", "list"], "").await;
    assert_ne!(code, Some(0), "the CLI without --tls-ca must fail");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(secure.list_offset("t", 0, OffsetSpec::Latest).await.unwrap(), end_before);
    // Plaintext was refused by every broker, and counted.
    let (_, metrics) = rafka_tests::http::http_get(
        cluster.brokers()[0].http_addr(),
        "/metrics",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rafka_broker_tls_refused_total{reason=\"plaintext\"}")),
        "no plaintext refusal counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_lets_in_certificates_of_the_configured_ca_only() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let other = Ca::new(pki.path(), "other-ca");
    let broker_cert = ca.issue(pki.path(), "broker", "broker", &["127.0.0.1"]);
    let app = ca.issue(pki.path(), "app", "app", &["app.example"]);
    let stranger = other.issue(pki.path(), "stranger", "app", &["app.example"]);
    let cluster = Cluster::start_with(ClusterOptions {
        brokers: 1,
        extra_toml: tls_toml(&broker_cert, &ca.pem, "required"),
        ..Default::default()
    })
    .await;
    let addr = cluster.addrs()[0];

    // A certificate of the CA: a Kafka request over TLS is answered.
    let (answer, _) =
        tls_round_trip(&raw_tls_client(&ca.pem, Some(&app)), addr, &api_versions()).await.unwrap();
    assert_eq!(&answer[..4], &7i32.to_be_bytes(), "ApiVersions answered over mTLS");
    // No certificate, or one of another CA: refused in the handshake, never answered.
    for (who, identity) in [("no certificate", None), ("another CA's certificate", Some(&stranger))]
    {
        let got = tls_round_trip(&raw_tls_client(&ca.pem, identity), addr, &api_versions()).await;
        assert!(got.is_err(), "{who}: answered");
    }
    // The CLI and a Kafka client with the CA's certificate.
    let bootstrap = addr.to_string();
    let (ca_path, cert, key) =
        (ca.pem.to_str().unwrap(), app.cert.to_str().unwrap(), app.key.to_str().unwrap());
    let (code, _, err) = rafka(
        &[
            "--bootstrap",
            &bootstrap,
            "--tls-ca",
            ca_path,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "topic",
            "create",
            "m",
        ],
        "",
    )
    .await;
    assert_eq!(code, Some(0), "the CLI with a client certificate: {err}");
    let (code, _, err) =
        rafka(&["--bootstrap", &bootstrap, "--tls-ca", ca_path, "topic", "list"], "").await;
    assert_ne!(code, Some(0), "the CLI without a client certificate got in");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let out = must_python(
        "secure_roundtrip.py",
        &["confluent", &bootstrap, "m", "5", ca_path, "--cert", cert, key],
    )
    .await;
    assert_eq!(out.lines().count(), 5, "confluent-kafka with a client certificate: {out}");
    let no_cert = kcat(
        &[
            "-b",
            &bootstrap,
            "-L",
            "-m",
            "5",
            "-X",
            "security.protocol=ssl",
            "-X",
            &format!("ssl.ca.location={ca_path}"),
        ],
        "",
    )
    .await
    .unwrap();
    assert!(!no_cert.success, "kcat without a client certificate listed metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_a_running_broker() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let first = ca.issue(pki.path(), "broker", "broker-v1", &["127.0.0.1"]);
    let cluster = Cluster::start_with(ClusterOptions {
        brokers: 1,
        extra_toml: tls_toml(&first, &ca.pem, "none"),
        ..Default::default()
    })
    .await;
    let addr = cluster.addrs()[0];
    let raw = raw_tls_client(&ca.pem, None);
    let (_, served) = tls_round_trip(&raw, addr, &api_versions()).await.unwrap();
    assert_eq!(served, first.der, "the first certificate is served");
    // A connection opened before the rotation.
    let open = client(&[addr], Some(client_tls(&ca.pem, None)), Duration::from_secs(30)).await;
    let admin = rafka_client::Admin::new(open.clone());
    admin.create_topic("r", 1, 1, Default::default()).await.unwrap();

    // Replace the files in place, as an operator (or cert-manager) does.
    let second = ca.issue(pki.path(), "broker", "broker-v2", &["127.0.0.1"]);
    assert_ne!(first.der, second.der);
    poll("new connections get the new certificate", Duration::from_secs(30), || async {
        let (_, served) = tls_round_trip(&raw, addr, &api_versions()).await?;
        anyhow::ensure!(served == second.der, "still the old certificate");
        Ok(())
    })
    .await
    .unwrap();
    // The connection from before still works.
    let producer = Producer::new(open.clone(), ProducerConfig::default()).unwrap();
    let delivery = producer.send(record("r", "after rotation")).await.unwrap();
    delivery.await.expect("the old connection keeps working");
    assert_eq!(open.list_offset("r", 0, OffsetSpec::Latest).await.unwrap(), 1);
}
