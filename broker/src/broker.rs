//! [`Broker`]: one broker's Raft node, controller replica, hosted partitions and the
//! background loops that keep them in line with the controller (reconciler, heartbeats,
//! retention).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rafka_proto::ErrorCode;
use rafka_raft::LogRuntime;
use rafka_raft::NodeConfig;
use rafka_raft::RaftNode;
use rafka_raft::ReplicaNode;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::config::BrokerConfig;
use crate::controller::CONTROLLER_GROUP;
use crate::controller::Command;
use crate::controller::CommandEntry;
use crate::controller::ControllerGroup;
use crate::controller::ControllerSm;
use crate::controller::ControllerState;
use crate::controller::Outcome;
use crate::controller::live::LiveView;
use crate::controller::state::TopicRecord;
use crate::error::Error;
use crate::error::Result;
use crate::group::Coordinator;
use crate::group::GroupsDb;
use crate::partition::Partition;
use crate::topic::TopicConfig;

/// Header set on admin requests a broker forwards to the controller leader, so a stale
/// leader hint never makes requests bounce between brokers.
pub const FORWARDED_HEADER: &str = "x-rafka-forwarded";

/// One running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub id: u64,
    /// Advertised client (and Raft) address.
    pub address: String,
    pub node: RaftNode,
    /// Identity of this broker's data directory (see [`crate::membership`]).
    pub incarnation: u64,
    /// This broker's controller replica; unset while a broker on an empty data directory
    /// finds out whether it founds the cluster or replaces its own lost disk.
    pub(crate) controller: std::sync::OnceLock<ControllerGroup>,
    /// The controller state machine until its replica is created.
    pub(crate) pending_controller: std::sync::Mutex<Option<ControllerSm>>,
    pub controller_state: watch::Receiver<Arc<ControllerState>>,
    /// Filled on the controller leader from broker heartbeats.
    pub live: LiveView,
    /// Hosted partition replicas by group id.
    pub partitions: RwLock<HashMap<u64, Arc<Partition>>>,
    pub(crate) channels: std::sync::Mutex<HashMap<String, Channel>>,
    pub(crate) stopping: AtomicBool,
    /// Groups whose deletion is under way (one task each).
    pub(crate) deleting: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Groups whose reassignment this broker (as their leader) is driving.
    pub(crate) reassigning: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Groups whose reassignment this broker (as controller leader) is completing.
    pub(crate) completing: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// The consumer-group database (offsets partitions' state).
    pub groups_db: Arc<GroupsDb>,
    /// Hosted `__consumer_offsets` partition replicas by group id.
    pub coordinators: RwLock<HashMap<u64, Arc<Coordinator>>>,
    /// Set while this broker (as controller leader) creates `__consumer_offsets`.
    pub(crate) creating_offsets_topic: AtomicBool,
}

