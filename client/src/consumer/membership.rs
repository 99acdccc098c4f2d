//! Group membership of a subscribed consumer: the heartbeat task and the state it shares
//! with the consumer.
//!
//! The task heartbeats at the interval the coordinator gives, always sending the full owned
//! set, and stores the latest assignment as a *target*. It never changes what the consumer
//! owns: the consumer reconciles inside `poll` (revoke: listener, commit, drop, and only
//! then stop listing the partition; assign: listener, start from the committed offset) and
//! wakes the task so the coordinator hears at once. When the coordinator answers
//! `UNKNOWN_MEMBER_ID` or `FENCED_MEMBER_EPOCH`, or no heartbeat was answered for a session,
//! the task marks everything lost, reports nothing owned and rejoins with epoch 0.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rafka_proto::ErrorCode;
use rafka_proto::v1;
use tokio::sync::Notify;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::error::Result;
use crate::groups::from_wire;
use crate::groups::to_wire;

/// A topic partition.
pub(crate) type Tp = (String, u32);

/// State shared by the heartbeat task and the consumer.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub member_id: String,
    /// The epoch to send next (0 while joining).
    pub epoch: i32,
    /// What the consumer owns; the task reports exactly this.
    pub owned: BTreeSet<Tp>,
    /// The latest assignment not yet reconciled by the consumer.
    pub target: Option<BTreeSet<Tp>>,
    /// Membership was lost: the consumer must drop everything without committing.
    pub lost: bool,
    /// A fatal heartbeat error for `poll` to report once.
    pub fatal: Option<Error>,
    pub interval: Duration,
    pub session: Duration,
}

/// What one heartbeat sends besides the shared state.
#[derive(Debug, Clone)]
struct Subscription {
    group: String,
    topics: Vec<String>,
    assignor: String,
    client_id: String,
}

