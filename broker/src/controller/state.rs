//! The controller's replicated state and its commands: a plain struct, applied in log order
//! on every controller replica. Commands carry everything decided with non-deterministic
//! inputs (replica placement uses liveness), so applying them is deterministic.
//!
//! # Format
//!
//! Commands are JSON (`Command`), one per Raft entry; the state is never stored on its own
//! — a restarted controller replica re-applies its log (metadata changes only: topics,
//! brokers, producer ids; no heartbeats), and snapshots are the state as JSON.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use rafka_proto::ErrorCode;
use serde::Deserialize;
use serde::Serialize;

use crate::topic::TopicConfig;

/// Replica ids of partition groups start here; the controller group's replica ids are the
/// broker ids, below it.
pub const FIRST_PARTITION_REPLICA_ID: u64 = 1 << 32;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: u64,
    /// Client (and Raft) address, `host:port`.
    pub address: String,
    pub rack: Option<String>,
}

/// One replica of a partition: the broker hosting it and its Raft replica id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub broker: u64,
    pub replica: u64,
}

/// A partition's Raft group and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub group: u64,
    pub replicas: Vec<Replica>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: u64,
    pub name: String,
    /// Overrides of the broker's topic defaults, validated.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    pub partitions: Vec<PartitionRecord>,
}

/// A replicated change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Adds a broker or updates its address; sets the cluster id on first use.
    RegisterBroker { broker: BrokerRecord, cluster_id: String },
    /// Creates a topic with the given replica brokers per partition.
    CreateTopic {
        name: String,
        placement: Vec<Vec<u64>>,
        configs: BTreeMap<String, String>,
        internal: bool,
    },
    /// Deletes a topic; its groups are deleted on every broker.
    DeleteTopic { name: String },
    /// Adds partitions, with the given replica brokers each, to an existing topic.
    CreatePartitions { name: String, placement: Vec<Vec<u64>> },
    /// Replaces a topic's config overrides.
    AlterTopicConfig { name: String, configs: BTreeMap<String, String> },
    /// Allocates a producer id (or bumps the epoch of a named producer).
    InitProducer { name: String },
}

/// What applying a command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    TopicCreated {
        topic_id: u64,
    },
    Producer {
        id: i64,
        epoch: i32,
    },
    Refused {
        code: ErrorCode,
        message: String,
    },
    /// Blank and membership entries.
    None,
}

/// The whole controller state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub cluster_id: String,
    pub brokers: BTreeMap<u64, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Groups of deleted topics: brokers delete their data. Group ids are never reused.
    pub deleted_groups: BTreeSet<u64>,
    next_topic_id: u64,
    next_group_id: u64,
    next_replica_id: u64,
    next_producer_id: i64,
    producers: BTreeMap<String, (i64, i32)>,
    /// Raft index of the last applied entry.
    pub version: u64,
}

