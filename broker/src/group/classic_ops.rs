//! The coordinator's side of Kafka's classic group protocol: it keeps each classic group's
//! [`Runtime`] (soft state of its term), parks JoinGroup and SyncGroup requests until their
//! phase ends, and replicates the group when a generation completes (the leader's
//! SyncGroup) or the group empties. See [`super::classic`] for the model.

use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

use tokio::sync::oneshot;

use super::GroupCommand;
use super::classic::ClassicGroup;
use super::classic::Join;
use super::classic::Joined;
use super::classic::Phase;
use super::classic::Runtime;
use super::classic::SyncStep;
use super::coordinator::Coordinator;
use super::coordinator::new_member_id;
use crate::error::Error;
use crate::error::Result;

/// How long a new classic group waits for more members before its first generation
/// (Kafka's `group.initial.rebalance.delay.ms`).
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_secs(3);
/// Slack on top of a member's rebalance timeout while its request is parked.
const PARK_SLACK: Duration = Duration::from_secs(5);

/// The classic groups' runtimes of one coordinator term.
#[derive(Default)]
pub struct ClassicTable {
    term: u64,
    groups: HashMap<String, Runtime>,
}

/// A member leaving: its id, or its instance id (static members).
pub struct Leaving {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

fn shutting_down() -> Error {
    Error::CoordinatorNotAvailable("the coordinator moved or is stopping: find it again".into())
}

impl Coordinator {
    /// Whether `group` is a classic group with members or joins under way in this term.
    pub(super) fn is_classic(&self, group: &str) -> bool {
        let t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        t.groups.get(group).is_some_and(|rt| !rt.idle())
    }

    /// Runs `f` on `group`'s runtime in `term` (made from the replicated group if needed).
    fn with_runtime<R>(
        &self,
        term: u64,
        group: &str,
        f: impl FnOnce(&mut Runtime) -> R,
    ) -> Result<R> {
        let replicated = self.state(group);
        if replicated.as_ref().is_some_and(|s| !s.members.is_empty()) {
            return Err(Error::InconsistentGroupProtocol(format!(
                "group {group:?} uses the consumer group protocol (KIP-848), not the classic one"
            )));
        }
        let mut t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        if t.term != term {
            // A new term: rebalances of an earlier one are gone with their parked requests.
            t.term = term;
            t.groups.clear();
        }
        let rt = t.groups.entry(group.to_string()).or_insert_with(|| {
            let g = replicated.and_then(|s| s.classic.clone()).unwrap_or_default();
            Runtime::from_replicated(g, Instant::now())
        });
        Ok(f(rt))
    }

    /// Replicates `group`'s settled classic state if it differs from the replicated one.
    async fn persist_settled(&self, term: u64, group: &str) -> Result<()> {
        let guard = self.lock(group).await;
        let Some(settled) = self.with_runtime(term, group, |rt| rt.settled())? else {
            return Ok(());
        };
        let old = self.state(group).unwrap_or_default();
        if old.classic.as_ref() == Some(&settled)
            || old.classic.is_none() && settled.members.is_empty()
        {
            return Ok(());
        }
        let mut state = (*old).clone();
        state.classic = Some(settled);
        let cmd = GroupCommand::PutGroup { group: group.to_string(), state };
        self.propose(term, &cmd, guard).await
    }

    /// A JoinGroup: answered when the group's join phase ends (or at once).
    pub async fn classic_join(&self, group: &str, req: Join) -> Result<Joined> {
        let term = self.term().await?;
        let wait = Duration::from_millis(u64::from(req.rebalance_timeout_ms))
            .max(INITIAL_REBALANCE_DELAY)
            + PARK_SLACK;
        let max = self.config.max_group_size as usize;
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let (now_answer, done) = self.with_runtime(term, group, |rt| {
            if req.member_id.is_empty() && rt.group.members.len() >= max {
                return Err(Error::GroupMaxSizeReached(format!(
                    "group {group:?} has reached its maximum of {max} members"
                )));
            }
            let r = rt.join(req, new_member_id(), tx, now, INITIAL_REBALANCE_DELAY)?;
            Ok((r, rt.try_complete_join(now)))
        })??;
        for (j, r) in done {
            let _ = r.send(Ok(j));
        }
        if let Some((joined, _)) = now_answer {
            return Ok(joined);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(shutting_down()),
            Err(_) => {
                Err(Error::RebalanceInProgress("the rebalance did not complete: rejoin".into()))
            }
        }
    }

