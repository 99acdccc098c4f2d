//! Simulated group members: [`SimMember`] (one consumer in a tokio task), [`Owners`] (what
//! every member owns at one instant), [`OwnershipWatch`] (samples it for double ownership)
//! and [`ConsumeLog`] (deliveries and commits of consuming members).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use rafka_proto::ErrorExt;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::GroupHeartbeatRequest;
use rafka_proto::v1::OffsetCommit;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::GroupsClient;
use super::Tp;
use super::by_partition;
use super::flatten;
use super::offset;
use super::to_wire;
use crate::TestClient;
use crate::client::HasError;
use crate::records::decode_batch;

/// What every member owns right now, by member name. Members update their entry under the
/// lock as soon as their owned set changes, before they tell the coordinator, so a snapshot
/// is a set of claims that held at one instant.
#[derive(Debug, Clone, Default)]
pub struct Owners(Arc<Mutex<BTreeMap<String, BTreeSet<Tp>>>>);

impl Owners {
    /// Every member's owned set, at one instant.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeSet<Tp>> {
        self.0.lock().unwrap().clone()
    }

    fn set(&self, member: &str, owned: &BTreeSet<Tp>) {
        self.0.lock().unwrap().insert(member.to_string(), owned.clone());
    }

    fn remove(&self, member: &str) {
        self.0.lock().unwrap().remove(member);
    }
}

/// Partitions claimed by more than one member in `snapshot`, with their claimants.
pub fn double_owned(snapshot: &BTreeMap<String, BTreeSet<Tp>>) -> BTreeMap<Tp, Vec<String>> {
    let mut claims: BTreeMap<Tp, Vec<String>> = BTreeMap::new();
    for (member, owned) in snapshot {
        for tp in owned {
            claims.entry(tp.clone()).or_default().push(member.clone());
        }
    }
    claims.retain(|_, who| who.len() > 1);
    claims
}

/// Samples [`Owners`] continuously in a task, recording every snapshot in which a partition
/// has two owners.
#[derive(Debug)]
pub struct OwnershipWatch {
    stop: watch::Sender<bool>,
    task: JoinHandle<(u64, Vec<String>)>,
}

impl OwnershipWatch {
    /// Starts sampling `owners` every `every`.
    pub fn start(owners: Owners, every: Duration) -> OwnershipWatch {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut samples, mut violations) = (0u64, Vec::new());
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let snap = owners.snapshot();
                samples += 1;
                let doubles = double_owned(&snap);
                if !doubles.is_empty() && violations.len() < 20 {
                    violations.push(format!("{doubles:?} in {snap:?}"));
                }
                tokio::select! {
                    _ = stopped.changed() => return (samples, violations),
                    _ = tick.tick() => {}
                }
            }
        });
        OwnershipWatch { stop, task }
    }

    /// Stops sampling; returns the number of samples and the violations seen.
    pub async fn stop(self) -> (u64, Vec<String>) {
        let _ = self.stop.send(true);
        self.task.await.expect("the ownership watch panicked")
    }
}

/// One record a consuming member processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The member's name.
    pub member: String,
    /// Partition.
    pub tp: Tp,
    /// The record's offset.
    pub offset: i64,
}

/// One commit a broker acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The member's name.
    pub member: String,
    /// Partition.
    pub tp: Tp,
    /// The committed offset (next to consume).
    pub offset: i64,
}

/// What consuming members processed and committed, in order, shared by all of them.
#[derive(Debug, Clone, Default)]
pub struct ConsumeLog {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    commits: Arc<Mutex<Vec<Commit>>>,
}

impl ConsumeLog {
    /// Every delivery so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// How many records were delivered so far.
    pub fn delivered(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    /// Every acknowledged commit so far, in order.
    pub fn commits(&self) -> Vec<Commit> {
        self.commits.lock().unwrap().clone()
    }
}

/// Consuming mode of a [`SimMember`].
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Where deliveries and commits are logged.
    pub log: ConsumeLog,
    /// Simulated processing time per batch, between delivery and commit: keeps consumption
    /// slow enough to be interrupted, and a kill then usually lands on delivered records
    /// not yet committed. Not used to wait for anything.
    pub process_delay: Duration,
}

