//! [`RaftNode`]: the multi-raft runtime of one broker.
//!
//! It hosts any number of groups (create, stop, delete at runtime), each with a
//! caller-supplied [`StateMachine`], serves the Raft transport on an already-bound listener,
//! runs the failure detector and the driver that replaces openraft's per-group tick.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use std::time::Instant;

use openraft::async_runtime::watch::WatchReceiver;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::detector::Detector;
use crate::driver::Driver;
use crate::error::Error;
use crate::group::Group;
use crate::group::GroupInner;
use crate::runtime::LogRuntime;
use crate::sm::SmAdapter;
use crate::sm::StateMachine;
use crate::timing::RaftTiming;
use crate::transport::GroupRpc;
use crate::transport::Groups;
use crate::transport::Peers;
use crate::transport::client::NetworkFactory;
use crate::transport::dial::Dialer;
use crate::transport::server::TransportService;
use crate::types::App;
use crate::types::GroupId;
use crate::types::ReplicaId;
use crate::wire::pb::raft_transport_server::RaftTransportServer;

/// The tonic server type of the Raft transport.
pub type TransportServer = RaftTransportServer<TransportService>;

fn transport_server(service: TransportService) -> TransportServer {
    RaftTransportServer::new(service)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// Identity and timing of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This broker's id.
    pub broker_id: u64,
    /// The Raft address peers reach this node at (`host:port`); goes into [`crate::ReplicaNode`].
    pub advertise_addr: String,
    /// Cluster name (openraft's, for logs).
    pub cluster: String,
    /// Failure detection, heartbeat and election timing.
    pub timing: RaftTiming,
    /// How channels to peers are made (TLS); `None`: plaintext HTTP/2.
    pub dialer: Option<Arc<dyn Dialer>>,
}

/// The multi-raft runtime of one broker. Dropping it without [`RaftNode::shutdown`] aborts
/// its tasks with the tokio runtime.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    log: LogRuntime,
    groups: Arc<Groups>,
    peers: Arc<Peers>,
    detector: Arc<Detector>,
    raft_config: Arc<openraft::Config>,
    service: TransportService,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    driver: JoinHandle<()>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        // Without `shutdown`: stop the background tasks rather than leak them.
        self.driver.abort();
        if let Some((stop, task)) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
            task.abort();
        }
        self.peers.clear();
    }
}

impl RaftNode {
    /// Starts the node: serves the Raft transport on `listener`, starts the failure detector
    /// and the driver. Groups are then created with [`RaftNode::create_group`].
    pub async fn start(
        config: NodeConfig,
        log: LogRuntime,
        listener: TcpListener,
    ) -> Result<RaftNode, Error> {
        Self::start_inner(config, log, Some(listener)).await
    }

    /// Starts the node without a server of its own: the caller serves
    /// [`RaftNode::transport_service`] on its gRPC server (one port for clients and Raft).
    pub async fn start_embedded(config: NodeConfig, log: LogRuntime) -> Result<RaftNode, Error> {
        Self::start_inner(config, log, None).await
    }

    /// The Raft transport as a tonic service, with the message limits Raft needs.
    pub fn transport_service(&self) -> TransportServer {
        transport_server(self.inner.service.clone())
    }

