//! The Raft facts rafka-raft gives its users, in its own types: log ids, memberships,
//! entries as a state machine applies them, snapshot metadata, and [`RaftStatus`], a
//! replica's view of its group. Nothing here names openraft: the conversions to and from
//! openraft's types are crate-private, so an openraft upgrade changes this crate only.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;

use bytes::Bytes;
use bytes::BytesMut;

use crate::types;
use crate::types::App;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;

/// (term, index) of a log entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    /// The term of the leader that created the entry.
    pub term: u64,
    /// Position in the log, from 1 (0: the initial membership of a new group).
    pub index: u64,
}

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "T{}-{}", self.term, self.index)
    }
}

/// Builds a log id from term and index.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId { term, index }
}

impl From<types::LogId> for LogId {
    fn from(l: types::LogId) -> LogId {
        LogId { term: l.committed_leader_id().term, index: l.index }
    }
}

impl From<LogId> for types::LogId {
    fn from(l: LogId) -> types::LogId {
        types::log_id(l.term, l.index)
    }
}

/// A group's membership: its voter set (two during a joint change) and the node of every
/// member, voters and learners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    configs: Vec<BTreeSet<ReplicaId>>,
    nodes: BTreeMap<ReplicaId, ReplicaNode>,
}

impl Membership {
    /// A membership with voter sets `configs` (one, or two while joint) and the nodes of
    /// every member. Fails when a voter has no node.
    pub fn new(
        configs: Vec<BTreeSet<ReplicaId>>,
        nodes: BTreeMap<ReplicaId, ReplicaNode>,
    ) -> Result<Membership, String> {
        if configs.is_empty() || configs.iter().any(|c| c.is_empty()) {
            return Err("a membership needs at least one voter in each voter set".into());
        }
        if let Some(v) = configs.iter().flatten().find(|v| !nodes.contains_key(v)) {
            return Err(format!("voter {v} has no node"));
        }
        Ok(Membership { configs, nodes })
    }

    /// The voter sets: one, or two during a joint change.
    pub fn configs(&self) -> &[BTreeSet<ReplicaId>] {
        &self.configs
    }

    /// Every voter of any voter set.
    pub fn voters(&self) -> BTreeSet<ReplicaId> {
        self.configs.iter().flatten().copied().collect()
    }

    /// Every member (voters and learners) with its node.
    pub fn nodes(&self) -> impl Iterator<Item = (&ReplicaId, &ReplicaNode)> {
        self.nodes.iter()
    }

    /// The node of member `id`.
    pub fn get_node(&self, id: &ReplicaId) -> Option<&ReplicaNode> {
        self.nodes.get(id)
    }

    /// The stored form (the same bytes as a membership entry's payload in the log).
    pub fn encode(&self, buf: &mut BytesMut) {
        crate::codec::encode_membership(&self.to_raft(), buf);
    }

    /// Reads the stored form back.
    pub fn decode(bytes: Bytes) -> io::Result<Membership> {
        crate::codec::decode_membership(bytes).map(|m| Membership::from_raft(&m))
    }

    pub(crate) fn from_raft(m: &types::Membership) -> Membership {
        Membership {
            configs: m.get_joint_config().to_vec(),
            nodes: m.nodes().map(|(id, n)| (*id, n.clone())).collect(),
        }
    }

    pub(crate) fn to_raft(&self) -> types::Membership {
        types::Membership::new(self.configs.clone(), self.nodes.clone())
            .expect("every voter has a node (checked when built)")
    }
}

/// A membership and the log id of the entry that carried it (`None`: the empty initial one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMembership {
    log_id: Option<LogId>,
    membership: Membership,
}

impl StoredMembership {
    /// `membership`, carried by the entry at `log_id`.
    pub fn new(log_id: Option<LogId>, membership: Membership) -> StoredMembership {
        StoredMembership { log_id, membership }
    }

