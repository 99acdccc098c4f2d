//! Topics, partitions, configs, metadata and the cluster, answered on the controller leader
//! (every other broker answers `NOT_CONTROLLER` pointing at it). Decisions — validation,
//! placement — are the controller's ([`crate::controller::plan`]); this module gathers what
//! they need, proposes, and reads the answers out of the controller state and live view.

use std::collections::BTreeMap;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::Outcome;
use crate::controller::plan;
use crate::controller::state::TopicRecord;
use crate::error::Error;
use crate::error::Result;

pub use crate::controller::plan::NewTopic;

/// One broker as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub broker_id: u64,
    pub address: String,
    pub rack: Option<String>,
    pub alive: bool,
    /// The newest partition batch format the broker reads.
    pub batch_format: u32,
    /// Being decommissioned.
    pub draining: bool,
    /// Replicas it holds.
    pub replicas: u32,
}

/// One partition: its replicas, and what its leader last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// `None`: no live leader known.
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    pub in_sync: Vec<u64>,
    /// -1: unknown.
    pub high_watermark: i64,
    /// -1: unknown.
    pub log_start_offset: i64,
    /// Brokers it is being moved to; empty unless a reassignment is under way.
    pub target_replicas: Vec<u64>,
    /// The leader's term as Kafka's int32 leader epoch; -1 while unknown.
    pub leader_epoch: i32,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: u64,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// A topic with its effective configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub topic: TopicMetadata,
    pub configs: BTreeMap<String, String>,
}

/// The answer to a metadata request.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub brokers: Vec<BrokerInfo>,
    /// One per topic asked for (each refused on its own), or every topic.
    pub topics: Vec<(String, Result<TopicMetadata>)>,
    pub controller_id: u64,
    pub cluster_id: String,
}

/// The cluster's identity and brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub controller_id: u64,
    pub brokers: Vec<BrokerInfo>,
    /// The partition batch format brokers write.
    pub batch_format: u32,
    /// Brokers removed by decommissioning.
    pub decommissioned: Vec<u64>,
    /// Brokers holding a controller voter.
    pub controller_voters: Vec<u64>,
}

/// `NOT_CONTROLLER` unless this broker leads the controller.
fn on_controller(b: &Broker) -> Result<()> {
    if b.controller().is_leader() { Ok(()) } else { Err(b.controller().not_controller()) }
}

fn cluster_view(b: &Broker) -> (std::sync::Arc<crate::controller::ControllerState>, Vec<u64>) {
    let state = b.state();
    let live = b.live_brokers(&state);
    (state, live)
}

