//! [`Broker`]: one running broker, put together from its components — the Raft node, the
//! controller handle, the hosted replicas, the controller leader's live view, the task
//! supervisor — and the few facts every part asks of it (who is alive, where a partition
//! is served, whether the broker is ready). The behaviour that changes the components lives
//! with them or in the modules that drive them (`bootstrap`, `reconcile`, `reassign`,
//! `heartbeat`, `upkeep`); none of those is imported here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rafka_raft::LogRuntime;
use rafka_raft::NodeConfig;
use rafka_raft::RaftNode;
use tonic::transport::Channel;

use crate::config::BrokerConfig;
use crate::controller::Controller;
use crate::controller::ControllerState;
use crate::controller::live::LiveView;
use crate::controller::state::Replica;
use crate::controller::state::TopicRecord;
use crate::disk::DiskSpace;
use crate::error::Error;
use crate::error::Result;
use crate::group::GroupsDb;
use crate::partition::Partition;
use crate::partition::files;
use crate::replicas::Replicas;
use crate::supervisor::Supervisor;
use crate::tls::Tls;
use crate::tls::dial::TlsDialer;
use crate::topic::TopicConfig;

/// Header set on requests a broker forwards to another broker (admin requests to the
/// controller leader, group listings), so a stale leader hint never makes requests bounce.
pub const FORWARDED_HEADER: &str = "x-rafka-forwarded";

/// One running broker.
pub struct Broker {
    config: BrokerConfig,
    id: u64,
    /// Advertised client (and Raft) address.
    address: String,
    /// Advertised addresses of the named listeners, by name.
    listeners: BTreeMap<String, String>,
    /// Free space on the data directory.
    disk: DiskSpace,
    node: RaftNode,
    /// Identity of this broker's data directory (see [`crate::bootstrap`]).
    incarnation: u64,
    controller: Controller,
    /// Filled on the controller leader from broker heartbeats.
    live: LiveView,
    replicas: Arc<Replicas>,
    groups_db: Arc<GroupsDb>,
    channels: std::sync::Mutex<std::collections::HashMap<String, Channel>>,
    /// TLS on the broker port and to other brokers; `None`: plaintext.
    tls: Option<Arc<Tls>>,
    /// `[auth] bootstrap-user` and its password, read from its file at start (kept in
    /// memory only: the controller stores a SCRAM credential, never the password).
    bootstrap_user: Option<(String, String)>,
    tasks: Supervisor,
}

