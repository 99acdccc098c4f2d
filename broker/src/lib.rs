//! rafka-broker: the Kafka-style broker on top of rafka-raft. It gives Raft entries meaning
//! (record batches, controller commands) and serves clients over gRPC and Kafka's protocol
//! on one port.
//!
//! Map of the crate, in layers: each module uses only modules of the layers above it (a test
//! checks that no two modules import each other, directly or in a circle).
//!
//! 1. Foundations: [`alloc`] (the global allocator), [`auth`] (SASL mechanisms and SCRAM
//!    credentials), [`acl`] (Kafka's ACL model and the decision on one request), [`error`]
//!    (the one mapping to wire codes), [`config`], [`topic`] (names, per-topic configs),
//!    [`json_entry`], [`metrics`] (names), [`telemetry`], [`http`] (`/metrics`, `/healthz`,
//!    `/readyz`), [`supervisor`] (owns every background task), [`tls`] (TLS on the broker
//!    port and between brokers: certificates reloaded when their files change, mTLS
//!    principals, the connector brokers dial each other with), [`notify`] (systemd's
//!    readiness protocol), [`disk`] (free space: produce refused below `min-free-bytes`).
//! 2. Domain cores, testable without sockets:
//!    - [`partition`]: one partition replica — state machine (next offset, producer table,
//!      checkpoints, snapshots at the retention point), produce with idempotence, fetch,
//!      offset lookups, retention; `partition::files` is where its state files live.
//!    - [`group`]: consumer groups — `__consumer_offsets` partitions as coordinators (offsets
//!      and KIP-848 membership in RocksDB), assignors.
//!    - [`controller`]: Raft group 0 — replicated state and commands, placement, the
//!      leader's decisions ([`controller::plan`]), the live view from heartbeats, and this
//!      broker's handle on the group ([`controller::Controller`]).
//! 3. Components: [`replicas`] ([`replicas::Replicas`], the hosted replicas: hosting and
//!    deleting them), then [`broker`] ([`Broker`], which puts the components together and
//!    answers who is alive, where a partition is served, whether the broker is ready).
//! 4. What drives them: [`bootstrap`] (incarnation, controller replica, joining),
//!    [`reconcile`] (host what the controller assigns), [`reassign`] (membership changes
//!    led by a group's leader), [`scale`] (adding and removing brokers, on the controller
//!    leader), [`heartbeat`] (to and on the controller leader),
//!    [`upkeep`] (retention, leader balance, metrics, group sessions), [`remote`] (calls to
//!    other brokers), and [`service`], the protocol-neutral request handling.
//! 5. Wire protocols: [`listener`] (the one port: each connection to gRPC or Kafka by its
//!    first bytes), [`server`] (gRPC: `Data`, `Admin`, `Groups`, the internal service; the
//!    Raft transport shares the port) and [`kafka`] (Kafka's protocol), each translating
//!    to [`service`] calls.
//!
//! Entry point: [`run`] takes bound listeners, the config and a shutdown future.
//!
//! The design, its invariants and the log of decisions behind it: `docs/ARCHITECTURE.md`.

pub mod acl;
pub mod alloc;
pub mod auth;
pub mod bootstrap;
pub mod broker;
pub mod config;
pub mod controller;
pub mod disk;
pub mod error;
pub mod group;
pub mod heartbeat;
pub mod http;
pub mod json_entry;
pub mod kafka;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod partition;
pub mod reassign;
pub mod reconcile;
pub mod remote;
pub mod replicas;
pub mod scale;
pub mod server;
pub mod service;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod topic;
pub mod upkeep;

/// Generated code of the brokers' internal contract (`proto/internal.proto`).
#[allow(clippy::all, missing_docs)]
pub mod internal {
    tonic::include_proto!("rafka.internal.v1");
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use broker::Broker;
pub use error::Error;
use supervisor::Supervisor;
use tokio::net::TcpListener;

struct BrokerHealth(Arc<Broker>);

impl http::Health for BrokerHealth {
    fn live(&self) -> bool {
        !self.0.is_stopping()
    }

