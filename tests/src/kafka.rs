//! Kafka clients for tests: running `kcat` (librdkafka) against a cluster, and raw Kafka
//! requests over a socket for what no well-behaved client sends.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Bound on one `kcat` run.
pub const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one `kcat` run printed.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (librdkafka's log).
    pub stderr: String,
}

/// kcat's options (`-X ...`) for SASL_SSL as `user` with `mechanism`, trusting `ca`.
pub fn kcat_sasl(ca: &std::path::Path, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "security.protocol=sasl_ssl".to_string(),
        format!("ssl.ca.location={}", ca.display()),
        format!("sasl.mechanisms={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|x| ["-X".to_string(), x])
    .collect()
}

/// `head` then `tail`, as one argument list.
pub fn with_options<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter().copied().chain(tail.iter().map(String::as_str)).collect()
}

/// Runs `kcat` with `args` and `stdin`, bounded by [`KCAT_TIMEOUT`]. kcat comes from the
/// test prerequisites (`deploy/prereqs.sh`): a missing one fails the test.
pub async fn kcat(args: &[&str], stdin: &str) -> anyhow::Result<Run> {
    let mut child = tokio::process::Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running kcat (deploy/prereqs.sh installs it)")?;
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).await?;
    drop(input);
    let out = tokio::time::timeout(KCAT_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("kcat {args:?} did not finish within {KCAT_TIMEOUT:?}"))??;
    Ok(Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Like [`kcat`], failing unless it exits 0.
pub async fn must_kcat(args: &[&str], stdin: &str) -> String {
    let run = kcat(args, stdin).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(run.success, "kcat {args:?} failed:\n{}", run.stderr);
    run.stdout
}

/// A Kafka request frame: size, header v1 (key, version, correlation id, client id "t"),
/// `body`.
pub fn request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation_id.to_be_bytes());
    f.extend_from_slice(&1i16.to_be_bytes());
    f.push(b't');
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

/// Sends `bytes` on a new connection to `addr`, closes the sending side, and reads until
/// the broker closes the connection (or `timeout` passes: an error). Returns what the
/// broker sent.
pub async fn send_until_closed(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    // A broker closing first may reset the connection: that is closing too.
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        bail!("the broker kept the connection open for {timeout:?} (sent {} bytes)", got.len());
    }
    Ok(got)
}

/// Sends one request on a new connection and returns the response frame (without its
/// size), leaving the connection to close.
pub async fn round_trip(addr: SocketAddr, frame: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(frame).await?;
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut size)).await??;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await??;
    Ok(body)
}

/// Sends one request of `version` (encoded as a Kafka client encodes it) on a new
/// connection and decodes the answer.
pub async fn call<Req, Resp>(addr: SocketAddr, version: i16, req: &Req) -> anyhow::Result<Resp>
where
    Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::Request,
    Resp: kafka_protocol::protocol::Decodable,
{
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::protocol::StrBytes;

    let key = ApiKey::try_from(Req::KEY).map_err(|_| anyhow::anyhow!("unknown key"))?;
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("rafka-tests")));
    let mut buf = bytes::BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version))?;
    req.encode(&mut buf, version)?;
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    let mut body = bytes::Bytes::from(round_trip(addr, &frame).await?);
    let h = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
    anyhow::ensure!(h.correlation_id == 7, "correlation id {}", h.correlation_id);
    Resp::decode(&mut body, version)
}

/// The Python of the venv holding the Kafka clients (`$RAFKA_VENV`, default
/// `~/.cache/rafka-venv`, made by `deploy/prereqs.sh --test`).
pub fn python() -> std::path::PathBuf {
    let venv = match std::env::var_os("RAFKA_VENV") {
        Some(v) => std::path::PathBuf::from(v),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache")
                });
            cache.join("rafka-venv")
        }
    };
    venv.join("bin").join("python")
}

/// Runs `tests/python/SCRIPT` with `args` in the clients' venv (bounded by
/// [`KCAT_TIMEOUT`] twice over); fails unless it exits 0. Returns its stdout.
pub async fn must_python(script: &str, args: &[&str]) -> String {
    python_output(script, args).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `tests/python/SCRIPT` as [`must_python`] does; an error (with its stderr) unless it
/// exits 0.
///
/// # Panics
/// When the venv is missing or the script does not finish in time.
pub async fn python_output(script: &str, args: &[&str]) -> anyhow::Result<String> {
    // `cargo test` sets the package's directory when it runs a test; the compile-time one
    // is stale when the harness was built from another checkout sharing the target dir.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), Into::into);
    let path = dir.join("python").join(script);
    let python = python();
    assert!(
        python.is_file(),
        "{} is missing: run deploy/prereqs.sh --test (it makes the venv)",
        python.display()
    );
    let child = tokio::process::Command::new(&python)
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running python");
    let out = tokio::time::timeout(2 * KCAT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish"))
        .unwrap();
    if !out.status.success() {
        bail!("{script} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
