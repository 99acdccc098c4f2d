//! The `[tls]` and `[auth]` tables: keys that go together, files that cannot be used (errors
//! name the key), principal rules, TLS files that change under a running broker (used when
//! good, ignored when not), and the CLI's variables a broker ignores.

use std::ffi::OsString;
use std::path::Path;

use rafka_broker::config::Args;
use rafka_broker::config::AuthConfig;
use rafka_broker::config::BrokerConfig;
use rafka_broker::config::ClientAuth;
use rafka_broker::config::TlsConfig;
use rafka_broker::tls::Tls;
use rafka_tests::certs::Ca;
use rafka_tests::certs::Issued;

fn tls(cert: &Issued, ca: &Path, auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        cert_file: cert.cert.clone(),
        key_file: cert.key.clone(),
        client_ca_file: ca.to_path_buf(),
        client_auth: auth,
        ..Default::default()
    }
}

fn invalid(config: &TlsConfig) -> String {
    let config = BrokerConfig { tls: config.clone(), ..Default::default() };
    config.validate().unwrap_err().to_string()
}

fn load_err(config: &TlsConfig) -> String {
    Tls::load(config).unwrap_err().to_string()
}

#[test]
fn keys_that_go_together_are_checked_together() {
    BrokerConfig::default().validate().unwrap();
    let p = |s: &str| std::path::PathBuf::from(s);
    let cases = [
        (TlsConfig { key_file: p("k"), ..Default::default() }, "`tls.key-file`"),
        (TlsConfig { client_ca_file: p("ca"), ..Default::default() }, "`tls.client-ca-file`"),
        (
            TlsConfig { client_auth: ClientAuth::Required, ..Default::default() },
            "`tls.client-auth`",
        ),
        (TlsConfig { http: true, ..Default::default() }, "`tls.http`"),
        (TlsConfig { cert_file: p("c"), ..Default::default() }, "`tls.key-file`"),
        (
            TlsConfig { cert_file: p("c"), key_file: p("k"), ..Default::default() },
            "`tls.client-ca-file`",
        ),
    ];
    for (config, key) in cases {
        let e = invalid(&config);
        assert!(e.contains(key), "{config:?}: {e}");
    }
}

#[test]
fn tls_keys_come_from_files_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    std::fs::write(
        &file,
        "[tls]\ncert-file = \"b.pem\"\nkey-file = \"b.key\"\nclient-ca-file = \"ca.pem\"\n",
    )
    .unwrap();
    let env: Vec<(OsString, OsString)> = vec![
        ("RAFKA_TLS__CLIENT_AUTH".into(), "required".into()),
        ("RAFKA_TLS__PRINCIPAL_MAPPING_RULES".into(), "[\"RULE:^CN=(.*)$/$1/\"]".into()),
    ];
    let args = Args { config: Some(file), ..Default::default() };
    let config = BrokerConfig::load_with_env(&args, env).unwrap();
    assert_eq!(config.tls.cert_file, Path::new("b.pem"));
    assert_eq!(config.tls.client_auth, ClientAuth::Required);
    assert_eq!(config.tls.principal_mapping_rules, ["RULE:^CN=(.*)$/$1/"]);
    let bad = vec![("RAFKA_TLS__CLIENT_AUTH".into(), "sometimes".into())];
    let e = BrokerConfig::load_with_env(&Args::default(), bad).unwrap_err().to_string();
    assert!(e.contains("RAFKA_TLS__CLIENT_AUTH") && e.contains("sometimes"), "{e}");
}