    /// The log id of the entry that carried it.
    pub fn log_id(&self) -> &Option<LogId> {
        &self.log_id
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub(crate) fn from_raft(m: &crate::sm::RaftStoredMembership) -> StoredMembership {
        StoredMembership {
            log_id: m.log_id().map(Into::into),
            membership: Membership::from_raft(m.membership()),
        }
    }

    pub(crate) fn to_raft(&self) -> crate::sm::RaftStoredMembership {
        crate::sm::RaftStoredMembership::new(self.log_id.map(Into::into), self.membership.to_raft())
    }
}

/// What a snapshot covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last entry it includes.
    pub last_log_id: Option<LogId>,
    /// The membership in force at that entry.
    pub last_membership: StoredMembership,
}

impl SnapshotMeta {
    pub(crate) fn from_raft(m: &crate::sm::RaftSnapshotMeta) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: m.last_log_id.map(Into::into),
            last_membership: StoredMembership::from_raft(&m.last_membership),
        }
    }

    pub(crate) fn to_raft(&self) -> crate::sm::RaftSnapshotMeta {
        crate::sm::RaftSnapshotMeta {
            last_log_id: self.last_log_id.map(Into::into),
            last_membership: self.last_membership.to_raft(),
        }
    }
}

/// What a log entry carries.
#[derive(Debug, Clone)]
pub enum EntryPayload<A: App> {
    /// A new leader's first entry of its term.
    Blank,
    /// An application entry.
    Normal(A::Data),
    /// A membership change.
    Membership(Membership),
}

/// A committed log entry, as a state machine applies it or a reader reads it.
#[derive(Debug, Clone)]
pub struct Entry<A: App> {
    pub log_id: LogId,
    pub payload: EntryPayload<A>,
}

impl<A: App> Entry<A> {
    pub(crate) fn from_raft(e: types::Entry<A>) -> Entry<A> {
        let payload = match e.payload {
            openraft::EntryPayload::Blank => EntryPayload::Blank,
            openraft::EntryPayload::Normal(d) => EntryPayload::Normal(d),
            openraft::EntryPayload::Membership(m) => {
                EntryPayload::Membership(Membership::from_raft(&m))
            }
        };
        Entry { log_id: e.log_id.into(), payload }
    }
}

/// A replica's view of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// The current term.
    pub term: u64,
    /// Whether this replica leads the group.
    pub is_leader: bool,
    /// The leader this replica knows of.
    pub leader: Option<ReplicaId>,
    /// Index of the last entry in the local log.
    pub last_log_index: Option<u64>,
    /// The last entry the state machine applied.
    pub last_applied: Option<LogId>,
    /// The last entry this replica knows committed.
    pub committed: Option<LogId>,
    /// On the leader: the last entry committed by a quorum of the group.
    pub cluster_committed: Option<LogId>,
    /// The last entry covered by this replica's snapshot.
    pub snapshot: Option<LogId>,
    /// The newest membership (it may not be committed yet).
    pub membership: Membership,
    /// On the leader: each member's last replicated index (`None`: nothing known yet).
    pub matched: Option<BTreeMap<ReplicaId, Option<u64>>>,
    /// On the leader: members not heard from since their broker was last found up (dead,
    /// or restarted and not yet answering): their matched index predates the restart.
    pub unheard: BTreeSet<ReplicaId>,
}

