//! SASL for Kafka clients on a 3-broker TLS cluster with authentication on: the bootstrap
//! superuser from the config, users managed with confluent-kafka's admin client, kcat,
//! confluent-kafka and kafka-python over SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and
//! PLAIN; wrong passwords and connections without SASL refused; credentials that survive a
//! full-cluster restart and appear in no file as passwords.

use std::path::Path;
use std::time::Duration;

use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::ClientTls;
use rafka_client::OffsetSpec;
use rafka_tests::Cluster;
use rafka_tests::broker::run_cli;
use rafka_tests::certs::Ca;
use rafka_tests::cluster::ClusterOptions;
use rafka_tests::kafka::kcat;
use rafka_tests::kafka::kcat_sasl as sasl;
use rafka_tests::kafka::must_kcat;
use rafka_tests::kafka::must_python;
use rafka_tests::kafka::with_options as args;
use rafka_tests::raw::raw_unary_on;
use rafka_tests::wait::poll;

const ADMIN_PW: &str = "admin-Pa55word-9f3";
const ALICE_PW: &str = "alice-Pa55word-71c";

async fn scram_admin(bootstrap: &str, ca: &Path, op: &[&str]) -> serde_json::Value {
    let mut a = vec![bootstrap, ca.to_str().unwrap(), "admin", ADMIN_PW];
    a.extend_from_slice(op);
    serde_json::from_str(must_python("scram_admin.py", &a).await.trim()).unwrap()
}

/// Runs the CLI with `global` flags, then `args`, with `env` added; (code, stdout, stderr).
async fn rafka(
    global: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    rafka_with_stdin(global, args, env, "").await
}

/// [`rafka`] with `stdin` as its input.
async fn rafka_with_stdin(
    global: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (Option<i32>, String, String) {
    let all: Vec<&str> = global.iter().chain(args).copied().collect();
    let run = run_cli(&all, env, stdin).await;
    (run.code, run.stdout, run.stderr)
}

/// A gRPC channel over TLS to `addr`, with a client certificate when given.
fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<&rafka_tests::certs::Issued>,
) -> tonic::transport::Channel {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name(addr.ip().to_string());
    if let Some(i) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            std::fs::read(&i.cert).unwrap(),
            std::fs::read(&i.key).unwrap(),
        ));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