#[test]
fn unusable_files_are_errors_naming_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let broker = ca.issue(dir.path(), "broker", "broker", &["127.0.0.1"]);
    let other = ca.issue(dir.path(), "other", "other", &["127.0.0.1"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    Tls::load(&tls(&broker, &ca.pem, ClientAuth::Required)).unwrap();

    let missing = TlsConfig {
        cert_file: dir.path().join("nope.pem"),
        ..tls(&broker, &ca.pem, ClientAuth::None)
    };
    assert!(load_err(&missing).contains("`tls.cert-file`"), "{}", load_err(&missing));
    let not_pem =
        TlsConfig { cert_file: garbage.clone(), ..tls(&broker, &ca.pem, ClientAuth::None) };
    assert!(load_err(&not_pem).contains("`tls.cert-file`"), "{}", load_err(&not_pem));
    let bad_key =
        TlsConfig { key_file: garbage.clone(), ..tls(&broker, &ca.pem, ClientAuth::None) };
    assert!(load_err(&bad_key).contains("`tls.key-file`"), "{}", load_err(&bad_key));
    let mismatched =
        TlsConfig { key_file: other.key.clone(), ..tls(&broker, &ca.pem, ClientAuth::None) };
    assert!(load_err(&mismatched).contains("`tls.key-file`"), "{}", load_err(&mismatched));
    let bad_ca = TlsConfig { client_ca_file: garbage, ..tls(&broker, &ca.pem, ClientAuth::None) };
    assert!(load_err(&bad_ca).contains("`tls.client-ca-file`"), "{}", load_err(&bad_ca));
    let bad_rule = TlsConfig {
        principal_mapping_rules: vec!["RULE:(/x/".into()],
        ..tls(&broker, &ca.pem, ClientAuth::None)
    };
    assert!(
        load_err(&bad_rule).contains("`tls.principal-mapping-rules`"),
        "{}",
        load_err(&bad_rule)
    );
}

#[test]
fn changed_files_are_used_when_good_and_ignored_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let first = ca.issue(dir.path(), "broker", "v1", &["127.0.0.1"]);
    let tls = Tls::load(&tls(&first, &ca.pem, ClientAuth::None)).unwrap();
    assert_eq!(&*tls.configs().leaf, first.der.as_slice());

    // A certificate file replaced by garbage: reported, and the old certificate stays.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    assert_eq!(&*tls.configs_checked_now().leaf, first.der.as_slice(), "the old one is kept");
    assert_eq!(tls.reloads(), (0, 1), "the bad file was read and refused");

    // Good files again: used from the next check on.
    let second = ca.issue(dir.path(), "broker", "v2", &["127.0.0.1"]);
    assert_eq!(&*tls.configs_checked_now().leaf, second.der.as_slice(), "the new one is used");
    assert_eq!(tls.reloads(), (1, 1));
}

#[test]
fn auth_keys_are_checked_and_name_the_key() {
    let invalid = |auth: AuthConfig| {
        let config = BrokerConfig { auth, ..Default::default() };
        config.validate().unwrap_err().to_string()
    };
    let e = invalid(AuthConfig { mechanisms: vec!["SCRAM-SHA-1".into()], ..Default::default() });
    assert!(e.contains("`auth.mechanisms`") && e.contains("SCRAM-SHA-1"), "{e}");
    let e = invalid(AuthConfig { enabled: true, mechanisms: vec![], ..Default::default() });
    assert!(e.contains("`auth.mechanisms`"), "{e}");
    let e = invalid(AuthConfig { bootstrap_user: "admin".into(), ..Default::default() });
    assert!(e.contains("`auth.bootstrap-password-file`"), "{e}");
    let e = invalid(AuthConfig { superusers: vec!["User:admin".into()], ..Default::default() });
    assert!(e.contains("`auth.superusers`"), "{e}");
    let e = invalid(AuthConfig { broker_principals: vec!["broker".into()], ..Default::default() });
    assert!(e.contains("`auth.broker-principals`"), "{e}");
    // Several brokers with authentication on prove themselves by client certificates.
    let cluster = BrokerConfig {
        initial_cluster: "1=127.0.0.1:9092,2=127.0.0.1:9093".into(),
        auth: AuthConfig { enabled: true, ..Default::default() },
        ..Default::default()
    };
    let e = cluster.validate().unwrap_err().to_string();
    assert!(e.contains("`auth.enabled`") && e.contains("client-auth"), "{e}");
    let single = BrokerConfig {
        auth: AuthConfig { enabled: true, ..Default::default() },
        ..Default::default()
    };
    single.validate().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let with_file = |name: &str| AuthConfig {
        bootstrap_user: "admin".into(),
        bootstrap_password_file: dir.path().join(name),
        ..Default::default()
    };
    let e = with_file("missing.pw").bootstrap_password().unwrap_err().to_string();
    assert!(e.contains("`auth.bootstrap-password-file`") && e.contains("missing.pw"), "{e}");
    std::fs::write(dir.path().join("empty.pw"), "\nsecond line\n").unwrap();
    let e = with_file("empty.pw").bootstrap_password().unwrap_err().to_string();
    assert!(e.contains("empty password"), "{e}");
    std::fs::write(dir.path().join("good.pw"), "s3cret\n").unwrap();
    assert_eq!(with_file("good.pw").bootstrap_password().unwrap().as_deref(), Some("s3cret"));
}