impl RaftStatus {
    pub(crate) fn from_raft<A: App>(m: &openraft::RaftMetrics<types::TypeConfig<A>>) -> RaftStatus {
        RaftStatus {
            term: m.current_term,
            is_leader: m.state == openraft::ServerState::Leader,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(Into::into),
            committed: m.local_committed.map(Into::into),
            cluster_committed: m.cluster_committed.map(Into::into),
            snapshot: m.snapshot.map(Into::into),
            membership: Membership::from_raft(m.membership_config.membership()),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect()),
            unheard: BTreeSet::new(),
        }
    }

    /// On the leader: the brokers of members whose log trails the leader's by at most
    /// `max_lag` entries and that answered since their broker was last found up, and `me`
    /// (the leader's broker); sorted.
    pub fn in_sync_brokers(&self, me: u64, max_lag: u64) -> Vec<u64> {
        let last = self.last_log_index.unwrap_or(0);
        let mut out = vec![me];
        for (replica, matched) in self.matched.iter().flatten() {
            let Some(node) = self.membership.get_node(replica) else { continue };
            if node.broker_id != me
                && matched.unwrap_or(0) + max_lag >= last
                && !self.unheard.contains(replica)
            {
                out.push(node.broker_id);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// On the leader: whether every replica of `ids` other than `me` has replicated up to
    /// the group's commit index.
    pub fn caught_up(&self, me: ReplicaId, ids: &BTreeSet<ReplicaId>) -> bool {
        let committed = self.cluster_committed.map_or(0, |l| l.index);
        let Some(matched) = &self.matched else { return false };
        ids.iter()
            .all(|id| *id == me || matched.get(id).is_some_and(|m| m.unwrap_or(0) >= committed))
    }

    /// On the leader: whether `replica` has everything in the leader's log.
    pub fn has_whole_log(&self, replica: ReplicaId) -> bool {
        let last = self.last_log_index.unwrap_or(0);
        self.matched
            .as_ref()
            .is_some_and(|m| m.get(&replica).is_some_and(|i| i.unwrap_or(0) >= last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u64) -> ReplicaNode {
        ReplicaNode { broker_id: b, addr: format!("h{b}:1") }
    }

    fn status(matched: &[(u64, Option<u64>)]) -> RaftStatus {
        let nodes = [(1, node(1)), (2, node(2)), (3, node(3)), (4, node(4))].into();
        RaftStatus {
            term: 2,
            is_leader: true,
            leader: Some(1),
            last_log_index: Some(2000),
            last_applied: Some(log_id(2, 2000)),
            committed: Some(log_id(2, 1990)),
            cluster_committed: Some(log_id(2, 1990)),
            snapshot: None,
            membership: Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).unwrap(),
            matched: Some(matched.iter().copied().collect()),
            unheard: BTreeSet::new(),
        }
    }

    #[test]
    fn in_sync_and_caught_up_follow_the_matched_indexes() {
        let s = status(&[(1, Some(2000)), (2, Some(1000)), (3, Some(999)), (4, None)]);
        assert_eq!(s.in_sync_brokers(1, 1000), vec![1, 2]);
        assert!(!s.caught_up(1, &BTreeSet::from([1, 2])));
        let s = status(&[(1, Some(2000)), (2, Some(1990)), (3, Some(2000)), (4, None)]);
        assert!(s.caught_up(1, &BTreeSet::from([1, 2, 3])));
        assert!(!s.caught_up(1, &BTreeSet::from([1, 4])));
        assert!(s.has_whole_log(3) && !s.has_whole_log(2) && !s.has_whole_log(4));
        let restarted = RaftStatus { unheard: BTreeSet::from([3]), ..s.clone() };
        assert_eq!(restarted.in_sync_brokers(1, 1000), vec![1, 2]);
        let follower = RaftStatus { matched: None, ..s };
        assert!(!follower.caught_up(1, &BTreeSet::from([1, 2])));
        assert_eq!(follower.in_sync_brokers(1, 1000), vec![1]);
    }

    #[test]
    fn memberships_round_trip_through_openraft_and_bytes() {
        let nodes: BTreeMap<u64, ReplicaNode> = [(1, node(1)), (2, node(2)), (5, node(3))].into();
        let m =
            Membership::new(vec![BTreeSet::from([1, 2]), BTreeSet::from([2, 5])], nodes).unwrap();
        assert_eq!(Membership::from_raft(&m.to_raft()), m);
        let mut buf = BytesMut::new();
        m.encode(&mut buf);
        assert_eq!(Membership::decode(buf.freeze()).unwrap(), m);
        assert_eq!(m.voters(), BTreeSet::from([1, 2, 5]));
        assert!(Membership::new(vec![BTreeSet::from([9])], BTreeMap::new()).is_err());
        assert!(Membership::new(vec![BTreeSet::new()], BTreeMap::new()).is_err());
        assert!(Membership::new(vec![], BTreeMap::new()).is_err());
        let stored = StoredMembership::new(Some(log_id(3, 7)), m);
        assert_eq!(StoredMembership::from_raft(&stored.to_raft()), stored);
    }
}
