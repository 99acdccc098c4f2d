//! Broker configuration ([`BrokerConfig`]), read from four layers, each overriding the ones
//! before it:
//!
//! 1. the defaults ([`BrokerConfig::default`]; `deploy/broker.example.toml` lists every key at
//!    its default);
//! 2. the TOML file named by `--config` (a missing file is an error, not an empty layer);
//! 3. environment variables `RAFKA_*`;
//! 4. command-line flags ([`Args`]): only the flags actually given.
//!
//! [`BrokerConfig::load`] reads and validates them; a typo must not be silently ignored, so a
//! key that names no setting is an error in the file and in the environment, at any depth
//! (`[log]` and `[raft]` come from rafka-raft without `deny_unknown_fields`, so the layers are
//! checked against the keys of the defaults before they are deserialized).
//!
//! # Environment
//!
//! A key's variable is `RAFKA_` followed by the key upper-cased with `-` written `_`; a key of
//! a nested table is the table and the key joined by a double underscore:
//!
//! | key                              | variable                                   |
//! |----------------------------------|--------------------------------------------|
//! | `node-id`                        | `RAFKA_NODE_ID=2`                          |
//! | `data-dir`                       | `RAFKA_DATA_DIR=/var/lib/rafka`            |
//! | `initial-cluster`                | `RAFKA_INITIAL_CLUSTER=1=a:9092,2=b:9092`  |
//! | `[log] flush`                    | `RAFKA_LOG__FLUSH=interval:100`            |
//! | `[raft] heartbeat-interval-ms`   | `RAFKA_RAFT__HEARTBEAT_INTERVAL_MS=200`    |
//! | `[topic-defaults] retention-ms`  | `RAFKA_TOPIC_DEFAULTS__RETENTION_MS=-1`    |
//!
//! Values are taken as written: text keys keep the text (`RAFKA_RACK=1` is the rack `"1"`),
//! numeric keys parse it. Any other `RAFKA_*` variable is an error, because a misspelt
//! `RAFKA_INITIAL_CLUSTER` would quietly start a single-node cluster; `RAFKA_TEST_*` and
//! `RAFKA_BENCH_*` belong to the test suites and benchmarks and are not read.

mod auth;
mod cluster;
mod groups;
pub mod listeners;
mod tls;

pub use auth::AuthConfig;
pub(crate) use cluster::check_host_port;
pub use groups::GroupsConfig;
pub use listeners::NamedListener;
pub use tls::ClientAuth;
pub use tls::TlsConfig;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::Metadata;
use figment::Profile;
use figment::Provider;
use figment::providers::Data;
use figment::providers::Format;
use figment::providers::Serialized;
use figment::providers::Toml;
use figment::value::Dict;
use figment::value::Map;
use figment::value::Value;
use serde::Deserialize;
use serde::Serialize;

/// Largest `max-message-bytes` a topic may have: a record batch travels in one gRPC message.
pub const MAX_MESSAGE_BYTES_LIMIT: u64 = 64 << 20;

/// Prefix of the environment variables read as configuration.
const ENV_PREFIX: &str = "RAFKA_";
/// `RAFKA_*` variables of other tools (tests, benchmarks), never read as configuration.
const ENV_RESERVED: [&str; 6] =
    ["TEST_", "BENCH_", "BOOTSTRAP", "BROKER_BIN", "USER", "PASSWORD_FILE"];

