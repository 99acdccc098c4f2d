//! One `rafka-broker` child process and its fault controls.
//!
//! A [`Broker`] remembers how it was started (binary, arguments, working directory, ports,
//! data dir), so it can be killed and started again on the same ports with the same data.
//! stdout and stderr are appended to one log file per broker; a marker line separates
//! incarnations. Dropping a `Broker` SIGKILLs and reaps the process, and prints the tail of
//! its log first when the thread is panicking (a failing test shows what the broker said).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use anyhow::Context;
use anyhow::bail;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::data_client::DataClient;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::http::http_get;
use crate::http::http_request;
use crate::ports;

/// Environment variable naming the broker binary to run instead of the built one.
pub const BROKER_BIN_ENV: &str = "RAFKA_BROKER_BIN";

/// gRPC address of a broker started with no flags.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9092";
/// HTTP address of a broker started with no flags.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9644";

/// Lines of each broker's log printed when a test panics.
const PANIC_LOG_LINES: usize = 60;

/// Largest gRPC message the harness's clients accept (a fetch returns at least one batch,
/// however large).
pub(crate) const MAX_GRPC_MESSAGE: usize = 256 << 20;

/// Brokers of one test process run one set at a time: the machine may have two cores, and
/// the no-flags broker's fixed ports can only be used once.
pub(crate) static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Names the `rafka` CLI binary to use instead of the one next to `rafka-broker`.
pub const CLI_BIN_ENV: &str = "RAFKA_BIN";

/// Finds the `rafka` CLI binary: `$RAFKA_BIN`, else next to `rafka-broker`.
///
/// # Panics
/// When it does not exist.
pub fn cli_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(CLI_BIN_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{CLI_BIN_ENV}={} is not a file", p.display());
        return p;
    }
    let broker = broker_binary().unwrap_or_else(|e| panic!("{e:#}"));
    let p = broker.with_file_name("rafka");
    assert!(
        p.is_file(),
        "the CLI binary {} does not exist: run `cargo build --workspace` first \
         (`cargo test --workspace` builds it), or set {CLI_BIN_ENV}",
        p.display()
    );
    p
}

/// What one run of the `rafka` CLI did.
#[derive(Debug)]
pub struct CliRun {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs the `rafka` CLI with `args`, `env` added to the environment (without the test
/// process's `RAFKA_BOOTSTRAP`, `RAFKA_USER` and `RAFKA_PASSWORD_FILE`) and `stdin` as its
/// input; bounded by 90 s.
///
/// # Panics
/// When it cannot be spawned or does not finish in time.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> CliRun {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(cli_binary())
        .args(args)
        .env_remove("RAFKA_BOOTSTRAP")
        .env_remove("RAFKA_USER")
        .env_remove("RAFKA_PASSWORD_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning rafka");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).await.expect("writing rafka's stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("rafka finished in time")
        .expect("rafka's output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    CliRun { code: out.status.code(), stdout: text(&out.stdout), stderr: text(&out.stderr) }
}

/// Finds the `rafka-broker` binary: `$RAFKA_BROKER_BIN`, else `rafka-broker` in the target
/// directory of the running test (`target/<profile>/deps/<test>` → `target/<profile>/`).
pub fn broker_binary() -> anyhow::Result<PathBuf> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = FOUND.get() {
        return Ok(p.clone());
    }
    let bin = match std::env::var_os(BROKER_BIN_ENV) {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("{BROKER_BIN_ENV}={} is not a file", p.display());
            }
            p
        }
        None => {
            let exe = std::env::current_exe().context("locating the test executable")?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .with_context(|| format!("{} is not in target/<profile>/deps", exe.display()))?;
            let p = profile_dir.join("rafka-broker");
            if !p.is_file() {
                bail!(
                    "the broker binary {} does not exist: run `cargo build --workspace` first \
                     (`cargo test --workspace` builds it), or set {BROKER_BIN_ENV}",
                    p.display()
                );
            }
            p
        }
    };
    let age = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| format!("built {}s ago", d.as_secs()))
        .unwrap_or_else(|| "age unknown".into());
    eprintln!("rafka-tests: using broker binary {} ({age})", bin.display());
    Ok(FOUND.get_or_init(|| bin).clone())
}

/// How to (re)start one broker process.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) id: u64,
    pub(crate) bin: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) cwd: PathBuf,
    pub(crate) addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    /// The `external` listener's address ([`crate::ClusterOptions::external_listener`]).
    pub(crate) external_addr: Option<SocketAddr>,
    pub(crate) data_dir: PathBuf,
    pub(crate) log_path: PathBuf,
}

