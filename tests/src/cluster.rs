//! [`Cluster`]: N `rafka-broker` processes on loopback, one temp dir for all of them.
//!
//! # Layout
//!
//! ```text
//! <tempdir>/N/broker.toml   the config file (--config)
//! <tempdir>/N/data/         the data dir (--data-dir)
//! <tempdir>/N/broker.log    stdout and stderr of every incarnation, appended
//! ```
//!
//! Broker N is started as `rafka-broker --config <tempdir>/N/broker.toml --node-id N
//! --listen A --advertise A --http H --data-dir <tempdir>/N/data --initial-cluster
//! "1=A1,2=A2,..."`, with every `RAFKA_*` variable removed from its environment. Drop order:
//! brokers are SIGKILLed and reaped first, then the temp dir is removed (kept, and its path
//! printed, when `RAFKA_TEST_KEEP_DIR` is set), then the next test may start its cluster.

use std::ffi::OsString;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;

use crate::broker::Broker;
use crate::broker::Spec;
use crate::broker::TURN;
use crate::broker::broker_binary;
use crate::chaos::net::Net;
use crate::client::TestClient;
use crate::ports::ReservedPort;

/// Set to keep a cluster's directory (data, configs, logs) after the test.
pub const KEEP_DIR_ENV: &str = "RAFKA_TEST_KEEP_DIR";

/// Raft and retention timing for brokers sharing one machine: failures are detected in
/// half a second and elections start within one to two. Produce is refused only when the
/// machine's disk is truly full (under 16 MiB free), not below the default 256 MiB.
pub const LOOPBACK_TOML: &str = r#"
retention-check-interval-ms = 500
min-free-bytes = 16777216

[raft]
detector-interval-ms = 100
detector-timeout-ms = 500
heartbeat-interval-ms = 200
election-timeout-min-ms = 1000
election-timeout-max-ms = 2000
election-jitter-ms = 100

[groups]
# Two offsets partitions (not 16): every cluster of every suite hosts them.
offsets-topic-partitions = 2
"#;

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of brokers; ids are 1..=brokers, all founding members (`--initial-cluster`).
    pub brokers: usize,
    /// TOML merged over [`LOOPBACK_TOML`] (tables are merged key by key, so `[raft]` or
    /// `[log]` keys given here override or extend the defaults).
    pub extra_toml: String,
    /// Bound on the wait for every broker's `/readyz`.
    pub ready_timeout: Duration,
    /// Wait for readiness in [`Cluster::start_with`] (off to test a broker that should not
    /// become ready, or for a stand-in binary).
    pub wait_ready: bool,
    /// Binary to run instead of [`broker_binary`].
    pub binary: Option<PathBuf>,
    /// Broker N listens on 127.0.0.N, and every broker reaches every other through its own
    /// fault-injecting proxy ([`crate::chaos::net::Net`], via the brokers' `[dial-overrides]`).
    /// Each broker advertises a client proxy of its own, so clients that follow metadata go
    /// through it too ([`Broker::addr`] stays the direct address). At most 254 brokers.
    pub proxied: bool,
    /// TLS settings of the clients [`Cluster::client`] makes (brokers configured for TLS in
    /// `extra_toml`); `None`: plaintext.
    pub client_tls: Option<rafka_client::ClientTls>,
    /// Every broker gets a second listener named `external` on a port of its own, advertised
    /// as `localhost:PORT` ([`Broker::external_addr`]); brokers talk over the first.
    pub external_listener: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 3,
            extra_toml: String::new(),
            ready_timeout: Duration::from_secs(60),
            wait_ready: true,
            binary: None,
            proxied: false,
            client_tls: None,
            external_listener: false,
        }
    }
}

/// Running brokers of one test. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: kill the brokers, then remove their files, then let the
    // next cluster start.
    brokers: Vec<Broker>,
    net: Option<Net>,
    client_tls: Option<rafka_client::ClientTls>,
    /// The brokers' binary and config file contents, for brokers added later.
    bin: PathBuf,
    config: String,
    dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DIR_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("rafka-tests: {KEEP_DIR_ENV} is set: kept {}", self.dir.path().display());
        }
    }
}

impl Cluster {
    /// Starts `brokers` brokers with the default options and waits until all are ready.
    pub async fn start(brokers: usize) -> Cluster {
        Cluster::start_with(ClusterOptions { brokers, ..Default::default() }).await
    }