/// Everything a broker process is configured with. See the module doc for the layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's id, unique in the cluster and never reused; 0 is not an id.
    pub node_id: u64,
    /// gRPC address for clients and for Raft traffic between brokers (one port), `ip:port`.
    pub listen: String,
    /// `host:port` other brokers and clients reach this broker at; empty: `listen`.
    pub advertise: String,
    /// More listeners, `name=ip:port,...`, for clients in other networks (see [`listeners`]).
    pub listeners: String,
    /// Their advertised addresses, `name=host:port,...`; a listener left out advertises its
    /// bind address.
    pub advertised_listeners: String,
    /// `ip:port` of the HTTP side port: `/metrics`, `/healthz`, `/readyz`.
    pub http: String,
    /// Directory of this broker's logs and metadata.
    pub data_dir: PathBuf,
    /// Founding brokers, `id=host:port,...` (each one's advertised address); empty: a
    /// single-node cluster of this broker.
    pub initial_cluster: String,
    /// Live brokers, `host:port,...`, through which this broker joins a running cluster (it
    /// is not a founding member); read on its first start only. Excludes `initial-cluster`.
    pub join: String,
    /// Rack (or zone) of this broker; empty: none.
    pub rack: String,
    /// Format of the log lines on stderr.
    pub log_format: LogFormat,
    /// Tracing filter (`info`, `rafka_broker=debug,info`, ...); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Default timeout of produce and admin requests that give none.
    pub request_timeout_ms: u64,
    /// Default bound on the bytes of a fetch response.
    pub fetch_max_bytes: u32,
    /// How often retention limits are enforced.
    pub retention_check_interval_ms: u64,
    /// Bound on a graceful shutdown; the process exits when it passes.
    pub shutdown_timeout_ms: u64,
    /// How often a broker hands leaderships back to preferred replicas (the first replica
    /// placement chose), so leaders spread evenly again after failovers.
    pub leader_balance_interval_ms: u64,
    /// Free space the data directory's filesystem must keep: below it the broker refuses
    /// produce requests (retriable `DISK_FULL`, Kafka's `KAFKA_STORAGE_ERROR`) and keeps
    /// serving reads, until space returns; 0 turns the check off.
    pub min_free_bytes: u64,
    /// Segmented-log settings (`[log]`).
    pub log: rafka_raft::LogConfig,
    /// Failure-detection and election timing (`[raft]`); the same on every broker.
    pub raft: rafka_raft::RaftTiming,
    /// Whether a Kafka client's Metadata request for a topic that does not exist creates it
    /// (with the topic defaults), when the request allows it — Kafka's
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Settings of topics created without them (`[topic-defaults]`).
    pub topic_defaults: TopicDefaults,
    /// Consumer groups (`[groups]`).
    pub groups: GroupsConfig,
    /// TLS on the broker port and between brokers (`[tls]`).
    pub tls: TlsConfig,
    /// Authentication and authorization (`[auth]`).
    pub auth: AuthConfig,
    /// Fault suite only (`[dial-overrides]`, in builds with the `failpoints` feature): another
    /// broker's advertised `host:port` → the address this broker dials instead. The fault
    /// suite routes each direction of every broker pair through its own proxy this way;
    /// clients are not affected.
    #[cfg(feature = "failpoints")]
    pub dial_overrides: BTreeMap<String, String>,
    /// Fault suite only (`report-batch-format`, in builds with the `failpoints` feature):
    /// the batch format this broker tells the controller it reads, to play a broker of an
    /// older version during an upgrade; 0 reports the real one.
    #[cfg(feature = "failpoints")]
    pub report_batch_format: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".into(),
            advertise: String::new(),
            listeners: String::new(),
            advertised_listeners: String::new(),
            http: "127.0.0.1:9644".into(),
            data_dir: PathBuf::from("./rafka-data"),
            initial_cluster: String::new(),
            join: String::new(),
            rack: String::new(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            request_timeout_ms: 30_000,
            fetch_max_bytes: 1 << 20,
            retention_check_interval_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            leader_balance_interval_ms: 10_000,
            min_free_bytes: 256 << 20,
            log: rafka_raft::LogConfig::default(),
            raft: rafka_raft::RaftTiming::default(),
            auto_create_topics: true,
            topic_defaults: TopicDefaults::default(),
            groups: GroupsConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            #[cfg(feature = "failpoints")]
            dial_overrides: BTreeMap::new(),
            #[cfg(feature = "failpoints")]
            report_batch_format: 0,
        }
    }
}

/// Settings a topic gets when its creation request leaves them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TopicDefaults {
    /// Partitions of a new topic.
    pub partitions: u32,
    /// Replicas of each partition, capped by the number of brokers when a topic is created.
    pub replication_factor: u32,
    /// Largest record batch a producer may send.
    pub max_message_bytes: u64,
    /// Age after which closed segments are deleted; -1: unlimited.
    pub retention_ms: i64,
    /// Size of a partition past which its oldest closed segments are deleted; -1: unlimited.
    pub retention_bytes: i64,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            partitions: 1,
            replication_factor: 3,
            max_message_bytes: 1 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
        }
    }
}

