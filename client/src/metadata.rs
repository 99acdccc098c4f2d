//! Plain Rust views of cluster metadata, converted from the generated `rafka_proto::v1` types.

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;

/// One broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// The broker's id.
    pub broker_id: u64,
    /// Its client address, `host:port`.
    pub address: String,
    /// Its rack, if configured.
    pub rack: Option<String>,
    /// Whether the controller considers it alive.
    pub alive: bool,
    /// Being decommissioned: its replicas are moving away (cluster description only).
    pub draining: bool,
    /// Replicas it holds (cluster description only; 0 in metadata).
    pub replicas: u32,
}

impl From<v1::BrokerInfo> for BrokerDescription {
    fn from(b: v1::BrokerInfo) -> Self {
        BrokerDescription {
            broker_id: b.broker_id,
            address: b.address,
            rack: b.rack,
            alive: b.alive,
            draining: b.draining,
            replicas: b.replicas,
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition number.
    pub partition: u32,
    /// The leader's broker id; `None` while no leader is elected.
    pub leader: Option<u64>,
    /// Broker ids of all replicas.
    pub replicas: Vec<u64>,
    /// Broker ids of the in-sync replicas.
    pub in_sync: Vec<u64>,
    /// While a reassignment is under way, the broker ids it moves to; empty otherwise.
    pub target_replicas: Vec<u64>,
    /// Offset after the last committed record.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
}

impl From<v1::PartitionInfo> for PartitionDescription {
    fn from(p: v1::PartitionInfo) -> Self {
        PartitionDescription {
            partition: p.partition,
            leader: p.leader,
            replicas: p.replicas,
            in_sync: p.in_sync,
            target_replicas: p.target_replicas,
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
        }
    }
}

/// A topic as the `Metadata` RPC describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub topic_id: u64,
    /// The broker's error for this topic (e.g. `UNKNOWN_TOPIC`), `None` when it is known.
    pub error: Option<ErrorCode>,
    /// Its partitions, in the order the broker sent them.
    pub partitions: Vec<PartitionDescription>,
}

impl From<v1::TopicMetadata> for TopicMetadata {
    fn from(t: v1::TopicMetadata) -> Self {
        let error = t.error.filter(|e| !e.is_ok()).map(|e| e.error_code());
        TopicMetadata {
            name: t.name,
            topic_id: t.topic_id,
            error,
            partitions: t.partitions.into_iter().map(Into::into).collect(),
        }
    }
}

/// The answer of the `Metadata` RPC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Every broker the cluster knows.
    pub brokers: Vec<BrokerDescription>,
    /// The controller's broker id, if one is known.
    pub controller_id: Option<u64>,
    /// The topics asked for (all topics when none were named).
    pub topics: Vec<TopicMetadata>,
}

impl From<v1::MetadataResponse> for ClusterMetadata {
    fn from(m: v1::MetadataResponse) -> Self {
        ClusterMetadata {
            brokers: m.brokers.into_iter().map(Into::into).collect(),
            controller_id: m.controller_id,
            topics: m.topics.into_iter().map(Into::into).collect(),
        }
    }
}

impl ClusterMetadata {
    /// The address of broker `id`.
    pub fn address_of(&self, id: u64) -> Option<&str> {
        self.brokers.iter().find(|b| b.broker_id == id).map(|b| b.address.as_str())
    }

    /// The topic called `name`, if present without error.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name && t.error.is_none())
    }

    /// The partition `partition` of topic `name`.
    pub fn partition(&self, name: &str, partition: u32) -> Option<&PartitionDescription> {
        self.topic(name)?.partitions.iter().find(|p| p.partition == partition)
    }

    /// Points `topic`/`partition` at broker `id` (at `address`), from a `NOT_LEADER` hint. A
    /// broker already known keeps the address Metadata gave: a hint names the broker's
    /// internal address, which a client of another listener may not reach.
    pub(crate) fn set_leader(&mut self, topic: &str, partition: u32, id: u64, address: &str) {
        if !self.brokers.iter().any(|b| b.broker_id == id) {
            self.brokers.push(BrokerDescription {
                broker_id: id,
                address: address.to_string(),
                rack: None,
                alive: true,
                draining: false,
                replicas: 0,
            });
        }
        let t = self.topics.iter_mut().find(|t| t.name == topic && t.error.is_none());
        if let Some(p) = t.and_then(|t| t.partitions.iter_mut().find(|p| p.partition == partition))
        {
            p.leader = Some(id);
        }
    }
}