/// [`scram_admin`] that reports a failed run instead of panicking.
async fn scram_admin_try(
    bootstrap: &str,
    ca: &Path,
    op: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let mut a = vec![bootstrap, ca.to_str().unwrap(), "admin", ADMIN_PW];
    a.extend_from_slice(op);
    let out = rafka_tests::kafka::python_output("scram_admin.py", &a).await?;
    Ok(serde_json::from_str(out.trim())?)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_authenticate_with_scram_and_plain_over_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let broker = ca.issue(pki.path(), "broker", "broker", &["127.0.0.1"]);
    let pw_file = pki.path().join("admin.pw");
    std::fs::write(&pw_file, format!("{ADMIN_PW}\n")).unwrap();
    let toml = format!(
        "[tls]\ncert-file = {:?}\nkey-file = {:?}\nclient-ca-file = {:?}\nclient-auth = \"optional\"\n\
         [auth]\nenabled = true\nsuperusers = [\"admin\"]\nbootstrap-user = \"admin\"\n\
         bootstrap-password-file = {:?}\n",
        broker.cert, broker.key, ca.pem, pw_file
    );
    let mut cluster =
        Cluster::start_with(ClusterOptions { brokers: 3, extra_toml: toml, ..Default::default() })
            .await;
    let bootstrap = cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let b = bootstrap.as_str();

    // The bootstrap superuser exists once the cluster has formed.
    let admin = sasl(&ca.pem, "SCRAM-SHA-256", "admin", ADMIN_PW);
    poll("the bootstrap user can sign in", Duration::from_secs(60), || async {
        let run = kcat(&args(&["-b", b, "-L", "-m", "5"], &admin), "").await?;
        anyhow::ensure!(run.success, "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();

    // Users made with confluent-kafka's admin client (salted passwords on the wire).
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let out = scram_admin(b, &ca.pem, &["upsert", "alice", mech, ALICE_PW]).await;
        assert_eq!(out["alice"], serde_json::Value::Null, "{mech}: {out}");
    }
    let described = scram_admin(b, &ca.pem, &["describe", "alice"]).await;
    assert_eq!(described["alice"], serde_json::json!(["SCRAM_SHA_256", "SCRAM_SHA_512"]));
    // kafka-python's admin client sends to any broker: the others forward to the controller
    // leader. Each broker in turn, so most requests are forwarded.
    for addr in cluster.addrs() {
        let a = addr.to_string();
        let pw_for = format!("dave-{}", addr.port());
        let up = must_python(
            "kafka_python_users.py",
            &[
                &a,
                ca.pem.to_str().unwrap(),
                "admin",
                ADMIN_PW,
                "upsert",
                "dave",
                "SCRAM-SHA-512",
                &pw_for,
            ],
        )
        .await;
        assert_eq!(up.trim(), r#"{"dave": null}"#, "kafka-python upsert via {a}");
        let described = must_python(
            "kafka_python_users.py",
            &[&a, ca.pem.to_str().unwrap(), "admin", ADMIN_PW, "describe", "dave"],
        )
        .await;
        assert_eq!(described.trim(), r#"{"dave": ["SCRAM_SHA_512"]}"#, "via {a}");
        let dave = sasl(&ca.pem, "SCRAM-SHA-512", "dave", &pw_for);
        must_kcat(&args(&["-b", b, "-L", "-m", "5"], &dave), "").await;
    }

    // rafka's CLI signs in with --user and --password-file (or RAFKA_USER and
    // RAFKA_PASSWORD_FILE); without them, or with a wrong password, it fails in one line.
    let ca_path = ca.pem.to_str().unwrap();
    let pw = pw_file.to_str().unwrap();
    for topic in ["s", "tc", "tp"] {
        let (code, _, err) = rafka(
            &["--bootstrap", b, "--tls-ca", ca_path, "--user", "admin", "--password-file", pw],
            &["topic", "create", topic, "--replication-factor", "3"],
            &[],
        )
        .await;
        assert_eq!(code, Some(0), "creating {topic}: {err}");
    }
    // Alice may do anything to topics and groups (ACLs are on with authentication).
    for resource in [["--topic", "*"], ["--group", "*"]] {
        let (code, _, err) = rafka(
            &["--bootstrap", b, "--tls-ca", ca_path, "--user", "admin", "--password-file", pw],
            &[&["acl", "create", "--principal", "User:alice", "--operation", "All"][..], &resource]
                .concat(),
            &[],
        )
        .await;
        assert_eq!(code, Some(0), "ACL on {resource:?}: {err}");
    }
    let wrong = pki.path().join("wrong.pw");
    std::fs::write(&wrong, "guess\n").unwrap();
    let alice_pw = pki.path().join("alice.pw");
    std::fs::write(&alice_pw, format!("{ALICE_PW}\n")).unwrap();
    let global = ["--bootstrap", b, "--tls-ca", ca_path];
    for (who, env, needle) in [
        ("no credentials", vec![], "not authenticated"),
        (
            "a wrong password",
            vec![("RAFKA_USER", "alice"), ("RAFKA_PASSWORD_FILE", wrong.to_str().unwrap())],
            "invalid user or password",
        ),
    ] {
        let (code, _, err) = rafka(&global, &["topic", "list"], &env).await;
        assert_ne!(code, Some(0), "{who}: the CLI got in");
        assert_eq!(err.trim().lines().count(), 1, "{who}: one line: {err}");
        assert!(err.contains(needle), "{who}: {err}");
    }
    let env = [("RAFKA_USER", "alice"), ("RAFKA_PASSWORD_FILE", alice_pw.to_str().unwrap())];
    let (code, out, err) = rafka(&global, &["topic", "list"], &env).await;
    assert_eq!(code, Some(0), "alice from the environment: {err}");
    assert!(out.contains("tc"), "{out}");

    // A client (not broker) certificate cannot make the brokers' own calls: Raft, heartbeats,
    // probes. No certificate at all is not even authenticated.
    let app = ca.issue(pki.path(), "app", "app", &["app.example"]);
    for (identity, expected) in
        [(Some(&app), tonic::Code::PermissionDenied), (None, tonic::Code::Unauthenticated)]
    {
        let channel = tls_channel(cluster.addrs()[0], &ca.pem, identity);
        for path in [
            "/rafka.raft.v1.RaftTransport/Vote",
            "/rafka.raft.v1.RaftTransport/Heartbeat",
            "/rafka.raft.v1.RaftTransport/TransferLeader",
            "/rafka.internal.v1.Internal/BrokerHeartbeat",
            "/rafka.internal.v1.Internal/ProbeMembership",
        ] {
            let got =
                raw_unary_on(channel.clone(), path, bytes::Bytes::new(), Duration::from_secs(10))
                    .await;
            assert_eq!(
                got.as_ref().map_err(tonic::Status::code).err(),
                Some(expected),
                "{path}: {got:?}"
            );
        }
    }

    // kcat as alice: SCRAM-SHA-256 writes, SCRAM-SHA-512 reads, PLAIN (over TLS) writes.
    let sha256 = sasl(&ca.pem, "SCRAM-SHA-256", "alice", ALICE_PW);
    let sha512 = sasl(&ca.pem, "SCRAM-SHA-512", "alice", ALICE_PW);
    let plain = sasl(&ca.pem, "PLAIN", "alice", ALICE_PW);
    must_kcat(&args(&["-b", b, "-P", "-t", "s"], &sha256), "one\ntwo\n").await;
    must_kcat(&args(&["-b", b, "-P", "-t", "s"], &plain), "three\n").await;
    let read =
        must_kcat(&args(&["-b", b, "-C", "-t", "s", "-o", "beginning", "-e", "-q"], &sha512), "")
            .await;
    assert_eq!(read.lines().collect::<Vec<_>>(), ["one", "two", "three"]);

    // confluent-kafka and kafka-python over SASL_SSL.
    for (client, topic, mech) in
        [("confluent", "tc", "SCRAM-SHA-512"), ("kafka-python", "tp", "SCRAM-SHA-256")]
    {
        let out = must_python(
            "secure_roundtrip.py",
            &[client, b, topic, "10", ca_path, "--sasl", mech, "alice", ALICE_PW],
        )
        .await;
        assert_eq!(out.lines().count(), 10, "{client} with {mech}: {out}");
    }

    // A wrong password, an unknown user, and no SASL at all: refused, nothing stored.
    let tls_only = ClientTls::from_files(&ca.pem, None).unwrap();
    let alice = rafka_client::Credentials { user: "alice".into(), password: ALICE_PW.into() };
    let reader = Client::with_config(ClientConfig {
        tls: Some(tls_only),
        credentials: Some(alice),
        ..ClientConfig::new(b).unwrap()
    })
    .await
    .unwrap();
    let end = reader.list_offset("s", 0, OffsetSpec::Latest).await.unwrap();
    assert_eq!(end, 3);
    for (who, opts) in [
        ("a wrong password", sasl(&ca.pem, "SCRAM-SHA-256", "alice", "guess")),
        ("an unknown user", sasl(&ca.pem, "SCRAM-SHA-512", "mallory", ALICE_PW)),
        ("a wrong PLAIN password", sasl(&ca.pem, "PLAIN", "alice", "guess")),
    ] {
        let run = kcat(&args(&["-b", b, "-P", "-t", "s"], &opts), "nope\n").await.unwrap();
        assert!(!run.success, "{who}: kcat wrote");
        assert!(run.stderr.contains("Authentication failed"), "{who}: {}", run.stderr);
    }
    let no_sasl = ["-X", "security.protocol=ssl", "-X", &format!("ssl.ca.location={ca_path}")];
    let run = kcat(&[&["-b", b, "-L", "-m", "5"][..], &no_sasl].concat(), "").await.unwrap();
    assert!(!run.success, "metadata without SASL");
    assert_eq!(reader.list_offset("s", 0, OffsetSpec::Latest).await.unwrap(), end);

    // rafka's CLI manages users too: a superuser creates one (password on stdin), lists it,
    // and deletes it; a user who is not a superuser may not.
    let as_admin =
        ["--bootstrap", b, "--tls-ca", ca_path, "--user", "admin", "--password-file", pw];
    let (code, _, err) =
        rafka_with_stdin(&as_admin, &["user", "create", "bob"], &[], "bob-Pa55word-e2\n").await;
    assert_eq!(code, Some(0), "user create: {err}");
    let (code, out, err) = rafka(&as_admin, &["user", "list", "--output", "json"], &[]).await;
    assert_eq!(code, Some(0), "user list: {err}");
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        listed.as_array().unwrap().iter().any(|u| u["user"] == "bob"
            && u["mechanisms"] == serde_json::json!(["SCRAM-SHA-256", "SCRAM-SHA-512"])),
        "{listed}"
    );
    let bob = sasl(&ca.pem, "SCRAM-SHA-512", "bob", "bob-Pa55word-e2");
    must_kcat(&args(&["-b", b, "-L", "-m", "5"], &bob), "").await;
    let (code, _, err) =
        rafka_with_stdin(&global, &["user", "create", "eve"], &env, "eve-pw\n").await;
    assert_ne!(code, Some(0), "alice created a user");
    assert!(err.contains("permission denied") && err.trim().lines().count() == 1, "{err}");
    let (code, _, err) = rafka(&as_admin, &["user", "delete", "bob"], &[]).await;
    assert_eq!(code, Some(0), "user delete: {err}");
    let run = kcat(&args(&["-b", b, "-L", "-m", "5"], &bob), "").await.unwrap();
    assert!(!run.success, "bob signed in after his deletion");

    // Deleting a mechanism's credential ends sign-ins with it, not with the other.
    let out = scram_admin(b, &ca.pem, &["delete", "alice", "SCRAM-SHA-512"]).await;
    assert_eq!(out["alice"], serde_json::Value::Null, "{out}");
    let run = kcat(&args(&["-b", b, "-L", "-m", "5"], &sha512), "").await.unwrap();
    assert!(!run.success, "SCRAM-SHA-512 after its deletion");
    let missing = scram_admin(b, &ca.pem, &["delete", "alice", "SCRAM-SHA-512"]).await;
    assert!(missing["alice"].as_str().is_some_and(|e| e.contains("does not exist")), "{missing}");

    // The failures were counted.
    let mut counted = false;
    for broker in cluster.brokers() {
        let (_, metrics) =
            rafka_tests::http::http_get(broker.http_addr(), "/metrics", Duration::from_secs(5))
                .await
                .unwrap();
        counted |=
            metrics.contains("rafka_broker_authentication_failures_total{protocol=\"kafka\"}");
    }
    assert!(counted, "failed authentications are not counted");

    // Full-cluster restart: the credentials are in the replicated controller state.
    for id in cluster.ids() {
        cluster.must_kill(id);
    }
    cluster.must_start_stopped();
    cluster.must_wait_ready(Duration::from_secs(60)).await;
    poll("alice signs in after a full restart", Duration::from_secs(60), || async {
        let run =
            kcat(&args(&["-b", b, "-C", "-t", "s", "-o", "beginning", "-e", "-q"], &sha256), "")
                .await?;
        anyhow::ensure!(run.success && run.stdout.lines().count() == 3, "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();

    // Controller failover: with its leader killed, the new leader knows every user.
    let (code, out, err) = rafka(&as_admin, &["cluster", "status", "--output", "json"], &[]).await;
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let leader = status["controller"].as_u64().expect("a controller leader");
    cluster.must_kill(leader);
    let survivors: Vec<String> = cluster
        .brokers()
        .iter()
        .filter(|x| x.id() != leader)
        .map(|x| x.addr().to_string())
        .collect();
    let survivors = survivors.join(",");
    poll("users are served by the new controller leader", Duration::from_secs(60), || async {
        let out = scram_admin_try(&survivors, &ca.pem, &["describe", "alice"]).await?;
        anyhow::ensure!(out["alice"] == serde_json::json!(["SCRAM_SHA_256"]), "{out}");
        let run = kcat(&args(&["-b", &survivors, "-L", "-m", "5"], &sha256), "").await?;
        anyhow::ensure!(run.success, "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();

    // No password is in any file the brokers wrote.
    for password in [ADMIN_PW, ALICE_PW] {
        let found = files_holding(cluster.dir(), password.as_bytes());
        assert!(found.is_empty(), "a password is stored in {found:?}");
    }
}