impl TopicDefaults {
    /// Checks ranges. Keys in errors are prefixed `topic-defaults.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions == 0 {
            return Err(invalid("topic-defaults.partitions", "must be at least 1, got 0"));
        }
        if self.replication_factor == 0 {
            return Err(invalid("topic-defaults.replication-factor", "must be at least 1, got 0"));
        }
        if !(1..=MAX_MESSAGE_BYTES_LIMIT).contains(&self.max_message_bytes) {
            return Err(invalid(
                "topic-defaults.max-message-bytes",
                format!("must be 1..={MAX_MESSAGE_BYTES_LIMIT}, got {}", self.max_message_bytes),
            ));
        }
        for (key, value) in [
            ("topic-defaults.retention-ms", self.retention_ms),
            ("topic-defaults.retention-bytes", self.retention_bytes),
        ] {
            if value != -1 && value <= 0 {
                return Err(invalid(
                    key,
                    format!("must be -1 (unlimited) or positive, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Command-line flags of `rafka-broker`. Each flag overrides the key of the same name; flags
/// left out leave the lower layers alone, and environment variables are read by
/// [`BrokerConfig::load`], not by clap, so that they rank below the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser, Serialize)]
#[command(name = "rafka-broker", version = crate::VERSION, about = "The rafka broker")]
#[serde(rename_all = "kebab-case")]
pub struct Args {
    /// TOML config file (keys as in deploy/broker.example.toml).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This broker's id (> 0), unique in the cluster.
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// gRPC address for clients and brokers, ip:port.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// host:port others reach this broker at (default: --listen).
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// HTTP address for /metrics, /healthz and /readyz, ip:port.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Founding brokers, id=host:port,... (default: a single-node cluster).
    #[arg(long, value_name = "LIST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    /// Join a running cluster through these live brokers, host:port,... (first start only).
    #[arg(long, value_name = "LIST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// Rack or zone of this broker.
    #[arg(long, value_name = "RACK")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Format of log lines.
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Tracing filter, e.g. info or rafka_broker=debug,info (RUST_LOG overrides it).
    #[arg(long, value_name = "FILTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// A configuration that could not be read or is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read (missing file, bad TOML, non-UTF-8 variable) or holds a value
    /// of the wrong type. figment's message names the key and the layer.
    #[error("config: {0}")]
    Load(Box<figment::Error>),
    /// The `--config` file cannot be read.
    #[error("config: cannot read the --config file {path}: {source}")]
    File {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key that names no setting: a typo, or a setting of another version.
    #[error("config: unknown key `{key}` in {origin}{hint}")]
    UnknownKey {
        /// Dotted path of the key (`log.flushh`).
        key: String,
        /// The layer that set it (`TOML file /etc/rafka/broker.toml`, `environment variable
        /// RAFKA_LOG__FLUSHH`).
        origin: String,
        /// A suggestion, or empty.
        hint: String,
    },
    /// A value of the right type but out of range or malformed.
    #[error("config: invalid `{key}`: {reason}{}", origin_suffix(.origin))]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// What is wrong, with the offending value.
        reason: String,
        /// The layer that set the key, when known (absent for [`BrokerConfig::validate`]
        /// called on a config built in code).
        origin: Option<String>,
    },
}

fn origin_suffix(origin: &Option<String>) -> String {
    origin.as_ref().map(|o| format!(" (set by {o})")).unwrap_or_default()
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into(), origin: None }
}

impl BrokerConfig {
    /// Reads the layers named by `args` (defaults, `--config`, `RAFKA_*` variables, flags) and
    /// validates the result.
    pub fn load(args: &Args) -> Result<BrokerConfig, ConfigError> {
        Self::load_with_env(args, std::env::vars_os())
    }

    /// [`load`](Self::load) with the given environment instead of the process's: for tests,
    /// and for harnesses that prepare a broker's environment before spawning it.
    pub fn load_with_env(
        args: &Args,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<BrokerConfig, ConfigError> {
        let file = match &args.config {
            // figment would report a missing file as a bare "No such file or directory".
            Some(path) => match std::fs::metadata(path) {
                Ok(_) => Some(FileLayer(Toml::file_exact(path))),
                Err(source) => return Err(ConfigError::File { path: path.clone(), source }),
            },
            None => None,
        };
        Self::load_from(layers(file, EnvLayer::from_vars(env), args))
    }

    /// Extracts and validates a config from already-merged layers; errors name the layer that
    /// set the offending key.
    fn load_from(figment: Figment) -> Result<BrokerConfig, ConfigError> {
        check_unknown_keys(&figment)?;
        let config: BrokerConfig = figment.extract()?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { key, reason, origin: None } => {
                // A table (`log`, `raft`) may mix layers; name a layer only for a plain value.
                let origin = match figment.find_value(&key) {
                    Ok(Value::Dict(..)) | Err(_) => None,
                    Ok(_) => figment.find_metadata(&key).map(|md| describe_origin(md, &key)),
                };
                ConfigError::Invalid { key, reason, origin }
            }
            e => e,
        })?;
        Ok(config)
    }

    /// Checks every value: addresses, ranges, the `[log]` and `[raft]` tables, the topic
    /// defaults and `initial-cluster`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node-id", "must be at least 1, got 0"));
        }
        // Bind addresses are IP literals: binding must not depend on name resolution.
        for (key, addr) in [("listen", &self.listen), ("http", &self.http)] {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    key,
                    format!("`{addr}` is not ip:port (e.g. 0.0.0.0:9092 or [::]:9092)"),
                ));
            }
        }
        self.check_advertise()?;
        self.named_listeners()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data-dir", "must not be empty"));
        }
        if self.log_level.trim().is_empty() {
            return Err(invalid("log-level", "must not be empty (e.g. `info`)"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(invalid("log-level", format!("`{}`: {e}", self.log_level)));
        }
        for (key, value) in [
            ("request-timeout-ms", self.request_timeout_ms),
            ("retention-check-interval-ms", self.retention_check_interval_ms),
            ("shutdown-timeout-ms", self.shutdown_timeout_ms),
            ("leader-balance-interval-ms", self.leader_balance_interval_ms),
            ("fetch-max-bytes", u64::from(self.fetch_max_bytes)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive, got 0"));
            }
        }
        self.log.validate().map_err(|e| invalid("log", raft_reason(e)))?;
        self.raft.validate().map_err(|e| invalid("raft", raft_reason(e)))?;
        self.topic_defaults.validate()?;
        self.groups.validate()?;
        self.tls.validate()?;
        self.auth.validate()?;
        self.auth.check_with(&self.tls, self.initial_cluster()?.len())?;
        self.initial_cluster()?;
        self.join_addrs()?;
        #[cfg(feature = "failpoints")]
        for (from, to) in &self.dial_overrides {
            for addr in [from, to] {
                check_host_port(addr).map_err(|why| {
                    invalid("dial-overrides", format!("`{from}` = `{to}`: {why}"))
                })?;
            }
        }
        Ok(())
    }

    /// A warning for an operator when the broker port is reachable from other machines
    /// (`listen` is not a loopback address) while authentication is off: anyone who can reach
    /// it can read, write and delete every topic.
    pub fn exposure_warning(&self) -> Option<String> {
        let ip = self.listen.parse::<SocketAddr>().ok()?.ip();
        (!self.auth.enabled && !ip.is_loopback()).then(|| {
            format!(
                "listening on {} with authentication off: anyone who can reach this port can \
                 read, write and delete every topic ([auth] enabled = true, with [tls])",
                self.listen
            )
        })
    }

    /// The address other brokers and clients reach this broker at: `advertise`, or `listen`
    /// when it is empty.
    pub fn advertise_addr(&self) -> &str {
        if self.advertise.is_empty() { &self.listen } else { &self.advertise }
    }

    /// The listeners besides the internal one (`listen` / `advertise`).
    pub fn named_listeners(&self) -> Result<Vec<NamedListener>, ConfigError> {
        listeners::parse(&self.listeners, &self.advertised_listeners)
    }

    /// The founding brokers, id → advertised address. Empty `initial-cluster` is a single-node
    /// cluster of this broker. Items are `id=host:port`; ids and addresses must be unique and
    /// this broker must be listed at its own advertised address.
    pub fn initial_cluster(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        cluster::initial_cluster(&self.initial_cluster, self.node_id, self.advertise_addr())
    }

    /// The live brokers to join through (`join`), when this broker joins a running cluster
    /// instead of founding one; empty otherwise.
    pub fn join_addrs(&self) -> Result<Vec<String>, ConfigError> {
        cluster::join(&self.join, &self.initial_cluster)
    }

    /// The advertised address must be one others can dial: a host (name or IP) that names a
    /// machine, and a real port. An empty `advertise` inherits `listen`, which is often
    /// `0.0.0.0:...` in deployments; say so rather than hand out an address nobody can reach.
    fn check_advertise(&self) -> Result<(), ConfigError> {
        let addr = self.advertise_addr();
        let inherited = if self.advertise.is_empty() {
            " (advertise is empty, so listen is advertised; set advertise)"
        } else {
            ""
        };
        check_host_port(addr).map_err(|why| invalid("advertise", format!("{why}{inherited}")))?;
        if let Ok(sa) = addr.parse::<SocketAddr>()
            && sa.ip().is_unspecified()
        {
            return Err(invalid(
                "advertise",
                format!("`{addr}` is an unspecified address others cannot reach{inherited}"),
            ));
        }
        Ok(())
    }
}

