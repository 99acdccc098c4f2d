//! The controller leader's decisions, as plain functions of the controller state and what
//! the leader knows of live brokers: which command a request or a heartbeat becomes, or why
//! it is refused. Proposing the command is the caller's business; applying it is
//! [`super::state`]'s, which checks again what can have changed in between.

use std::collections::BTreeMap;

use rafka_proto::groups::OFFSETS_TOPIC;

use super::Command;
use super::ControllerState;
use super::live::PartitionLive;
use super::placement;
use super::state::BrokerRecord;
use crate::config::GroupsConfig;
use crate::config::TopicDefaults;
use crate::error::Error;
use crate::error::Result;
use crate::internal;
use crate::topic::MAX_PARTITIONS;
use crate::topic::TopicConfig;
use crate::topic::validate_name;

/// What the cluster looks like to the controller leader when it decides.
pub struct Cluster<'a> {
    /// The applied controller state.
    pub state: &'a ControllerState,
    /// Registered brokers that are alive, sorted.
    pub live: &'a [u64],
    /// Founding brokers (`initial-cluster`).
    pub founding: usize,
}

/// A topic to create, as a client asks for it.
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    /// 0: the default.
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
}

/// `CreateTopic`: validates the request and places the replicas.
pub fn create_topic(c: &Cluster, defaults: &TopicDefaults, req: NewTopic) -> Result<Command> {
    validate_name(&req.name, false)?;
    if req.partitions == 0 || req.partitions > MAX_PARTITIONS {
        return Err(Error::InvalidPartitions(format!(
            "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
            req.partitions
        )));
    }
    TopicConfig::resolve(defaults, &req.configs)?;
    if c.state.topics.contains_key(&req.name) {
        return Err(Error::TopicAlreadyExists(format!("topic {} already exists", req.name)));
    }
    // The default is capped by the brokers the cluster has (registered or founding), not by
    // those alive right now: a topic created while a broker restarts must not end up with
    // fewer replicas for good.
    let brokers = c.state.brokers.len().max(c.founding);
    let rf = match req.replication_factor {
        0 => (defaults.replication_factor as usize).min(brokers).max(1),
        n => n as usize,
    };
    if rf > brokers {
        return Err(Error::InvalidReplicationFactor(format!(
            "replication factor {rf} exceeds the {brokers} brokers of the cluster"
        )));
    }
    if rf > c.live.len() {
        return Err(Error::NotEnoughReplicas(format!(
            "replication factor {rf} needs {rf} live brokers; {} are alive",
            c.live.len()
        )));
    }
    let placement = placement::place(c.state, c.live, req.partitions, rf);
    Ok(Command::CreateTopic { name: req.name, placement, configs: req.configs, internal: false })
}

