//! [`Coordinator`]: one hosted `__consumer_offsets` partition replica. As the partition's
//! leader it coordinates the groups hashed to it: it serializes each group's changes under
//! one lock per group, checks them against the applied state, replicates them, and tracks
//! member sessions (soft state, reset when it becomes leader).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

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
use crate::error::Leader;
use crate::error::Result;
use crate::json_entry::JsonEntry;
use crate::supervisor::Supervisor;

/// Entries applied since the last snapshot after which the coordinator compacts its log.
const COMPACT_AFTER_ENTRIES: u64 = 20_000;
/// Largest group command (a group's whole state, or one commit) the coordinator proposes:
/// far below the log's entry limit, so no request can make the partition's log refuse an
/// append (which would stop the group).
const MAX_COMMAND_BYTES: usize = 8 << 20;

/// Checks a group id: 1..=255 bytes, no NUL (the store's key separator).
pub fn validate_group_id(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > MAX_GROUP_ID_BYTES || group.contains('\0') {
        return Err(Error::InvalidGroupId(format!(
            "group id must be 1 to {MAX_GROUP_ID_BYTES} bytes without NUL, got {} bytes",
            group.len()
        )));
    }
    Ok(())
}

/// `GROUP_ID_NOT_FOUND` for `group`.
pub fn group_not_found(group: &str) -> Error {
    Error::GroupIdNotFound(format!(
        "group {group:?} does not exist (no members, no committed offsets)"
    ))
}

/// A member heartbeat as the coordinator receives it.
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub subscribed: std::collections::BTreeSet<String>,
    /// The regex `subscribed` was resolved from (Kafka clients' pattern subscriptions).
    pub subscribed_regex: Option<String>,
    pub owned: Assignment,
    pub assignor: String,
    pub client_id: String,
}

/// Liveness of the members of the groups this replica coordinates (soft state).
#[derive(Default)]
struct Sessions {
    /// The leader term these deadlines belong to.
    term: u64,
    /// Last heartbeat per (group, member), taken when the heartbeat arrived.
    last_seen: HashMap<(String, String), Instant>,
    /// Since when a member has had these partitions to give up.
    revoking: HashMap<(String, String), (Instant, Assignment)>,
    /// Members that did not give up revoked partitions within the rebalance timeout. Their
    /// heartbeats are answered `FENCED_MEMBER_EPOCH` (drop everything, rejoin) and no longer
    /// keep their session alive; their partitions stay theirs — no one else is given them —
    /// until they rejoin with epoch 0 or their session times out.
    fenced: HashSet<(String, String)>,
}

/// One hosted offsets partition replica.
pub struct Coordinator {
    /// Partition number in `__consumer_offsets`.
    pub partition: u32,
    pub group: OffsetsGroup,
    db: Arc<GroupsDb>,
    view: GroupsView,
    pub(super) config: GroupsConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    lock_sweep_at: AtomicUsize,
    sessions: Mutex<Sessions>,
    /// Classic groups' rebalances (soft state of this term).
    pub(super) classic: Mutex<super::classic_ops::ClassicTable>,
    /// Runs the waiters that hold a group's lock until its proposal's outcome is known.
    tasks: Supervisor,
}

impl Coordinator {
    /// Wraps a hosted offsets partition group.
    pub fn new(
        partition: u32,
        group: OffsetsGroup,
        db: Arc<GroupsDb>,
        view: GroupsView,
        config: GroupsConfig,
        tasks: Supervisor,
    ) -> Coordinator {
        Coordinator {
            partition,
            group,
            db,
            view,
            config,
            locks: Mutex::default(),
            lock_sweep_at: AtomicUsize::new(1024),
            tasks,
            sessions: Mutex::default(),
            classic: Mutex::default(),
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
            return Err(Error::CoordinatorNotAvailable(format!(
                "coordinator of offsets partition {} is still loading",
                self.partition
            )));
        }
        let term = self.group.current_term();
        // A newer coordinator acts on member sessions only after a session timeout: an old
        // leader cut off from its quorum stops answering well before that.
        let within = Duration::from_millis(self.config.session_timeout_ms / 2);
        self.group
            .confirm_leadership(within)
            .await
            .map_err(|e| coordinator_error(&format!("offsets partition {}", self.partition), e))?;
        Ok(term)
    }