/// rafka-raft's config errors say "invalid log config" also for the timing; keep only the
/// detail, the key (`log` or `raft`) says which table.
fn raft_reason(e: rafka_raft::Error) -> String {
    match e {
        rafka_raft::Error::Config(detail) => detail,
        e => e.to_string(),
    }
}

/// The layers in order, lowest first. `file` is `None` without `--config`.
fn layers(file: Option<FileLayer>, env: EnvLayer, args: &Args) -> Figment {
    let mut figment = Figment::new();
    if let Some(file) = file {
        figment = figment.merge(file);
    }
    figment.merge(env).merge(FlagLayer(args))
}

/// The `--config` file as a figment layer whose errors give keys as written in the file
/// (`log.flush`, not figment's `default.log.flush`).
struct FileLayer(Data<Toml>);

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        self.0.metadata().interpolater(|_: &Profile, keys: &[&str]| keys.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// The defaults as a figment value: the schema the layers are checked against.
fn schema() -> Dict {
    match Value::serialize(BrokerConfig::default()) {
        Ok(Value::Dict(_, dict)) => dict,
        other => unreachable!("BrokerConfig serializes to a table, got {other:?}"),
    }
}

/// Fails on the first key of any layer that the defaults do not have. serde's
/// `deny_unknown_fields` cannot do this for `[log]` and `[raft]` (their types come from
/// rafka-raft without it), and here the error can name the layer.
fn check_unknown_keys(figment: &Figment) -> Result<(), ConfigError> {
    let root = Value::from(schema());
    let schema = root.as_dict().expect("the schema is a table");
    let data = match figment.data() {
        Ok(data) => data,
        // The same error through `extract`, which names the layer it came from.
        Err(e) => return Err(figment.extract::<Dict>().err().unwrap_or(e).into()),
    };
    for dict in data.values() {
        unknown_key(figment, &root, schema, dict, &mut Vec::new())?;
    }
    Ok(())
}

fn unknown_key(
    figment: &Figment,
    root: &Value,
    schema: &Dict,
    data: &Dict,
    path: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (key, value) in data {
        path.push(key.clone());
        match (schema.get(key), value) {
            (None, _) => {
                let dotted = path.join(".");
                let origin = figment
                    .get_metadata(value.tag())
                    .map(|md| describe_origin(md, &dotted))
                    .unwrap_or_else(|| "an unknown layer".into());
                // TOML writers reach for snake_case out of habit; point at the real key.
                let kebab = dotted.replace('_', "-");
                let hint = if kebab != dotted && root.find_ref(&kebab).is_some() {
                    format!(" (keys are kebab-case: `{kebab}`)")
                } else {
                    String::new()
                };
                return Err(ConfigError::UnknownKey { key: dotted, origin, hint });
            }
            // Free-form tables: their keys are data (addresses), not settings.
            #[cfg(feature = "failpoints")]
            (Some(Value::Dict(..)), Value::Dict(..)) if *path == ["dial-overrides"] => {}
            (Some(Value::Dict(_, sub_schema)), Value::Dict(_, sub_data)) => {
                unknown_key(figment, root, sub_schema, sub_data, path)?;
            }
            // A type mismatch is left to extraction, which reports it with the layer.
            _ => {}
        }
        path.pop();
    }
    Ok(())
}

/// "TOML file /etc/rafka/broker.toml", "environment variable RAFKA_NODE_ID", "command-line
/// flag --node-id".
fn describe_origin(md: &Metadata, dotted: &str) -> String {
    match &md.source {
        Some(source) => format!("{} {source}", md.name),
        // Env and flags: name the variable or flag, which is what the operator wrote.
        None => {
            let keys: Vec<&str> = dotted.split('.').collect();
            format!("{} {}", md.name, md.interpolate(&Profile::Default, &keys))
        }
    }
}

/// The `RAFKA_*` variables as a figment layer. It reads a given list of variables, so tests
/// do not depend on (or change) the process environment.
struct EnvLayer {
    vars: Vec<(String, OsString)>,
}

impl EnvLayer {
    /// Variables whose names are not UTF-8 cannot be `RAFKA_*` keys and are skipped.
    fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> EnvLayer {
        EnvLayer {
            vars: vars.into_iter().filter_map(|(k, v)| Some((k.into_string().ok()?, v))).collect(),
        }
    }

    /// The key path of a variable (`RAFKA_LOG__FLUSH` → `["log", "flush"]`), or `None` when
    /// the variable is not configuration.
    fn key_path(name: &str) -> Option<Vec<String>> {
        let rest = name.strip_prefix(ENV_PREFIX)?;
        if ENV_RESERVED.iter().any(|r| rest.starts_with(r)) {
            return None;
        }
        Some(rest.to_ascii_lowercase().split("__").map(|s| s.replace('_', "-")).collect())
    }
}

/// `["log", "flush"]` → `RAFKA_LOG__FLUSH`: the inverse of [`EnvLayer::key_path`], so that
/// figment's errors name the variable.
fn env_var_name(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase().replace('-', "_")).collect();
    format!("{ENV_PREFIX}{}", keys.join("__"))
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_var_name(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let schema = Value::from(schema());
        let mut dict = Dict::new();
        for (name, raw) in &self.vars {
            let Some(path) = EnvLayer::key_path(name) else { continue };
            let Some(text) = raw.to_str() else {
                return Err(format!("environment variable {name}: value is not UTF-8").into());
            };
            // figment would parse `RAFKA_RACK=1` as a number and then refuse it for a text
            // key; the schema says which keys are text.
            let value = match schema.find_ref(&path.join(".")) {
                Some(Value::String(..)) => Value::from(text.to_string()),
                _ => {
                    let Ok(parsed) = text.parse::<Value>();
                    parsed
                }
            };
            insert_path(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Sets `dict[path[0]][path[1]]... = value`, creating (or replacing non-table) tables on the
/// way.
fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a key path is never empty");
    let mut dict = dict;
    for key in parents {
        let slot = dict.entry(key.clone()).or_insert_with(|| Value::from(Dict::new()));
        if !matches!(slot, Value::Dict(..)) {
            *slot = Value::from(Dict::new());
        }
        let Value::Dict(_, inner) = slot else { unreachable!() };
        dict = inner;
    }
    dict.insert(last.clone(), value);
}

/// The flags that were given, as a figment layer whose errors name the flag.
struct FlagLayer<'a>(&'a Args);

impl Provider for FlagLayer<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
            .interpolater(|_: &Profile, keys: &[&str]| format!("--{}", keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(self.0).data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_and_key_paths_are_inverses() {
        for name in ["RAFKA_NODE_ID", "RAFKA_LOG__FLUSH", "RAFKA_TOPIC_DEFAULTS__RETENTION_MS"] {
            let path = EnvLayer::key_path(name).unwrap();
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            assert_eq!(env_var_name(&keys), name);
        }
        assert_eq!(EnvLayer::key_path("RAFKA_LOG__FLUSH").unwrap(), ["log", "flush"]);
        assert_eq!(EnvLayer::key_path("RAFKA_TEST_ENTRIES"), None);
        assert_eq!(EnvLayer::key_path("RAFKA_BENCH_DIR"), None);
        assert_eq!(EnvLayer::key_path("PATH"), None);
    }
}
