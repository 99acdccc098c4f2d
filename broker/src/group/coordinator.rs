//! [`Coordinator`]: one hosted `__consumer_offsets` partition replica. As the partition's
//! leader it coordinates the groups hashed to it: it serializes each group's changes under
//! one lock per group, checks them against the applied state, replicates them, and tracks
//! member sessions (soft state, reset when it becomes leader).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use rafka_proto::ErrorCode;
use rafka_proto::groups::MAX_GROUP_ID_BYTES;
use tokio::sync::OwnedMutexGuard;

use super::GroupCommand;
use super::GroupsConfig;
use super::GroupsDb;
use super::OffsetsGroup;
use super::state::Assignment;
use super::state::GroupState;
use super::state::Heartbeat;
use super::state::HeartbeatReply;
use super::store::GroupsView;
use super::store::OffsetRecord;
use super::store::StoredOffset;
use crate::error::Error;
use crate::error::Result;
use crate::json_entry::JsonEntry;

/// Entries applied since the last snapshot after which the coordinator compacts its log.
const COMPACT_AFTER_ENTRIES: u64 = 20_000;

/// Checks a group id: 1..=255 bytes, no NUL (the store's key separator).
pub fn validate_group_id(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > MAX_GROUP_ID_BYTES || group.contains('\0') {
        return Err(Error::new(
            ErrorCode::InvalidGroupId,
            format!(
                "group id must be 1 to {MAX_GROUP_ID_BYTES} bytes without NUL, got {} bytes",
                group.len()
            ),
        ));
    }
    Ok(())
}

/// `GROUP_ID_NOT_FOUND` for `group`.
pub fn group_not_found(group: &str) -> Error {
    Error::new(
        ErrorCode::GroupIdNotFound,
        format!("group {group:?} does not exist (no members, no committed offsets)"),
    )
}

/// A member heartbeat as the coordinator receives it.
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub subscribed: std::collections::BTreeSet<String>,
    pub owned: Assignment,
    pub assignor: String,
    pub client_id: String,
}

/// Liveness of the members of the groups this replica coordinates (soft state).
#[derive(Default)]
struct Sessions {
    /// The leader term these deadlines belong to.
    term: u64,
    /// Last heartbeat per (group, member).
    last_seen: HashMap<(String, String), Instant>,
    /// Since when a member has had a revocation to confirm.
    revoking_since: HashMap<(String, String), Instant>,
}

/// One hosted offsets partition replica.
pub struct Coordinator {
    /// Partition number in `__consumer_offsets`.
    pub partition: u32,
    pub group: OffsetsGroup,
    db: Arc<GroupsDb>,
    view: GroupsView,
    config: GroupsConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sessions: Mutex<Sessions>,
}

impl Coordinator {
    /// Wraps a hosted offsets partition group.
    pub fn new(
        partition: u32,
        group: OffsetsGroup,
        db: Arc<GroupsDb>,
        view: GroupsView,
        config: GroupsConfig,
    ) -> Coordinator {
        Coordinator {
            partition,
            group,
            db,
            view,
            config,
            locks: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// The leader's broker id and address, if known.
    pub fn leader(&self) -> Option<(u64, String)> {
        self.group.leader().map(|(_, n)| (n.broker_id, n.addr))
    }

    /// The term this replica coordinates in: it leads and has applied an entry of its own
    /// term. Else `NOT_COORDINATOR` (toward the leader) or `COORDINATOR_NOT_AVAILABLE`.
    pub async fn term(&self) -> Result<u64> {
        if !self.group.is_leader() {
            return Err(self.not_coordinator());
        }
        if !self.group.is_leader_ready()
            && !self.group.wait_leader_ready(Duration::from_secs(2)).await
        {
            return Err(Error::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("coordinator of offsets partition {} is still loading", self.partition),
            ));
        }
        Ok(self.group.metrics().current_term)
    }

    /// `NOT_COORDINATOR` toward the current leader, or `COORDINATOR_NOT_AVAILABLE`.
    pub fn not_coordinator(&self) -> Error {
        match self.leader() {
            Some((broker_id, address)) => {
                let mut e = Error::new(
                    ErrorCode::NotCoordinator,
                    format!(
                        "not the coordinator (offsets partition {}); it is broker {broker_id} \
                         at {address}",
                        self.partition
                    ),
                );
                e.leader = Some(rafka_proto::v1::LeaderHint { broker_id, address });
                e
            }
            None => Error::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("offsets partition {} has no leader right now", self.partition),
            ),
        }
    }

