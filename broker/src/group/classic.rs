//! Kafka's classic consumer group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup):
//! the coordinator picks a leader member, passes every member's protocol metadata to it,
//! and hands each member the assignment the leader computed — all opaque bytes, for any
//! protocol type (consumers, Connect workers, Schema Registry, custom assignors).
//!
//! # Model
//!
//! [`ClassicGroup`] is what is replicated (inside the group's `GroupState`): the last
//! completed generation — protocol, leader, members with their metadata and assignments.
//! It is written when the leader's SyncGroup completes a rebalance, and when membership
//! changes without one (the group emptied). [`Runtime`] is the coordinator leader's soft
//! state around it, rebuilt from the replicated group by a new leader (members get a fresh
//! session, as in Kafka): the phase, the members of the generation being formed, the
//! requests parked until the phase ends, and when each member was last heard from.
//!
//! Phases: `Empty` → a join starts `PreparingRebalance`, which ends when every member of the
//! group has (re)joined or the rebalance timeout passes (members that did not rejoin are
//! dropped); the new generation is then `CompletingRebalance` until the leader's SyncGroup
//! brings the assignments, then `Stable`. A join, leave or expiry in `Stable` or
//! `CompletingRebalance` starts a new rebalance. A static member (`group.instance.id`) that
//! comes back under a new member id while the group is stable takes its old place (and
//! assignment) without a rebalance; its old member id is fenced.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use serde::Deserialize;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::Error;

/// One member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClassicMember {
    pub member_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Supported protocols and their metadata, in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// What the leader assigned it in this generation.
    pub assignment: Vec<u8>,
}

impl ClassicMember {
    /// Its metadata of `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// The replicated part of a classic group: its last completed generation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClassicGroup {
    pub protocol_type: String,
    /// The protocol chosen for this generation.
    pub protocol: String,
    pub generation: i32,
    pub leader: String,
    pub members: BTreeMap<String, ClassicMember>,
}

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    /// Kafka's name of the phase, as DescribeGroups and ListGroups show it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// A JoinGroup as the coordinator receives it.
#[derive(Debug, Clone)]
pub struct Join {
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// What a JoinGroup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol — for the leader only.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
    /// The leader must not compute new assignments: a static leader came back to a stable
    /// group, whose assignments stand (JoinGroup v9's `skip_assignment`).
    pub skip_assignment: bool,
}

/// A parked request's answer.
pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// The coordinator leader's soft state of one classic group (see the module docs).
pub struct Runtime {
    pub phase: Phase,
    /// The members of the generation being formed (or of the current one).
    pub group: ClassicGroup,
    joins: HashMap<String, Reply<Joined>>,
    syncs: HashMap<String, Reply<Vec<u8>>>,
    last_seen: HashMap<String, Instant>,
    /// When the join phase ends at the latest.
    deadline: Option<Instant>,
    /// The join phase started from an empty group: it waits out the initial delay for more
    /// members even once everyone known has joined.
    from_empty: bool,
    /// Member ids replaced by a rejoining static member: answered FENCED_INSTANCE_ID.
    fenced: HashMap<String, String>,
}

fn err_unknown(member: &str) -> Error {
    Error::UnknownMemberId(format!("member {member} is not in the group (rejoin)"))
}

fn err_generation(got: i32, current: i32) -> Error {
    Error::IllegalGeneration(format!("generation {got} is not the group's ({current}): rejoin"))
}

fn err_rebalancing() -> Error {
    Error::RebalanceInProgress("the group is rebalancing: rejoin".into())
}

impl Runtime {
    /// The runtime of a replicated group, as a new coordinator leader starts it: every
    /// member's session starts now.
    pub fn from_replicated(group: ClassicGroup, now: Instant) -> Runtime {
        let phase = if group.members.is_empty() { Phase::Empty } else { Phase::Stable };
        let last_seen = group.members.keys().map(|m| (m.clone(), now)).collect();
        Runtime {
            phase,
            group,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            last_seen,
            deadline: None,
            from_empty: false,
            fenced: HashMap::new(),
        }
    }

    fn fenced_check(&self, member_id: &str) -> Result<(), Error> {
        match self.fenced.get(member_id) {
            Some(instance) => Err(Error::FencedInstanceId(format!(
                "static member {instance} rejoined under another member id; {member_id} is fenced"
            ))),
            None => Ok(()),
        }
    }

