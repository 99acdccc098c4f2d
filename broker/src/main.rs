//! `rafka-broker`: runs one broker. With no arguments: a single-node cluster with data in
//! `./rafka-data`, gRPC on 127.0.0.1:9092 and HTTP on 127.0.0.1:9644. SIGTERM or Ctrl-C shut
//! it down gracefully.

use clap::Parser;
use rafka_broker::config::Args;
use rafka_broker::config::BrokerConfig;

// Protects the broker from decoders that size buffers by counts in untrusted input (see the
// module docs of `alloc`).
#[global_allocator]
static ALLOCATOR: rafka_broker::alloc::Allocator = rafka_broker::alloc::Allocator;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = match BrokerConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rafka-broker: {e}");
            std::process::exit(2);
        }
    };
    rafka_broker::telemetry::init_tracing(config.log_format, &config.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listeners = rafka_broker::Listeners::bind(&config).await?;
        tracing::info!(
            node_id = config.node_id,
            listen = %config.listen,
            listeners = %config.listeners,
            http = %config.http,
            data_dir = %config.data_dir.display(),
            "starting rafka-broker {}",
            rafka_broker::VERSION
        );
        if cfg!(feature = "failpoints") {
            tracing::warn!("built with crash points (feature failpoints): a test build only");
        }
        rafka_broker::run(listeners, config, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
