//! `rafka`: the command-line tool of rafka.
//!
//! One module per command family under `cli/`: [`cli::topic`], [`cli::produce`],
//! [`cli::consume`], [`cli::group`], [`cli::cluster`], [`cli::bench`], [`cli::user`],
//! [`cli::acl`]; [`cli::output`] holds the text/JSON output switch and the one-line error
//! report.
//!
//! Global flags: `--bootstrap host:port[,host:port...]` (env `RAFKA_BOOTSTRAP`, default
//! `127.0.0.1:9092`), `--output text|json`, TLS: `--tls-ca FILE` (with `--tls-cert FILE`
//! and `--tls-key FILE` for mTLS), and credentials: `--user NAME --password-file FILE` (env
//! `RAFKA_USER`, `RAFKA_PASSWORD_FILE`). Every error prints one line on stderr and the
//! process exits non-zero (1 for a failed operation, 2 for bad usage).

mod cli {
    pub mod acl;
    pub mod bench;
    pub mod bench_produce;
    pub mod bench_protocols;
    pub mod cluster;
    pub mod consume;
    pub mod group;
    pub mod output;
    pub mod produce;
    pub mod topic;
    pub mod user;
}

use clap::Parser;
use clap::Subcommand;

use cli::output::Output;

/// rafka: a partitioned, replicated commit log. Talk to a cluster from the shell.
#[derive(Debug, Parser)]
#[command(
    name = "rafka",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RAFKA_GIT_COMMIT"), ")"),
    propagate_version = true
)]
struct Cli {
    /// Brokers to ask first, `host:port[,host:port...]`; one live broker is enough.
    #[arg(long, global = true, env = "RAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for brokers that ask for one (mTLS); needs --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// User to sign in as, for brokers with authentication on; needs --password-file.
    #[arg(
        long,
        global = true,
        env = "RAFKA_USER",
        value_name = "NAME",
        requires = "password_file"
    )]
    user: Option<String>,
    /// File whose first line is --user's password.
    #[arg(
        long,
        global = true,
        env = "RAFKA_PASSWORD_FILE",
        value_name = "FILE",
        requires = "user"
    )]
    password_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cli::topic::TopicCommand),
    /// Write one record per line of stdin to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Print records of a topic, optionally as a member of a consumer group.
    Consume(cli::consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Brokers, liveness, controller and leader counts.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
    /// Load generator: produce, consume and end-to-end latency benchmarks.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Create, delete and list users (SCRAM credentials).
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Create, list and delete ACLs (who may do what to which resource).
    #[command(subcommand)]
    Acl(cli::acl::AclCommand),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => cli::output::usage_error(e),
    };
    // Off unless asked for: `RAFKA_LOG=rafka_client=debug rafka ...` logs to stderr.
    if let Ok(filter) = std::env::var("RAFKA_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => cli::output::fail(&anyhow::anyhow!("starting the runtime: {e}")),
    };
    let out = cli.output;
    let tls = match &cli.tls_ca {
        None => None,
        Some(ca) => {
            let identity = cli.tls_cert.as_deref().zip(cli.tls_key.as_deref());
            match rafka_client::ClientTls::from_files(ca, identity) {
                Ok(tls) => Some(tls),
                Err(e) => cli::output::fail(&anyhow::anyhow!("{e}")),
            }
        }
    };
    let credentials = match (&cli.user, &cli.password_file) {
        (Some(user), Some(file)) => match cli::output::read_password(file) {
            Ok(password) => Some(rafka_client::Credentials { user: user.clone(), password }),
            Err(e) => cli::output::fail(&e),
        },
        _ => None,
    };
    let bootstrap = cli::output::Target { bootstrap: cli.bootstrap, tls, credentials };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Topic(c) => cli::topic::run(&bootstrap, out, c).await,
            Command::Produce(a) => cli::produce::run(&bootstrap, out, a).await,
            Command::Consume(a) => cli::consume::run(&bootstrap, out, a).await,
            Command::Group(c) => cli::group::run(&bootstrap, out, c).await,
            Command::Cluster(c) => cli::cluster::run(&bootstrap, out, c).await,
            Command::Bench(c) => cli::bench::run(&bootstrap, out, c).await,
            Command::User(c) => cli::user::run(&bootstrap, out, c).await,
            Command::Acl(c) => cli::acl::run(&bootstrap, out, c).await,
        }
    });
    // Background tasks (partition fetchers, producer senders) must not keep us alive.
    runtime.shutdown_background();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => cli::output::fail(&e),
    }
}
