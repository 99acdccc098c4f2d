//! The membership state of one consumer group (KIP-848, server-side assignment): a plain
//! value that every heartbeat maps to a new value. No I/O: the coordinator replicates the new
//! state only when it differs from the old one, so a heartbeat that changes nothing returns
//! an identical state.
//!
//! # Model
//!
//! - The group epoch is bumped, and the target assignment recomputed at once (so
//!   `assignment_epoch == group_epoch`), whenever a member joins, rejoins, leaves or is
//!   removed, a subscription changes, the partition counts of subscribed topics change, or
//!   the group's assignor (the one most members ask for) changes.
//! - Each member moves towards its target on its own heartbeats, revoking before assigning:
//!   it first gives up what the target no longer gives it and must confirm that by a
//!   heartbeat that no longer lists those partitions; only then does it take the new epoch
//!   and receive the partitions of its target that no other member still owns.
//! - A partition is owned by a member while it is assigned to it or pending revocation from
//!   it. No partition is ever owned by two members ([`GroupState::check_invariants`]).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

use super::assign;

/// Partitions per topic. Assignments built here never hold a topic with an empty partition
/// set, so two assignments holding the same partitions compare equal.
pub type Assignment = BTreeMap<String, BTreeSet<u32>>;

/// Names of the supported server-side assignors. The first one is the default, used when a
/// member asks for none (`""`).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// The assignor used when a member asks for none.
pub const DEFAULT_ASSIGNOR: &str = ASSIGNORS[0];

/// The member epoch of a heartbeat that joins (or rejoins) the group.
pub const JOIN_EPOCH: i32 = 0;

/// The member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;

/// One member of a group, as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    /// The id the coordinator gave the member when it first joined.
    pub member_id: String,
    /// The epoch last given to the member.
    pub member_epoch: i32,
    /// The epoch before `member_epoch`: a heartbeat carrying it is accepted, because the
    /// response that gave `member_epoch` may have been lost.
    pub previous_member_epoch: i32,
    /// Free-form client id, for display.
    pub client_id: String,
    /// The assignor the member asked for (`""`: the default).
    pub assignor: String,
    /// Subscribed topic names, including ones that do not exist (yet); with a regex, the
    /// topics it matched at the member's last heartbeat.
    pub subscribed: BTreeSet<String>,
    /// The regex the member subscribed with (Kafka clients' pattern subscriptions), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_regex: Option<String>,
    /// What the member owns now, as last told by the coordinator.
    pub assigned: Assignment,
    /// Partitions the member was told to give up and has not yet confirmed giving up.
    pub pending_revocation: Assignment,
}

impl Member {
    fn joining(hb: &Heartbeat<'_>) -> Member {
        Member {
            member_id: hb.member_id.to_string(),
            member_epoch: JOIN_EPOCH,
            previous_member_epoch: JOIN_EPOCH,
            client_id: hb.client_id.to_string(),
            assignor: hb.assignor.to_string(),
            subscribed: hb.subscribed.clone(),
            subscribed_regex: hb.subscribed_regex.map(str::to_string),
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    /// Whether the member owns the partition: assigned to it or pending revocation from it.
    pub fn owns(&self, topic: &str, partition: u32) -> bool {
        contains(&self.assigned, topic, partition)
            || contains(&self.pending_revocation, topic, partition)
    }

    /// Every partition the member owns: assigned or pending revocation.
    pub fn owned(&self) -> impl Iterator<Item = (&str, u32)> {
        flatten(&self.assigned).chain(flatten(&self.pending_revocation))
    }

    /// The assignor this member counts towards: the one it asked for, or the default.
    pub fn effective_assignor(&self) -> &str {
        if self.assignor.is_empty() { DEFAULT_ASSIGNOR } else { &self.assignor }
    }
}

/// The replicated state of one consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// Bumped on every change the target assignment depends on.
    pub group_epoch: i32,
    /// The group epoch `target` was computed at (always equal to `group_epoch`: the target
    /// is recomputed as soon as the group epoch is bumped).
    pub assignment_epoch: i32,
    /// The assignor that computed `target`.
    pub assignor: String,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Target assignment of every member at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics `target` was computed from.
    pub topics: BTreeMap<String, u32>,
    /// A group of Kafka's classic protocol (JoinGroup/SyncGroup): its last completed
    /// generation. Such a group has no members above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<super::classic::ClassicGroup>,
}

/// A consumer group heartbeat, as far as membership cares.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat<'a> {
    /// Never empty: the caller generates ids for joins.
    pub member_id: &'a str,
    /// [`JOIN_EPOCH`] to join or rejoin, [`LEAVE_EPOCH`] to leave, else the last epoch the
    /// member received.
    pub member_epoch: i32,
    /// Every topic the member subscribes to (the full list, not a change).
    pub subscribed: &'a BTreeSet<String>,
    /// The regex `subscribed` was resolved from, if any (kept for display and for
    /// resolving it again as topics come and go).
    pub subscribed_regex: Option<&'a str>,
    /// What the client says it owns now.
    pub owned: &'a Assignment,
    /// The assignor the member asks for (`""`: the default).
    pub assignor: &'a str,
    /// Free-form client id, for display.
    pub client_id: &'a str,
}

