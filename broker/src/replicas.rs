//! [`Replicas`]: the partition replicas this broker hosts — data partitions and
//! `__consumer_offsets` partitions (group coordinators) — and the two ways the set changes:
//! hosting a replica the controller assigned here, and deleting a copy that must go.
//! Nothing else adds to or removes from the set.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::RaftNode;
use rafka_raft::ReplicaNode;
use rafka_raft::StateMachine;

use crate::config::BrokerConfig;
use crate::config::GroupsConfig;
use crate::controller::ControllerState;
use crate::controller::state::PartitionRecord;
use crate::error::Error;
use crate::error::Result;
use crate::group::Coordinator;
use crate::group::GroupsDb;
use crate::group::OffsetsSm;
use crate::partition::Partition;
use crate::partition::PartitionSm;
use crate::partition::files;
use crate::partition::files::StateFiles;
use crate::partition::sm::LogHandle;
use crate::supervisor::Supervisor;
use crate::supervisor::TaskKey;

/// Longest a deletion waits for in-flight requests on the replica (a long poll holds its
/// partition up to 30 s).
const DELETE_WAIT: Duration = Duration::from_secs(35);

/// The replicas hosted by this broker, by Raft group id.
pub struct Replicas {
    me: u64,
    node: RaftNode,
    data_dir: PathBuf,
    groups_db: Arc<GroupsDb>,
    groups_config: GroupsConfig,
    /// How long a non-first replica of a new group waits before initialising it itself.
    init_delay: Duration,
    tasks: Supervisor,
    /// Owns what must outlive the background tasks at shutdown: the waiters that see a
    /// proposal through after its request is gone, background checkpoint writes, and the
    /// readers of produce streams (answered through the leadership hand-over).
    waiters: Supervisor,
    partitions: RwLock<HashMap<u64, Arc<Partition>>>,
    coordinators: RwLock<HashMap<u64, Arc<Coordinator>>>,
}

/// What a new replica is.
pub struct NewReplica<'a> {
    /// `topic-partition`, for logs.
    pub name: String,
    /// Partition number within its topic.
    pub partition: u32,
    /// The controller's record of the partition.
    pub record: &'a PartitionRecord,
    /// This broker's replica id in the group.
    pub replica: u64,
}

impl Replicas {
    /// The supervisor of work that outlives the broker's background tasks at shutdown: it
    /// stops after the Raft node, once leaderships are handed over.
    pub fn waiters(&self) -> &Supervisor {
        &self.waiters
    }

    /// An empty registry of broker `me`.
    pub fn new(
        node: RaftNode,
        config: &BrokerConfig,
        groups_db: Arc<GroupsDb>,
        tasks: Supervisor,
        waiters: Supervisor,
    ) -> Replicas {
        Replicas {
            me: config.node_id,
            node,
            data_dir: config.data_dir.clone(),
            groups_db,
            groups_config: config.groups.clone(),
            init_delay: Duration::from_millis(config.raft.election_timeout_max_ms * 2),
            tasks,
            waiters,
            partitions: RwLock::default(),
            coordinators: RwLock::default(),
        }
    }