/// How a [`SimMember`] behaves.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// The group.
    pub group: String,
    /// The member's name: its client id, its key in [`Owners`] and [`ConsumeLog`].
    pub name: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Server-side assignor asked for ("" for the default).
    pub assignor: String,
    /// Consume owned partitions, when set.
    pub consume: Option<ConsumeOptions>,
    /// Misbehave: never give up a revoked partition (keep owning and listing it), as a
    /// consumer stuck in processing would.
    pub hold_revoked: bool,
}

impl MemberOptions {
    /// A non-consuming member of `group` named `name` subscribed to `topics`.
    pub fn new(group: &str, name: &str, topics: &[&str]) -> MemberOptions {
        MemberOptions {
            group: group.to_string(),
            name: name.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignor: String::new(),
            consume: None,
            hold_revoked: false,
        }
    }
}

/// A member's state as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberState {
    /// Member id (empty until joined).
    pub member_id: String,
    /// Member epoch (0 until joined).
    pub epoch: i32,
    /// Partitions owned now.
    pub owned: BTreeSet<Tp>,
    /// Successful heartbeats so far.
    pub heartbeats: u64,
    /// The last failure (RPC error or unexpected code), if any.
    pub last_error: Option<String>,
}

/// A consumer simulated in a tokio task. See the module docs.
#[derive(Debug)]
pub struct SimMember {
    name: String,
    state: watch::Receiver<MemberState>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    owners: Owners,
}

impl Drop for SimMember {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl SimMember {
    /// Starts a member that joins at once. `groups` and `data` should have short timeouts
    /// (a few seconds): a call stuck past the session timeout costs the membership.
    pub fn spawn(
        groups: GroupsClient,
        data: TestClient,
        owners: Owners,
        opts: MemberOptions,
    ) -> SimMember {
        let (state_tx, state) = watch::channel(MemberState::default());
        let (stop, stopped) = watch::channel(false);
        owners.set(&opts.name, &BTreeSet::new());
        let runner = Runner {
            groups,
            data,
            owners: owners.clone(),
            name: opts.name.clone(),
            opts,
            state_tx,
            st: MemberState::default(),
            positions: HashMap::new(),
            interval: Duration::from_millis(300),
            session: Duration::from_secs(45),
            last_ok: Instant::now(),
            heartbeat_now: false,
        };
        let name = runner.name.clone();
        let task = tokio::spawn(runner.run(stopped));
        SimMember { name, state, stop, task: Some(task), owners }
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state last published.
    pub fn state(&self) -> MemberState {
        self.state.borrow().clone()
    }

    /// Partitions owned now.
    pub fn owned(&self) -> BTreeSet<Tp> {
        self.state.borrow().owned.clone()
    }

    /// Waits until the member's state satisfies `ok`; returns that state.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&MemberState) -> bool,
    ) -> MemberState {
        let mut rx = self.state.clone();
        let found = tokio::time::timeout(timeout, rx.wait_for(|s| ok(s))).await;
        match found {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => {
                panic!("{}: {what}: the member's task ended; {:?}", self.name, self.state())
            }
            Err(_) => {
                panic!("{}: {what}: not within {timeout:?}; last {:?}", self.name, self.state())
            }
        }
    }

    /// Leaves the group (commits first when consuming, then heartbeats with epoch -1) and
    /// ends the task; returns how leaving went.
    pub async fn leave(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let task = self.task.take().expect("the task is there until leave or kill");
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(r)) => r.with_context(|| format!("{} leaving", self.name)),
            Ok(Err(e)) => bail!("{}: the member's task failed: {e}", self.name),
            Err(_) => bail!("{}: did not leave within 30 s", self.name),
        }
    }

    /// Aborts the task without leaving, like kill -9: the coordinator still counts the
    /// member until its session times out. Its claims are removed from [`Owners`] (a dead
    /// process consumes nothing).
    pub fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.owners.remove(&self.name);
    }
}

/// The body of a [`SimMember`]'s task.
struct Runner {
    groups: GroupsClient,
    data: TestClient,
    owners: Owners,
    name: String,
    opts: MemberOptions,
    state_tx: watch::Sender<MemberState>,
    st: MemberState,
    /// Consuming: the next offset to process, per owned partition (absent until read from
    /// the committed offsets).
    positions: HashMap<Tp, i64>,
    interval: Duration,
    session: Duration,
    last_ok: Instant,
    heartbeat_now: bool,
}