impl Broker {
    /// Opens storage, starts the Raft node and the controller replica.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let id = config.node_id;
        let address = config.advertise_addr().to_string();
        let cluster = config.initial_cluster()?;
        std::fs::create_dir_all(config.data_dir.join("partitions"))?;
        // With `lazy-io`, first undo what the last crash left without a directory fsync.
        rafka_raft::durable::init(&config.data_dir)?;
        let incarnation = crate::membership::load_incarnation(&config.data_dir)?;
        let log = LogRuntime::open(&config.data_dir, config.log.clone())?;
        let node = RaftNode::start_embedded(
            NodeConfig {
                broker_id: id,
                advertise_addr: address.clone(),
                cluster: "rafka".into(),
                timing: config.raft.clone(),
            },
            log,
        )
        .await?;
        #[cfg(feature = "failpoints")]
        node.set_dial_overrides(config.dial_overrides.clone());
        for (peer, addr) in &cluster {
            if *peer != id {
                node.add_peer(*peer, addr)?;
            }
        }
        let groups_db = GroupsDb::open(&config.data_dir.join("consumer-groups"))?;
        let (sm, controller_state) = ControllerSm::new();
        let stored = node.log_runtime().stored_replica(CONTROLLER_GROUP)?;
        let has_log = node.log_runtime().stored_groups()?.contains(&CONTROLLER_GROUP);
        let broker = Arc::new(Broker {
            config,
            id,
            address,
            node,
            incarnation,
            controller: std::sync::OnceLock::new(),
            pending_controller: std::sync::Mutex::new(Some(sm)),
            controller_state,
            live: LiveView::default(),
            partitions: RwLock::default(),
            channels: Default::default(),
            stopping: AtomicBool::new(false),
            deleting: Default::default(),
            reassigning: Default::default(),
            completing: Default::default(),
            groups_db,
            coordinators: RwLock::default(),
            creating_offsets_topic: AtomicBool::new(false),
        });
        match (stored, has_log) {
            (Some(replica), _) => broker.create_controller(replica, false).await?,
            // A data directory from before replica ids were stored.
            (None, true) => broker.create_controller(id, false).await?,
            (None, false) if cluster.len() == 1 => broker.create_controller(id, true).await?,
            // Decided once the gRPC server runs (peers probe each other): see
            // [`crate::membership::join_controller`].
            (None, false) => {}
        }
        Ok(broker)
    }

    /// Creates this broker's controller replica as `replica`; a founding replica (`found`)
    /// bootstraps the group with the founding brokers.
    pub(crate) async fn create_controller(
        self: &Arc<Self>,
        replica: u64,
        found: bool,
    ) -> anyhow::Result<()> {
        let sm = self
            .pending_controller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the controller replica exists already"))?;
        let group = self.node.create_group(CONTROLLER_GROUP, replica, sm).await?;
        let _ = self.controller.set(group.clone());
        if found {
            let cluster = self.config.initial_cluster()?;
            let members: BTreeMap<u64, ReplicaNode> = cluster
                .iter()
                .map(|(id, addr)| (*id, ReplicaNode { broker_id: *id, addr: addr.clone() }))
                .collect();
            let first = *cluster.keys().next().expect("cluster has this broker");
            crate::tasks::initialize_when_quiet(
                self,
                group,
                first == self.id,
                members,
                "controller",
            );
        }
        Ok(())
    }

    /// This broker's controller replica, once it has one.
    pub fn controller(&self) -> Option<&ControllerGroup> {
        self.controller.get()
    }

    /// The latest controller state this replica applied.
    pub fn state(&self) -> Arc<ControllerState> {
        self.controller_state.borrow().clone()
    }

    /// Whether this broker's controller replica leads the controller group.
    pub fn is_controller(&self) -> bool {
        self.controller().is_some_and(|c| c.is_leader())
    }

    /// The controller leader's broker id and address.
    pub fn controller_leader(&self) -> Option<(u64, String)> {
        self.controller()?.leader().map(|(_, n)| (n.broker_id, n.addr))
    }

    /// `NOT_CONTROLLER` pointing at the controller leader.
    pub fn not_controller(&self) -> Error {
        let mut e = Error::new(
            ErrorCode::NotController,
            match self.controller_leader() {
                Some((b, a)) => {
                    format!("broker {} is not the controller; it is broker {b} at {a}", self.id)
                }
                None => "the controller has no leader right now".to_string(),
            },
        );
        e.leader = self
            .controller_leader()
            .map(|(broker_id, address)| rafka_proto::v1::LeaderHint { broker_id, address });
        e
    }

    /// Proposes a controller command; only on the controller leader.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome> {
        if !self.is_controller() {
            return Err(self.not_controller());
        }
        let Some(controller) = self.controller() else { return Err(self.not_controller()) };
        match controller.write(CommandEntry::new(&cmd)).await {
            Ok((_, Outcome::Refused { code, message })) => Err(Error::new(code, message)),
            Ok((_, out)) => Ok(out),
            Err(rafka_raft::Error::NotLeader { .. }) => Err(self.not_controller()),
            Err(e) => Err(Error::from_raft("controller", e)),
        }
    }

    /// A cached gRPC channel to `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        #[cfg(feature = "failpoints")]
        let dial = self.config.dial_overrides.get(addr).map_or(addr, String::as_str);
        #[cfg(not(feature = "failpoints"))]
        let dial = addr;
        let c = Channel::from_shared(format!("http://{dial}"))
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("bad address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_millis(self.config.request_timeout_ms))
            .connect_lazy();
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Whether `broker` is alive as far as this broker can tell.
    pub fn is_alive(&self, broker: u64) -> bool {
        broker == self.id
            || self.node.is_peer_alive(broker)
            || self.live.heard_within(
                broker,
                Duration::from_millis(self.config.raft.detector_timeout_ms * 4),
            )
    }

    /// The hosted replica of `group`, if any.
    pub fn partition(&self, group: u64) -> Option<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&group).cloned()
    }

    /// Every hosted partition replica (a snapshot of the set).
    pub fn hosted(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Every hosted `__consumer_offsets` replica.
    pub fn coordinators(&self) -> Vec<Arc<Coordinator>> {
        self.coordinators.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Whether a replica of `group` (partition or offsets partition) is hosted here.
    pub fn hosts(&self, group: u64) -> bool {
        self.partition(group).is_some()
            || self.coordinators.read().unwrap_or_else(|p| p.into_inner()).contains_key(&group)
    }

    /// Resolves `topic`/`partition` to its record and group.
    pub fn lookup(&self, topic: &str, partition: u32) -> Result<(TopicRecord, u64)> {
        let state = self.state();
        let Some(t) = state.topics.get(topic) else {
            if crate::topic::validate_name(topic, true).is_err() {
                return Err(Error::new(
                    ErrorCode::InvalidTopic,
                    format!("invalid topic name {topic:?}"),
                ));
            }
            return Err(Error::new(
                ErrorCode::UnknownTopic,
                format!("topic {topic} does not exist"),
            ));
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return Err(Error::new(
                ErrorCode::UnknownPartition,
                format!(
                    "topic {topic} has {} partitions; no partition {partition}",
                    t.partitions.len()
                ),
            ));
        };
        Ok((t.clone(), p.group))
    }

    /// The hosted replica serving `topic`/`partition`, or `NOT_LEADER` toward a broker that
    /// hosts one.
    pub fn route(&self, topic: &str, partition: u32) -> Result<(TopicRecord, Arc<Partition>)> {
        let (t, group) = self.lookup(topic, partition)?;
        if t.internal {
            return Err(Error::new(
                ErrorCode::InvalidTopic,
                format!("{topic} is internal: use the Groups RPCs (CommitOffsets, FetchOffsets)"),
            ));
        }
        match self.partition(group) {
            Some(p) => Ok((t, p)),
            None => {
                let what = format!("{topic}-{partition}");
                let state = self.state();
                // Not hosted here: point at a replica's broker (the client asks again there
                // and gets the exact leader).
                let hint = t.partitions[partition as usize]
                    .replicas
                    .iter()
                    .find(|r| self.is_alive(r.broker))
                    .and_then(|r| state.brokers.get(&r.broker))
                    .map(|b| (b.id, b.address.clone()));
                Err(Error::not_leader(&what, hint))
            }
        }
    }

    /// The effective config of a topic.
    pub fn topic_config(&self, t: &TopicRecord) -> TopicConfig {
        TopicConfig::resolve(&self.config.topic_defaults, &t.configs)
            .unwrap_or_else(|_| TopicConfig::from_defaults(&self.config.topic_defaults))
    }

    /// Whether the broker is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Ready = the controller has a leader and every partition assigned here is hosted.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.is_stopping() {
            return Err("shutting down".into());
        }
        if self.controller().is_none() {
            return Err("joining the controller group (probing the founding brokers)".into());
        }
        if self.controller_leader().is_none() {
            return Err("the controller has no leader".into());
        }
        let state = self.state();
        match state.brokers.get(&self.id) {
            None => return Err("this broker is not registered with the controller yet".into()),
            Some(b) if b.incarnation != self.incarnation => {
                return Err("the controller has not registered this data directory yet".into());
            }
            Some(_) => {}
        }
        if !state.topics.contains_key(rafka_proto::groups::OFFSETS_TOPIC) {
            return Err(format!(
                "{} is not created yet (it needs its replication factor of live brokers)",
                rafka_proto::groups::OFFSETS_TOPIC
            ));
        }
        let missing = state
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| {
                p.assigned(self.id).is_some_and(|r| crate::membership::is_current(self, &r))
            })
            .filter(|p| !self.hosts(p.group))
            .count();
        if missing > 0 {
            return Err(format!("{missing} assigned partitions not loaded yet"));
        }
        Ok(())
    }
}