    /// The applied state of `group`, if it exists.
    pub fn state(&self, group: &str) -> Option<Arc<GroupState>> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).get(group).cloned()
    }

    /// Every group of this partition with its state.
    pub fn groups(&self) -> Vec<(String, Arc<GroupState>)> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Committed offsets of `group`.
    pub fn offsets(&self, group: &str) -> Result<BTreeMap<(String, u32), StoredOffset>> {
        self.db.offsets(self.group.id(), group).map_err(|e| {
            Error::new(ErrorCode::StorageError, format!("reading offsets of {group:?}: {e}"))
        })
    }

    async fn lock(&self, group: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Locks of groups nobody holds any more are dropped as they come by.
            if locks.len() > 1024 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(group.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    async fn propose(&self, term: u64, cmd: &GroupCommand) -> Result<()> {
        let what = format!("offsets partition {}", self.partition);
        let done = self
            .group
            .propose_in_term(JsonEntry::new(cmd), term)
            .await
            .map_err(|e| coordinator_error(&what, e))?;
        done.await.map_err(|e| coordinator_error(&what, e))?;
        Ok(())
    }

    /// A member heartbeat: applies it to the group's state, replicates the change if any,
    /// and returns the member's epoch and assignment.
    pub async fn heartbeat(
        &self,
        req: HeartbeatRequest,
        topics: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatReply> {
        let term = self.term().await?;
        let _guard = self.lock(&req.group).await;
        let old = self.state(&req.group).unwrap_or_default();
        let member_id = match (req.member_id.is_empty(), req.member_epoch) {
            (true, 0) => new_member_id(),
            (true, _) => {
                return Err(Error::new(
                    ErrorCode::UnknownMemberId,
                    "an empty member id is only valid when joining (member epoch 0)",
                ));
            }
            (false, _) => req.member_id.clone(),
        };
        let hb = Heartbeat {
            member_id: &member_id,
            member_epoch: req.member_epoch,
            subscribed: &req.subscribed,
            owned: &req.owned,
            assignor: &req.assignor,
            client_id: &req.client_id,
        };
        let (new, reply) = old.heartbeat(&hb, topics)?;
        if new != *old {
            self.propose(term, &GroupCommand::PutGroup { group: req.group.clone(), state: new.clone() })
                .await?;
        }
        let mut sessions = self.sessions(term, Instant::now());
        let key = (req.group, member_id);
        match new.members.get(&key.1) {
            None => {
                sessions.last_seen.remove(&key);
                sessions.revoking_since.remove(&key);
            }
            Some(m) => {
                sessions.last_seen.insert(key.clone(), Instant::now());
                if m.pending_revocation.is_empty() {
                    sessions.revoking_since.remove(&key);
                } else {
                    sessions.revoking_since.entry(key).or_insert_with(Instant::now);
                }
            }
        }
        Ok(reply)
    }

    /// The session table of `term`: a new term starts every member's clocks afresh.
    fn sessions(&self, term: u64, now: Instant) -> std::sync::MutexGuard<'_, Sessions> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.term != term {
            *s = Sessions { term, ..Default::default() };
            for (group, state) in self.groups() {
                for (id, m) in &state.members {
                    let key = (group.clone(), id.clone());
                    s.last_seen.insert(key.clone(), now);
                    if !m.pending_revocation.is_empty() {
                        s.revoking_since.insert(key, now);
                    }
                }
            }
        }
        s
    }

    /// Removes members whose session timed out or who did not confirm a revocation within
    /// the rebalance timeout. Returns the (group, member) pairs removed.
    pub async fn expire_members(
        &self,
        topics: &BTreeMap<String, u32>,
    ) -> Result<Vec<(String, String)>> {
        if !self.group.is_leader() || !self.group.is_leader_ready() {
            return Ok(Vec::new());
        }
        let term = self.group.metrics().current_term;
        let now = Instant::now();
        let session = Duration::from_millis(self.config.session_timeout_ms);
        let rebalance = Duration::from_millis(self.config.rebalance_timeout_ms);
        let expired: Vec<(String, String)> = {
            let mut s = self.sessions(term, now);
            // Members this table has not seen yet (replicated before it was built) start now.
            for (group, state) in self.groups() {
                for id in state.members.keys() {
                    s.last_seen.entry((group.clone(), id.clone())).or_insert(now);
                }
            }
            let mut out: Vec<_> = s
                .last_seen
                .iter()
                .filter(|(_, t)| now.duration_since(**t) > session)
                .map(|(k, _)| k.clone())
                .collect();
            out.extend(
                s.revoking_since
                    .iter()
                    .filter(|(_, t)| now.duration_since(**t) > rebalance)
                    .map(|(k, _)| k.clone()),
            );
            out.sort();
            out.dedup();
            out
        };
        let mut removed = Vec::new();
        for (group, member) in expired {
            let _guard = self.lock(&group).await;
            let old = self.state(&group).unwrap_or_default();
            if old.members.contains_key(&member) {
                let new = old.remove_member(&member, topics);
                self.propose(term, &GroupCommand::PutGroup { group: group.clone(), state: new })
                    .await?;
                tracing::info!(group = %group, member = %member, "member removed: session or rebalance timeout");
                removed.push((group.clone(), member.clone()));
            }
            let mut s = self.sessions(term, now);
            s.last_seen.remove(&(group.clone(), member.clone()));
            s.revoking_since.remove(&(group, member));
        }
        Ok(removed)
    }

    /// Commits offsets for a member (or, with an empty member id, for a group without
    /// members). `offsets` are validated by the caller (topics and partitions exist).
    pub async fn commit(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i32,
        offsets: Vec<OffsetRecord>,
    ) -> Result<()> {
        let term = self.term().await?;
        let _guard = self.lock(group).await;
        match self.state(group) {
            Some(state) => state.validate_commit(member_id, member_epoch)?,
            None if member_id.is_empty() => {}
            None => {
                return Err(Error::new(
                    ErrorCode::UnknownMemberId,
                    format!("member {member_id} is not in group {group:?} (the group has no members)"),
                ));
            }
        }
        self.propose(term, &GroupCommand::Commit { group: group.to_string(), offsets }).await
    }

    /// Deletes a group without members and its offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let term = self.term().await?;
        let _guard = self.lock(group).await;
        let state = self.state(group).ok_or_else(|| group_not_found(group))?;
        if !state.members.is_empty() {
            return Err(not_empty(group, state.members.len(), "deleted"));
        }
        self.propose(term, &GroupCommand::DeleteGroup { group: group.to_string() }).await
    }

    /// Sets offsets of a group without members (ResetOffsets), unless `dry_run`.
    pub async fn reset_offsets(
        &self,
        group: &str,
        offsets: Vec<OffsetRecord>,
        dry_run: bool,
    ) -> Result<()> {
        let term = self.term().await?;
        let _guard = self.lock(group).await;
        if let Some(state) = self.state(group)
            && !state.members.is_empty()
        {
            return Err(not_empty(group, state.members.len(), "reset"));
        }
        if dry_run {
            return Ok(());
        }
        self.propose(term, &GroupCommand::Commit { group: group.to_string(), offsets }).await
    }

    /// Snapshots the state and purges the log once it has grown enough since the last one.
    pub async fn maybe_compact(&self) {
        let m = self.group.metrics();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let snapshot = m.snapshot.map_or(0, |l| l.index);
        if applied.saturating_sub(snapshot) >= COMPACT_AFTER_ENTRIES {
            match self.group.compact(Duration::from_secs(30)).await {
                Ok(at) => tracing::debug!(partition = self.partition, ?at, "offsets log compacted"),
                Err(e) => tracing::warn!(partition = self.partition, "compaction failed: {e}"),
            }
        }
    }
}

fn not_empty(group: &str, members: usize, what: &str) -> Error {
    Error::new(
        ErrorCode::GroupNotEmpty,
        format!("group {group:?} has {members} active members; it can only be {what} when empty"),
    )
}

/// Raft errors of an offsets partition, in coordinator terms.
fn coordinator_error(what: &str, e: rafka_raft::Error) -> Error {
    let mut e = Error::from_raft(what, e);
    match e.code {
        ErrorCode::NotLeader => e.code = ErrorCode::NotCoordinator,
        ErrorCode::LeaderNotAvailable => e.code = ErrorCode::CoordinatorNotAvailable,
        _ => {}
    }
    e
}

/// A fresh member id (128 random bits, hex).
fn new_member_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
