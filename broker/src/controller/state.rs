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

use crate::acl::Acl;
use crate::auth::Hash;
use crate::auth::scram::Credential;
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
    /// Identity of the broker's data directory, drawn when it is first created. A new value
    /// means the broker lost its disk: its replicas are gone and get replaced.
    #[serde(default)]
    pub incarnation: u64,
    /// The newest partition batch format the broker reads (registrations written before
    /// formats were reported are 1).
    #[serde(default = "legacy_format")]
    pub batch_format: u32,
    /// Advertised addresses of its named listeners, by name (see
    /// [`crate::config::listeners`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, String>,
    /// Its controller replica id (0: none reported yet): every broker hosts one, a voter or a
    /// learner of the controller group.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub controller_replica: u64,
    /// Being decommissioned: its replicas move away, nothing new is placed on it, and it is
    /// removed once it holds none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BrokerRecord {
    /// Broker `id` at `h:id`, incarnation and controller replica `id`, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(id: u64) -> BrokerRecord {
        BrokerRecord {
            id,
            address: format!("h:{id}"),
            rack: None,
            incarnation: id,
            batch_format: 2,
            listeners: BTreeMap::new(),
            controller_replica: id,
            draining: false,
        }
    }

    /// Its address for a client of the named `listener` (`None`: the internal one); a broker
    /// without that listener is shown at its internal address.
    pub fn address_on(&self, listener: Option<&str>) -> &str {
        listener.and_then(|l| self.listeners.get(l)).unwrap_or(&self.address)
    }
}

fn legacy_format() -> u32 {
    1
}

/// One replica of a partition: the broker hosting it and its Raft replica id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub broker: u64,
    pub replica: u64,
    /// The broker's incarnation when the replica was assigned: a broker hosts only replicas
    /// of its current incarnation, so a wiped disk never comes back under an old replica id.
    #[serde(default)]
    pub incarnation: u64,
}

/// A partition's Raft group and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub group: u64,
    /// The voters, preferred leader first.
    pub replicas: Vec<Replica>,
    /// While a reassignment is under way: the replicas it moves to (preferred leader first).
    /// The partition leader adds the new ones as learners, then makes exactly these the
    /// voters; the controller completes the move when the leader reports that membership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<Replica>>,
    /// Completed reassignments; 0 while the founding replicas are the voters (only then may
    /// a replica initialise the group).
    #[serde(default)]
    pub epoch: u32,
    /// Replica ids removed by reassignments: a broker holding data of one deletes it. Ids are
    /// never reused, so a stale view of this list never deletes a live replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<u64>,
}

impl PartitionRecord {
    /// The replica `broker` hosts: its replica in the target of a reassignment under way
    /// (which replaces one lost with a wiped disk), else its voter.
    pub fn assigned(&self, broker: u64) -> Option<Replica> {
        self.target
            .iter()
            .flatten()
            .chain(self.replicas.iter())
            .find(|r| r.broker == broker)
            .copied()
    }
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
    /// Starts moving partition `partition` of topic `name` to `brokers` (first = preferred
    /// leader). The same brokers in another order only change the preferred leader.
    ReassignPartition { name: String, partition: u32, brokers: Vec<u64> },
    /// Ends the reassignment of `group`: its leader reported `voters` (replica ids, sorted)
    /// as the settled Raft voters, and they are the target's.
    CompleteReassignment { group: u64, voters: Vec<u64> },
    /// Lets brokers write partition batches in `format` from now on: every registered
    /// broker reads it. Proposed only then, so a controller replica old enough not to know
    /// this command never sees it; refused if a broker registered meanwhile that does not.
    FinalizeBatchFormat { format: u32 },
    /// Sets `user`'s SCRAM credentials for the hashes given (others it has stay). With
    /// `if_absent`, only if the user has none yet (the bootstrap user).
    SetScramCredentials {
        user: String,
        credentials: BTreeMap<Hash, Credential>,
        #[serde(default)]
        if_absent: bool,
    },
    /// Deletes `user`'s SCRAM credentials for `hashes`; a user with none left is gone.
    DeleteScramCredentials { user: String, hashes: Vec<Hash> },
    /// Adds ACLs (validated by the proposer; ones already there stay once).
    CreateAcls { acls: Vec<Acl> },
    /// Removes exactly these ACLs (the proposer chose them by filters); absent ones are
    /// skipped.
    DeleteAcls { acls: Vec<Acl> },
    /// Starts decommissioning `broker`: it is drained of its replicas, then removed.
    DecommissionBroker { broker: u64 },
    /// Removes a drained broker for good: refused while any replica is (or moves) there. Its
    /// id is never registered again.
    RemoveBroker { broker: u64 },
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
    /// The partition batch format brokers write (0 and 1: rafka's protobuf batch; 2: Kafka's
    /// RecordBatch v2). Set by the founding registration — a new cluster starts at its
    /// founders' format — and raised by `FinalizeBatchFormat`; it never goes down.
    #[serde(default)]
    batch_format: u32,
    /// Users and their SCRAM credentials (never passwords).
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<Hash, Credential>>,
    /// The ACLs, checked while authentication is on.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<Acl>,
    /// Brokers removed by decommissioning; their heartbeats are refused.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub decommissioned: BTreeSet<u64>,
    /// Raft index of the last applied entry.
    pub version: u64,
}

