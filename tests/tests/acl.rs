//! ACLs on a 3-broker TLS cluster with SASL: made with rafka's CLI and with confluent-kafka's
//! admin client (Kafka's CreateAcls, DescribeAcls, DeleteAcls), then obeyed by kcat,
//! confluent-kafka, kafka-python and rafka's own gRPC clients. A user without Write gets
//! TOPIC_AUTHORIZATION_FAILED and nothing is stored; a user without Read on a group cannot
//! commit; Metadata shows only what a user may describe; a deny wins; denials are counted.

use std::path::Path;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::broker::run_cli;
use rafka_tests::certs::Ca;
use rafka_tests::cluster::ClusterOptions;
use rafka_tests::http::http_get;
use rafka_tests::kafka::kcat;
use rafka_tests::kafka::kcat_sasl as sasl;
use rafka_tests::kafka::must_kcat;
use rafka_tests::kafka::must_python;
use rafka_tests::kafka::with_options as args;
use rafka_tests::wait::poll;

const ADMIN_PW: &str = "admin-Pa55word-4a1";
const ALICE_PW: &str = "alice-Pa55word-c0d";
const BOB_PW: &str = "bob-Pa55word-77e";

/// The cluster's bootstrap list, its CA and the admin's password file.
struct Setup {
    bootstrap: String,
    ca: std::path::PathBuf,
    admin_pw: std::path::PathBuf,
}

impl Setup {
    /// `kafka_acls.py` as `user`; its one line of output.
    async fn kafka(&self, user: &str, pw: &str, op: &[&str]) -> String {
        let mut a = vec![self.bootstrap.as_str(), self.ca.to_str().unwrap(), user, pw];
        a.extend_from_slice(op);
        must_python("kafka_acls.py", &a).await.trim().to_string()
    }

    /// The rafka CLI as `user` (password file `pw`): (exit code, stdout, stderr).
    async fn rafka(
        &self,
        user: &str,
        pw: &Path,
        cmd: &[&str],
        stdin: &str,
    ) -> (i32, String, String) {
        let mut all = vec![
            "--bootstrap",
            &self.bootstrap,
            "--tls-ca",
            self.ca.to_str().unwrap(),
            "--user",
            user,
            "--password-file",
            pw.to_str().unwrap(),
        ];
        all.extend_from_slice(cmd);
        let run = run_cli(&all, &[], stdin).await;
        (run.code.unwrap_or(-1), run.stdout, run.stderr)
    }