    fn ready(&self) -> Result<(), String> {
        self.0.readiness()
    }
}

/// This build's version and git commit, as `--version` prints them: `0.1.0 (commit 1a2b3c)`.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("RAFKA_GIT_COMMIT"), ")");

/// How long the gRPC server may take to close open connections after a graceful shutdown
/// (peers and clients with keep-alive, open produce and fetch streams): a moment, not
/// forever. Leaderships are handed over by then, so nothing waits on this broker.
const SERVER_CLOSE: Duration = Duration::from_millis(250);

/// The bound ports of a broker.
pub struct Listeners {
    /// The broker port (`listen`): gRPC and Kafka, clients and Raft.
    pub broker: TcpListener,
    /// The named listeners (`listeners`), by name: gRPC and Kafka, for clients.
    pub named: Vec<(String, TcpListener)>,
    /// The HTTP side port (`http`): metrics and health.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds every port `config` names.
    pub async fn bind(config: &config::BrokerConfig) -> Result<Listeners, Error> {
        let bind = |what: String, addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|e| Error::InvalidConfig(format!("cannot listen on {addr} ({what}): {e}")))
        };
        let broker = bind("listen".into(), config.listen.clone()).await?;
        let http = bind("http".into(), config.http.clone()).await?;
        let mut named = Vec::new();
        for l in config.named_listeners().map_err(|e| Error::InvalidConfig(e.to_string()))? {
            let what = format!("listener {}", l.name);
            named.push((l.name, bind(what, l.listen.to_string()).await?));
        }
        Ok(Listeners { broker, named, http })
    }
}