    /// Starts a cluster as `opts` says.
    ///
    /// # Panics
    /// When the binary is missing, a broker cannot be spawned, or (with `wait_ready`) a
    /// broker is not ready in time; the brokers' logs are printed as the cluster drops.
    pub async fn start_with(opts: ClusterOptions) -> Cluster {
        assert!(opts.brokers >= 1, "a cluster needs at least one broker");
        let turn = TURN.lock().await;
        let bin = match opts.binary.clone() {
            Some(b) => b,
            None => broker_binary().unwrap_or_else(|e| panic!("{e:#}")),
        };
        let config = broker_config(&opts.extra_toml).unwrap_or_else(|e| panic!("{e:#}"));
        let dir = tempfile::Builder::new()
            .prefix("rafka-cluster-")
            .tempdir()
            .expect("creating the cluster temp dir");
        let ip = |i: usize| match opts.proxied {
            true => {
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(i + 1).expect("≤ 254 brokers")))
            }
            false => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let reserve = |i| ReservedPort::on(ip(i)).expect("reserving a loopback port");
        let ports: Vec<(ReservedPort, ReservedPort)> =
            (0..opts.brokers).map(|i| (reserve(i), reserve(i))).collect();
        let mut external: Vec<Option<ReservedPort>> =
            (0..opts.brokers).map(|i| opts.external_listener.then(|| reserve(i))).collect();
        let net = match opts.proxied {
            false => None,
            true => {
                let addrs: Vec<(u64, SocketAddr)> =
                    ports.iter().enumerate().map(|(i, (g, _))| (i as u64 + 1, g.addr())).collect();
                Some(Net::start(&addrs).await.expect("starting the inter-broker proxies"))
            }
        };
        // Proxied brokers advertise their client proxy: clients reach them through it, and
        // brokers map it to the inter-broker proxies.
        let advertised: Vec<SocketAddr> = match &net {
            Some(net) => (1..=opts.brokers as u64).map(|id| net.client_addr(id)).collect(),
            None => ports.iter().map(|(g, _)| g.addr()).collect(),
        };
        let initial_cluster = advertised
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let addrs = advertised.clone();
        let client_tls = opts.client_tls.clone();
        let mut cluster = Cluster {
            brokers: Vec::new(),
            net,
            client_tls,
            bin: bin.clone(),
            config: config.clone(),
            dir,
            _turn: turn,
        };
        for (i, (grpc, http)) in ports.into_iter().enumerate() {
            let id = i as u64 + 1;
            let config = match &cluster.net {
                Some(net) => dial_through(&config, net, id, &addrs),
                None => config.clone(),
            };
            let membership: Vec<OsString> = vec![
                "--advertise".into(),
                advertised[i].to_string().into(),
                "--initial-cluster".into(),
                initial_cluster.clone().into(),
            ];
            let external_addr = external[i].as_ref().map(ReservedPort::addr);
            let mut broker =
                cluster.new_broker(id, &config, (&grpc, &http, external_addr), membership);
            if let Some(port) = external[i].take() {
                let addr = port.release();
                broker.set_env("RAFKA_LISTENERS", &format!("external={addr}"));
                let advertised = format!("external=localhost:{}", addr.port());
                broker.set_env("RAFKA_ADVERTISED_LISTENERS", &advertised);
            }
            // Released at the last moment: the window in which another process could take
            // the port is the spawn itself.
            grpc.release();
            http.release();
            broker.start().unwrap_or_else(|e| panic!("{e:#}"));
            cluster.brokers.push(broker);
        }
        if opts.wait_ready {
            cluster.must_wait_ready(opts.ready_timeout).await;
        }
        cluster
    }

    /// The inter-broker proxies of a [`ClusterOptions::proxied`] cluster.
    pub fn net(&self) -> Option<&Net> {
        self.net.as_ref()
    }

    /// Keeps the cluster's directory after the test (as [`KEEP_DIR_ENV`] does) and returns
    /// its path: for runs whose evidence must survive, such as a chaos run that failed.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_path_buf()
    }

    /// The directory holding every broker's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// All brokers, in id order.
    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }

    /// All brokers, mutably, in id order.
    pub fn brokers_mut(&mut self) -> &mut [Broker] {
        &mut self.brokers
    }

    /// Broker `id` (1-based).
    pub fn broker(&self, id: u64) -> &Broker {
        self.brokers
            .get((id as usize).wrapping_sub(1))
            .unwrap_or_else(|| panic!("no broker {id} in a cluster of {}", self.brokers.len()))
    }

    /// Broker `id` (1-based), mutably.
    pub fn broker_mut(&mut self, id: u64) -> &mut Broker {
        let n = self.brokers.len();
        self.brokers
            .get_mut((id as usize).wrapping_sub(1))
            .unwrap_or_else(|| panic!("no broker {id} in a cluster of {n}"))
    }

    /// Broker ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.brokers.iter().map(Broker::id).collect()
    }

    /// The gRPC addresses of all brokers.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.brokers.iter().map(Broker::addr).collect()
    }

    /// The id of the broker at gRPC address `addr` (`host:port`), if any.
    pub fn id_of(&self, addr: &str) -> Option<u64> {
        self.brokers.iter().find(|b| b.addr().to_string() == addr).map(Broker::id)
    }

    /// A routing client that knows every broker.
    pub fn client(&self) -> TestClient {
        TestClient::with_tls(self.addrs(), self.client_tls.clone())
    }

    /// Waits until every running broker answers `/readyz` with 200 (one shared deadline).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for b in &mut self.brokers {
            if b.is_running() {
                let left = deadline.saturating_duration_since(Instant::now());
                b.wait_ready(left).await?;
            }
        }
        Ok(())
    }

    /// [`Cluster::wait_ready`], panicking on failure.
    pub async fn must_wait_ready(&mut self, timeout: Duration) {
        self.wait_ready(timeout).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// A broker `id` (not started) in its own directory of the cluster's, with `config` as
    /// its file, listening on the given (gRPC, HTTP, external) ports, with `membership` flags
    /// (`--initial-cluster` and `--advertise`, or `--join`).
    fn new_broker(
        &self,
        id: u64,
        config: &str,
        (grpc, http, external_addr): (&ReservedPort, &ReservedPort, Option<SocketAddr>),
        membership: Vec<OsString>,
    ) -> Broker {
        let home = self.dir.path().join(id.to_string());
        let data_dir = home.join("data");
        std::fs::create_dir_all(&data_dir).expect("creating a broker dir");
        let config_path = home.join("broker.toml");
        std::fs::write(&config_path, config).expect("writing a broker config");
        let (addr, http_addr) = (grpc.addr(), http.addr());
        let mut args: Vec<OsString> = vec![
            "--config".into(),
            config_path.into(),
            "--node-id".into(),
            id.to_string().into(),
            "--listen".into(),
            addr.to_string().into(),
            "--http".into(),
            http_addr.to_string().into(),
            "--data-dir".into(),
            data_dir.clone().into(),
        ];
        args.extend(membership);
        Broker::new(Spec {
            id,
            bin: self.bin.clone(),
            args,
            cwd: home.clone(),
            addr,
            http_addr,
            external_addr,
            data_dir,
            log_path: home.join("broker.log"),
        })
    }

    /// Starts a new broker (the next id) that joins the running cluster through broker 1's
    /// address (`--join`, no `--initial-cluster`), with the cluster's config; returns its id.
    /// Does not wait for it to be ready. Not for proxied clusters.
    ///
    /// # Panics
    /// On a proxied cluster, or when it cannot be spawned.
    pub fn must_add_broker(&mut self) -> u64 {
        assert!(self.net.is_none(), "adding brokers to a proxied cluster is not supported");
        let id = self.brokers.iter().map(Broker::id).max().unwrap_or(0) + 1;
        let join = self.brokers.first().expect("a broker to join through").addr().to_string();
        let (grpc, http) = (
            ReservedPort::new().expect("reserving a loopback port"),
            ReservedPort::new().expect("reserving a loopback port"),
        );
        let config = self.config.clone();
        let membership: Vec<OsString> = vec!["--join".into(), join.into()];
        let mut broker = self.new_broker(id, &config, (&grpc, &http, None), membership);
        grpc.release();
        http.release();
        broker.start().unwrap_or_else(|e| panic!("{e:#}"));
        self.brokers.push(broker);
        id
    }

    /// SIGKILLs broker `id` and reaps it.
    pub fn must_kill(&mut self, id: u64) {
        self.broker_mut(id).kill().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Restarts broker `id` (SIGKILL first if running) and waits until it is ready.
    pub async fn must_restart(&mut self, id: u64, ready_timeout: Duration) {
        let b = self.broker_mut(id);
        b.restart().unwrap_or_else(|e| panic!("{e:#}"));
        b.wait_ready(ready_timeout).await.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// SIGTERMs broker `id` and returns its exit status (panics if it does not exit).
    pub async fn must_terminate(&mut self, id: u64, timeout: Duration) -> ExitStatus {
        self.broker_mut(id).terminate(timeout).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts every stopped broker again (same ports and data) without waiting: brokers that
    /// need a quorum become ready only together, so start them all, then
    /// [`Cluster::must_wait_ready`].
    pub fn must_start_stopped(&mut self) {
        for b in &mut self.brokers {
            if !b.is_running() {
                b.start().unwrap_or_else(|e| panic!("{e:#}"));
            }
        }
    }
}

/// The config file text of a harness broker: [`LOOPBACK_TOML`] with `extra` merged over it.
pub fn broker_config(extra: &str) -> anyhow::Result<String> {
    let mut config: toml::Table = LOOPBACK_TOML.parse().expect("LOOPBACK_TOML is valid TOML");
    let extra: toml::Table =
        extra.parse().with_context(|| format!("extra broker TOML does not parse:\n{extra}"))?;
    merge(&mut config, extra);
    Ok(toml::to_string(&config)?)
}

/// `config` with a `[dial-overrides]` table that sends broker `me`'s traffic to every other
/// broker through its proxy in `net`.
fn dial_through(config: &str, net: &Net, me: u64, addrs: &[SocketAddr]) -> String {
    let mut table: toml::Table = config.parse().expect("the merged config is valid TOML");
    let overrides: toml::Table = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a))
        .filter(|(id, _)| *id != me)
        .map(|(id, a)| (a.to_string(), toml::Value::from(net.proxy_addr(me, id).to_string())))
        .collect();
    table.insert("dial-overrides".into(), toml::Value::Table(overrides));
    toml::to_string(&table).expect("a TOML table serialises")
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn extra_toml_merges_over_the_loopback_timing() {
        let text = broker_config(
            "retention-check-interval-ms = 100\n[raft]\nheartbeat-interval-ms = 50\n\
             [log]\nsegment-bytes = 65536\n",
        )
        .unwrap();
        let c = parsed(&text);
        assert_eq!(c["retention-check-interval-ms"].as_integer(), Some(100));
        let raft = c["raft"].as_table().unwrap();
        assert_eq!(raft["heartbeat-interval-ms"].as_integer(), Some(50));
        assert_eq!(raft["detector-timeout-ms"].as_integer(), Some(500), "default kept");
        assert_eq!(c["log"]["segment-bytes"].as_integer(), Some(65536));
    }

    #[test]
    fn empty_extra_gives_the_defaults_and_bad_extra_is_an_error() {
        let c = parsed(&broker_config("").unwrap());
        assert_eq!(c["raft"]["election-timeout-min-ms"].as_integer(), Some(1000));
        let err = broker_config("[raft\nx = ").unwrap_err();
        assert!(format!("{err:#}").contains("does not parse"), "{err:#}");
    }

    /// A stand-in broker: ignores its arguments, exits 0 on SIGTERM.
    fn fake_broker(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-broker.sh");
        std::fs::write(
            &path,
            "#!/bin/sh\ntrap 'echo bye; exit 0' TERM\necho \"fake broker $*\"\n\
             while :; do sleep 0.05; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn process_controls_work_on_a_stand_in_binary() {
        let tools = tempfile::tempdir().unwrap();
        let mut c = Cluster::start_with(ClusterOptions {
            brokers: 2,
            wait_ready: false,
            binary: Some(fake_broker(tools.path())),
            ..Default::default()
        })
        .await;
        let dir = c.dir().to_path_buf();
        assert_eq!(c.ids(), vec![1, 2]);
        assert_ne!(c.broker(1).addr(), c.broker(2).addr());
        assert!(c.broker(1).data_dir().is_dir());
        // The script logs its arguments once its SIGTERM trap is set; wait for both lines
        // rather than assume they are there (a TERM before the trap kills it by signal).
        crate::poll("fake brokers log their arguments", Duration::from_secs(10), || {
            let (one, tail) = (c.broker(1).log_tail(5), c.broker(2).log_tail(5));
            async move {
                if one.contains("--node-id 1")
                    && tail.contains("--node-id 2")
                    && tail.contains("--initial-cluster 1=127.0.0.1:")
                {
                    Ok(())
                } else {
                    Err(tail)
                }
            }
        })
        .await
        .unwrap();

        let b = c.broker_mut(1);
        b.pause().unwrap();
        b.resume().unwrap();
        assert!(b.is_running());
        let status = b.terminate(Duration::from_secs(10)).await.unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
        assert!(!b.is_running());
        assert!(
            b.terminate(Duration::from_secs(1)).await.is_err(),
            "terminate of a stopped broker"
        );

        b.restart().unwrap();
        assert!(b.is_running());
        let pid = b.pid().unwrap();
        c.must_kill(1);
        assert!(c.broker_mut(1).last_exit().unwrap().code().is_none(), "killed by a signal");
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err());
        c.must_start_stopped();
        assert!(c.broker(1).log_tail(100).matches("=== rafka-tests: starting").count() == 3);

        // Pause, then terminate: the broker is resumed so that SIGTERM is delivered.
        c.broker_mut(2).pause().unwrap();
        let status = c.must_terminate(2, Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0));

        let pids: Vec<u32> = c.brokers().iter().filter_map(Broker::pid).collect();
        drop(c);
        for pid in pids {
            assert!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
                "pid {pid} alive after the cluster dropped"
            );
        }
        assert!(!dir.exists(), "cluster dir left behind");
    }
}