    /// A JoinGroup. Returns the answer now (`Ok(Some)`), or parks `reply` until the join
    /// phase ends (`Ok(None)`); `new_id` names a new member. `initial_delay` is how long a
    /// group that was empty waits for more members before forming its first generation.
    pub fn join(
        &mut self,
        req: Join,
        new_id: String,
        reply: Reply<Joined>,
        now: Instant,
        initial_delay: Duration,
    ) -> Result<Option<(Joined, Reply<Joined>)>, Error> {
        self.fenced_check(&req.member_id)?;
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return Err(Error::InconsistentGroupProtocol(
                "a join must name a protocol type and at least one protocol".into(),
            ));
        }
        if !self.group.members.is_empty() && req.protocol_type != self.group.protocol_type {
            return Err(Error::InconsistentGroupProtocol(format!(
                "the group's protocol type is {:?}, not {:?}",
                self.group.protocol_type, req.protocol_type
            )));
        }
        let shared =
            self.group.members.values().filter(|m| m.member_id != req.member_id).all(|m| {
                m.protocols.iter().any(|(n, _)| req.protocols.iter().any(|(r, _)| r == n))
            });
        if !shared {
            return Err(Error::InconsistentGroupProtocol(
                "none of the member's protocols is supported by every other member".into(),
            ));
        }
        // A static member coming back under a new member id.
        let static_old = req.group_instance_id.as_ref().and_then(|i| {
            self.group
                .members
                .values()
                .find(|m| m.group_instance_id.as_ref() == Some(i) && m.member_id != req.member_id)
                .map(|m| m.member_id.clone())
        });
        let member_id = match (&static_old, req.member_id.is_empty()) {
            (Some(_), _) | (None, true) => new_id,
            (None, false) => {
                if !self.group.members.contains_key(&req.member_id) {
                    return Err(err_unknown(&req.member_id));
                }
                req.member_id.clone()
            }
        };
        let member = ClassicMember {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Vec::new(),
        };
        self.last_seen.insert(member_id.clone(), now);
        if let Some(old) = static_old {
            let mut m = self.group.members.remove(&old).expect("found above");
            self.last_seen.remove(&old);
            self.fenced.insert(old.clone(), req.group_instance_id.clone().unwrap_or_default());
            if let Some(r) = self.joins.remove(&old) {
                let _ = r.send(Err(Error::FencedInstanceId("replaced by a newer instance".into())));
            }
            let same = m.protocols == member.protocols;
            let was_leader = self.group.leader == old;
            m.member_id = member_id.clone();
            m.protocols = member.protocols.clone();
            self.group.members.insert(member_id.clone(), m);
            if was_leader {
                self.group.leader = member_id.clone();
            }
            if self.phase == Phase::Stable && same {
                // Its old place, its old assignment (SyncGroup returns it), no rebalance. A
                // leader gets the members but must keep the assignments (as in Kafka).
                let mut joined = self.joined(&member_id, was_leader);
                joined.skip_assignment = was_leader;
                return Ok(Some((joined, reply)));
            }
        } else {
            let known = self.group.members.get(&member_id);
            let unchanged = known.is_some_and(|m| m.protocols == member.protocols);
            if self.phase == Phase::Stable && unchanged && self.group.leader != member_id {
                // A follower rejoining with nothing new: the current generation stands.
                let joined = self.joined(&member_id, false);
                return Ok(Some((joined, reply)));
            }
            let assignment = known.map(|m| m.assignment.clone()).unwrap_or_default();
            self.group.members.insert(member_id.clone(), ClassicMember { assignment, ..member });
        }
        if self.group.members.len() == 1 || self.group.protocol_type.is_empty() {
            self.group.protocol_type = req.protocol_type;
        }
        if let Some(old) = self.joins.insert(member_id.clone(), reply) {
            let _ = old.send(Err(err_rebalancing()));
        }
        self.prepare(now, initial_delay);
        Ok(None)
    }

    /// Starts (or continues) a join phase.
    fn prepare(&mut self, now: Instant, initial_delay: Duration) {
        if self.phase != Phase::PreparingRebalance {
            let wait = if self.phase == Phase::Empty {
                initial_delay
            } else {
                let longest = self.group.members.values().map(|m| m.rebalance_timeout_ms).max();
                Duration::from_millis(u64::from(longest.unwrap_or(0)))
            };
            self.from_empty = self.phase == Phase::Empty;
            self.phase = Phase::PreparingRebalance;
            self.deadline = Some(now + wait);
            // Anyone waiting for the old generation's assignment must rejoin.
            for (_, r) in self.syncs.drain() {
                let _ = r.send(Err(err_rebalancing()));
            }
        }
    }

    /// Ends the join phase if every member has rejoined (and the initial delay of a new
    /// group has passed) or the deadline passed. Returns the join answers to send.
    pub fn try_complete_join(&mut self, now: Instant) -> Vec<(Joined, Reply<Joined>)> {
        if self.phase != Phase::PreparingRebalance {
            return Vec::new();
        }
        let everyone = self.group.members.keys().all(|m| self.joins.contains_key(m));
        let due = self.deadline.is_none_or(|d| now >= d);
        let waiting_initial = self.from_empty && !due;
        if !(due || everyone && !waiting_initial) {
            return Vec::new();
        }
        // Members that did not rejoin in time are out.
        let joined: Vec<String> = self.joins.keys().cloned().collect();
        self.group.members.retain(|id, _| joined.contains(id));
        self.last_seen.retain(|id, _| joined.contains(id));
        if self.group.members.is_empty() {
            self.phase = Phase::Empty;
            self.deadline = None;
            return Vec::new();
        }
        self.group.generation = self.group.generation.wrapping_add(1).max(1);
        self.group.protocol = self.choose_protocol();
        if !self.group.members.contains_key(&self.group.leader) {
            self.group.leader = self.group.members.keys().next().cloned().unwrap_or_default();
        }
        for m in self.group.members.values_mut() {
            m.assignment.clear();
        }
        self.phase = Phase::CompletingRebalance;
        self.deadline = None;
        let replies: Vec<(String, Reply<Joined>)> = self.joins.drain().collect();
        replies
            .into_iter()
            .map(|(id, r)| {
                let leader = id == self.group.leader;
                (self.joined(&id, leader), r)
            })
            .collect()
    }

    /// The protocol every member supports that most members prefer (ties: the leader's or
    /// the first member's order).
    fn choose_protocol(&self) -> String {
        let members: Vec<&ClassicMember> = self.group.members.values().collect();
        let candidates: Vec<&String> = members[0]
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| members.iter().all(|m| m.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in &members {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|n| (votes.get(*n).copied().unwrap_or(0), std::cmp::Reverse(*n)))
            .map(|n| (*n).clone())
            .unwrap_or_default()
    }

    fn joined(&self, member_id: &str, with_members: bool) -> Joined {
        let protocol = self.group.protocol.clone();
        let members = if with_members {
            self.group
                .members
                .values()
                .map(|m| (m.member_id.clone(), m.group_instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            generation: self.group.generation,
            protocol_type: self.group.protocol_type.clone(),
            protocol,
            leader: self.group.leader.clone(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// A SyncGroup. `Ok(Some(assignment))` answers now; `Ok(None)` parks `reply` until the
    /// leader's SyncGroup. When the leader's arrives, returns the group to replicate (the
    /// caller replicates it, then calls [`Runtime::complete_sync`]).
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        reply: Reply<Vec<u8>>,
        now: Instant,
    ) -> Result<SyncStep, Error> {
        self.fenced_check(member_id)?;
        let Some(member) = self.group.members.get(member_id) else {
            return Err(err_unknown(member_id));
        };
        if generation != self.group.generation {
            return Err(err_generation(generation, self.group.generation));
        }
        self.last_seen.insert(member_id.to_string(), now);
        match self.phase {
            Phase::Empty | Phase::PreparingRebalance => Err(err_rebalancing()),
            Phase::Stable => Ok(SyncStep::Answer(member.assignment.clone(), reply)),
            Phase::CompletingRebalance => {
                if let Some(old) = self.syncs.insert(member_id.to_string(), reply) {
                    let _ = old.send(Err(err_rebalancing()));
                }
                if member_id != self.group.leader {
                    return Ok(SyncStep::Parked);
                }
                let mut group = self.group.clone();
                for (id, a) in assignments {
                    if let Some(m) = group.members.get_mut(&id) {
                        m.assignment = a;
                    }
                }
                Ok(SyncStep::Replicate(group))
            }
        }
    }

    /// After `group` (from [`SyncStep::Replicate`]) was replicated: the group is stable,
    /// and every parked SyncGroup is answered. Nothing happens if the group moved on
    /// meanwhile (a new rebalance started).
    pub fn complete_sync(&mut self, group: ClassicGroup) -> Vec<(Vec<u8>, Reply<Vec<u8>>)> {
        if self.phase != Phase::CompletingRebalance || group.generation != self.group.generation {
            return Vec::new();
        }
        self.group = group;
        self.phase = Phase::Stable;
        let parked: Vec<(String, Reply<Vec<u8>>)> = self.syncs.drain().collect();
        parked
            .into_iter()
            .map(|(id, r)| {
                let a =
                    self.group.members.get(&id).map(|m| m.assignment.clone()).unwrap_or_default();
                (a, r)
            })
            .collect()
    }

    /// Replicating the leader's assignments failed: the parked SyncGroups get `e`, and the
    /// group rebalances again.
    pub fn fail_sync(&mut self, generation: i32, e: &Error, now: Instant) {
        if generation != self.group.generation {
            return;
        }
        for (_, r) in self.syncs.drain() {
            let _ = r.send(Err(e.clone()));
        }
        self.prepare(now, Duration::ZERO);
    }

    /// A Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), Error> {
        self.fenced_check(member_id)?;
        if !self.group.members.contains_key(member_id) {
            return Err(err_unknown(member_id));
        }
        self.last_seen.insert(member_id.to_string(), now);
        match self.phase {
            Phase::PreparingRebalance => Err(err_rebalancing()),
            _ if generation != self.group.generation => {
                Err(err_generation(generation, self.group.generation))
            }
            _ => Ok(()),
        }
    }

    /// A LeaveGroup of `member_id`, or of the member with `instance` (static members).
    /// Returns whether someone left.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<bool, Error> {
        let id = match instance {
            Some(i) => self
                .group
                .members
                .values()
                .find(|m| m.group_instance_id.as_deref() == Some(i))
                .map(|m| m.member_id.clone()),
            None => self.group.members.contains_key(member_id).then(|| member_id.to_string()),
        };
        let Some(id) = id else {
            return Err(err_unknown(member_id));
        };
        self.remove(&id, now);
        Ok(true)
    }

    fn remove(&mut self, id: &str, now: Instant) {
        self.group.members.remove(id);
        self.last_seen.remove(id);
        if let Some(r) = self.joins.remove(id) {
            let _ = r.send(Err(err_unknown(id)));
        }
        if let Some(r) = self.syncs.remove(id) {
            let _ = r.send(Err(err_unknown(id)));
        }
        if self.group.members.is_empty() && self.joins.is_empty() {
            self.phase = Phase::Empty;
            self.deadline = None;
            for (_, r) in self.syncs.drain() {
                let _ = r.send(Err(err_rebalancing()));
            }
        } else {
            self.prepare(now, Duration::ZERO);
        }
    }

    /// Members whose session timed out are removed (a rebalance follows). Returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .group
            .members
            .values()
            .filter(|m| {
                // A member parked in a join is waiting on the coordinator, not silent.
                !self.joins.contains_key(&m.member_id)
                    && self.last_seen.get(&m.member_id).is_none_or(|t| {
                        now.duration_since(*t) > Duration::from_millis(m.session_timeout_ms.into())
                    })
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            self.remove(id, now);
        }
        expired
    }

    /// The replicated form of the group when it has no rebalance under way; `None` while one
    /// is (its result is replicated at the leader's SyncGroup).
    pub fn settled(&self) -> Option<ClassicGroup> {
        match self.phase {
            Phase::Empty => Some(ClassicGroup {
                members: BTreeMap::new(),
                leader: String::new(),
                ..self.group.clone()
            }),
            Phase::Stable => Some(self.group.clone()),
            Phase::PreparingRebalance | Phase::CompletingRebalance => None,
        }
    }

    /// Whether nothing is going on: no members, no parked request (the runtime can go).
    pub fn idle(&self) -> bool {
        self.phase == Phase::Empty && self.joins.is_empty() && self.syncs.is_empty()
    }

    /// Checks an offset commit of a member of this group at `generation` (the empty member
    /// id with generation -1: only while the group has no members). Refused while a new
    /// generation awaits its assignments.
    pub fn validate_commit(&self, member_id: &str, generation: i32) -> Result<(), Error> {
        if member_id.is_empty() && generation < 0 {
            if self.group.members.is_empty() {
                return Ok(());
            }
            return Err(Error::UnknownMemberId(
                "the group has active members: commit as a member".into(),
            ));
        }
        self.fenced_check(member_id)?;
        if !self.group.members.contains_key(member_id) {
            return Err(err_unknown(member_id));
        }
        // While a new generation waits for its assignments nobody may commit; while members
        // rejoin they may (the generation is still theirs): they commit what they consumed
        // before giving up their partitions, as Kafka allows.
        if self.phase == Phase::CompletingRebalance {
            return Err(err_rebalancing());
        }
        if generation != self.group.generation {
            return Err(err_generation(generation, self.group.generation));
        }
        Ok(())
    }
}

/// What a SyncGroup leads to.
pub enum SyncStep {
    /// Answer at once with this assignment.
    Answer(Vec<u8>, Reply<Vec<u8>>),
    /// Parked until the leader's SyncGroup.
    Parked,
    /// The leader's SyncGroup: replicate this, then [`Runtime::complete_sync`].
    Replicate(ClassicGroup),
}

#[cfg(test)]
mod tests;