    /// A SyncGroup: the member's assignment once the leader's SyncGroup is replicated.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        let term = self.term().await?;
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let step = self.with_runtime(term, group, |rt| {
            rt.sync(member_id, generation, assignments, tx, now)
        })??;
        let wait = Duration::from_millis(self.config.rebalance_timeout_ms) + PARK_SLACK;
        match step {
            SyncStep::Answer(a, _) => return Ok(a),
            SyncStep::Parked => {}
            SyncStep::Replicate(g) => self.replicate_generation(term, group, g).await?,
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(shutting_down()),
            Err(_) => Err(Error::RebalanceInProgress("no assignment came: rejoin".into())),
        }
    }

    /// Replicates a completed generation, then answers its parked SyncGroups.
    async fn replicate_generation(&self, term: u64, group: &str, g: ClassicGroup) -> Result<()> {
        let guard = self.lock(group).await;
        let mut state = (*self.state(group).unwrap_or_default()).clone();
        state.classic = Some(g.clone());
        let generation = g.generation;
        let cmd = GroupCommand::PutGroup { group: group.to_string(), state };
        match self.propose(term, &cmd, guard).await {
            Ok(()) => {
                for (a, r) in self.with_runtime(term, group, |rt| rt.complete_sync(g))? {
                    let _ = r.send(Ok(a));
                }
                Ok(())
            }
            Err(e) => {
                let now = Instant::now();
                self.with_runtime(term, group, |rt| rt.fail_sync(generation, &e, now))?;
                Err(e)
            }
        }
    }

    /// A Heartbeat.
    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<()> {
        let term = self.term().await?;
        let now = Instant::now();
        self.with_runtime(term, group, |rt| rt.heartbeat(member_id, generation, now))?
    }

    /// A LeaveGroup: each member's outcome, in order.
    pub async fn classic_leave(&self, group: &str, leaving: &[Leaving]) -> Result<Vec<Result<()>>> {
        let term = self.term().await?;
        let now = Instant::now();
        let outcomes = self.with_runtime(term, group, |rt| {
            leaving
                .iter()
                .map(|l| rt.leave(&l.member_id, l.group_instance_id.as_deref(), now).map(|_| ()))
                .collect::<Vec<_>>()
        })?;
        self.persist_settled(term, group).await?;
        Ok(outcomes)
    }

    /// Checks a classic group's offset commit (member and generation).
    pub(super) fn classic_validate_commit(
        &self,
        term: u64,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<()> {
        self.with_runtime(term, group, |rt| rt.validate_commit(member_id, generation))?
    }

    /// The phase and members of a classic group, as the leader sees them now.
    pub fn classic_view(&self, group: &str) -> Option<(Phase, ClassicGroup)> {
        let t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = t.groups.get(group) {
            return Some((rt.phase, rt.group.clone()));
        }
        drop(t);
        let g = self.state(group)?.classic.clone()?;
        let phase = if g.members.is_empty() { Phase::Empty } else { Phase::Stable };
        Some((phase, g))
    }

    /// Classic groups with a runtime in the current term (joining ones not yet replicated
    /// included).
    pub fn classic_groups(&self) -> Vec<String> {
        let term = self.group.current_term();
        let t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        if t.term != term {
            return Vec::new();
        }
        t.groups.iter().filter(|(_, rt)| !rt.idle()).map(|(name, _)| name.clone()).collect()
    }

    /// Ends join phases whose time is up and removes members whose session expired;
    /// replicates groups that emptied. Called periodically on every coordinator.
    pub async fn classic_tick(&self) {
        if !self.group.is_leader() || !self.group.is_leader_ready() {
            return;
        }
        let term = self.group.current_term();
        let now = Instant::now();
        let mut to_persist = Vec::new();
        {
            let mut t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
            if t.term != term {
                return;
            }
            for (name, rt) in t.groups.iter_mut() {
                let expired = rt.expire(now);
                for m in &expired {
                    tracing::info!(group = %name, member = %m, "classic member removed: session timed out");
                }
                for (j, r) in rt.try_complete_join(now) {
                    let _ = r.send(Ok(j));
                }
                if !expired.is_empty() && rt.phase == Phase::Empty {
                    to_persist.push(name.clone());
                }
            }
        }
        for g in to_persist {
            if let Err(e) = self.persist_settled(term, &g).await {
                tracing::debug!(group = %g, "replicating an emptied classic group: {e}");
            }
        }
        // Runtimes of empty, quiet groups go (they are rebuilt from the replicated state).
        let mut t = self.classic.lock().unwrap_or_else(|p| p.into_inner());
        t.groups.retain(|name, rt| {
            !rt.idle()
                || self.state(name).is_some_and(|s| s.classic.as_ref() != rt.settled().as_ref())
        });
    }
}