    /// `NOT_COORDINATOR` toward the current leader, or `COORDINATOR_NOT_AVAILABLE`.
    pub fn not_coordinator(&self) -> Error {
        match self.leader() {
            Some((broker_id, address)) => {
                let message = format!(
                    "not the coordinator (offsets partition {}); it is broker {broker_id} at \
                     {address}",
                    self.partition
                );
                Error::NotCoordinator { message, coordinator: Leader { broker_id, address } }
            }
            None => Error::CoordinatorNotAvailable(format!(
                "offsets partition {} has no leader right now",
                self.partition
            )),
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
        self.db
            .offsets(self.group.id(), group)
            .map_err(|e| Error::Storage(format!("reading offsets of {group:?}: {e}")))
    }

    pub(super) async fn lock(&self, group: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Locks nobody holds are dropped whenever the map has doubled since the last
            // sweep (amortised O(1) per request).
            if locks.len() >= self.lock_sweep_at.load(Ordering::Relaxed) {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
                self.lock_sweep_at.store((locks.len() * 2).max(1024), Ordering::Relaxed);
            }
            locks.entry(group.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Proposes `cmd` and waits until it is committed and applied. The group's lock
    /// (`guard`) is held until the outcome is known, even if the request is dropped: the
    /// next change to the group must be computed from state that includes this one.
    pub(super) async fn propose(
        &self,
        term: u64,
        cmd: &GroupCommand,
        guard: OwnedMutexGuard<()>,
    ) -> Result<()> {
        let what = format!("offsets partition {}", self.partition);
        let entry = JsonEntry::new(cmd);
        if entry.0.len() > MAX_COMMAND_BYTES {
            return Err(Error::InvalidRequest(format!(
                "the change is {} bytes, over the {MAX_COMMAND_BYTES}-byte limit of one \
                     group command (too many members, subscriptions or offsets at once)",
                entry.0.len()
            )));
        }
        let done = self
            .group
            .propose_in_term(entry, term)
            .await
            .map_err(|e| coordinator_error(&what, e))?;
        // The lock is held until the outcome is known, also if this request is dropped: a
        // waiter owns it. Once waiters stop (shutdown), the outcome is awaited here.
        if self.tasks.is_stopping() {
            let outcome = done.await;
            drop(guard);
            return outcome.map_err(|e| coordinator_error(&what, e)).map(|_| ());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tasks.spawn("group command outcome", async move {
            let _ = tx.send(done.await);
            drop(guard);
        });
        let outcome = rx.await.map_err(|_| {
            Error::ShuttingDown(format!("{what}: the broker is shutting down; outcome unknown"))
        })?;
        outcome.map_err(|e| coordinator_error(&what, e))?;
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
        let arrived = Instant::now();
        let group = req.group.clone();
        let member_id = match (req.member_id.is_empty(), req.member_epoch) {
            (true, 0) => new_member_id(),
            (true, _) => {
                return Err(Error::UnknownMemberId(
                    "an empty member id is only valid when joining (member epoch 0)".into(),
                ));
            }
            (false, _) => req.member_id.clone(),
        };
        let key = (group.clone(), member_id.clone());
        let Some(fenced) = self.sessions(term, arrived).map(|mut s| {
            let fenced = s.fenced.contains(&key);
            if fenced && req.member_epoch == 0 {
                // Rejoining from scratch confirms it dropped everything.
                s.fenced.remove(&key);
            }
            // Seen on arrival: session expiry, waiting for this group's lock, must not
            // remove a member whose heartbeat is queued behind it. A fenced member's
            // heartbeats do not count: it is removed a session after its last good one.
            if !fenced || req.member_epoch == 0 {
                s.last_seen.insert(key.clone(), arrived);
            }
            fenced && req.member_epoch != 0
        }) else {
            return Err(self.not_coordinator());
        };
        if fenced {
            return Err(Error::FencedMemberEpoch(format!(
                "member {member_id} did not give up its revoked partitions within the \
                     rebalance timeout ({} ms): drop every partition and rejoin with epoch 0",
                self.config.rebalance_timeout_ms
            )));
        }
        let guard = self.lock(&group).await;
        let old = self.state(&group).unwrap_or_default();
        if old.classic.as_ref().is_some_and(|c| !c.members.is_empty()) || self.is_classic(&group) {
            return Err(Error::InconsistentGroupProtocol(format!(
                "group {group:?} uses Kafka's classic group protocol, not the consumer one"
            )));
        }
        let joining = req.member_epoch == 0 && !old.members.contains_key(&member_id);
        let max = self.config.max_group_size as usize;
        if joining && old.members.len() >= max {
            return Err(Error::GroupMaxSizeReached(format!(
                "group {group:?} has reached its maximum of {max} members"
            )));
        }
        let hb = Heartbeat {
            member_id: &member_id,
            member_epoch: req.member_epoch,
            subscribed: &req.subscribed,
            subscribed_regex: req.subscribed_regex.as_deref(),
            owned: &req.owned,
            assignor: &req.assignor,
            client_id: &req.client_id,
        };
        let (new, reply) = old.heartbeat(&hb, topics)?;
        if new != *old {
            let cmd = GroupCommand::PutGroup { group: group.clone(), state: new.clone() };
            self.propose(term, &cmd, guard).await?;
        } else {
            drop(guard);
        }
        match new.members.get(&member_id) {
            None => self.forget(term, &key),
            Some(m) => {
                if let Some(mut s) = self.sessions(term, arrived) {
                    if m.pending_revocation.is_empty() {
                        s.revoking.remove(&key);
                    } else if s.revoking.get(&key).is_none_or(|(_, p)| *p != m.pending_revocation) {
                        // A new revocation starts its own rebalance timeout.
                        s.revoking.insert(key, (Instant::now(), m.pending_revocation.clone()));
                    }
                }
            }
        }
        Ok(reply)
    }

    /// Drops the soft state of a member that left or was removed.
    fn forget(&self, term: u64, key: &(String, String)) {
        if let Some(mut s) = self.sessions(term, Instant::now()) {
            s.last_seen.remove(key);
            s.revoking.remove(key);
            s.fenced.remove(key);
        }
    }

    /// The session table of `term`: a newer term starts every member's clocks afresh; a
    /// caller of an older term gets none (its view is stale).
    fn sessions(&self, term: u64, now: Instant) -> Option<std::sync::MutexGuard<'_, Sessions>> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if term < s.term {
            return None;
        }
        if term > s.term {
            *s = Sessions { term, ..Default::default() };
            for (group, state) in self.groups() {
                for (id, m) in &state.members {
                    let key = (group.clone(), id.clone());
                    s.last_seen.insert(key.clone(), now);
                    if !m.pending_revocation.is_empty() {
                        s.revoking.insert(key, (now, m.pending_revocation.clone()));
                    }
                }
            }
        }
        Some(s)
    }

    /// Removes members whose session timed out, and fences members that did not confirm a
    /// revocation within the rebalance timeout. Returns the (group, member) pairs removed.
    pub async fn expire_members(
        &self,
        topics: &BTreeMap<String, u32>,
    ) -> Result<Vec<(String, String)>> {
        if !self.group.is_leader() || !self.group.is_leader_ready() {
            return Ok(Vec::new());
        }
        let term = self.group.current_term();
        let session = Duration::from_millis(self.config.session_timeout_ms);
        let rebalance = Duration::from_millis(self.config.rebalance_timeout_ms);
        let candidates: Vec<(String, String)> = {
            let now = Instant::now();
            let Some(mut s) = self.sessions(term, now) else { return Ok(Vec::new()) };
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
                s.revoking
                    .iter()
                    .filter(|(k, (t, _))| {
                        now.duration_since(*t) > rebalance && !s.fenced.contains(*k)
                    })
                    .map(|(k, _)| k.clone()),
            );
            out.sort();
            out.dedup();
            out
        };
        let mut removed = Vec::new();
        for key in candidates {
            let (group, member) = &key;
            let guard = self.lock(group).await;
            // Decided again under the lock: a heartbeat may have come in meanwhile.
            let now = Instant::now();
            let state = self.state(group).unwrap_or_default();
            let Some(m) = state.members.get(member) else {
                drop(guard);
                self.forget(term, &key);
                continue;
            };
            let (timed_out, slow) = match self.sessions(term, now) {
                Some(s) => (
                    s.last_seen.get(&key).is_some_and(|t| now.duration_since(*t) > session),
                    s.revoking.get(&key).is_some_and(|(t, p)| {
                        now.duration_since(*t) > rebalance && *p == m.pending_revocation
                    }),
                ),
                None => return Ok(removed),
            };
            if timed_out {
                let new = state.remove_member(member, topics);
                self.propose(
                    term,
                    &GroupCommand::PutGroup { group: group.clone(), state: new },
                    guard,
                )
                .await?;
                tracing::info!(group = %group, member = %member, "member removed: session timed out");
                self.forget(term, &key);
                removed.push(key);
            } else if slow {
                drop(guard);
                tracing::info!(group = %group, member = %member, "member fenced: revocation not confirmed within the rebalance timeout");
                if let Some(mut s) = self.sessions(term, now) {
                    s.fenced.insert(key);
                }
            }
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
        let guard = self.lock(group).await;
        match self.state(group) {
            Some(state) if state.classic.is_some() || self.is_classic(group) => {
                self.classic_validate_commit(term, group, member_id, member_epoch)?
            }
            Some(state) => state.validate_commit(member_id, member_epoch)?,
            None if member_id.is_empty() => {}
            None => {
                return Err(Error::UnknownMemberId(format!(
                    "member {member_id} is not in group {group:?} (the group has no members)"
                )));
            }
        }
        self.propose(term, &GroupCommand::Commit { group: group.to_string(), offsets }, guard).await
    }

    /// Deletes a group without members and its offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let term = self.term().await?;
        let guard = self.lock(group).await;
        let state = self.state(group).ok_or_else(|| group_not_found(group))?;
        let classic = state.classic.as_ref().map_or(0, |c| c.members.len());
        if !state.members.is_empty() || classic > 0 || self.is_classic(group) {
            return Err(not_empty(group, state.members.len() + classic, "deleted"));
        }
        self.propose(term, &GroupCommand::DeleteGroup { group: group.to_string() }, guard).await
    }

    /// Sets offsets of a group without members (ResetOffsets), unless `dry_run`.
    pub async fn reset_offsets(
        &self,
        group: &str,
        offsets: Vec<OffsetRecord>,
        dry_run: bool,
    ) -> Result<()> {
        let term = self.term().await?;
        let guard = self.lock(group).await;
        if let Some(state) = self.state(group)
            && !state.members.is_empty()
        {
            return Err(not_empty(group, state.members.len(), "reset"));
        }
        if dry_run {
            return Ok(());
        }
        self.propose(term, &GroupCommand::Commit { group: group.to_string(), offsets }, guard).await
    }

    /// Snapshots the state and purges the log once it has grown enough since the last one.
    pub async fn maybe_compact(&self) {
        let m = self.group.status();
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
    Error::GroupNotEmpty(format!(
        "group {group:?} has {members} active members; it can only be {what} when empty"
    ))
}

/// Raft errors of an offsets partition, in coordinator terms.
fn coordinator_error(what: &str, e: rafka_raft::Error) -> Error {
    match Error::from_raft(what, e) {
        Error::NotLeader { message, leader } => {
            Error::NotCoordinator { message, coordinator: leader }
        }
        Error::LeaderNotAvailable(message) => Error::CoordinatorNotAvailable(message),
        other => other,
    }
}

/// A fresh member id (128 random bits, hex).
pub(super) fn new_member_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