/// Creates a topic; returns its id.
pub async fn create_topic(b: &Broker, req: NewTopic) -> Result<u64> {
    on_controller(b)?;
    let (state, live) = cluster_view(b);
    let name = req.name.clone();
    let c = plan::Cluster { state: &state, live: &live, founding: b.founding_brokers() };
    let cmd = plan::create_topic(&c, &b.config().topic_defaults, req)?;
    match b.controller().propose(cmd).await? {
        Outcome::TopicCreated { topic_id } => {
            tracing::info!(topic = %name, "topic created");
            Ok(topic_id)
        }
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Checks a topic creation against this broker's copy of the controller state without
/// creating it (Kafka's `validate_only`); answers the partition count and replication
/// factor the topic would get.
pub fn validate_new_topic(b: &Broker, req: NewTopic) -> Result<(u32, u32)> {
    let (state, live) = cluster_view(b);
    let c = plan::Cluster { state: &state, live: &live, founding: b.founding_brokers() };
    match plan::create_topic(&c, &b.config().topic_defaults, req)? {
        Command::CreateTopic { placement, .. } => {
            Ok((placement.len() as u32, placement.first().map_or(0, Vec::len) as u32))
        }
        other => Err(Error::Internal(format!("unexpected command {other:?}"))),
    }
}

/// Checks a partition-count change as [`validate_new_topic`] does.
pub fn validate_partitions(b: &Broker, name: String, total: u32) -> Result<()> {
    let (state, live) = cluster_view(b);
    let c = plan::Cluster { state: &state, live: &live, founding: b.founding_brokers() };
    plan::add_partitions(&c, name, total).map(|_| ())
}

/// Checks a topic config replacement as [`validate_new_topic`] does.
pub fn validate_topic_config(
    b: &Broker,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<()> {
    if !b.state().topics.contains_key(name) {
        return Err(unknown_topic(name));
    }
    plan::alter_topic_config(&b.config().topic_defaults, name.to_string(), configs.clone())
        .map(|_| ())
}

/// Deletes a user topic.
pub async fn delete_topic(b: &Broker, name: String) -> Result<()> {
    on_controller(b)?;
    b.controller().propose(plan::delete_topic(name.clone())?).await?;
    tracing::info!(topic = %name, "topic deleted");
    Ok(())
}

/// Grows a topic to `total` partitions.
pub async fn create_partitions(b: &Broker, name: String, total: u32) -> Result<()> {
    on_controller(b)?;
    let (state, live) = cluster_view(b);
    let c = plan::Cluster { state: &state, live: &live, founding: b.founding_brokers() };
    b.controller().propose(plan::add_partitions(&c, name, total)?).await.map(|_| ())
}

/// Replaces a topic's configs.
pub async fn alter_topic_config(
    b: &Broker,
    name: String,
    configs: BTreeMap<String, String>,
) -> Result<()> {
    on_controller(b)?;
    let cmd = plan::alter_topic_config(&b.config().topic_defaults, name, configs)?;
    b.controller().propose(cmd).await.map(|_| ())
}

/// Moves a partition to `brokers`.
pub async fn reassign(b: &Broker, topic: String, partition: u32, brokers: Vec<u64>) -> Result<()> {
    on_controller(b)?;
    b.controller().propose(plan::reassign(topic, partition, brokers)?).await.map(|_| ())
}

/// Makes `broker` the preferred leader of a partition.
pub async fn transfer_leadership(
    b: &Broker,
    topic: String,
    partition: u32,
    broker: u64,
) -> Result<()> {
    on_controller(b)?;
    let cmd = plan::transfer_leadership(&b.state(), topic, partition, broker)?;
    b.controller().propose(cmd).await.map(|_| ())
}

/// A topic as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    pub name: String,
    pub topic_id: u64,
    pub partitions: u32,
    pub internal: bool,
}

/// Every topic (internal ones too when asked).
pub fn list_topics(b: &Broker, include_internal: bool) -> Result<Vec<TopicListing>> {
    on_controller(b)?;
    let state = b.state();
    Ok(state
        .topics
        .values()
        .filter(|t| include_internal || !t.internal)
        .map(|t| TopicListing {
            name: t.name.clone(),
            topic_id: t.id,
            partitions: t.partitions.len() as u32,
            internal: t.internal,
        })
        .collect())
}

/// One topic with its configs.
pub fn describe_topic(b: &Broker, name: &str) -> Result<TopicDescription> {
    on_controller(b)?;
    let state = b.state();
    let t = state.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    Ok(TopicDescription { topic: topic_metadata(b, t), configs: b.topic_config(t).to_map() })
}

/// Brokers and topics (all of them when `topics` is empty).
pub fn metadata(b: &Broker, topics: &[String]) -> Result<Metadata> {
    on_controller(b)?;
    let state = b.state();
    let topics = if topics.is_empty() {
        state.topics.values().map(|t| (t.name.clone(), Ok(topic_metadata(b, t)))).collect()
    } else {
        topics
            .iter()
            .map(|name| {
                let t = state.topics.get(name).map(|t| topic_metadata(b, t));
                (name.clone(), t.ok_or_else(|| unknown_topic(name)))
            })
            .collect()
    };
    Ok(Metadata {
        brokers: brokers(b),
        topics,
        controller_id: b.id(),
        cluster_id: state.cluster_id.clone(),
    })
}

/// The cluster id, controller and brokers.
pub fn describe_cluster(b: &Broker) -> Result<ClusterDescription> {
    on_controller(b)?;
    Ok(ClusterDescription {
        cluster_id: b.state().cluster_id.clone(),
        controller_id: b.id(),
        brokers: brokers(b),
        batch_format: b.state().batch_format(),
        decommissioned: b.state().decommissioned.iter().copied().collect(),
        controller_voters: controller_voters(b),
    })
}

fn unknown_topic(name: &str) -> Error {
    Error::UnknownTopic(format!("topic {name} does not exist"))
}

fn brokers(b: &Broker) -> Vec<BrokerInfo> {
    let state = b.state();
    let mut held: BTreeMap<u64, u32> = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            *held.entry(r.broker).or_default() += 1;
        }
    }
    state
        .brokers
        .values()
        .map(|r| BrokerInfo {
            broker_id: r.id,
            address: r.address.clone(),
            rack: r.rack.clone(),
            alive: b.is_alive(r.id),
            batch_format: r.batch_format,
            draining: r.draining,
            replicas: held.get(&r.id).copied().unwrap_or(0),
        })
        .collect()
}