/// What a heartbeat tells the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member's id.
    pub member_id: String,
    /// The member's epoch; [`LEAVE_EPOCH`] once it has left.
    pub member_epoch: i32,
    /// Everything the member may own now: partitions it holds and that are missing here must
    /// be given up.
    pub assignment: Assignment,
}

/// Why a heartbeat or an offset commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Not a member: never joined, left, or was removed.
    #[error("unknown member id `{member_id}`: {reason}")]
    UnknownMemberId { member_id: String, reason: &'static str },
    /// A heartbeat epoch the member never had (or can no longer use), or a commit epoch newer
    /// than the member's.
    #[error("member `{member_id}` is fenced: epoch {epoch} is not valid, its epoch is {current}")]
    FencedMemberEpoch { member_id: String, epoch: i32, current: i32 },
    /// A commit with an epoch older than the member's.
    #[error("member `{member_id}` sent stale epoch {epoch}, its epoch is {current}")]
    StaleMemberEpoch { member_id: String, epoch: i32, current: i32 },
    /// The member asked for an assignor that does not exist.
    #[error("member `{member_id}` asked for unsupported assignor `{assignor}` (supported: {})",
        ASSIGNORS.join(", "))]
    UnsupportedAssignor { member_id: String, assignor: String },
}

impl From<GroupError> for crate::error::Error {
    fn from(e: GroupError) -> crate::error::Error {
        use crate::error::Error;
        let message = e.to_string();
        match e {
            GroupError::UnknownMemberId { .. } => Error::UnknownMemberId(message),
            GroupError::FencedMemberEpoch { .. } => Error::FencedMemberEpoch(message),
            GroupError::StaleMemberEpoch { .. } => Error::StaleMemberEpoch(message),
            GroupError::UnsupportedAssignor { .. } => Error::UnsupportedAssignor(message),
        }
    }
}

const NOT_A_MEMBER: &str = "not a member of the group (never joined, left or was removed)";

impl GroupState {
    /// Applies a heartbeat: join, rejoin, leave, or an ordinary heartbeat that moves the
    /// member towards its target. `topics` holds every existing topic and its partition
    /// count; subscribed topics missing from it are ignored.
    pub fn heartbeat(
        &self,
        hb: &Heartbeat<'_>,
        topics: &BTreeMap<String, u32>,
    ) -> Result<(GroupState, HeartbeatReply), GroupError> {
        if hb.member_epoch == LEAVE_EPOCH {
            // Not checking membership makes a retried leave succeed.
            let reply = HeartbeatReply {
                member_id: hb.member_id.to_string(),
                member_epoch: LEAVE_EPOCH,
                assignment: Assignment::new(),
            };
            return Ok((self.remove_member(hb.member_id, topics), reply));
        }

        let mut next = self.clone();
        let membership_changed = if hb.member_epoch == JOIN_EPOCH {
            check_assignor(hb)?;
            // A rejoining member starts over: whatever it owned is freed.
            next.members.insert(hb.member_id.to_string(), Member::joining(hb));
            true
        } else {
            let member = self.member_or_unknown(hb.member_id)?;
            let response_lost = hb.member_epoch == member.previous_member_epoch
                && is_subset(hb.owned, &member.assigned);
            if hb.member_epoch != member.member_epoch && !response_lost {
                return Err(GroupError::FencedMemberEpoch {
                    member_id: hb.member_id.to_string(),
                    epoch: hb.member_epoch,
                    current: member.member_epoch,
                });
            }
            check_assignor(hb)?;
            let member = next.members.get_mut(hb.member_id).expect("checked above");
            // Assign only on change so that an idle heartbeat leaves the state identical.
            let subscription_changed = member.subscribed != *hb.subscribed;
            if subscription_changed {
                member.subscribed = hb.subscribed.clone();
            }
            if member.assignor != hb.assignor {
                member.assignor = hb.assignor.to_string();
            }
            if member.subscribed_regex.as_deref() != hb.subscribed_regex {
                member.subscribed_regex = hb.subscribed_regex.map(str::to_string);
            }
            if member.client_id != hb.client_id {
                member.client_id = hb.client_id.to_string();
            }
            subscription_changed
        };
        next.refresh_target(topics, membership_changed);
        next.reconcile(hb.member_id, hb.owned);

        let member = &next.members[hb.member_id];
        let reply = HeartbeatReply {
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            assignment: member.assigned.clone(),
        };
        Ok((next, reply))
    }

