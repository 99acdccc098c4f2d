//! Output of the CLI: the `--output text|json` switch, JSON printing, the stable error code
//! names and the one-line error report.

use std::io::Write;
use std::time::Duration;

use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::ClientTls;
use rafka_client::Error;

/// How commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON, one document (or one object per line for streams).
    Json,
}

/// Prints `v` as one line of JSON on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// The stable name of an error's code, as `produce --print-offsets` prints it: the broker's
/// code when it sent one, else the code that best describes the client-side failure.
pub fn code_name(e: &Error) -> &'static str {
    match e {
        Error::Broker { code, .. } => code.as_str_name(),
        Error::Timeout(_) => "REQUEST_TIMED_OUT",
        Error::Transport(_) | Error::NoBrokers => "BROKER_NOT_AVAILABLE",
        Error::InvalidConfig(_) | Error::Usage(_) => "INVALID_CONFIG",
        Error::Protocol(_) => "UNKNOWN",
    }
}

/// The cluster the global flags name, and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `--bootstrap`.
    pub bootstrap: String,
    /// `--tls-ca` (with `--tls-cert` and `--tls-key`), read.
    pub tls: Option<ClientTls>,
    /// `--user` and the password in `--password-file`.
    pub credentials: Option<rafka_client::Credentials>,
}

/// The first line of a password file; an unreadable file or an empty password is an error
/// naming the file.
pub fn read_password(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("--password-file {}: {e}", file.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "--password-file {}: the password is empty",
        file.display()
    );
    Ok(password)
}

/// The client config for `target`, with `total` as the bound on one operation.
pub fn client_config(target: &Target, total: Option<Duration>) -> anyhow::Result<ClientConfig> {
    let bootstrap = &target.bootstrap;
    let mut config = ClientConfig::new(bootstrap)
        .map_err(|e| anyhow::anyhow!("--bootstrap {bootstrap:?}: {e}"))?;
    config.tls = target.tls.clone();
    config.credentials = target.credentials.clone();
    if let Some(total) = total {
        config.total_timeout = total;
        config.request_timeout = config.request_timeout.min(total);
    }
    Ok(config)
}

/// Connects to the cluster at `bootstrap` with the default timeouts.
pub async fn connect(bootstrap: &Target) -> anyhow::Result<Client> {
    connect_with(client_config(bootstrap, None)?).await
}

/// Connects with `config`; the error names the bootstrap brokers.
pub async fn connect_with(config: ClientConfig) -> anyhow::Result<Client> {
    let brokers = config.bootstrap.join(",");
    Client::with_config(config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster at {brokers}: {e}"))
}

/// Reports `e` as one line on stderr and exits with status 1.
pub fn fail(e: &anyhow::Error) -> ! {
    // `context: cause: cause`, with broker errors as their stable code names.
    let parts: Vec<String> = e
        .chain()
        .map(|c| match c.downcast_ref::<Error>() {
            Some(Error::Broker { code, message }) => format!("{}: {message}", code.as_str_name()),
            _ => c.to_string(),
        })
        .collect();
    let line = parts.join(": ").replace('\n', " ");
    let _ = std::io::stdout().flush();
    eprintln!("rafka: error: {line}");
    std::process::exit(1)
}

/// Reports a command-line parsing error as one line (help and version print as usual).
pub fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // The first paragraph says what is wrong (it may list missing arguments on more lines).
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = first.join(" ");
    let first = first.trim_start_matches("error: ");
    eprintln!("rafka: error: {first} (see `rafka --help`)");
    std::process::exit(2)
}

/// A byte count per second as MB/s (10^6 bytes).
pub fn mb_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Prints `rows` under `headers` in left-aligned columns, each line indented by two spaces.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