    /// The hosted data partition of `group`, if any.
    pub fn partition(&self, group: u64) -> Option<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&group).cloned()
    }

    /// The hosted offsets partition (coordinator) of `group`, if any.
    pub fn coordinator(&self, group: u64) -> Option<Arc<Coordinator>> {
        self.coordinators.read().unwrap_or_else(|p| p.into_inner()).get(&group).cloned()
    }

    /// Every hosted data partition (a snapshot of the set).
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Every hosted offsets partition.
    pub fn coordinators(&self) -> Vec<Arc<Coordinator>> {
        self.coordinators.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Whether a replica of `group` (data or offsets partition) is hosted here.
    pub fn hosts(&self, group: u64) -> bool {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).contains_key(&group)
            || self.coordinators.read().unwrap_or_else(|p| p.into_inner()).contains_key(&group)
    }

    /// Group ids of every hosted replica.
    pub fn hosted_groups(&self) -> Vec<u64> {
        let mut out: Vec<u64> =
            self.partitions.read().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        out.extend(self.coordinators.read().unwrap_or_else(|p| p.into_inner()).keys());
        out
    }

    /// The replica id of this broker's copy of `group` (hosted, or only stored), if any.
    pub fn local_replica(&self, group: u64) -> Option<u64> {
        if let Some(p) = self.partition(group) {
            return Some(p.group.replica_id());
        }
        if let Some(c) = self.coordinator(group) {
            return Some(c.group.replica_id());
        }
        self.node.log_runtime().stored_replica(group).ok().flatten()
    }

    /// Hosts a data partition replica; a new group is initialised by its founding replicas.
    pub async fn host_partition(&self, state: &ControllerState, new: NewReplica<'_>) -> Result<()> {
        let p = new.record;
        let retention = Arc::default();
        let log: LogHandle = Arc::default();
        let (sm, applied) = PartitionSm::open(
            StateFiles::of(&self.data_dir, p.group),
            log.clone(),
            Arc::clone(&retention),
            Some(self.waiters.clone()),
        )
        .map_err(|e| storage(&new.name, e))?;
        let members = self.members(state, p)?;
        let group = self.create_group(p.group, new.replica, sm, &new.name).await?;
        let _ = log.set(group.log().clone());
        let part = Partition::new(
            new.name.clone(),
            group.clone(),
            applied,
            retention,
            self.waiters.clone(),
        );
        self.partitions.write().unwrap_or_else(|p| p.into_inner()).insert(p.group, Arc::new(part));
        self.initialize_if_new(group, p, members, &new.name);
        Ok(())
    }

    /// Hosts a `__consumer_offsets` partition replica: a group coordinator.
    pub async fn host_coordinator(
        &self,
        state: &ControllerState,
        new: NewReplica<'_>,
    ) -> Result<()> {
        let p = new.record;
        let sm =
            OffsetsSm::open(self.groups_db.clone(), p.group).map_err(|e| storage(&new.name, e))?;
        let view = sm.view();
        let members = self.members(state, p)?;
        let group = self.create_group(p.group, new.replica, sm, &new.name).await?;
        let c = Coordinator::new(
            new.partition,
            group.clone(),
            self.groups_db.clone(),
            view,
            self.groups_config.clone(),
            self.waiters.clone(),
        );
        self.coordinators.write().unwrap_or_else(|p| p.into_inner()).insert(p.group, Arc::new(c));
        self.initialize_if_new(group, p, members, &new.name);
        Ok(())
    }

    async fn create_group<A: App, S: StateMachine<A>>(
        &self,
        id: u64,
        replica: u64,
        sm: S,
        name: &str,
    ) -> Result<Group<A, S>> {
        self.node.create_group(id, replica, sm).await.map_err(|e| Error::from_raft(name, e))
    }

    /// The voters of a partition group, registering their brokers as Raft peers.
    fn members(
        &self,
        state: &ControllerState,
        p: &PartitionRecord,
    ) -> Result<BTreeMap<u64, ReplicaNode>> {
        let mut members = BTreeMap::new();
        for r in p.replicas.iter().chain(p.target.iter().flatten()) {
            let broker = state.brokers.get(&r.broker).ok_or_else(|| {
                Error::ShuttingDown(format!("replica broker {} is not registered", r.broker))
            })?;
            if r.broker != self.me {
                self.node
                    .add_peer(r.broker, &broker.address)
                    .map_err(|e| Error::from_raft("peer", e))?;
            }
            if p.replicas.contains(r) {
                members.insert(
                    r.replica,
                    ReplicaNode { broker_id: r.broker, addr: broker.address.clone() },
                );
            }
        }
        Ok(members)
    }

    /// A new group: only founding replicas of a never-reassigned partition initialise it
    /// (any other replica joins as a learner), the first one at once.
    fn initialize_if_new<A: App, S: StateMachine<A>>(
        &self,
        group: Group<A, S>,
        p: &PartitionRecord,
        members: BTreeMap<u64, ReplicaNode>,
        name: &str,
    ) {
        if p.epoch != 0 || !members.contains_key(&group.replica_id()) {
            return;
        }
        let delay = if p.replicas[0].broker == self.me { Duration::ZERO } else { self.init_delay };
        initialize_when_quiet(&self.tasks, group, delay, members, name);
    }

    /// Deletes this broker's copy of `group` in the background (one task per group): stops
    /// the replica, removes its log, Raft metadata, state files and consumer-group rows.
    pub fn remove(self: &Arc<Self>, group: u64, why: &'static str) {
        let this = self.clone();
        self.tasks.spawn_keyed(TaskKey::DeleteReplica(group), "delete replica", async move {
            let removed = this.partitions.write().unwrap_or_else(|p| p.into_inner()).remove(&group);
            let coordinator =
                this.coordinators.write().unwrap_or_else(|p| p.into_inner()).remove(&group);
            let name = removed.as_ref().map_or(format!("group {group}"), |p| p.name.clone());
            drop((removed, coordinator));
            match this.node.delete_group(group, DELETE_WAIT).await {
                Ok(()) => {
                    files::remove(&this.data_dir, group);
                    if let Err(e) = this.groups_db.remove_partition(group) {
                        tracing::warn!(partition = %name, "cannot remove consumer-group rows: {e}");
                    }
                    tracing::info!(partition = %name, group, "deleted this broker's copy: {why}");
                }
                Err(e) => tracing::warn!(partition = %name, group, "cannot delete yet: {e}"),
            }
        });
    }
}

/// Initialises a group that has no log yet after `delay` (zero on its first replica; the
/// others wait in case the first one is down). Initialising with the same members on several
/// replicas is safe in Raft.
pub fn initialize_when_quiet<A: App, S: StateMachine<A>>(
    tasks: &Supervisor,
    group: Group<A, S>,
    delay: Duration,
    members: BTreeMap<u64, ReplicaNode>,
    name: &str,
) {
    if group.status().last_log_index.is_some() {
        return;
    }
    let name = name.to_string();
    tasks.spawn_keyed(
        TaskKey::Initialize(group.id(), group.replica_id()),
        "initialize group",
        async move {
            tokio::time::sleep(delay).await;
            if group.status().last_log_index.is_none() {
                match group.initialize(members).await {
                    Ok(()) => tracing::debug!(group = %name, "group initialised"),
                    Err(e) => tracing::debug!(group = %name, "already initialised: {e}"),
                }
            }
        },
    );
}

fn storage(what: &str, e: std::io::Error) -> Error {
    Error::Storage(format!("{what}: {e}"))
}