    async fn admin(&self, cmd: &[&str]) -> String {
        let (code, out, err) = self.rafka("admin", &self.admin_pw, cmd, "").await;
        assert_eq!(code, 0, "admin: rafka {cmd:?}: {err}");
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_what_each_user_may_do() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "ca");
    let broker = ca.issue(pki.path(), "broker", "broker", &["127.0.0.1"]);
    let admin_pw = pki.path().join("admin.pw");
    std::fs::write(&admin_pw, format!("{ADMIN_PW}\n")).unwrap();
    let toml = format!(
        "[tls]\ncert-file = {:?}\nkey-file = {:?}\nclient-ca-file = {:?}\nclient-auth = \"optional\"\n\
         [auth]\nenabled = true\nsuperusers = [\"admin\"]\nbootstrap-user = \"admin\"\n\
         bootstrap-password-file = {:?}\n",
        broker.cert, broker.key, ca.pem, admin_pw
    );
    let cluster =
        Cluster::start_with(ClusterOptions { brokers: 3, extra_toml: toml, ..Default::default() })
            .await;
    let bootstrap = cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let s = Setup { bootstrap: bootstrap.clone(), ca: ca.pem.clone(), admin_pw: admin_pw.clone() };
    let b = bootstrap.as_str();
    let admin_sasl = sasl(&ca.pem, "SCRAM-SHA-256", "admin", ADMIN_PW);
    poll("the bootstrap user can sign in", Duration::from_secs(60), || async {
        let run = kcat(&args(&["-b", b, "-L", "-m", "5"], &admin_sasl), "").await?;
        anyhow::ensure!(run.success, "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();

    // Users and topics, made by the superuser with rafka's CLI.
    for (user, pw) in [("alice", ALICE_PW), ("bob", BOB_PW)] {
        let (code, _, err) =
            s.rafka("admin", &admin_pw, &["user", "create", user], &format!("{pw}\n")).await;
        assert_eq!(code, 0, "user create {user}: {err}");
    }
    for topic in ["orders", "secret"] {
        s.admin(&["topic", "create", topic, "--partitions", "1", "--replication-factor", "3"])
            .await;
    }
    let alice_pw = pki.path().join("alice.pw");
    std::fs::write(&alice_pw, format!("{ALICE_PW}\n")).unwrap();
    let bob_pw = pki.path().join("bob.pw");
    std::fs::write(&bob_pw, format!("{BOB_PW}\n")).unwrap();

    // Alice's ACLs with the CLI, Bob's with confluent-kafka's admin client.
    for acl in [
        &["--operation", "Write", "--topic", "ord", "--prefixed"][..],
        &["--operation", "read", "--topic", "orders"],
        &["--operation", "READ", "--group", "g-alice"],
    ] {
        let mut cmd = vec!["acl", "create", "--principal", "User:alice"];
        cmd.extend_from_slice(acl);
        s.admin(&cmd).await;
    }
    for acl in [
        ["TOPIC", "orders", "LITERAL", "User:bob", "READ", "ALLOW"],
        ["GROUP", "g-bob", "LITERAL", "User:bob", "DESCRIBE", "ALLOW"],
    ] {
        let out = s.kafka("admin", ADMIN_PW, &[&["create"][..], &acl].concat()).await;
        assert_eq!(out, r#""ok""#, "{acl:?}");
    }
    // Both ways list the same five ACLs.
    let listed: serde_json::Value =
        serde_json::from_str(&s.admin(&["acl", "list", "--output", "json"]).await).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.contains(&serde_json::json!({
        "principal": "User:alice", "host": "*", "operation": "WRITE", "permission": "ALLOW",
        "resource_type": "TOPIC", "name": "ord", "pattern_type": "PREFIXED"
    })));
    let described: serde_json::Value =
        serde_json::from_str(&s.kafka("admin", ADMIN_PW, &["describe"]).await).unwrap();
    assert_eq!(described.as_array().unwrap().len(), 5, "{described}");
    assert!(described.as_array().unwrap().contains(&serde_json::json!([
        "GROUP", "g-bob", "LITERAL", "User:bob", "*", "DESCRIBE", "ALLOW"
    ])));

    // Alice may write and read `orders` and commit in her group, with every client.
    let alice_256 = sasl(&ca.pem, "SCRAM-SHA-256", "alice", ALICE_PW);
    let alice_512 = sasl(&ca.pem, "SCRAM-SHA-512", "alice", ALICE_PW);
    poll("alice's ACLs reach every broker", Duration::from_secs(30), || async {
        let run = kcat(&args(&["-b", b, "-P", "-t", "orders"], &alice_256), "a1\n").await?;
        anyhow::ensure!(run.success, "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(s.kafka("alice", ALICE_PW, &["produce", "orders", "a2"]).await, "ok");
    assert_eq!(s.kafka("alice", ALICE_PW, &["kp-produce", "orders", "a3"]).await, "ok");
    let read = must_kcat(
        &args(&["-b", b, "-C", "-t", "orders", "-o", "beginning", "-e", "-q"], &alice_512),
        "",
    )
    .await;
    assert_eq!(read.lines().collect::<Vec<_>>(), ["a1", "a2", "a3"]);
    assert_eq!(s.kafka("alice", ALICE_PW, &["commit", "orders", "g-alice"]).await, "ok");
    assert_eq!(s.kafka("alice", ALICE_PW, &["kp-commit", "orders", "g-alice"]).await, "ok");

    // Bob may read `orders` but not write it: every client is refused, nothing is stored.
    let bob = sasl(&ca.pem, "SCRAM-SHA-512", "bob", BOB_PW);
    let run = kcat(&args(&["-b", b, "-P", "-t", "orders"], &bob), "b1\n").await.unwrap();
    assert!(!run.success, "kcat wrote as bob");
    assert!(run.stderr.contains("Topic authorization failed"), "{}", run.stderr);
    assert_eq!(
        s.kafka("bob", BOB_PW, &["produce", "orders", "b2"]).await,
        "TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        s.kafka("bob", BOB_PW, &["kp-produce", "orders", "b3"]).await,
        "TopicAuthorizationFailedError"
    );
    let (code, _, err) = s.rafka("bob", &bob_pw, &["produce", "orders"], "b4\n").await;
    assert_ne!(code, 0, "rafka produce as bob");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("permission denied"), "{err}");
    let read =
        must_kcat(&args(&["-b", b, "-C", "-t", "orders", "-o", "beginning", "-e", "-q"], &bob), "")
            .await;
    assert_eq!(read.lines().collect::<Vec<_>>(), ["a1", "a2", "a3"], "bob reads, wrote nothing");

    // Bob may find his group's coordinator but not commit in it; nothing is committed.
    assert_eq!(
        s.kafka("bob", BOB_PW, &["commit", "orders", "g-bob"]).await,
        "GROUP_AUTHORIZATION_FAILED"
    );
    assert_eq!(
        s.kafka("bob", BOB_PW, &["kp-commit", "orders", "g-bob"]).await,
        "GroupAuthorizationFailedError"
    );
    let described = s.admin(&["group", "describe", "g-alice", "--output", "json"]).await;
    assert!(described.contains("orders"), "alice's commit is there: {described}");
    let (code, out, err) =
        s.rafka("admin", &admin_pw, &["group", "describe", "g-bob", "--output", "json"], "").await;
    assert!(code != 0 || !out.contains("orders"), "bob's commit was stored: {out} {err}");

    // Metadata lists only what a user may describe.
    let topics = s.kafka("bob", BOB_PW, &["kp-topics"]).await;
    assert_eq!(topics, r#"["orders"]"#, "bob's topics");
    let (code, out, err) =
        s.rafka("bob", &bob_pw, &["topic", "list", "--output", "json"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("orders") && !out.contains("secret"), "{out}");

    // Bob may not manage ACLs.
    let (code, _, err) = s.rafka("bob", &bob_pw, &["acl", "list"], "").await;
    assert_ne!(code, 0, "bob listed ACLs");
    assert!(err.contains("permission denied"), "{err}");
    let out = s
        .kafka("bob", BOB_PW, &["create", "TOPIC", "*", "LITERAL", "User:bob", "ALL", "ALLOW"])
        .await;
    assert_eq!(out, r#""CLUSTER_AUTHORIZATION_FAILED""#);

    // A deny wins over alice's allow; deleting it (with Kafka's DeleteAcls) lets her write.
    s.admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "write",
        "--topic",
        "orders",
        "--deny",
    ])
    .await;
    poll("the deny reaches every broker", Duration::from_secs(30), || async {
        let out = s.kafka("alice", ALICE_PW, &["produce", "orders", "x"]).await;
        anyhow::ensure!(out == "TOPIC_AUTHORIZATION_FAILED", "{out}");
        Ok(())
    })
    .await
    .unwrap();
    let deleted = s
        .kafka(
            "admin",
            ADMIN_PW,
            &["delete", "TOPIC", "orders", "LITERAL", "User:alice", "WRITE", "DENY"],
        )
        .await;
    assert_eq!(
        deleted, r#"[["TOPIC", "orders", "LITERAL", "User:alice", "*", "WRITE", "DENY"]]"#,
        "deleted"
    );
    poll("alice writes again", Duration::from_secs(30), || async {
        let out = s.kafka("alice", ALICE_PW, &["produce", "orders", "a4"]).await;
        anyhow::ensure!(out == "ok", "{out}");
        Ok(())
    })
    .await
    .unwrap();

    // The CLI deletes by the same selectors: without her Read ACL alice cannot read.
    let out = s
        .admin(&[
            "acl",
            "delete",
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ])
        .await;
    assert!(out.contains("deleted 1 ACL"), "{out}");
    poll("alice's read is gone everywhere", Duration::from_secs(30), || async {
        let run = kcat(
            &args(&["-b", b, "-C", "-t", "orders", "-o", "beginning", "-e", "-q"], &alice_512),
            "",
        )
        .await?;
        anyhow::ensure!(!run.success && run.stderr.contains("authorization"), "{}", run.stderr);
        Ok(())
    })
    .await
    .unwrap();

    // Denials are counted on the brokers that refused them.
    let mut counted = 0.0;
    for broker in cluster.brokers() {
        let (_, body) =
            http_get(broker.http_addr(), "/metrics", Duration::from_secs(10)).await.unwrap();
        counted += body
            .lines()
            .filter(|l| {
                l.starts_with("rafka_broker_authorization_denials_total{resource=\"topic\"}")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(counted >= 4.0, "topic denials counted: {counted}");
}

/// ACLs change only while authentication is on: on an open cluster anyone could otherwise
/// plant ACLs that take effect once it is switched on (Kafka answers SECURITY_DISABLED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_cannot_be_changed_while_authentication_is_off() {
    let cluster = Cluster::start(1).await;
    let b = cluster.addrs()[0].to_string();
    let run = run_cli(
        &[
            "--bootstrap",
            &b,
            "acl",
            "create",
            "--principal",
            "User:x",
            "--operation",
            "All",
            "--cluster",
        ],
        &[],
        "",
    )
    .await;
    assert_ne!(run.code, Some(0), "an ACL was created on an open cluster");
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {}", run.stderr);
    assert!(run.stderr.contains("authentication on"), "{}", run.stderr);
    let run = run_cli(&["--bootstrap", &b, "acl", "list", "--output", "json"], &[], "").await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "[]");
}