impl Runner {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut next_heartbeat = Instant::now();
        loop {
            if *stopped.borrow() {
                break;
            }
            if self.heartbeat_now || Instant::now() >= next_heartbeat {
                self.heartbeat_now = false;
                self.heartbeat().await;
                next_heartbeat = Instant::now() + self.interval;
            }
            let worked = self.opts.consume.is_some() && self.consume_once().await;
            if !worked && !self.heartbeat_now {
                let pause = if self.opts.consume.is_some() {
                    Duration::from_millis(50)
                } else {
                    next_heartbeat.saturating_duration_since(Instant::now())
                };
                let until = (Instant::now() + pause).min(next_heartbeat);
                tokio::select! {
                    r = stopped.changed() => {
                        if r.is_err() {
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
        }
        self.leave().await
    }

    fn publish(&mut self) {
        self.owners.set(&self.name, &self.st.owned);
        self.state_tx.send_replace(self.st.clone());
    }

    fn note(&mut self, error: String) {
        self.st.last_error = Some(error);
        self.state_tx.send_replace(self.st.clone());
    }

    /// Gives up every partition without committing and rejoins as a new member.
    fn reset(&mut self, why: String) {
        self.st.owned.clear();
        self.positions.clear();
        self.st.member_id.clear();
        self.st.epoch = 0;
        self.st.last_error = Some(why);
        self.publish();
    }

    async fn heartbeat(&mut self) {
        if self.st.epoch > 0 && self.last_ok.elapsed() > self.session {
            // A real client assumes it was removed after a silent session.
            let why = format!("no heartbeat answered for {:?}", self.last_ok.elapsed());
            self.reset(why);
        }
        let req = GroupHeartbeatRequest {
            group_id: self.opts.group.clone(),
            member_id: self.st.member_id.clone(),
            member_epoch: self.st.epoch,
            subscribed_topics: self.opts.topics.clone(),
            owned_partitions: to_wire(&self.st.owned),
            server_assignor: self.opts.assignor.clone(),
            client_id: self.name.clone(),
        };
        let resp = match self.groups.heartbeat(req).await {
            Ok(r) => r,
            Err(e) => return self.note(format!("heartbeat: {e:#}")),
        };
        let e = resp.error();
        match e.error_code() {
            ErrorCode::None => {
                self.last_ok = Instant::now();
                self.st.heartbeats += 1;
                self.st.member_id = resp.member_id.clone();
                self.st.epoch = resp.member_epoch;
                if resp.heartbeat_interval_ms > 0 {
                    self.interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
                }
                if resp.session_timeout_ms > 0 {
                    self.session = Duration::from_millis(resp.session_timeout_ms as u64);
                }
                self.reconcile(flatten(&resp.assignment)).await;
            }
            ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
                self.reset(format!("heartbeat: {:?}: {}", e.error_code(), e.message));
                self.heartbeat_now = true;
            }
            c => self.note(format!("heartbeat: {c:?}: {}", e.message)),
        }
    }

    /// Moves to the assignment `target`: commits and drops revoked partitions, takes new
    /// ones (their positions are read from the committed offsets before consuming).
    async fn reconcile(&mut self, target: BTreeSet<Tp>) {
        let target = if self.opts.hold_revoked {
            self.st.owned.union(&target).cloned().collect()
        } else {
            target
        };
        let revoked: Vec<Tp> = self.st.owned.difference(&target).cloned().collect();
        if self.opts.consume.is_some() && !revoked.is_empty() {
            self.commit_positions(&revoked).await;
        }
        for tp in &revoked {
            self.positions.remove(tp);
        }
        self.st.owned = target;
        self.publish();
    }

    /// Commits the positions of `tps`; logs acknowledged commits.
    async fn commit_positions(&mut self, tps: &[Tp]) {
        let offsets: Vec<OffsetCommit> = tps
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|&o| offset(&tp.0, tp.1, o, &self.name)))
            .collect();
        if offsets.is_empty() || self.st.member_id.is_empty() {
            return;
        }
        let req = GroupsClient::commit_request(
            &self.opts.group,
            Some((self.st.member_id.as_str(), self.st.epoch)),
            offsets.clone(),
        );
        let resp = match self.groups.commit(req).await {
            Ok(r) => r,
            Err(e) => return self.note(format!("commit: {e:#}")),
        };
        let e = resp.error();
        match e.error_code() {
            ErrorCode::None => {
                if let Some(c) = &self.opts.consume {
                    let mut commits = c.log.commits.lock().unwrap();
                    for o in offsets {
                        let tp = (o.topic, o.partition);
                        commits.push(Commit { member: self.name.clone(), tp, offset: o.offset });
                    }
                }
            }
            code => {
                // STALE_MEMBER_EPOCH: heartbeat, then carry on (the commit is skipped);
                // fenced or unknown: the heartbeat rejoins.
                self.heartbeat_now = true;
                self.note(format!("commit: {code:?}: {}", e.message));
            }
        }
    }

