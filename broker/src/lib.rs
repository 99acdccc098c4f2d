//! rafka-broker: the Kafka-style broker on top of rafka-raft. It gives Raft entries meaning
//! (record batches, controller commands) and serves clients over gRPC.
//!
//! Map of the crate:
//! - [`broker`]: [`Broker`], one running broker: Raft node, controller replica, hosted
//!   partitions, routing of requests to the replica that serves them.
//! - [`controller`]: Raft group 0 — brokers, topics, replica placement, producer ids
//!   ([`controller::state`]), partition leaders learnt from heartbeats ([`controller::live`]).
//! - [`partition`]: one partition replica — its state machine (next offset, producer table,
//!   checkpoints, snapshots at the retention point), produce with idempotence, fetch and
//!   offset lookups, retention.
//! - [`group`]: consumer groups — `__consumer_offsets` partitions as coordinators (offsets and
//!   KIP-848 membership in RocksDB), assignors, session timeouts.
//! - [`membership`]: partition reassignment (learners, then one voter change), removal of
//!   replicas moved away, and replacement of replicas lost with a wiped disk (incarnations).
//! - [`tasks`]: background loops — reconciler, heartbeats to the controller, retention,
//!   metrics refresh.
//! - [`server`]: the gRPC services (`Data`, `Admin`, `Groups`, the internal service); the Raft transport
//!   shares the same port.
//! - [`topic`]: topic names and per-topic configs. [`error`]: the one mapping to wire codes.
//!   [`json_entry`]: the JSON entry payload of the controller and offsets logs.
//! - [`config`]: layered configuration. [`http`]: `/metrics`, `/healthz`, `/readyz`.
//!   [`telemetry`]: tracing and the Prometheus recorder. [`metrics`]: metric names.
//!
//! Entry point: [`run`] takes bound listeners, the config and a shutdown future.
//!
//! Decisions (DESIGN.md is shared read-only; they are recorded here and in the issue's
//! closing note):
//! - One port per broker carries clients (`Data`, `Admin`) and Raft traffic between brokers,
//!   so `--initial-cluster id=host:port` names exactly the addresses clients use too.
//! - Founding brokers bootstrap the controller group: the lowest id initialises it at once,
//!   the others only if it still has no log after two election timeouts. A new partition
//!   group is initialised the same way by its first replica (then the others). Raft allows
//!   identical initialisation on several replicas, so a founding broker being down never
//!   blocks a group.
//! - Partition leaders, in-sync replicas and high watermarks reach the controller leader by
//!   broker heartbeats (every 500 ms), never through its log; `Metadata` and
//!   `DescribeTopic` are answered there (other brokers forward admin requests once).
//! - The controller state lives in memory and is rebuilt by re-applying the controller log
//!   on restart (it holds only metadata changes). Deleted topics leave their group ids as
//!   tombstones, so a broker deletes data only for groups known to be deleted — never
//!   because its controller replica has not caught up yet.
//! - A partition's state (next offset, producer table, membership history) is checkpointed
//!   every 4096 entries or 32 MiB; restart re-applies only the log after the checkpoint.
//!   Snapshots at the retention point carry the head producer table: applying a
//!   producer's batches is monotone, so replaying the retained entries over it is harmless.
//! - Retention runs on every replica independently (purging is local in Raft).
//! - Idempotent producers: sequences are checked at the leader against the applied table
//!   plus in-flight proposals of its term, under one lock per partition; proposals are
//!   submitted in order (`Group::propose`) and waited for outside the lock.
//! - Reassignment (`ReassignPartition`; `TransferLeadership` reorders the replicas so the
//!   preferred-leader loop moves leadership) is driven by the partition leader and completed
//!   by the controller from the leader's heartbeat report of its settled voters, never by
//!   an RPC between them: any later leader resumes a move a crashed one started.
//! - Disks are identified by an `incarnation` file in the data directory. A replica is
//!   stamped with its broker's incarnation; a broker on a new disk hosts none of its old
//!   replicas (the controller replaces them with fresh replica ids), and its controller
//!   replica rejoins under a new id (2^63 | incarnation/2) after probing the founding brokers
//!   (`ProbeMembership`), so DESIGN's "controller voters are the founding brokers" now
//!   means their current controller replicas. Before this, a wiped controller voter made
//!   the controller leader's Raft core panic on follower log reversion.
//! - Topic configs: `retention.ms`, `retention.bytes`, `max.message.bytes`; segment size and
//!   roll time are broker-wide (`[log]`), because one log runtime serves all partitions.