    async fn start_inner(
        config: NodeConfig,
        log: LogRuntime,
        listener: Option<TcpListener>,
    ) -> Result<RaftNode, Error> {
        config.timing.validate()?;
        let raft_config = Arc::new(config.timing.openraft_config(&config.cluster)?);
        crate::metrics::describe_replication();
        let incarnation = rand::random::<u64>() | 1;
        let (detector, events) = Detector::new(config.broker_id, config.timing.clone());
        let detector = Arc::new(detector);
        let peers = Arc::new(Peers::new(
            config.broker_id,
            incarnation,
            config.timing.clone(),
            detector.clone(),
            config.dialer.clone(),
        ));
        let groups: Arc<Groups> = Arc::default();
        let service = TransportService {
            groups: groups.clone(),
            detector: detector.clone(),
            broker_id: config.broker_id,
            incarnation,
            heartbeat_deadline: config.timing.heartbeat_timeout(),
        };
        let broker_id = config.broker_id;
        let server = listener.map(|listener| {
            let (stop_tx, stop_rx) = oneshot::channel();
            let server = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(32 << 20)
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .add_service(transport_server(service.clone()))
                // `Server::tcp_nodelay` does not reach sockets of a listener we pass in: without
                // TCP_NODELAY, a response's frames wait for the peer's delayed ACK (~40 ms).
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async {
                        let _ = stop_rx.await;
                    },
                );
            let task = tokio::spawn(async move {
                if let Err(e) = server.await {
                    tracing::error!(broker = broker_id, "raft transport server failed: {e}");
                }
            });
            (stop_tx, task)
        });
        let driver = Driver {
            timing: config.timing.clone(),
            groups: groups.clone(),
            detector: detector.clone(),
            peers: peers.clone(),
            generation: 0,
        };
        let driver = tokio::spawn(driver.run(events));
        tracing::info!(broker = broker_id, addr = %config.advertise_addr, "raft node started");
        Ok(RaftNode {
            inner: Arc::new(NodeInner {
                config,
                log,
                groups,
                peers,
                detector,
                raft_config,
                service,
                server: Mutex::new(server),
                driver,
            }),
        })
    }

    /// This broker's id.
    pub fn broker_id(&self) -> u64 {
        self.inner.config.broker_id
    }

    /// The Raft address peers reach this node at.
    pub fn addr(&self) -> &str {
        &self.inner.config.advertise_addr
    }

    /// The node's description for group memberships.
    pub fn replica_node(&self) -> crate::ReplicaNode {
        crate::ReplicaNode {
            broker_id: self.inner.config.broker_id,
            addr: self.inner.config.advertise_addr.clone(),
        }
    }

    /// The storage runtime.
    pub fn log_runtime(&self) -> &LogRuntime {
        &self.inner.log
    }

    /// Makes `broker` at `addr` a known peer: the failure detector probes it from now on.
    pub fn add_peer(&self, broker: u64, addr: &str) -> Result<(), Error> {
        self.inner.peers.get(broker, addr).map(|_| ()).map_err(Error::Config)
    }

    /// Fault injection for tests (a transport filter, as TiKV's test clusters have): send
    /// nothing to `brokers` until called again with another set. Partition a node away by
    /// cutting it from every peer and every peer from it.
    #[cfg(feature = "test-hooks")]
    pub fn set_partitioned(&self, brokers: impl IntoIterator<Item = u64>) {
        self.inner.peers.set_partitioned(brokers.into_iter().collect());
    }

    /// Fault injection for tests: dial `overrides[addr]` instead of a peer's advertised
    /// `addr` (the fault suite routes each direction of every broker pair through its own
    /// proxy). Applies to channels made afterwards: call it before adding peers.
    #[cfg(feature = "test-hooks")]
    pub fn set_dial_overrides(&self, overrides: std::collections::BTreeMap<String, String>) {
        self.inner.peers.set_dial_overrides(overrides);
    }

    /// RPCs this node has sent since it started.
    pub fn transport_stats(&self) -> crate::transport::TransportStats {
        self.inner.peers.counters.snapshot()
    }

    /// Whether the failure detector holds `broker` alive.
    pub fn is_peer_alive(&self, broker: u64) -> bool {
        self.inner.detector.is_alive(broker)
    }

    /// Ids of the hosted groups.
    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<_> = self.groups().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn groups(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<GroupId, Arc<dyn GroupRpc>>> {
        self.inner.groups.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts hosting replica `replica` of `group` with state machine `sm`: opens (or
    /// recovers) its log and starts its Raft core. A new group then needs
    /// [`Group::initialize`] on one replica, or to be added by the leader of an existing one.
    pub async fn create_group<A: App, S: StateMachine<A>>(
        &self,
        group: GroupId,
        replica: ReplicaId,
        sm: S,
    ) -> Result<Group<A, S>, Error> {
        if self.groups().contains_key(&group) {
            return Err(Error::GroupExists(group));
        }
        match self.inner.log.stored_replica(group)? {
            Some(stored) if stored != replica => {
                return Err(Error::ReplicaMismatch { group, stored, requested: replica });
            }
            Some(_) => {}
            None => self.inner.log.inner.meta.save_replica(group, replica)?,
        }
        let log = self.inner.log.open_group::<A>(group)?;
        let sm = Arc::new(Mutex::new(sm));
        let adapter = SmAdapter { sm: sm.clone(), log: log.clone() };
        let network = NetworkFactory::<A> {
            group,
            replica,
            peers: self.inner.peers.clone(),
            _app: PhantomData,
        };
        let span = tracing::info_span!("group", group, replica);
        let raft = openraft::Raft::new(
            replica,
            self.inner.raft_config.clone(),
            network,
            log.clone(),
            adapter,
        )
        .instrument(span.clone())
        .await
        .map_err(|e| crate::error::fatal(group, e))?;
        let inner = Arc::new(GroupInner {
            id: group,
            replica,
            raft,
            sm,
            log,
            detector: self.inner.detector.clone(),
            peers: self.inner.peers.clone(),
            heard_leader: Arc::new(AtomicBool::new(false)),
            seen_replicas: Mutex::new(BTreeSet::new()),
            lease: self.inner.config.timing.lease(),
            heartbeat_timeout: self.inner.config.timing.heartbeat_timeout(),
            renewing: tokio::sync::Mutex::new(()),
            handed_off: Mutex::new(None),
            span,
        });
        {
            let m = inner.raft.metrics();
            let m = m.borrow_watched();
            let membership = m.membership_config.membership();
            inner.note_replicas(membership.nodes().map(|(id, _)| *id));
            for (_, node) in membership.nodes() {
                if node.broker_id != self.inner.config.broker_id {
                    let _ = self.inner.peers.get(node.broker_id, &node.addr);
                }
            }
        }
        let inserted = {
            let mut groups = self.inner.groups.write().unwrap_or_else(|p| p.into_inner());
            match groups.entry(group) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(inner.clone());
                    true
                }
            }
        };
        if inserted {
            self.inner.detector.set_removed(group, false);
        }
        if !inserted {
            // Created concurrently by another caller: this instance never served.
            let _ = inner.raft.shutdown().await;
            return Err(Error::GroupExists(group));
        }
        Ok(Group { inner })
    }

    /// Stops hosting `group`: a leader first hands leadership to another voter (best
    /// effort), then its Raft core stops; its data stays (create it again to resume).
    pub async fn stop_group(&self, group: GroupId) -> Result<(), Error> {
        let hosted = self.groups().get(&group).cloned().ok_or(Error::UnknownGroup(group))?;
        hosted.hand_off(self.inner.config.timing.detector_timeout() * 2).await;
        let g = self
            .inner
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group)
            .ok_or(Error::UnknownGroup(group))?;
        g.shutdown().await;
        self.inner.detector.set_removed(group, true);
        Ok(())
    }

    /// Stops `group` and deletes its log and metadata from this broker. Every [`Group`]
    /// handle of it must be dropped within `timeout` (else `GROUP_IN_USE`).
    pub async fn delete_group(&self, group: GroupId, timeout: Duration) -> Result<(), Error> {
        if self.groups().contains_key(&group) {
            self.stop_group(group).await?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.inner.log.remove_group(group) {
                Err(Error::GroupInUse(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// Stops every group (leaders hand off first, best effort), the transport server and the
    /// driver.
    pub async fn shutdown(self) {
        let hosted: Vec<_> = self.groups().values().cloned().collect();
        let hand_off = self.inner.config.timing.detector_timeout() * 2;
        futures::future::join_all(hosted.iter().map(|g| g.hand_off(hand_off))).await;
        let groups: Vec<_> = self
            .inner
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, g)| g)
            .collect();
        futures::future::join_all(groups.iter().map(|g| g.shutdown())).await;
        self.inner.driver.abort();
        let server = self.inner.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.inner.peers.clear();
    }
}
