//! Configuration loading through the public API: layers and their order, errors that name the
//! key and the layer, validation, `initial-cluster`, and `deploy/broker.example.toml`.
//! Environments are passed explicitly (`load_with_env`), never read from or written to the
//! process.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::path::PathBuf;

use clap::CommandFactory;
use clap::Parser;
use rafka_broker::config::Args;
use rafka_broker::config::BrokerConfig;
use rafka_broker::config::ConfigError;
use rafka_broker::config::LogFormat;
use rafka_broker::config::TopicDefaults;
use rafka_raft::LogConfig;
use rafka_raft::RaftTiming;

const EXAMPLE: &str = include_str!("../../deploy/broker.example.toml");

/// A config file in a fresh temp dir; the dir lives as long as the returned guard.
fn config_file(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

fn vars(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn load(
    toml: Option<&str>,
    env: &[(&str, &str)],
    args: &Args,
) -> Result<BrokerConfig, ConfigError> {
    let file = toml.map(config_file);
    let args = Args { config: file.as_ref().map(|(_, p)| p.clone()), ..args.clone() };
    BrokerConfig::load_with_env(&args, vars(env))
}

fn load_err(toml: Option<&str>, env: &[(&str, &str)], args: &Args) -> String {
    match load(toml, env, args) {
        Ok(c) => panic!("loaded {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn no_flags() -> Args {
    Args::default()
}

#[test]
fn defaults_validate_and_are_what_no_layer_gives() {
    BrokerConfig::default().validate().unwrap();
    // Variables outside RAFKA_*, and those of the test suites, are not configuration.
    let env = [("PATH", "/bin"), ("RAFKA_TEST_ENTRIES", "10"), ("RAFKA_BENCH_DIR", "/x")];
    assert_eq!(load(None, &env, &no_flags()).unwrap(), BrokerConfig::default());
    assert_eq!(
        BrokerConfig::default().initial_cluster().unwrap(),
        BTreeMap::from([(1, "127.0.0.1:9092".to_string())])
    );
}

#[test]
fn each_layer_overrides_the_ones_below() {
    let toml = r#"
        node-id = 2
        listen = "10.0.0.1:9092"
        rack = "file-rack"
        [log]
        flush = "interval:100"
        [raft]
        heartbeat-interval-ms = 300
        [topic-defaults]
        partitions = 4
    "#;
    let env = [
        ("RAFKA_NODE_ID", "3"),
        ("RAFKA_RACK", "1"),
        ("RAFKA_RAFT__HEARTBEAT_INTERVAL_MS", "200"),
        ("RAFKA_TOPIC_DEFAULTS__RETENTION_MS", "-1"),
        ("RAFKA_LOG_FORMAT", "json"),
    ];
    let flags = Args { node_id: Some(4), data_dir: Some("/srv/rafka".into()), ..Args::default() };

    let file = load(Some(toml), &[], &no_flags()).unwrap();
    assert_eq!(file.node_id, 2);
    assert_eq!(file.rack, "file-rack");
    assert_eq!(file.log.flush.to_string(), "interval:100");
    assert_eq!(file.raft.heartbeat_interval_ms, 300);
    assert_eq!(file.topic_defaults.partitions, 4);
    // Keys a table leaves out keep their defaults.
    assert_eq!(file.raft.detector_timeout_ms, RaftTiming::default().detector_timeout_ms);
    assert_eq!(file.topic_defaults.replication_factor, 3);

    let env_over_file = load(Some(toml), &env, &no_flags()).unwrap();
    assert_eq!(env_over_file.node_id, 3);
    assert_eq!(env_over_file.listen, "10.0.0.1:9092");
    assert_eq!(env_over_file.rack, "1", "a text key keeps digits as text");
    assert_eq!(env_over_file.raft.heartbeat_interval_ms, 200);
    assert_eq!(env_over_file.topic_defaults.retention_ms, -1);
    assert_eq!(env_over_file.topic_defaults.partitions, 4);
    assert_eq!(env_over_file.log_format, LogFormat::Json);
    assert_eq!(env_over_file.log.flush.to_string(), "interval:100");

    let all = load(Some(toml), &env, &flags).unwrap();
    assert_eq!(all.node_id, 4);
    assert_eq!(all.data_dir, PathBuf::from("/srv/rafka"));
    assert_eq!(all.rack, "1", "flags not given leave the lower layers alone");

    let flags_only = load(None, &[], &flags).unwrap();
    assert_eq!(flags_only.node_id, 4);
    assert_eq!(flags_only.listen, BrokerConfig::default().listen);

    let env_only = load(None, &env, &no_flags()).unwrap();
    assert_eq!(env_only.node_id, 3);
    assert_eq!(env_only.topic_defaults.partitions, 1);
}

#[test]
fn env_reaches_every_table() {
    let env = [
        ("RAFKA_LOG__FLUSH", "interval:250"),
        ("RAFKA_LOG__SEGMENT_BYTES", "1048576"),
        ("RAFKA_DATA_DIR", "/data"),
        ("RAFKA_INITIAL_CLUSTER", "1=127.0.0.1:9092,2=b:9092"),
        ("RAFKA_TOPIC_DEFAULTS__REPLICATION_FACTOR", "1"),
    ];
    let c = load(None, &env, &no_flags()).unwrap();
    assert_eq!(c.log.flush.to_string(), "interval:250");
    assert_eq!(c.log.segment_bytes, 1 << 20);
    assert_eq!(c.data_dir, PathBuf::from("/data"));
    assert_eq!(c.initial_cluster().unwrap().len(), 2);
    assert_eq!(c.topic_defaults.replication_factor, 1);
}

#[test]
fn unknown_keys_are_errors_naming_key_and_layer() {
    for (toml, needle) in [
        ("nodeid = 2", "unknown key `nodeid`"),
        ("node_id = 2", "(keys are kebab-case: `node-id`)"),
        ("[log]\nflushh = \"always\"", "unknown key `log.flushh`"),
        ("[raft]\nheartbeat-ms = 100", "unknown key `raft.heartbeat-ms`"),
        ("[topic-defaults]\npartition = 3", "unknown key `topic-defaults.partition`"),
        ("[logs]\nflush = \"always\"", "unknown key `logs`"),
    ] {
        let e = load_err(Some(toml), &[], &no_flags());
        assert!(e.contains(needle), "{toml:?}: {e}");
        assert!(e.contains("TOML file") && e.contains("broker.toml"), "{toml:?}: {e}");
    }
    for var in ["RAFKA_INITIAL_CLUSTR", "RAFKA_LOG__FLUSHH", "RAFKA_LOG_FLUSH", "RAFKA_LOG__"] {
        let e = load_err(None, &[(var, "x")], &no_flags());
        assert!(e.contains("unknown key"), "{var}: {e}");
        assert!(e.contains(&format!("environment variable {var}")), "{var}: {e}");
    }
}

#[test]
fn wrong_types_name_key_and_layer() {
    let e = load_err(None, &[("RAFKA_NODE_ID", "two")], &no_flags());
    assert!(e.contains("RAFKA_NODE_ID") && e.contains("two"), "{e}");
    let e = load_err(Some("node-id = \"two\""), &[], &no_flags());
    assert!(e.contains("node-id") && e.contains("broker.toml"), "{e}");
    let e = load_err(Some("[log]\nflush = \"sometimes\""), &[], &no_flags());
    assert!(e.contains("flush") && e.contains("sometimes") && e.contains("broker.toml"), "{e}");
    let e = load_err(Some("log-format = \"xml\""), &[], &no_flags());
    assert!(e.contains("xml") && e.contains("log-format"), "{e}");
    let e = load_err(Some("node-id = "), &[], &no_flags());
    assert!(e.contains("broker.toml"), "a TOML syntax error names the file: {e}");
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let args = Args { config: Some("/nonexistent/rafka/broker.toml".into()), ..Args::default() };
    let e = BrokerConfig::load_with_env(&args, vars(&[])).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/rafka/broker.toml"), "{e}");
}

#[test]
fn invalid_values_name_key_and_layer() {
    let e = load_err(Some("listen = \"localhost:9092\""), &[], &no_flags());
    assert!(e.contains("`listen`") && e.contains("localhost:9092"), "{e}");
    assert!(e.contains("set by TOML file") && e.contains("broker.toml"), "{e}");
    let e = load_err(None, &[], &Args { node_id: Some(0), ..Args::default() });
    assert!(e.contains("`node-id`") && e.contains("set by command-line flag --node-id"), "{e}");
    let e = load_err(None, &[("RAFKA_RAFT__HEARTBEAT_INTERVAL_MS", "0")], &no_flags());
    assert!(e.contains("`raft`") && e.contains("heartbeat-interval-ms"), "{e}");
}

#[test]
fn validate_rejects_out_of_range() {
    let d = BrokerConfig::default;
    let td = TopicDefaults::default;
    let topic = |t: TopicDefaults| BrokerConfig { topic_defaults: t, ..d() };
    let cases: Vec<(BrokerConfig, &str)> = vec![
        (BrokerConfig { node_id: 0, ..d() }, "`node-id`"),
        (BrokerConfig { listen: "127.0.0.1".into(), ..d() }, "`listen`"),
        (BrokerConfig { listen: "localhost:9092".into(), ..d() }, "`listen`"),
        (BrokerConfig { http: "9644".into(), ..d() }, "`http`"),
        (BrokerConfig { listen: "0.0.0.0:9092".into(), ..d() }, "set advertise"),
        (BrokerConfig { listen: "127.0.0.1:0".into(), ..d() }, "set advertise"),
        (BrokerConfig { advertise: "host".into(), ..d() }, "`advertise`"),
        (BrokerConfig { advertise: "bad host:1".into(), ..d() }, "`advertise`"),
        (BrokerConfig { advertise: "[::]:9092".into(), ..d() }, "`advertise`"),
        (BrokerConfig { data_dir: PathBuf::new(), ..d() }, "`data-dir`"),
        (BrokerConfig { log_level: "".into(), ..d() }, "`log-level`"),
        (BrokerConfig { log_level: "rafka=loud".into(), ..d() }, "`log-level`"),
        (BrokerConfig { request_timeout_ms: 0, ..d() }, "`request-timeout-ms`"),
        (BrokerConfig { shutdown_timeout_ms: 0, ..d() }, "`shutdown-timeout-ms`"),
        (BrokerConfig { retention_check_interval_ms: 0, ..d() }, "`retention-check-interval-ms`"),
        (BrokerConfig { fetch_max_bytes: 0, ..d() }, "`fetch-max-bytes`"),
        (
            BrokerConfig { log: LogConfig { io_threads: 0, ..LogConfig::default() }, ..d() },
            "io-threads",
        ),
        (
            BrokerConfig {
                raft: RaftTiming { election_timeout_min_ms: 0, ..RaftTiming::default() },
                ..d()
            },
            "`raft`: election-timeout",
        ),
        (topic(TopicDefaults { partitions: 0, ..td() }), "partitions"),
        (topic(TopicDefaults { replication_factor: 0, ..td() }), "replication-factor"),
        (topic(TopicDefaults { max_message_bytes: 0, ..td() }), "max-message-bytes"),
        (topic(TopicDefaults { max_message_bytes: (64 << 20) + 1, ..td() }), "max-message-bytes"),
        (topic(TopicDefaults { retention_ms: 0, ..td() }), "retention-ms"),
        (topic(TopicDefaults { retention_bytes: -2, ..td() }), "retention-bytes"),
        (BrokerConfig { initial_cluster: "2=b:9092".into(), ..d() }, "`initial-cluster`"),
    ];
    for (config, needle) in cases {
        let e = config.validate().expect_err(needle).to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    }
    let ok = [
        BrokerConfig {
            listen: "0.0.0.0:9092".into(),
            advertise: "broker-1.rafka.svc:9092".into(),
            ..d()
        },
        BrokerConfig { listen: "[::1]:9092".into(), ..d() },
        topic(TopicDefaults { max_message_bytes: 64 << 20, ..td() }),
        topic(TopicDefaults { retention_ms: -1, retention_bytes: 1, ..td() }),
        BrokerConfig { log_level: "rafka_broker=debug,info".into(), ..d() },
    ];
    for c in ok {
        c.validate().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

fn cluster(node_id: u64, advertise: &str, list: &str) -> Result<BTreeMap<u64, String>, String> {
    let c = BrokerConfig {
        node_id,
        advertise: advertise.into(),
        initial_cluster: list.into(),
        ..BrokerConfig::default()
    };
    c.initial_cluster().map_err(|e| e.to_string())
}

#[test]
fn initial_cluster_parses_founding_brokers() {
    let m = cluster(2, "b:9092", "1=a:9092,2=b:9092,3=c.example.com:9092").unwrap();
    let expected = [(1, "a:9092"), (2, "b:9092"), (3, "c.example.com:9092")];
    assert_eq!(m, expected.map(|(id, a)| (id, a.to_string())).into());
    let m = cluster(1, "10.0.0.1:9092", " 1 = 10.0.0.1:9092 , 2=[fd00::2]:9092 ").unwrap();
    assert_eq!(m[&2], "[fd00::2]:9092");
    // Empty: this broker alone, at its advertised address.
    assert_eq!(cluster(7, "me:1", "").unwrap(), BTreeMap::from([(7, "me:1".to_string())]));
}

#[test]
fn initial_cluster_refuses_bad_lists_naming_the_item() {
    for (list, needle) in [
        ("1=a:9092,1=b:9092", "item `1=b:9092`: broker id 1 is listed twice"),
        ("1=a:9092,2=a:9092", "item `2=a:9092`: address a:9092 is listed twice"),
        ("1=a:9092,2b:9092", "item `2b:9092`: expected id=host:port"),
        ("1=a:9092,x=b:9092", "item `x=b:9092`: `x` is not a broker id"),
        ("1=a:9092,0=b:9092", "item `0=b:9092`: `0` is not a broker id"),
        ("1=a:9092,2=b", "item `2=b`: `b` is not host:port"),
        ("1=a:9092,2=b:0", "item `2=b:0`"),
        ("1=a:9092,2=:9092", "item `2=:9092`"),
        ("1=a:9092,,2=b:9092", "item ``"),
        ("1=a:9092,2=[zz]:9092", "item `2=[zz]:9092`"),
        ("2=b:9092,3=c:9092", "does not list this broker (node-id 1)"),
        ("1=x:9092,2=b:9092", "lists this broker (node-id 1) at x:9092, but it advertises a:9092"),
    ] {
        let e = cluster(1, "a:9092", list).unwrap_err();
        assert!(e.contains("`initial-cluster`") && e.contains(needle), "{list:?}: {e}");
    }
}

/// Dotted paths of the leaves of a TOML table.
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(t) => leaves(t, &path, out),
            _ => out.push(path),
        }
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn dial_overrides_are_a_free_form_table_of_addresses() {
    let toml = "[dial-overrides]\n\"127.0.0.2:9092\" = \"127.0.0.1:40001\"\n";
    let c = load(Some(toml), &[], &no_flags()).unwrap();
    assert_eq!(c.dial_overrides.get("127.0.0.2:9092").map(String::as_str), Some("127.0.0.1:40001"));
    let err =
        load_err(Some("[dial-overrides]\n\"127.0.0.2:9092\" = \"nowhere\"\n"), &[], &no_flags());
    assert!(err.contains("dial-overrides") && err.contains("nowhere"), "{err}");
}

/// The fault suite's hook is no setting of a production build.
#[cfg(not(feature = "failpoints"))]
#[test]
fn dial_overrides_exist_only_in_test_builds() {
    let toml = "[dial-overrides]\n\"127.0.0.2:9092\" = \"127.0.0.1:40001\"\n";
    let err = load_err(Some(toml), &[], &no_flags());
    assert!(err.contains("dial-overrides"), "{err}");
}

#[test]
fn example_file_lists_every_key_at_its_default() {
    let parsed: BrokerConfig = toml::from_str(EXAMPLE).expect("the example parses");
    assert_eq!(parsed, BrokerConfig::default());

    // Through the loader, as an operator would use it.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/broker.example.toml");
    let args = Args { config: Some(path), ..Args::default() };
    assert_eq!(BrokerConfig::load_with_env(&args, vars(&[])).unwrap(), BrokerConfig::default());

    // serde(default) would hide a key left out of the file: compare the key sets, and check
    // that each key's variable is documented.
    let mut expected = Vec::new();
    let defaults = toml::to_string(&BrokerConfig::default()).unwrap();
    leaves(&defaults.parse::<toml::Table>().unwrap(), "", &mut expected);
    // Test-build-only keys (feature `failpoints`) are not for operators' files.
    expected.retain(|k| k != "report-batch-format");
    let mut found = Vec::new();
    leaves(&EXAMPLE.parse::<toml::Table>().unwrap(), "", &mut found);
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    for path in &expected {
        let var = format!("RAFKA_{}", path.replace('.', "__").replace('-', "_").to_uppercase());
        assert!(EXAMPLE.contains(&var), "{var} is not documented in the example");
    }
}

#[test]
fn args_parse_and_only_given_flags_override() {
    Args::command().debug_assert();
    let args = Args::try_parse_from([
        "rafka-broker",
        "--node-id",
        "3",
        "--log-format",
        "json",
        "--advertise",
        "c:9092",
        "--initial-cluster",
        "1=a:9092,2=b:9092,3=c:9092",
    ])
    .unwrap();
    assert_eq!(args.log_format, Some(LogFormat::Json));
    let c = BrokerConfig::load_with_env(&args, vars(&[("RAFKA_RACK", "r1")])).unwrap();
    assert_eq!((c.node_id, c.log_format, c.rack.as_str()), (3, LogFormat::Json, "r1"));
    assert_eq!(c.initial_cluster().unwrap()[&3], "c:9092");
    let e = Args::try_parse_from(["rafka-broker", "--version"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    assert!(Args::try_parse_from(["rafka-broker", "--log-format", "xml"]).is_err());
}

/// `deploy/systemd/broker.env` (the unit's `EnvironmentFile`) is a valid configuration:
/// every line a variable the broker knows, the whole a founding broker of three.
#[test]
fn systemd_environment_example_is_a_valid_configuration() {
    let text = include_str!("../../deploy/systemd/broker.env");
    let env: Vec<(OsString, OsString)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.into(), v.into())
        })
        .collect();
    assert!(env.len() >= 5, "{env:?}");
    let config = BrokerConfig::load_with_env(&Args::default(), env).unwrap();
    config.validate().unwrap();
    assert_eq!(config.node_id, 1);
    assert_eq!(config.advertise_addr(), "kafka-1:9092");
    assert_eq!(config.log_format, LogFormat::Json);
    // The commented TLS and authentication lines parse too, once uncommented.
    let commented: Vec<(OsString, OsString)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# RAFKA_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("RAFKA_{k}").into(), v.into()))
        .collect();
    assert!(commented.len() >= 4, "{commented:?}");
    let with_security = BrokerConfig::load_with_env(&Args::default(), commented).unwrap();
    assert!(with_security.auth.enabled);
    assert_eq!(with_security.auth.superusers, ["admin"]);
}