    /// The committed offset of `tp`, 0 when none.
    async fn committed(&self, tp: &Tp) -> anyhow::Result<i64> {
        let want = BTreeSet::from([tp.clone()]);
        let resp = self.groups.fetch_offsets(&self.opts.group, &want).await?;
        let e = resp.error();
        match e.error_code() {
            ErrorCode::GroupIdNotFound => Ok(0),
            ErrorCode::None => {
                let got = by_partition(&resp.offsets);
                Ok(got.get(tp).map_or(0, |o| o.offset.max(0)))
            }
            c => bail!("fetch offsets of {tp:?}: {c:?}: {}", e.message),
        }
    }

    /// Processes one batch of every owned partition that has one; true if any had.
    async fn consume_once(&mut self) -> bool {
        let Some(consume) = self.opts.consume.clone() else { return false };
        let mut worked = false;
        let owned: Vec<Tp> = self.st.owned.iter().cloned().collect();
        for tp in owned {
            if self.heartbeat_now || !self.st.owned.contains(&tp) {
                break;
            }
            let pos = match self.positions.get(&tp) {
                Some(&p) => p,
                None => match self.committed(&tp).await {
                    Ok(p) => {
                        self.positions.insert(tp.clone(), p);
                        p
                    }
                    Err(e) => {
                        self.note(format!("{e:#}"));
                        continue;
                    }
                },
            };
            let req = FetchRequest {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: pos,
                ..Default::default()
            };
            let resp = match self.data.fetch_with(req).await {
                Ok(r) => r,
                Err(e) => {
                    self.note(format!("fetch {tp:?} at {pos}: {e:#}"));
                    continue;
                }
            };
            let e = resp.error();
            if !e.is_ok() {
                self.note(format!("fetch {tp:?} at {pos}: {:?}: {}", e.error_code(), e.message));
                continue;
            }
            let Some(b) = resp.batches.first() else { continue };
            let records = match decode_batch(b.base_offset, &b.batch) {
                Ok(r) => r,
                Err(e) => {
                    self.note(format!("{tp:?}: {e:#}"));
                    continue;
                }
            };
            let offsets: Vec<i64> =
                records.iter().map(|r| r.offset).filter(|&o| o >= pos).collect();
            let Some(&last) = offsets.last() else { continue };
            // Delivered to the application first, then processed, then committed: a kill
            // during processing leaves delivered records uncommitted.
            {
                let mut log = consume.log.deliveries.lock().unwrap();
                for offset in offsets {
                    log.push(Delivery { member: self.name.clone(), tp: tp.clone(), offset });
                }
            }
            tokio::time::sleep(consume.process_delay).await;
            self.positions.insert(tp.clone(), last + 1);
            self.commit_positions(std::slice::from_ref(&tp)).await;
            worked = true;
        }
        worked
    }

    /// Commits (when consuming), gives up every partition and leaves with epoch -1.
    async fn leave(mut self) -> anyhow::Result<()> {
        if self.opts.consume.is_some() {
            let owned: Vec<Tp> = self.st.owned.iter().cloned().collect();
            self.commit_positions(&owned).await;
        }
        self.st.owned.clear();
        self.positions.clear();
        self.owners.remove(&self.name);
        self.state_tx.send_replace(self.st.clone());
        if self.st.member_id.is_empty() {
            return Ok(());
        }
        let req = GroupHeartbeatRequest {
            group_id: self.opts.group.clone(),
            member_id: self.st.member_id.clone(),
            member_epoch: -1,
            subscribed_topics: self.opts.topics.clone(),
            owned_partitions: Vec::new(),
            server_assignor: self.opts.assignor.clone(),
            client_id: self.name.clone(),
        };
        let resp = self.groups.heartbeat(req).await?;
        let e = resp.error();
        anyhow::ensure!(e.is_ok(), "leave: {:?}: {}", e.error_code(), e.message);
        self.st.epoch = resp.member_epoch;
        self.state_tx.send_replace(self.st.clone());
        Ok(())
    }
}