#[test]
fn a_cluster_secret_replaces_client_certificates_between_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let broker = ca.issue(dir.path(), "broker", "broker", &["127.0.0.1"]);
    std::fs::write(dir.path().join("good.secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(dir.path().join("short.secret"), "tiny\n").unwrap();
    let cluster = |secret: &str, tls_on: bool| BrokerConfig {
        initial_cluster: "1=127.0.0.1:9092,2=127.0.0.1:9093".into(),
        auth: AuthConfig {
            enabled: true,
            broker_secret_file: match secret {
                "" => Default::default(),
                name => dir.path().join(name),
            },
            ..Default::default()
        },
        tls: match tls_on {
            true => tls(&broker, &ca.pem, ClientAuth::None),
            false => TlsConfig::default(),
        },
        ..Default::default()
    };
    // Neither client certificates nor a secret: brokers could not tell each other apart.
    let e = cluster("", true).validate().unwrap_err().to_string();
    assert!(e.contains("`auth.enabled`") && e.contains("auth.broker-secret-file"), "{e}");
    cluster("good.secret", true).validate().unwrap();
    let e = cluster("good.secret", false).validate().unwrap_err().to_string();
    assert!(e.contains("`auth.broker-secret-file`") && e.contains("TLS"), "{e}");
    let e = cluster("short.secret", true).validate().unwrap_err().to_string();
    assert!(e.contains("`auth.broker-secret-file`") && e.contains("at least 32"), "{e}");
    let e = cluster("missing.secret", true).validate().unwrap_err().to_string();
    assert!(e.contains("`auth.broker-secret-file`") && e.contains("missing.secret"), "{e}");
    let secret = cluster("good.secret", true).auth.broker_secret().unwrap();
    assert_eq!(secret.as_deref(), Some(&b"0123456789abcdef0123456789abcdef"[..]));
}

#[test]
fn the_cli_variables_do_not_stop_a_broker() {
    // A shell set up for `rafka --user ...` can still start a broker.
    let env: Vec<(OsString, OsString)> = vec![
        ("RAFKA_USER".into(), "alice".into()),
        ("RAFKA_PASSWORD_FILE".into(), "/tmp/alice.pw".into()),
        ("RAFKA_AUTH__ENABLED".into(), "true".into()),
    ];
    let config = BrokerConfig::load_with_env(&Args::default(), env).unwrap();
    assert!(config.auth.enabled);
    assert_eq!(config.auth.mechanisms, AuthConfig::default().mechanisms);
}

#[test]
fn a_reachable_port_without_authentication_is_warned_about() {
    assert_eq!(BrokerConfig::default().exposure_warning(), None, "loopback");
    let open = BrokerConfig {
        listen: "0.0.0.0:9092".into(),
        advertise: "broker-1:9092".into(),
        ..Default::default()
    };
    let warning = open.exposure_warning().expect("a warning");
    assert!(
        warning.contains("0.0.0.0:9092") && warning.contains("authentication off"),
        "{warning}"
    );
    let secured = BrokerConfig { auth: AuthConfig { enabled: true, ..Default::default() }, ..open };
    assert_eq!(secured.exposure_warning(), None);
}