/// `CreatePartitions`: grows a user topic to `total` partitions.
pub fn add_partitions(c: &Cluster, name: String, total: u32) -> Result<Command> {
    validate_name(&name, true)?;
    let Some(t) = c.state.topics.get(&name) else {
        return Err(Error::UnknownTopic(format!("topic {name} does not exist")));
    };
    if t.internal {
        return Err(Error::InvalidTopic(format!(
            "{name} is internal: its partition count is fixed"
        )));
    }
    let current = t.partitions.len() as u32;
    if total <= current || total > MAX_PARTITIONS {
        return Err(Error::InvalidPartitions(format!(
            "topic {name} has {current} partitions; the new count must be above it and at \
                 most {MAX_PARTITIONS}, got {total}"
        )));
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
    if rf > c.live.len() {
        return Err(Error::NotEnoughReplicas(format!(
            "{rf} replicas per partition need {rf} live brokers; {} are alive",
            c.live.len()
        )));
    }
    let placement = placement::place(c.state, c.live, total - current, rf);
    Ok(Command::CreatePartitions { name, placement })
}

/// `DeleteTopic`: any topic but an internal one.
pub fn delete_topic(name: String) -> Result<Command> {
    validate_name(&name, true)?;
    if name.starts_with("__") {
        return Err(Error::InvalidTopic(format!(
            "{name} is an internal topic and cannot be deleted"
        )));
    }
    Ok(Command::DeleteTopic { name })
}

/// `AlterTopicConfig`: the new configs must resolve.
pub fn alter_topic_config(
    defaults: &TopicDefaults,
    name: String,
    configs: BTreeMap<String, String>,
) -> Result<Command> {
    TopicConfig::resolve(defaults, &configs)?;
    Ok(Command::AlterTopicConfig { name, configs })
}

/// `ReassignPartition`: moves a partition to `brokers` (the first one preferred leader).
pub fn reassign(topic: String, partition: u32, brokers: Vec<u64>) -> Result<Command> {
    validate_name(&topic, true)?;
    Ok(Command::ReassignPartition { name: topic, partition, brokers })
}

/// `TransferLeadership`: moves `broker` to the front of the replicas; the leader hands
/// leadership to it once it is caught up (preferred-leader balancing).
pub fn transfer_leadership(
    state: &ControllerState,
    topic: String,
    partition: u32,
    broker: u64,
) -> Result<Command> {
    validate_name(&topic, true)?;
    let t = state
        .topics
        .get(&topic)
        .ok_or_else(|| Error::UnknownTopic(format!("topic {topic} does not exist")))?;
    let p = t.partitions.get(partition as usize).ok_or_else(|| {
        Error::UnknownPartition(format!(
            "topic {topic} has {} partitions; no partition {partition}",
            t.partitions.len()
        ))
    })?;
    if p.target.is_some() {
        return Err(Error::ReassignmentInProgress(format!(
            "{topic}-{partition} is being reassigned"
        )));
    }
    let mut brokers: Vec<u64> = p.replicas.iter().map(|r| r.broker).collect();
    let Some(at) = brokers.iter().position(|b| *b == broker) else {
        return Err(Error::InvalidRequest(format!(
            "broker {broker} is not a replica of {topic}-{partition} (replicas {brokers:?})"
        )));
    };
    let to = brokers.remove(at);
    brokers.insert(0, to);
    reassign(topic, partition, brokers)
}

/// What a heartbeat tells the controller leader.
pub struct Heard {
    /// The partitions the broker leads, for the live view.
    pub leading: Vec<PartitionLive>,
    /// A registration to propose: the broker is new, moved, or on a new disk.
    pub register: Option<Command>,
    /// Reassignments whose leader reports the target as its settled voters:
    /// (group, voters, partition name).
    pub complete: Vec<(u64, Vec<u64>, String)>,
    /// The batch format every registered broker now reads, to let brokers write.
    pub finalize: Option<Command>,
}

/// Reads a broker heartbeat against the controller state.
pub fn heartbeat(state: &ControllerState, req: &internal::BrokerHeartbeatRequest) -> Heard {
    let leading = req
        .leading
        .iter()
        .map(|p| PartitionLive {
            group: p.group,
            leader: req.broker_id,
            term: p.term,
            in_sync: p.in_sync.clone(),
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
        })
        .collect();
    let mut complete = Vec::new();
    for r in req.leading.iter().filter(|r| !r.voters.is_empty()) {
        let Some((t, i)) = state.partition_of_group(r.group) else { continue };
        let Some(target) = &t.partitions[i as usize].target else { continue };
        let mut ids: Vec<u64> = target.iter().map(|r| r.replica).collect();
        ids.sort_unstable();
        if ids == r.voters {
            complete.push((r.group, ids, format!("{}-{i}", t.name)));
        }
    }
    let record = BrokerRecord {
        id: req.broker_id,
        address: req.address.clone(),
        rack: (!req.rack.is_empty()).then(|| req.rack.clone()),
        incarnation: req.incarnation,
        // Brokers from before formats were reported send 0: they read format 1 only.
        batch_format: req.batch_format.max(1),
        listeners: req.listeners.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        controller_replica: req.controller_replica,
        draining: state.brokers.get(&req.broker_id).is_some_and(|b| b.draining),
    };
    let register = (state.brokers.get(&req.broker_id) != Some(&record)
        || state.cluster_id.is_empty())
    .then(|| Command::RegisterBroker {
        broker: record,
        cluster_id: format!("{:016x}", rand::random::<u64>()),
    });
    let finalize = register
        .is_none()
        .then(|| state.batch_format_to_finalize())
        .flatten()
        .map(|format| Command::FinalizeBatchFormat { format });
    Heard { leading, register, complete, finalize }
}

/// Creates `__consumer_offsets` once the cluster has an id and enough live brokers for its
/// replication factor (capped by the founding brokers).
pub fn offsets_topic(
    state: &ControllerState,
    live: &[u64],
    founding: usize,
    groups: &GroupsConfig,
) -> Option<Command> {
    if state.topics.contains_key(OFFSETS_TOPIC) || state.cluster_id.is_empty() {
        return None;
    }
    let rf = (groups.offsets_topic_replication_factor as usize).min(founding).max(1);
    if live.len() < rf {
        return None;
    }
    let placement = placement::place(state, live, groups.offsets_topic_partitions, rf);
    Some(Command::CreateTopic {
        name: OFFSETS_TOPIC.to_string(),
        placement,
        configs: BTreeMap::new(),
        internal: true,
    })
}