/// Brokers holding a voter of the controller group.
fn controller_voters(b: &Broker) -> Vec<u64> {
    let Some(c) = b.controller().group() else { return Vec::new() };
    let membership = c.status().membership;
    let voters = c.settled_voters().unwrap_or_default();
    let mut out: Vec<u64> =
        voters.iter().filter_map(|r| membership.get_node(r)).map(|n| n.broker_id).collect();
    out.sort_unstable();
    out
}

/// Starts decommissioning `broker` (see [`crate::controller::members`]).
pub async fn decommission(b: &Broker, broker: u64) -> Result<()> {
    on_controller(b)?;
    crate::controller::members::check_decommission(&b.state(), broker)?;
    b.controller().propose(Command::DecommissionBroker { broker }).await.map(|_| ())
}

/// Starts rebalancing moves; (started now, moving in all).
pub async fn rebalance(b: &Broker) -> Result<(u32, u32)> {
    on_controller(b)?;
    let state = b.state();
    let live = b.live_brokers(&state);
    let moves = crate::controller::members::rebalance_moves(&state, &live);
    let mut started = 0;
    for cmd in moves {
        match b.controller().propose(cmd).await {
            Ok(_) => started += 1,
            Err(Error::ReassignmentInProgress(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let moving = b
        .state()
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.target.is_some())
        .count() as u32;
    Ok((started, moving))
}

fn topic_metadata(b: &Broker, t: &TopicRecord) -> TopicMetadata {
    TopicMetadata {
        name: t.name.clone(),
        topic_id: t.id,
        internal: t.internal,
        partitions: (0..t.partitions.len()).map(|i| partition_info(b, t, i)).collect(),
    }
}

/// What the controller leader knows of a partition's replicas and leader.
fn partition_info(b: &Broker, t: &TopicRecord, i: usize) -> PartitionInfo {
    let p = &t.partitions[i];
    let live = b.live().partition(p.group).filter(|l| b.is_alive(l.leader));
    PartitionInfo {
        partition: i as u32,
        leader: live.as_ref().map(|l| l.leader),
        replicas: p.replicas.iter().map(|r| r.broker).collect(),
        in_sync: live.as_ref().map(|l| l.in_sync.clone()).unwrap_or_default(),
        high_watermark: live.as_ref().map_or(-1, |l| l.high_watermark),
        log_start_offset: live.as_ref().map_or(-1, |l| l.log_start_offset),
        target_replicas: p.target.iter().flatten().map(|r| r.broker).collect(),
        leader_epoch: live.as_ref().map_or(-1, |l| crate::partition::leader_epoch(l.term)),
    }
}