/// Runs a broker on bound listeners until `shutdown` resolves, then shuts down gracefully:
/// background tasks are cancelled and awaited, leaderships are handed off, partition state
/// is checkpointed, servers stop. When it returns, nothing it started is running.
pub async fn run(
    listeners: Listeners,
    config: config::BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let Listeners { broker: grpc, named, http: http_listener } = listeners;
    let prometheus =
        telemetry::install_metrics_recorder().map_err(|e| Error::Internal(e.to_string()))?;
    metrics::describe();
    metrics::build_info(env!("CARGO_PKG_VERSION"), env!("RAFKA_GIT_COMMIT"));
    rafka_raft::metrics::describe();
    rafka_raft::metrics::describe_replication();
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    let tasks = Supervisor::new();
    // Proposal waiters and background checkpoint writes stop after the Raft node: requests
    // already proposed are still answered while leaderships are handed off.
    let waiters = Supervisor::new();
    let broker = match bootstrap::open(config, tasks.clone(), waiters.clone()).await {
        Ok(b) => b,
        Err(e) => {
            tasks.shutdown(grace).await;
            waiters.shutdown(grace).await;
            return Err(e);
        }
    };
    // Servers are supervised apart from the broker's tasks: they must outlive those (the
    // shutdown hand-off of leaderships goes over the Raft transport on the gRPC port).
    let servers = Supervisor::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let (grpc_done_tx, mut grpc_done) = tokio::sync::oneshot::channel();
    // One port, two protocols: gRPC connections go to tonic, Kafka ones to their own tasks.
    // Every listener feeds the one gRPC server.
    let ports = std::iter::once((None, grpc)).chain(named.into_iter().map(|(n, l)| (Some(n), l)));
    let incoming = futures::stream::select_all(ports.map(|(name, port)| {
        let kafka_broker = broker.clone();
        let name = name.map(Arc::<str>::from);
        Box::pin(listener::split(port, name, broker.tls().cloned(), &servers, move |conn| {
            kafka::serve(kafka_broker.clone(), conn)
        }))
    }));
    let grpc_server = grpc_router(&broker).serve_with_incoming_shutdown(incoming, stopped());
    servers.spawn("gRPC server", async move {
        let _ = grpc_done_tx.send(grpc_server.await);
    });
    let health = Arc::new(BrokerHealth(broker.clone()));
    let http_tls = broker.tls().filter(|t| t.on_http()).cloned();
    let http_server =
        http::serve(http_listener, http_tls, prometheus.clone(), health.clone(), stopped());
    servers.spawn("HTTP server", async move {
        if let Err(e) = http_server.await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    tasks.spawn("metrics recorder upkeep", telemetry::upkeep(prometheus));
    tasks.spawn("join the controller", bootstrap::join_controller(broker.clone()));
    tasks.spawn("reconciler", reconcile::run(broker.clone()));
    tasks.spawn("heartbeats", heartbeat::run(broker.clone()));
    tasks.spawn("retention", upkeep::retention(broker.clone()));
    tasks.spawn("metrics", upkeep::metrics(broker.clone()));
    tasks.spawn("disk space", upkeep::disk_space(broker.clone()));
    tasks.spawn("leader balance", upkeep::leader_balance(broker.clone()));
    tasks.spawn("group sessions", upkeep::group_sessions(broker.clone()));
    tasks.spawn("group upkeep", upkeep::group_upkeep(broker.clone()));
    tasks.spawn("service manager readiness", notify::ready_when(health.clone()));
    tracing::info!(broker = broker.id(), addr = %broker.address(), "broker started");
    if let Some(warning) = broker.config().exposure_warning() {
        tracing::warn!("{warning}");
    }
    let failed = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            notify::stopping();
            None
        }
        // The server ending by itself is a failure (the port died): still shut down in order.
        r = &mut grpc_done => Some(format!("gRPC server stopped: {r:?}")),
    };
    let graceful = async {
        // Loops and jobs stop at their next await; a quarter of the grace period is plenty
        // and leaves the rest to the hand-off and the final checkpoints.
        let report = tasks.shutdown(grace / 4).await;
        if report.aborted > 0 {
            tracing::warn!(aborted = report.aborted, "background tasks did not stop in time");
        }
        broker.node().clone().shutdown().await;
        waiters.shutdown(grace / 4).await;
        for p in broker.replicas().partitions() {
            let sm = p.group.state_machine();
            // Skipped when not everything applied is durable: a restart re-applies the rest.
            if let Err(e) = sm.lock().unwrap_or_else(|p| p.into_inner()).checkpoint() {
                tracing::warn!(partition = %p.name, "final checkpoint failed: {e}");
            }
        }
    };
    if tokio::time::timeout(grace, graceful).await.is_err() {
        tracing::warn!(
            "graceful shutdown took longer than {} ms; stopping anyway",
            grace.as_millis()
        );
        tasks.shutdown(Duration::ZERO).await;
        waiters.shutdown(Duration::ZERO).await;
    }
    let _ = stop_tx.send(true);
    if failed.is_none() {
        let _ = tokio::time::timeout(SERVER_CLOSE, grpc_done).await;
    }
    servers.shutdown(SERVER_CLOSE).await;
    drop(broker);
    match failed {
        Some(why) => Err(Error::Internal(why)),
        None => {
            tracing::info!("broker stopped");
            Ok(())
        }
    }
}

/// The gRPC services of a broker on one port.
fn grpc_router(b: &Arc<Broker>) -> tonic::transport::server::Router {
    use rafka_proto::v1::admin_server::AdminServer;
    use rafka_proto::v1::data_server::DataServer;
    use rafka_proto::v1::groups_server::GroupsServer;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(32 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            b.node().transport_service(),
            server::auth::brokers_only(b.clone()),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            DataServer::new(server::data::DataService { broker: b.clone() })
                .max_decoding_message_size(80 << 20)
                .max_encoding_message_size(80 << 20),
            server::auth::interceptor(b.clone()),
        ))
        .add_service(AdminServer::with_interceptor(
            server::admin::AdminService { broker: b.clone() },
            server::auth::interceptor(b.clone()),
        ))
        .add_service(GroupsServer::with_interceptor(
            server::groups::GroupsService { broker: b.clone() },
            server::auth::interceptor(b.clone()),
        ))
        .add_service(internal::internal_server::InternalServer::with_interceptor(
            server::InternalService { broker: b.clone() },
            server::auth::brokers_only(b.clone()),
        ))
}