impl Broker {
    /// Opens storage and starts the Raft node; the controller replica is created by
    /// [`crate::bootstrap`].
    /// `tasks` owns background work, `waiters` what must outlive it at shutdown (see
    /// [`Replicas`]).
    pub async fn open(
        config: BrokerConfig,
        incarnation: u64,
        tasks: Supervisor,
        waiters: Supervisor,
    ) -> Result<Broker> {
        let id = config.node_id;
        let address = config.advertise_addr().to_string();
        let listeners = config
            .named_listeners()
            .map_err(|e| Error::InvalidConfig(e.to_string()))?
            .into_iter()
            .map(|l| (l.name, l.advertise))
            .collect();
        let storage = |what: &str, e: std::io::Error| Error::Storage(format!("{what}: {e}"));
        std::fs::create_dir_all(files::dir(&config.data_dir))
            .map_err(|e| storage("creating the partitions directory", e))?;
        let tls = match config.tls.enabled() {
            true => {
                let secret =
                    config.auth.broker_secret().map_err(|e| Error::InvalidConfig(e.to_string()))?;
                let tls = Tls::load_with_secret(&config.tls, secret.as_deref());
                Some(tls.map_err(|e| Error::InvalidConfig(e.to_string()))?)
            }
            false => None,
        };
        let bootstrap_user = config
            .auth
            .bootstrap_password()
            .map_err(|e| Error::InvalidConfig(e.to_string()))?
            .map(|password| (config.auth.bootstrap_user.clone(), password));
        let log = LogRuntime::open(&config.data_dir, config.log.clone())
            .map_err(|e| Error::from_raft("log runtime", e))?;
        let node = RaftNode::start_embedded(
            NodeConfig {
                broker_id: id,
                advertise_addr: address.clone(),
                cluster: "rafka".into(),
                timing: config.raft.clone(),
                dialer: tls.clone().map(|t| Arc::new(TlsDialer(t)) as Arc<dyn rafka_raft::Dialer>),
            },
            log,
        )
        .await
        .map_err(|e| Error::from_raft("raft node", e))?;
        #[cfg(feature = "failpoints")]
        node.set_dial_overrides(config.dial_overrides.clone());
        // The founding brokers are probed from the start: liveness (and the leader hints
        // built on it) must not wait for a shared group to be hosted.
        let founders = config.initial_cluster().map_err(|e| Error::InvalidConfig(e.to_string()))?;
        for (peer, addr) in &founders {
            if *peer != id {
                node.add_peer(*peer, addr).map_err(|e| Error::from_raft("peer", e))?;
            }
        }
        let groups_db = GroupsDb::open(&config.data_dir.join("consumer-groups"))
            .map_err(|e| storage("opening the consumer-groups database", e))?;
        let replicas = Arc::new(Replicas::new(
            node.clone(),
            &config,
            groups_db.clone(),
            tasks.clone(),
            waiters,
        ));
        Ok(Broker {
            id,
            address,
            listeners,
            disk: DiskSpace::new(config.min_free_bytes),
            node,
            incarnation,
            controller: Controller::new(id),
            live: LiveView::default(),
            replicas,
            groups_db,
            channels: Default::default(),
            tls,
            bootstrap_user,
            tasks,
            config,
        })
    }

    /// This broker's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The address clients and other brokers reach this broker at.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The advertised addresses of its named listeners, by name.
    pub fn listeners(&self) -> &BTreeMap<String, String> {
        &self.listeners
    }

    /// This broker's address for a client of the named `listener` (`None`: the internal one).
    pub fn address_on(&self, listener: Option<&str>) -> &str {
        listener.and_then(|l| self.listeners.get(l)).map_or(&self.address, String::as_str)
    }