    /// Removes a member (session or revocation timeout), freeing everything it owned. Returns
    /// an identical state for an unknown member.
    pub fn remove_member(&self, member_id: &str, topics: &BTreeMap<String, u32>) -> GroupState {
        let mut next = self.clone();
        if next.members.remove(member_id).is_some() {
            next.refresh_target(topics, true);
        }
        next
    }

    /// Checks that an offset commit comes from a current member at its current epoch. A
    /// commit without a member (empty id, negative epoch) is only allowed while the group has
    /// no members, as consumers that manage their own assignment do.
    pub fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        if member_id.is_empty() && member_epoch < 0 {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err(GroupError::UnknownMemberId {
                member_id: String::new(),
                reason: "the group has active members; commit as a member",
            });
        }
        let member = self.member_or_unknown(member_id)?;
        let (epoch, current) = (member_epoch, member.member_epoch);
        let member_id = member_id.to_string();
        match epoch.cmp(&current) {
            std::cmp::Ordering::Greater => {
                Err(GroupError::FencedMemberEpoch { member_id, epoch, current })
            }
            std::cmp::Ordering::Less => {
                Err(GroupError::StaleMemberEpoch { member_id, epoch, current })
            }
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// `"empty"` (no members), `"reconciling"` (some member has not reached its target at the
    /// current assignment epoch) or `"stable"`.
    pub fn state_name(&self) -> &'static str {
        if self.classic.as_ref().is_some_and(|c| !c.members.is_empty()) {
            return "stable";
        }
        if self.members.is_empty() {
            return "empty";
        }
        let empty = Assignment::new();
        let reconciling = self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || m.assigned != *self.target.get(&m.member_id).unwrap_or(&empty)
        });
        if reconciling { "reconciling" } else { "stable" }
    }

    /// A member by id.
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// The owner of every owned partition, keyed by (topic, partition).
    pub fn owners(&self) -> BTreeMap<(String, u32), String> {
        let mut owners = BTreeMap::new();
        for member in self.members.values() {
            for (topic, p) in member.owned() {
                owners.insert((topic.to_string(), p), member.member_id.clone());
            }
        }
        owners
    }

    /// Checks the invariants every returned state keeps: no partition owned by two members,
    /// epochs consistent, and a target that lists every member and gives each partition of
    /// `topics` to exactly one of them. Owned partitions may lie outside `topics` (a deleted
    /// topic stays owned until its revocation is confirmed).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut owner: BTreeMap<(&str, u32), &str> = BTreeMap::new();
        for (id, member) in &self.members {
            if *id != member.member_id {
                return Err(format!("member `{}` stored under id `{id}`", member.member_id));
            }
            if member.member_epoch > self.assignment_epoch {
                return Err(format!(
                    "member `{id}` has epoch {} above the assignment epoch {}",
                    member.member_epoch, self.assignment_epoch
                ));
            }
            for (topic, p) in member.owned() {
                if let Some(other) = owner.insert((topic, p), id) {
                    return Err(format!("{topic}-{p} owned by both `{other}` and `{id}`"));
                }
            }
            if flatten(&member.assigned).any(|(t, p)| contains(&member.pending_revocation, t, p)) {
                return Err(format!("member `{id}` has a partition both assigned and pending"));
            }
        }
        if self.assignment_epoch != self.group_epoch {
            return Err(format!(
                "assignment epoch {} differs from group epoch {}",
                self.assignment_epoch, self.group_epoch
            ));
        }
        if !self.target.keys().eq(self.members.keys()) {
            return Err("target members differ from the group's members".to_string());
        }
        let mut targeted: BTreeMap<(&str, u32), &str> = BTreeMap::new();
        for (id, assignment) in &self.target {
            for (topic, p) in flatten(assignment) {
                if self.topics.get(topic).is_none_or(|&n| p >= n) {
                    return Err(format!("target gives `{id}` {topic}-{p}, not in its topics"));
                }
                if let Some(other) = targeted.insert((topic, p), id) {
                    return Err(format!("target gives {topic}-{p} to `{other}` and `{id}`"));
                }
            }
        }
        for (topic, &count) in &self.topics {
            for p in 0..count {
                if !targeted.contains_key(&(topic.as_str(), p)) {
                    return Err(format!("target leaves {topic}-{p} unassigned"));
                }
            }
        }
        Ok(())
    }

    fn member_or_unknown(&self, member_id: &str) -> Result<&Member, GroupError> {
        self.members.get(member_id).ok_or_else(|| GroupError::UnknownMemberId {
            member_id: member_id.to_string(),
            reason: NOT_A_MEMBER,
        })
    }

    /// Bumps the group epoch and recomputes the target if `membership_changed` or anything
    /// the target depends on changed: the group's assignor or the partition counts of the
    /// subscribed topics.
    fn refresh_target(&mut self, topics: &BTreeMap<String, u32>, membership_changed: bool) {
        let assignor = group_assignor(&self.members);
        let subscribed: BTreeSet<&String> =
            self.members.values().flat_map(|m| &m.subscribed).collect();
        let used: BTreeMap<String, u32> = topics
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        if !membership_changed && assignor == self.assignor && used == self.topics {
            return;
        }
        let subs: BTreeMap<String, BTreeSet<String>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.subscribed.clone())).collect();
        self.target = match assignor {
            "range" => assign::range(&subs, &used),
            _ => assign::uniform(&subs, &used, &self.target),
        };
        self.group_epoch += 1;
        self.assignment_epoch = self.group_epoch;
        self.assignor = assignor.to_string();
        self.topics = used;
    }

    /// Moves one member towards its target, revoking before assigning. Only this member
    /// moves: the others do on their own heartbeats.
    fn reconcile(&mut self, member_id: &str, owned: &Assignment) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned_by_others: BTreeSet<(String, u32)> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| m.owned().map(|(t, p)| (t.to_string(), p)))
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };

        // 1. The client no longer lists any revoked partition: it has given them up.
        if !m.pending_revocation.is_empty() && !intersects(owned, &m.pending_revocation) {
            m.pending_revocation.clear();
        }

        // 2. A member behind the assignment epoch first gives up what its target no longer
        //    holds, and takes the new epoch only once it holds nothing outside its target.
        if m.member_epoch < assignment_epoch && m.pending_revocation.is_empty() {
            let revoke = difference(&m.assigned, &target);
            if revoke.is_empty() {
                m.previous_member_epoch = m.member_epoch;
                m.member_epoch = assignment_epoch;
            } else {
                m.assigned = difference(&m.assigned, &revoke);
                m.pending_revocation = revoke;
            }
        }

        // 3. At the current epoch, take whatever of the target is free; partitions another
        //    member still owns come on a later heartbeat, once that member has let go.
        if m.member_epoch == assignment_epoch && m.pending_revocation.is_empty() {
            for (topic, p) in flatten(&target) {
                if !owned_by_others.contains(&(topic.to_string(), p)) {
                    m.assigned.entry(topic.to_string()).or_default().insert(p);
                }
            }
        }
    }
}