impl ControllerState {
    /// Applies `cmd` (the entry at `index`).
    pub fn apply(&mut self, index: u64, cmd: Command) -> Outcome {
        self.version = index;
        match cmd {
            Command::RegisterBroker { broker, cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                }
                self.brokers.insert(broker.id, broker);
                Outcome::Done
            }
            Command::CreateTopic { name, placement, configs, internal } => {
                if self.topics.contains_key(&name) {
                    return Outcome::Refused {
                        code: ErrorCode::TopicAlreadyExists,
                        message: format!("topic {name} already exists"),
                    };
                }
                if let Some(b) = placement.iter().flatten().find(|b| !self.brokers.contains_key(b))
                {
                    return Outcome::Refused {
                        code: ErrorCode::InvalidReplicationFactor,
                        message: format!("broker {b} is not registered"),
                    };
                }
                self.next_topic_id = self.next_topic_id.max(1);
                let id = self.next_topic_id;
                self.next_topic_id += 1;
                let partitions = self.new_partitions(placement);
                self.topics
                    .insert(name.clone(), TopicRecord { id, name, configs, internal, partitions });
                Outcome::TopicCreated { topic_id: id }
            }
            Command::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(t) => {
                    self.deleted_groups.extend(t.partitions.iter().map(|p| p.group));
                    Outcome::Done
                }
                None => Outcome::Refused {
                    code: ErrorCode::UnknownTopic,
                    message: format!("topic {name} does not exist"),
                },
            },
            Command::CreatePartitions { name, placement } => {
                if let Some(b) = placement.iter().flatten().find(|b| !self.brokers.contains_key(b))
                {
                    return Outcome::Refused {
                        code: ErrorCode::InvalidReplicationFactor,
                        message: format!("broker {b} is not registered"),
                    };
                }
                if !self.topics.contains_key(&name) {
                    return Outcome::Refused {
                        code: ErrorCode::UnknownTopic,
                        message: format!("topic {name} does not exist"),
                    };
                }
                let added = self.new_partitions(placement);
                self.topics.get_mut(&name).expect("checked").partitions.extend(added);
                Outcome::Done
            }
            Command::AlterTopicConfig { name, configs } => match self.topics.get_mut(&name) {
                Some(t) => {
                    t.configs = configs;
                    Outcome::Done
                }
                None => Outcome::Refused {
                    code: ErrorCode::UnknownTopic,
                    message: format!("topic {name} does not exist"),
                },
            },
            Command::InitProducer { name } => {
                if !name.is_empty()
                    && let Some((id, epoch)) = self.producers.get_mut(&name)
                {
                    if *epoch == i32::MAX {
                        *id = self.next_producer_id;
                        self.next_producer_id += 1;
                        *epoch = 0;
                    } else {
                        *epoch += 1;
                    }
                    return Outcome::Producer { id: *id, epoch: *epoch };
                }
                let id = self.next_producer_id;
                self.next_producer_id += 1;
                if !name.is_empty() {
                    self.producers.insert(name, (id, 0));
                }
                Outcome::Producer { id, epoch: 0 }
            }
        }
    }

    /// Partition records for `placement`, with fresh group and replica ids.
    fn new_partitions(&mut self, placement: Vec<Vec<u64>>) -> Vec<PartitionRecord> {
        self.next_group_id = self.next_group_id.max(1);
        self.next_replica_id = self.next_replica_id.max(FIRST_PARTITION_REPLICA_ID);
        placement
            .into_iter()
            .map(|brokers| {
                let group = self.next_group_id;
                self.next_group_id += 1;
                let replicas = brokers
                    .into_iter()
                    .map(|broker| {
                        let replica = self.next_replica_id;
                        self.next_replica_id += 1;
                        Replica { broker, replica }
                    })
                    .collect();
                PartitionRecord { group, replicas }
            })
            .collect()
    }

    /// The topic and partition record hosting `group`, if it exists.
    pub fn partition_of_group(&self, group: u64) -> Option<(&TopicRecord, u32)> {
        self.topics
            .values()
            .find_map(|t| t.partitions.iter().position(|p| p.group == group).map(|i| (t, i as u32)))
    }

    /// The topic's effective config (defaults overlaid with its overrides).
    pub fn topic_config(
        &self,
        t: &TopicRecord,
        defaults: &crate::config::TopicDefaults,
    ) -> TopicConfig {
        TopicConfig::resolve(defaults, &t.configs)
            .unwrap_or_else(|_| TopicConfig::from_defaults(defaults))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: u64) -> Command {
        Command::RegisterBroker {
            broker: BrokerRecord { id, address: format!("h:{id}"), rack: None },
            cluster_id: "c".into(),
        }
    }

    #[test]
    fn create_delete_and_ids_never_reused() {
        let mut s = ControllerState::default();
        for b in 1..=3 {
            s.apply(b, broker(b));
        }
        let create = |name: &str| Command::CreateTopic {
            name: name.into(),
            placement: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
            internal: false,
        };
        assert_eq!(s.apply(4, create("a")), Outcome::TopicCreated { topic_id: 1 });
        assert!(matches!(
            s.apply(5, create("a")),
            Outcome::Refused { code: ErrorCode::TopicAlreadyExists, .. }
        ));
        let groups_a: Vec<u64> = s.topics["a"].partitions.iter().map(|p| p.group).collect();
        assert_eq!(s.apply(6, Command::DeleteTopic { name: "a".into() }), Outcome::Done);
        assert!(groups_a.iter().all(|g| s.deleted_groups.contains(g)));
        s.apply(7, create("a"));
        let t = &s.topics["a"];
        assert_eq!(t.id, 2);
        assert!(t.partitions.iter().all(|p| !groups_a.contains(&p.group)));
        let mut replica_ids: Vec<u64> =
            t.partitions.iter().flat_map(|p| p.replicas.iter().map(|r| r.replica)).collect();
        replica_ids.dedup();
        assert_eq!(replica_ids.len(), 6);
        assert!(replica_ids.iter().all(|r| *r >= FIRST_PARTITION_REPLICA_ID));
        assert_eq!(s.version, 7);
    }

    #[test]
    fn unregistered_broker_in_placement_is_refused() {
        let mut s = ControllerState::default();
        s.apply(1, broker(1));
        let r = s.apply(
            2,
            Command::CreateTopic {
                name: "t".into(),
                placement: vec![vec![1, 9]],
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        assert!(matches!(r, Outcome::Refused { code: ErrorCode::InvalidReplicationFactor, .. }));
        assert!(s.topics.is_empty());
    }

    #[test]
    fn named_producers_are_fenced_by_epoch() {
        let mut s = ControllerState::default();
        let init = |n: &str| Command::InitProducer { name: n.into() };
        assert_eq!(s.apply(1, init("")), Outcome::Producer { id: 0, epoch: 0 });
        assert_eq!(s.apply(2, init("p")), Outcome::Producer { id: 1, epoch: 0 });
        assert_eq!(s.apply(3, init("p")), Outcome::Producer { id: 1, epoch: 1 });
        assert_eq!(s.apply(4, init("")), Outcome::Producer { id: 2, epoch: 0 });
    }
}