/// A broker process (running or stopped) with fault controls. See the module docs.
#[derive(Debug)]
pub struct Broker {
    spec: Spec,
    child: Option<Child>,
    paused: bool,
    last_exit: Option<ExitStatus>,
    /// Extra environment of the process (beyond the test's, less its `RAFKA_*`).
    env: Vec<(String, String)>,
    /// Held by a broker outside a [`crate::Cluster`] (the no-flags broker); dropped after the
    /// process is killed.
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Broker {
    pub(crate) fn new(spec: Spec) -> Broker {
        Broker { spec, child: None, paused: false, last_exit: None, env: Vec::new(), _turn: None }
    }

    /// Starts `rafka-broker` with no arguments at all in the working directory `dir`, as a
    /// user trying it out would: it serves on 127.0.0.1:9092 (HTTP 127.0.0.1:9644) with data
    /// in `dir/rafka-data`, and its log goes to `dir/broker.log`. Waits until it is ready.
    ///
    /// Holds the harness's process-wide lock for the life of the broker (do not start a
    /// [`crate::Cluster`] in the same test).
    ///
    /// # Panics
    /// When 9092 or 9644 is in use (another broker, or Kafka, runs on this machine), when the
    /// binary is missing, or when the broker is not ready within 60 s.
    pub async fn start_no_flags(dir: &Path) -> Broker {
        let turn = TURN.lock().await;
        let addr: SocketAddr = DEFAULT_ADDR.parse().expect("valid address");
        let http_addr: SocketAddr = DEFAULT_HTTP_ADDR.parse().expect("valid address");
        for a in [addr, http_addr] {
            assert!(
                ports::is_free(a),
                "{a} is in use: the no-flags test needs the default ports 9092 and 9644 free \
                 (is another rafka-broker or a Kafka broker running on this machine?)"
            );
        }
        let bin = broker_binary().unwrap_or_else(|e| panic!("{e:#}"));
        let mut broker = Broker::new(Spec {
            id: 1,
            bin,
            args: Vec::new(),
            cwd: dir.to_path_buf(),
            addr,
            http_addr,
            external_addr: None,
            data_dir: dir.join("rafka-data"),
            log_path: dir.join("broker.log"),
        });
        broker._turn = Some(turn);
        broker.start().unwrap_or_else(|e| panic!("{e:#}"));
        broker.wait_ready(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e:#}"));
        broker
    }

    /// The address of its `external` listener, when it has one.
    pub fn external_addr(&self) -> Option<SocketAddr> {
        self.spec.external_addr
    }

    /// The broker id (`--node-id`).
    pub fn id(&self) -> u64 {
        self.spec.id
    }

    /// gRPC address (clients and Raft).
    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }

    /// HTTP side-port address (`/readyz`, `/healthz`, `/metrics`).
    pub fn http_addr(&self) -> SocketAddr {
        self.spec.http_addr
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The file the broker's stdout and stderr are appended to.
    pub fn log_path(&self) -> &Path {
        &self.spec.log_path
    }

    /// Process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Exit status of the last incarnation that ended (killed, terminated or crashed).
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// Whether the process is alive (reaps it, and remembers its status, if it exited).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.child = None;
                self.paused = false;
                self.last_exit = Some(status);
                false
            }
            Err(e) => panic!("waiting on broker {}: {e}", self.spec.id),
        }
    }

    /// Spawns the process. Fails if it is already running.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("broker {} is already running", self.spec.id);
        }
        let s = &self.spec;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log_path)
            .with_context(|| format!("opening {}", s.log_path.display()))?;
        writeln!(
            log,
            "=== rafka-tests: starting {} {:?} in {}",
            s.bin.display(),
            s.args,
            s.cwd.display()
        )?;
        let mut cmd = Command::new(&s.bin);
        cmd.args(&s.args)
            .current_dir(&s.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The broker reads RAFKA_* as configuration and refuses unknown names: the test
        // knobs and RAFKA_BROKER_BIN are ours, not its.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RAFKA_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // A test process killed abruptly (Ctrl-C, a CI timeout) must not leave brokers
        // holding ports. The signal fires when the spawning *thread* exits: brokers are
        // spawned from the test's thread or its runtime's workers, which outlive them.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning broker {}: {}", s.id, s.bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Leaves command-line flag `flag` (and its value) out of the broker's next starts.
    pub fn drop_flag(&mut self, flag: &str) {
        let args = std::mem::take(&mut self.spec.args);
        let mut skip = false;
        for a in args {
            if skip {
                skip = false;
            } else if a == flag {
                skip = true;
            } else {
                self.spec.args.push(a);
            }
        }
    }

    /// Sets `key` in the environment of the broker's next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// SIGKILL (kill -9) and reap. A no-op on a stopped broker.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().with_context(|| format!("SIGKILL broker {}", self.spec.id))?;
            self.last_exit = Some(child.wait()?);
            self.paused = false;
        }
        Ok(())
    }

    /// SIGTERM (graceful shutdown) and wait for the exit status. If the process has not
    /// exited after `timeout`, it is SIGKILLed and this fails.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if !self.is_running() {
            bail!("broker {} is not running (last exit: {:?})", self.spec.id, self.last_exit);
        }
        if self.paused {
            self.resume()?;
        }
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Ok(self.last_exit.expect("exit status of a reaped child"));
            }
            if Instant::now() >= deadline {
                self.kill()?;
                bail!(
                    "broker {} did not exit within {timeout:?} of SIGTERM (SIGKILLed); log \
                     tail:\n{}",
                    self.spec.id,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOP: the process freezes (connections stay open, nothing is answered).
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Starts the broker again with the same arguments, ports and data dir, SIGKILLing it
    /// first if it is running. Does not wait for readiness ([`Broker::wait_ready`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.start()
    }

    /// Polls `GET /readyz` until it answers 200. Fails at once if the process exits, and
    /// after `timeout` with the last answer; both failures include the log tail.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                bail!(
                    "broker {} exited ({:?}) before it was ready; log tail:\n{}",
                    self.spec.id,
                    self.last_exit,
                    self.log_tail(PANIC_LOG_LINES)
                );
            }
            let last = match http_get(self.spec.http_addr, "/readyz", Duration::from_secs(2)).await
            {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("HTTP {code}: {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "broker {} not ready within {timeout:?} (/readyz at {}: {last}); log tail:\n{}",
                    self.spec.id,
                    self.spec.http_addr,
                    self.log_tail(PANIC_LOG_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Status code of `GET path` on the HTTP port.
    pub async fn http_status(&self, path: &str) -> anyhow::Result<u16> {
        let (code, _) = http_get(self.spec.http_addr, path, Duration::from_secs(5)).await?;
        Ok(code)
    }

    /// Arms crash point `name` with a fail action (`1*return` aborts the broker the next
    /// time it passes there). Needs a broker built with the `failpoints` feature: others
    /// answer 404, reported as an error saying so.
    pub async fn arm_crash_point(&self, name: &str, actions: &str) -> anyhow::Result<()> {
        let path = format!("/failpoints/{name}");
        let (code, body) =
            http_request(self.spec.http_addr, "PUT", &path, actions, Duration::from_secs(5))
                .await?;
        match code {
            200 => Ok(()),
            404 => bail!(
                "broker {}: no crash point {name}: {} (is the broker built with \
                 `--features rafka-broker/failpoints`, as deploy/test.sh does?)",
                self.spec.id,
                body.trim()
            ),
            _ => bail!("broker {}: arming {name}: {code} {}", self.spec.id, body.trim()),
        }
    }

    /// Disarms crash point `name` (see [`Broker::arm_crash_point`]).
    pub async fn disarm_crash_point(&self, name: &str) -> anyhow::Result<()> {
        let path = format!("/failpoints/{name}");
        let (code, body) =
            http_request(self.spec.http_addr, "DELETE", &path, "", Duration::from_secs(5)).await?;
        anyhow::ensure!(code == 200, "broker {}: disarming {name}: {code} {}", self.spec.id, body);
        Ok(())
    }

    /// A lazily connecting gRPC channel to the broker (reconnects after a restart).
    pub fn channel(&self) -> Channel {
        channel_to(&self.spec.addr.to_string()).expect("a socket address is a valid URI authority")
    }

    /// A `Data` service client.
    pub fn data_client(&self) -> DataClient<Channel> {
        DataClient::new(self.channel()).max_decoding_message_size(MAX_GRPC_MESSAGE)
    }

    /// An `Admin` service client.
    pub fn admin_client(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel()).max_decoding_message_size(MAX_GRPC_MESSAGE)
    }

    /// The last `n` lines of the broker's log (all incarnations).
    pub fn log_tail(&self, n: usize) -> String {
        match std::fs::read(&self.spec.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(no log at {}: {e})", self.spec.log_path.display()),
        }
    }

    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        let Some(pid) = self.pid() else {
            bail!("broker {} is not running; cannot send {signal}", self.spec.id);
        };
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("sending {signal} to broker {}", self.spec.id))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let state = match (&self.child, self.last_exit) {
                (Some(_), _) => "running".to_string(),
                (None, Some(s)) => match s.signal() {
                    Some(sig) => format!("ended by signal {sig}"),
                    None => format!("exited with {s}"),
                },
                (None, None) => "never started".to_string(),
            };
            eprintln!(
                "----- broker {} ({state}), last {PANIC_LOG_LINES} lines of {} -----\n{}\n-----",
                self.spec.id,
                self.spec.log_path.display(),
                self.log_tail(PANIC_LOG_LINES)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A lazily connecting channel to `host:port`.
pub(crate) fn channel_to(addr: &str) -> anyhow::Result<Channel> {
    channel_with(addr, None)
}

/// A lazily connecting channel to `host:port`, over TLS with `tls` (verifying the host part
/// of `addr`, presenting the client certificate if it has one).
pub(crate) fn channel_with(
    addr: &str,
    tls: Option<&rafka_client::ClientTls>,
) -> anyhow::Result<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .with_context(|| format!("bad broker address {addr:?}"))?;
    if let Some(tls) = tls {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(config)?;
    }
    Ok(endpoint.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true).connect_lazy())
}