/// A joined member and its heartbeat task.
#[derive(Debug)]
pub(super) struct Membership {
    client: Client,
    sub: Subscription,
    pub shared: Arc<Mutex<Shared>>,
    /// Wakes the task to heartbeat now.
    wake: Arc<Notify>,
    /// Signalled when a new target or a loss awaits reconciliation.
    pub changed: Arc<Notify>,
    /// Counts answered heartbeats.
    heartbeats: watch::Receiver<u64>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Membership {
    /// Joins `group` with one heartbeat (retried within the client's total timeout, so errors
    /// such as an invalid group id come back here), then starts heartbeating.
    pub async fn join(
        client: Client,
        group: &str,
        topics: Vec<String>,
        assignor: &str,
        client_id: &str,
    ) -> Result<Membership> {
        let sub = Subscription {
            group: group.to_string(),
            topics,
            assignor: assignor.to_string(),
            client_id: client_id.to_string(),
        };
        // A member id of our own: a join whose answer was lost can be retried without
        // leaving a ghost member behind.
        let member_id = format!("{:032x}", rand::random::<u128>());
        let shared = Arc::new(Mutex::new(Shared {
            member_id,
            interval: Duration::from_secs(3),
            session: Duration::from_secs(45),
            ..Shared::default()
        }));
        let changed = Arc::new(Notify::new());
        let req = request(&sub, &shared.lock().unwrap());
        let resp = client.group_heartbeat(req, None).await?;
        apply(&shared, &changed, resp);
        let wake = Arc::new(Notify::new());
        let (count, heartbeats) = watch::channel(0u64);
        let task = tokio::spawn(run(
            client.clone(),
            sub.clone(),
            shared.clone(),
            wake.clone(),
            changed.clone(),
            count,
        ));
        Ok(Membership { client, sub, shared, wake, changed, heartbeats, task: Some(task) })
    }

    /// The member id and epoch to commit with.
    pub fn identity(&self) -> (String, i32) {
        let s = self.shared.lock().unwrap();
        (s.member_id.clone(), s.epoch)
    }

    /// Asks the task to heartbeat now (after the owned set changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Heartbeats now and waits (up to a session) until a heartbeat was answered.
    pub async fn next_heartbeat(&self) {
        let mut rx = self.heartbeats.clone();
        rx.borrow_and_update();
        self.wake();
        let session = self.shared.lock().unwrap().session;
        let _ = tokio::time::timeout(session, rx.changed()).await;
    }

    /// Stops heartbeating and leaves the group (epoch -1).
    pub async fn leave(mut self) -> Result<()> {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        let req = {
            let mut s = self.shared.lock().unwrap();
            s.owned.clear();
            let mut req = request(&self.sub, &s);
            req.member_epoch = -1;
            req
        };
        if req.member_id.is_empty() {
            return Ok(());
        }
        let total = self.shared.lock().unwrap().session;
        match self.client.group_heartbeat(req, Some(total)).await {
            Ok(_) => Ok(()),
            // Already gone: leaving achieved nothing more.
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

fn request(sub: &Subscription, s: &Shared) -> v1::GroupHeartbeatRequest {
    v1::GroupHeartbeatRequest {
        group_id: sub.group.clone(),
        member_id: s.member_id.clone(),
        member_epoch: s.epoch,
        subscribed_topics: sub.topics.clone(),
        owned_partitions: to_wire(&s.owned),
        server_assignor: sub.assignor.clone(),
        client_id: sub.client_id.clone(),
    }
}

/// Stores an answered heartbeat; signals the consumer when the assignment differs from
/// what it owns.
fn apply(shared: &Mutex<Shared>, changed: &Notify, resp: v1::GroupHeartbeatResponse) {
    let mut s = shared.lock().unwrap();
    s.member_id = resp.member_id;
    s.epoch = resp.member_epoch;
    if resp.heartbeat_interval_ms > 0 {
        s.interval = Duration::from_millis(resp.heartbeat_interval_ms as u64);
    }
    if resp.session_timeout_ms > 0 {
        s.session = Duration::from_millis(resp.session_timeout_ms as u64);
    }
    let target = from_wire(&resp.assignment);
    if target != s.owned {
        s.target = Some(target);
        changed.notify_one();
    } else {
        s.target = None;
    }
}

/// Drops the membership: nothing owned, rejoin with epoch 0.
fn lose(shared: &Mutex<Shared>, changed: &Notify, why: &str) {
    tracing::warn!(why, "consumer lost its group membership; rejoining");
    let mut s = shared.lock().unwrap();
    s.lost = true;
    s.owned.clear();
    s.target = None;
    s.epoch = 0;
    changed.notify_one();
}

async fn run(
    client: Client,
    sub: Subscription,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    count: watch::Sender<u64>,
) {
    let mut last_ok = Instant::now();
    loop {
        let (interval, session) = {
            let s = shared.lock().unwrap();
            (s.interval, s.session)
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let req = {
            let s = shared.lock().unwrap();
            if s.lost {
                // The consumer has not dropped its partitions yet; report nothing until then.
                None
            } else {
                Some(request(&sub, &s))
            }
        };
        let Some(req) = req else {
            // Rejoin only after the consumer has dropped its partitions (`poll` clears
            // `lost` and wakes us): a rejoin with epoch 0 claims that it has.
            continue;
        };
        // Leave room for another attempt before the session runs out.
        let total = (session / 2).max(Duration::from_millis(500));
        match client.group_heartbeat(req, Some(total)).await {
            Ok(resp) => {
                last_ok = Instant::now();
                apply(&shared, &changed, resp);
                count.send_modify(|n| *n += 1);
            }
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                ) =>
            {
                lose(&shared, &changed, &e.to_string());
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                if last_ok.elapsed() > session {
                    lose(&shared, &changed, "no heartbeat answered for a session");
                    last_ok = Instant::now();
                } else if matches!(e, Error::Broker { .. }) && !e.is_retriable() {
                    shared.lock().unwrap().fatal = Some(e);
                    changed.notify_one();
                }
            }
        }
    }
}