impl ControllerState {
    /// The partition batch format brokers write now (at least 1).
    pub fn batch_format(&self) -> u32 {
        self.batch_format.max(1)
    }

    /// The format every registered broker reads and the cluster does not write yet: what
    /// the controller leader should finalize.
    pub fn batch_format_to_finalize(&self) -> Option<u32> {
        let readable = self.brokers.values().map(|b| b.batch_format).min()?;
        (readable > self.batch_format()).then_some(readable)
    }

    /// Applies `cmd` (the entry at `index`).
    pub fn apply(&mut self, index: u64, cmd: Command) -> Outcome {
        self.version = index;
        match cmd {
            Command::RegisterBroker { mut broker, cluster_id } => {
                if self.decommissioned.contains(&broker.id) {
                    return refused(
                        ErrorCode::InvalidRequest,
                        format!("broker {} was decommissioned; its id is not reused", broker.id),
                    );
                }
                broker.draining |= self.brokers.get(&broker.id).is_some_and(|b| b.draining);
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                    self.batch_format = broker.batch_format;
                }
                let known = self.brokers.get(&broker.id).map(|b| b.incarnation);
                if known.is_some_and(|i| i != broker.incarnation) {
                    self.replace_lost_replicas(broker.id, broker.incarnation);
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
            Command::ReassignPartition { name, partition, brokers } => {
                self.reassign(&name, partition, brokers)
            }
            Command::FinalizeBatchFormat { format } => {
                if let Some(b) = self.brokers.values().find(|b| b.batch_format < format) {
                    return refused(
                        ErrorCode::UnsupportedVersion,
                        format!("broker {} reads batch format {} only", b.id, b.batch_format),
                    );
                }
                self.batch_format = self.batch_format.max(format);
                Outcome::Done
            }
            Command::SetScramCredentials { user, credentials, if_absent } => {
                if if_absent && self.users.contains_key(&user) {
                    return Outcome::Done;
                }
                self.users.entry(user).or_default().extend(credentials);
                Outcome::Done
            }
            Command::DeleteScramCredentials { user, hashes } => {
                if let Some(have) = self.users.get_mut(&user) {
                    have.retain(|h, _| !hashes.contains(h));
                    if have.is_empty() {
                        self.users.remove(&user);
                    }
                }
                Outcome::Done
            }
            Command::CreateAcls { acls } => {
                self.acls.extend(acls);
                Outcome::Done
            }
            Command::DeleteAcls { acls } => {
                for a in &acls {
                    self.acls.remove(a);
                }
                Outcome::Done
            }
            Command::DecommissionBroker { broker } => match self.brokers.get_mut(&broker) {
                Some(b) => {
                    b.draining = true;
                    Outcome::Done
                }
                None => refused(ErrorCode::InvalidRequest, format!("no broker {broker}")),
            },
            Command::RemoveBroker { broker } => {
                let held = self.topics.values().flat_map(|t| &t.partitions).any(|p| {
                    p.replicas.iter().chain(p.target.iter().flatten()).any(|r| r.broker == broker)
                });
                if held {
                    return refused(
                        ErrorCode::InvalidRequest,
                        format!("broker {broker} still holds replicas"),
                    );
                }
                self.brokers.remove(&broker);
                self.decommissioned.insert(broker);
                Outcome::Done
            }
            Command::CompleteReassignment { group, voters } => {
                let Some(p) = self.partition_mut(group) else {
                    return refused(ErrorCode::UnknownPartition, format!("no group {group}"));
                };
                let Some(target) = &p.target else {
                    return refused(ErrorCode::InvalidRequest, "no reassignment under way");
                };
                let mut ids: Vec<u64> = target.iter().map(|r| r.replica).collect();
                ids.sort_unstable();
                if ids != voters {
                    return refused(
                        ErrorCode::InvalidRequest,
                        format!("voters {voters:?} are not the target {ids:?}"),
                    );
                }
                let target = p.target.take().expect("checked");
                let gone = p.replicas.iter().filter(|r| !ids.contains(&r.replica));
                p.removed.extend(gone.map(|r| r.replica));
                p.replicas = target;
                p.epoch += 1;
                Outcome::Done
            }
            Command::InitProducer { name } => {
                if !name.is_empty()
                    && let Some((id, epoch)) = self.producers.get_mut(&name)
                {
                    // Epochs are int16 in Kafka's batches and protocol: past the last one
                    // the name gets a new producer id, as in Kafka.
                    if *epoch >= i32::from(i16::MAX) {
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

    fn partition_mut(&mut self, group: u64) -> Option<&mut PartitionRecord> {
        self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()).find(|p| p.group == group)
    }

    fn fresh_replica(&mut self, broker: u64) -> Replica {
        self.next_replica_id = self.next_replica_id.max(FIRST_PARTITION_REPLICA_ID);
        let replica = self.next_replica_id;
        self.next_replica_id += 1;
        let incarnation = self.brokers.get(&broker).map_or(0, |b| b.incarnation);
        Replica { broker, replica, incarnation }
    }

    fn reassign(&mut self, name: &str, partition: u32, brokers: Vec<u64>) -> Outcome {
        let Some(t) = self.topics.get(name) else {
            return refused(ErrorCode::UnknownTopic, format!("topic {name} does not exist"));
        };
        let Some(p) = t.partitions.get(partition as usize) else {
            return refused(
                ErrorCode::UnknownPartition,
                format!("topic {name} has {} partitions", t.partitions.len()),
            );
        };
        let mut distinct = brokers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if brokers.is_empty() || distinct.len() != brokers.len() {
            return refused(
                ErrorCode::InvalidReplicationFactor,
                format!("replica brokers must be distinct and at least one, got {brokers:?}"),
            );
        }
        if let Some(b) = brokers.iter().find(|b| !self.brokers.contains_key(b)) {
            return refused(
                ErrorCode::InvalidReplicationFactor,
                format!("broker {b} is not registered"),
            );
        }
        if p.target.is_some() {
            return refused(
                ErrorCode::ReassignmentInProgress,
                format!("{name}-{partition} is already being reassigned"),
            );
        }
        let mut current: Vec<u64> = p.replicas.iter().map(|r| r.broker).collect();
        current.sort_unstable();
        let old = p.replicas.clone();
        let target: Vec<Replica> = brokers
            .iter()
            .map(|b| match old.iter().find(|r| r.broker == *b) {
                Some(r) => *r,
                None => self.fresh_replica(*b),
            })
            .collect();
        let p = &mut self.topics.get_mut(name).expect("checked").partitions[partition as usize];
        if current == distinct {
            // Only the preferred leader changes; the voters stay.
            p.replicas = target;
        } else {
            p.target = Some(target);
        }
        Outcome::Done
    }

    /// Broker `broker` came back with a new data directory: each of its replicas of an older
    /// incarnation is gone, so it is replaced by a fresh replica on the same broker (added as
    /// a learner, then swapped in for the lost voter by the partition leader).
    fn replace_lost_replicas(&mut self, broker: u64, incarnation: u64) {
        let groups: Vec<u64> = self
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.assigned(broker).is_some_and(|r| r.incarnation != incarnation))
            .map(|p| p.group)
            .collect();
        for group in groups {
            let p = self.partition_mut(group).expect("listed");
            let mut target = p.target.clone().unwrap_or_else(|| p.replicas.clone());
            // `fresh_replica` reads the broker record, which is updated after this call.
            self.next_replica_id = self.next_replica_id.max(FIRST_PARTITION_REPLICA_ID);
            for r in target.iter_mut().filter(|r| r.broker == broker) {
                r.replica = self.next_replica_id;
                r.incarnation = incarnation;
                self.next_replica_id += 1;
            }
            let p = self.partition_mut(group).expect("listed");
            if !target.iter().any(|r| r.broker == broker) {
                // Being moved off this broker anyway: the move goes on without it.
                continue;
            }
            p.target = Some(target);
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
                let replicas =
                    brokers.into_iter().map(|broker| self.fresh_replica(broker)).collect();
                PartitionRecord { group, replicas, target: None, epoch: 0, removed: Vec::new() }
            })
            .collect()
    }

    /// Every user topic and its partition count: what assignors distribute.
    pub fn user_topic_partitions(&self) -> BTreeMap<String, u32> {
        self.topics
            .values()
            .filter(|t| !t.internal)
            .map(|t| (t.name.clone(), t.partitions.len() as u32))
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

fn refused(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Outcome::Refused { code, message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: u64) -> Command {
        Command::RegisterBroker { broker: BrokerRecord::for_tests(id), cluster_id: "c".into() }
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

    fn topic(s: &mut ControllerState, name: &str, placement: Vec<Vec<u64>>) {
        let cmd = Command::CreateTopic {
            name: name.into(),
            placement,
            configs: BTreeMap::new(),
            internal: false,
        };
        assert!(matches!(s.apply(s.version + 1, cmd), Outcome::TopicCreated { .. }));
    }

    fn reassign(s: &mut ControllerState, name: &str, brokers: Vec<u64>) -> Outcome {
        let cmd = Command::ReassignPartition { name: name.into(), partition: 0, brokers };
        s.apply(s.version + 1, cmd)
    }

    fn code(o: Outcome) -> ErrorCode {
        match o {
            Outcome::Refused { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_reassignment_adds_fresh_replicas_and_completes_on_the_target_voters() {
        let mut s = ControllerState::default();
        for b in 1..=4 {
            s.apply(b, broker(b));
        }
        topic(&mut s, "t", vec![vec![1, 2, 3]]);
        let before = s.topics["t"].partitions[0].clone();
        assert_eq!(reassign(&mut s, "t", vec![4, 2, 3]), Outcome::Done);
        let p = s.topics["t"].partitions[0].clone();
        assert_eq!(p.replicas, before.replicas, "voters change only on completion");
        let target = p.target.clone().unwrap();
        assert_eq!(target[1..], before.replicas[1..], "staying brokers keep their replica");
        assert_eq!(target[0].broker, 4);
        assert!(before.replicas.iter().all(|r| r.replica != target[0].replica));
        assert_eq!(target[0].incarnation, 4);
        assert_eq!(p.assigned(4), Some(target[0]));
        assert_eq!(p.assigned(1), Some(before.replicas[0]), "still hosted until completion");

        let in_progress = reassign(&mut s, "t", vec![1, 2, 3]);
        assert_eq!(code(in_progress), ErrorCode::ReassignmentInProgress);
        let mut ids: Vec<u64> = target.iter().map(|r| r.replica).collect();
        ids.sort_unstable();
        let wrong = Command::CompleteReassignment { group: p.group, voters: vec![ids[0]] };
        assert_eq!(code(s.apply(s.version + 1, wrong)), ErrorCode::InvalidRequest);
        let done = Command::CompleteReassignment { group: p.group, voters: ids };
        assert_eq!(s.apply(s.version + 1, done.clone()), Outcome::Done);
        let p = &s.topics["t"].partitions[0];
        assert_eq!((&p.replicas, &p.target, p.epoch), (&target, &None, 1));
        assert_eq!(p.removed, vec![before.replicas[0].replica]);
        assert_eq!(p.assigned(1), None);
        // Completing twice is refused and changes nothing.
        let again = s.apply(s.version + 1, done);
        assert_eq!(code(again), ErrorCode::InvalidRequest);
        assert_eq!(s.topics["t"].partitions[0].epoch, 1);
    }

    #[test]
    fn the_same_brokers_in_another_order_only_move_the_preferred_leader() {
        let mut s = ControllerState::default();
        for b in 1..=3 {
            s.apply(b, broker(b));
        }
        topic(&mut s, "t", vec![vec![1, 2, 3]]);
        let before = s.topics["t"].partitions[0].replicas.clone();
        assert_eq!(reassign(&mut s, "t", vec![3, 1, 2]), Outcome::Done);
        let p = &s.topics["t"].partitions[0];
        assert_eq!(p.target, None);
        assert_eq!(p.replicas, vec![before[2], before[0], before[1]]);
    }

    #[test]
    fn bad_reassignments_are_refused_and_change_nothing() {
        let mut s = ControllerState::default();
        for b in 1..=3 {
            s.apply(b, broker(b));
        }
        topic(&mut s, "t", vec![vec![1, 2]]);
        let before = s.topics.clone();
        let cases = [
            ("t", 0, vec![], ErrorCode::InvalidReplicationFactor),
            ("t", 0, vec![1, 1], ErrorCode::InvalidReplicationFactor),
            ("t", 0, vec![1, 9], ErrorCode::InvalidReplicationFactor),
            ("t", 3, vec![1, 2], ErrorCode::UnknownPartition),
            ("u", 0, vec![1, 2], ErrorCode::UnknownTopic),
        ];
        for (name, partition, brokers, want) in cases {
            let cmd = Command::ReassignPartition { name: name.into(), partition, brokers };
            assert_eq!(code(s.apply(s.version + 1, cmd)), want);
        }
        assert_eq!(s.topics, before);
    }

    #[test]
    fn a_new_incarnation_replaces_the_brokers_replicas_with_fresh_ones() {
        let mut s = ControllerState::default();
        for b in 1..=3 {
            s.apply(b, broker(b));
        }
        topic(&mut s, "t", vec![vec![1, 2, 3], vec![1, 3]]);
        let before = s.topics["t"].partitions.clone();
        let same = broker(2);
        s.apply(s.version + 1, same);
        assert_eq!(s.topics["t"].partitions, before, "the same disk changes nothing");

        let wiped = Command::RegisterBroker {
            broker: BrokerRecord { incarnation: 77, ..BrokerRecord::for_tests(2) },
            cluster_id: "c".into(),
        };
        s.apply(s.version + 1, wiped);
        let p = &s.topics["t"].partitions;
        assert_eq!(p[1], before[1], "a partition without broker 2 is untouched");
        let target = p[0].target.clone().expect("a replacement under way");
        assert_eq!(p[0].replicas, before[0].replicas);
        assert_eq!((target[0], target[2]), (before[0].replicas[0], before[0].replicas[2]));
        assert_eq!((target[1].broker, target[1].incarnation), (2, 77));
        assert_ne!(target[1].replica, before[0].replicas[1].replica, "never the lost id");
        assert_eq!(s.brokers[&2].incarnation, 77);
    }
}