fn check_assignor(hb: &Heartbeat<'_>) -> Result<(), GroupError> {
    if hb.assignor.is_empty() || ASSIGNORS.contains(&hb.assignor) {
        return Ok(());
    }
    Err(GroupError::UnsupportedAssignor {
        member_id: hb.member_id.to_string(),
        assignor: hb.assignor.to_string(),
    })
}

/// The assignor most members ask for; ties go to the first name in alphabetical order. An
/// empty group uses the default.
fn group_assignor(members: &BTreeMap<String, Member>) -> &'static str {
    let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for member in members.values() {
        let name = member.effective_assignor();
        // Members only ever hold supported assignors (checked on every heartbeat).
        if let Some(known) = ASSIGNORS.iter().find(|a| **a == name) {
            *votes.entry(known).or_default() += 1;
        }
    }
    // `max_by_key` keeps the last maximum, so walk names in reverse to keep the first.
    votes
        .into_iter()
        .rev()
        .max_by_key(|(_, count)| *count)
        .map_or(DEFAULT_ASSIGNOR, |(name, _)| name)
}

fn flatten(a: &Assignment) -> impl Iterator<Item = (&str, u32)> {
    a.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
}

fn contains(a: &Assignment, topic: &str, partition: u32) -> bool {
    a.get(topic).is_some_and(|ps| ps.contains(&partition))
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    flatten(a).all(|(t, p)| contains(b, t, p))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    flatten(a).any(|(t, p)| contains(b, t, p))
}

/// `a - b`, without empty topic entries.
fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (topic, p) in flatten(a).filter(|(t, p)| !contains(b, t, *p)) {
        out.entry(topic.to_string()).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests;