    /// Free space on the data directory.
    pub fn disk(&self) -> &DiskSpace {
        &self.disk
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Identity of the data directory.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The newest partition batch format this broker reads, as it tells the controller.
    pub fn batch_format_supported(&self) -> u32 {
        #[cfg(feature = "failpoints")]
        if self.config().report_batch_format != 0 {
            return self.config().report_batch_format;
        }
        crate::partition::BATCH_FORMAT
    }

    /// The Raft node hosting every group of this broker.
    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    /// This broker's view of the controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The latest controller state this broker applied.
    pub fn state(&self) -> Arc<ControllerState> {
        self.controller.state()
    }

    /// What the controller leader learnt from heartbeats.
    pub fn live(&self) -> &LiveView {
        &self.live
    }

    /// The hosted replicas.
    pub fn replicas(&self) -> &Arc<Replicas> {
        &self.replicas
    }

    /// The consumer-group database.
    pub fn groups_db(&self) -> &Arc<GroupsDb> {
        &self.groups_db
    }

    /// The owner of this broker's background tasks.
    pub fn tasks(&self) -> &Supervisor {
        &self.tasks
    }

    /// The bootstrap user and its password, when configured.
    pub fn bootstrap_user(&self) -> Option<(&str, &str)> {
        self.bootstrap_user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// TLS on the broker port and to other brokers, when configured.
    pub fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// A cached gRPC channel to another broker at `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        #[cfg(feature = "failpoints")]
        let dial = self.config.dial_overrides.get(addr).map_or(addr, String::as_str);
        #[cfg(not(feature = "failpoints"))]
        let dial = addr;
        let endpoint = Channel::from_shared(format!("http://{dial}"))
            .map_err(|e| Error::Internal(format!("bad address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_millis(self.config.request_timeout_ms));
        let c = match &self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => rafka_raft::Dialer::channel(&TlsDialer(tls.clone()), endpoint, dial, addr)
                .map_err(|e| Error::Internal(format!("broker at {addr}: {e}")))?,
        };
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

    /// Registered brokers that are alive and not being decommissioned: where replicas may go.
    pub fn live_brokers(&self, state: &ControllerState) -> Vec<u64> {
        state
            .brokers
            .values()
            .filter(|r| !r.draining && self.is_alive(r.id))
            .map(|r| r.id)
            .collect()
    }

    /// Founding brokers (`initial-cluster`), at least this one.
    pub fn founding_brokers(&self) -> usize {
        self.config.initial_cluster().map_or(1, |c| c.len())
    }

    /// Whether this broker may host `r`: a replica stamped with another incarnation was lost
    /// with an earlier disk (0: assigned before incarnations existed).
    pub fn is_current(&self, r: &Replica) -> bool {
        r.incarnation == self.incarnation || r.incarnation == 0
    }

    /// Resolves `topic`/`partition` to its record and group.
    pub fn lookup(&self, topic: &str, partition: u32) -> Result<(TopicRecord, u64)> {
        let state = self.state();
        let Some(t) = state.topics.get(topic) else {
            if crate::topic::validate_name(topic, true).is_err() {
                return Err(Error::InvalidTopic(format!("invalid topic name {topic:?}")));
            }
            return Err(Error::UnknownTopic(format!("topic {topic} does not exist")));
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return Err(Error::UnknownPartition(format!(
                "topic {topic} has {} partitions; no partition {partition}",
                t.partitions.len()
            )));
        };
        Ok((t.clone(), p.group))
    }

    /// The hosted replica serving `topic`/`partition`, or `NOT_LEADER` toward a broker that
    /// hosts one.
    pub fn route(&self, topic: &str, partition: u32) -> Result<(TopicRecord, Arc<Partition>)> {
        let (t, group) = self.lookup(topic, partition)?;
        if t.internal {
            return Err(Error::InvalidTopic(format!(
                "{topic} is internal: use the Groups RPCs (CommitOffsets, FetchOffsets)"
            )));
        }
        match self.replicas.partition(group) {
            Some(p) => Ok((t, p)),
            None => {
                let what = format!("{topic}-{partition}");
                // Not hosted here: point at a replica's broker (the client asks again there
                // and gets the exact leader).
                let hint = self.live_replica_broker(&t.partitions[partition as usize].replicas);
                Err(Error::not_leader(&what, hint))
            }
        }
    }

    /// The id and address of a live broker among `replicas`, if any.
    pub fn live_replica_broker(&self, replicas: &[Replica]) -> Option<(u64, String)> {
        let state = self.state();
        replicas
            .iter()
            .find(|r| self.is_alive(r.broker))
            .and_then(|r| state.brokers.get(&r.broker))
            .map(|b| (b.id, b.address.clone()))
    }

    /// The effective config of a topic.
    pub fn topic_config(&self, t: &TopicRecord) -> TopicConfig {
        TopicConfig::resolve(&self.config.topic_defaults, &t.configs)
            .unwrap_or_else(|_| TopicConfig::from_defaults(&self.config.topic_defaults))
    }

    /// Whether the broker is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.tasks.is_stopping()
    }

    /// `BROKER_NOT_AVAILABLE` while shutting down.
    pub fn available(&self) -> Result<()> {
        if self.is_stopping() {
            return Err(Error::ShuttingDown("broker is shutting down".into()));
        }
        Ok(())
    }

    /// Ready = the controller has a leader and every partition assigned here is hosted.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.is_stopping() {
            return Err("shutting down".into());
        }
        if self.controller.group().is_none() {
            return Err("joining the controller group (probing the founding brokers)".into());
        }
        if self.controller.leader().is_none() {
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
            .filter(|p| p.assigned(self.id).is_some_and(|r| self.is_current(&r)))
            .filter(|p| !self.replicas.hosts(p.group))
            .count();
        if missing > 0 {
            return Err(format!("{missing} assigned partitions not loaded yet"));
        }
        Ok(())
    }
}