pub mod broker;
pub mod config;
pub mod controller;
pub mod error;
pub mod group;
pub mod http;
pub mod json_entry;
pub mod membership;
pub mod metrics;
pub mod partition;
pub mod server;
pub mod tasks;
pub mod telemetry;
pub mod topic;

/// Generated code of the brokers' internal contract (`proto/internal.proto`).
#[allow(clippy::all, missing_docs)]
pub mod internal {
    tonic::include_proto!("rafka.internal.v1");
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use broker::Broker;
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

/// Runs a broker on bound listeners (gRPC: clients and Raft; HTTP: metrics and health)
/// until `shutdown` resolves, then shuts down gracefully: leaderships are handed off,
/// partition state is checkpointed, servers stop.
pub async fn run(
    grpc: TcpListener,
    http_listener: TcpListener,
    config: config::BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let prometheus = telemetry::install_metrics_recorder()?;
    let upkeep = telemetry::spawn_upkeep(prometheus.clone());
    metrics::describe();
    rafka_raft::metrics::describe();
    rafka_raft::metrics::describe_replication();
    let grace = Duration::from_millis(config.shutdown_timeout_ms);
    let broker = Broker::start(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let b = broker.clone();
        let mut stop = stop_rx.clone();
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(32 << 20)
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .add_service(b.node.transport_service())
            .add_service(
                rafka_proto::v1::data_server::DataServer::new(server::data::DataService {
                    broker: b.clone(),
                })
                .max_decoding_message_size(80 << 20)
                .max_encoding_message_size(80 << 20),
            )
            .add_service(rafka_proto::v1::admin_server::AdminServer::new(
                server::admin::AdminService { broker: b.clone() },
            ))
            .add_service(rafka_proto::v1::groups_server::GroupsServer::new(
                server::groups::GroupsService { broker: b.clone() },
            ))
            .add_service(internal::internal_server::InternalServer::new(server::InternalService {
                broker: b.clone(),
            }))
            // `Server::tcp_nodelay` does not reach sockets of a listener we pass in: without
            // TCP_NODELAY, a response's frames wait for the peer's delayed ACK (~40 ms).
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )
    };
    let mut server = tokio::spawn(server);
    tokio::spawn(membership::join_controller(broker.clone()));
    let http_task = {
        let mut stop = stop_rx.clone();
        tokio::spawn(http::serve(
            http_listener,
            prometheus,
            Arc::new(BrokerHealth(broker.clone())),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    };
    let loops = [
        tokio::spawn(tasks::reconcile_loop(broker.clone())),
        tokio::spawn(tasks::heartbeat_loop(broker.clone())),
        tokio::spawn(tasks::retention_loop(broker.clone())),
        tokio::spawn(tasks::metrics_loop(broker.clone())),
        tokio::spawn(tasks::leader_balance_loop(broker.clone())),
        tokio::spawn(group::tasks::coordinator_loop(broker.clone())),
    ];
    tracing::info!(broker = broker.id, addr = %broker.address, "broker started");
    let failed = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            None
        }
        // The server ending by itself is a failure (the port died): still shut down in order.
        r = &mut server => Some(format!("gRPC server stopped: {r:?}")),
    };
    let graceful = async {
        broker.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        for l in &loops {
            l.abort();
        }
        broker.node.clone().shutdown().await;
        let parts = broker.hosted();
        for p in parts {
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
    }
    let _ = stop_tx.send(true);
    if failed.is_none() {
        // Graceful server shutdown waits for open connections (peers, clients with
        // keep-alive) to close: give them a moment, not forever.
        let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    }
    let _ = http_task.await;
    upkeep.abort();
    match failed {
        Some(why) => anyhow::bail!(why),
        None => {
            tracing::info!("broker stopped");
            Ok(())
        }
    }
}
