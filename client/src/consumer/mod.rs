//! [`Consumer`]: reads partitions it was assigned by hand or by its group's coordinator.
//!
//! - [`config`]: [`ConsumerConfig`], [`OffsetReset`], [`SeekTo`], [`ConsumerRecord`],
//!   [`RebalanceListener`].
//! - `membership`: the heartbeat task of a subscribed consumer.
//! - `fetch`: one round of fetches over the owned partitions, with CRC checks.
//!
//! A subscribed consumer reconciles its assignment inside `poll`: revoked partitions go
//! first (listener, commit with auto-commit, drop, then the heartbeat reports them gone),
//! then new ones (listener; their position comes from the committed offset, else
//! `auto_offset_reset`). Call `poll` regularly: a member that does not give up a revoked
//! partition within the coordinator's rebalance timeout is fenced.

pub mod config;
mod fetch;
mod membership;

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rafka_proto::ErrorCode;
use tokio::time::Instant;

pub use self::config::ConsumerConfig;
pub use self::config::ConsumerRecord;
pub use self::config::OffsetReset;
pub use self::config::RebalanceListener;
pub use self::config::SeekTo;
use self::membership::Membership;
use self::membership::Tp;
use crate::client::Client;
use crate::data::OffsetSpec;
use crate::error::Error;
use crate::error::Result;

/// How the consumer got its partitions.
#[derive(Debug)]
enum Mode {
    /// Neither subscribed nor assigned yet.
    Idle,
    /// `assign`: fixed partitions, no membership.
    Assigned,
    /// `subscribe`: a group member.
    Subscribed(Membership),
}

/// Reads records from the partitions it owns, in offset order per partition. See the module
/// docs.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    listener: Option<Arc<dyn RebalanceListener>>,
    mode: Mode,
    /// Owned partitions and their positions (the next offset to read; `None` until known).
    positions: BTreeMap<Tp, Option<i64>>,
    last_auto_commit: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

impl Consumer {
    /// A consumer over `client`; it reads nothing until `subscribe` or `assign`.
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        Ok(Consumer {
            client,
            config,
            listener: None,
            mode: Mode::Idle,
            positions: BTreeMap::new(),
            last_auto_commit: Instant::now(),
        })
    }

    /// Calls `l` when group partitions are revoked or assigned.
    pub fn set_rebalance_listener(&mut self, l: Arc<dyn RebalanceListener>) {
        self.listener = Some(l);
    }

    /// The config this consumer runs with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    fn group(&self) -> Result<&str> {
        self.config
            .group
            .as_deref()
            .ok_or_else(|| usage("this needs a consumer group: set ConsumerConfig.group"))
    }

    /// Joins the group `ConsumerConfig::group` subscribed to `topics` (one heartbeat, so an
    /// invalid group or topic fails here); heartbeats then run in a background task and the
    /// partitions arrive through `poll`.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let group = self.group()?.to_string();
        if topics.is_empty() {
            return Err(usage("subscribe needs at least one topic"));
        }
        match self.mode {
            Mode::Idle => {}
            Mode::Assigned => return Err(usage("subscribe after assign: use one or the other")),
            Mode::Subscribed(_) => return Err(usage("already subscribed")),
        }
        let topics = topics.iter().map(|t| t.to_string()).collect();
        let c = &self.config;
        let m = Membership::join(self.client.clone(), &group, topics, &c.assignor, &c.client_id)
            .await?;
        self.mode = Mode::Subscribed(m);
        self.reconcile().await
    }

    /// Reads exactly `partitions`, without group membership; positions of partitions kept
    /// from an earlier assignment stay. Commits (with a group) are allowed only while the
    /// group has no members.
    pub fn assign(&mut self, partitions: &[(String, u32)]) -> Result<()> {
        if let Mode::Subscribed(_) = self.mode {
            return Err(usage("assign after subscribe: use one or the other"));
        }
        let old = std::mem::take(&mut self.positions);
        for tp in partitions {
            self.positions.insert(tp.clone(), old.get(tp).copied().flatten());
        }
        self.mode = Mode::Assigned;
        Ok(())
    }

    /// Records of owned partitions, in offset order per partition, waiting up to `timeout`
    /// for some (empty on timeout). Also runs auto-commit and group reconciliation.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reconcile().await?;
            self.maybe_auto_commit().await;
            self.init_positions().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = self.config.fetch_max_wait.min(left);
            if self.positions.is_empty() {
                match &self.mode {
                    Mode::Subscribed(m) => {
                        let _ = tokio::time::timeout(left, m.changed.notified()).await;
                    }
                    _ => tokio::time::sleep(left).await,
                }
            } else {
                let records = self.fetch_round(wait).await?;
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// The records as a stream (polling a second at a time); ends never, yields errors.
    pub fn stream(self) -> impl Stream<Item = Result<ConsumerRecord>> {
        let state = (self, VecDeque::new());
        futures::stream::unfold(state, |(mut consumer, mut buffered)| async move {
            loop {
                if let Some(r) = buffered.pop_front() {
                    return Some((Ok(r), (consumer, buffered)));
                }
                match consumer.poll(Duration::from_secs(1)).await {
                    Ok(records) => buffered.extend(records),
                    Err(e) => return Some((Err(e), (consumer, buffered))),
                }
            }
        })
    }

    /// Commits the positions of every owned partition whose position is known.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets = self.known_positions();
        if offsets.is_empty() {
            self.group()?;
            return Ok(());
        }
        self.commit_unchecked(&offsets).await
    }

    /// Commits `offsets` (`(topic, partition, next offset to read)`), each of a partition
    /// this consumer owns.
    pub async fn commit_offsets(&mut self, offsets: &[(String, u32, i64)]) -> Result<()> {
        self.group()?;
        if offsets.is_empty() {
            return Err(usage("commit_offsets without offsets"));
        }
        for (t, p, o) in offsets {
            if !self.positions.contains_key(&(t.clone(), *p)) {
                return Err(usage(format!("cannot commit {t}-{p}: this consumer does not own it")));
            }
            if *o < 0 {
                return Err(usage(format!("cannot commit {t}-{p} at negative offset {o}")));
            }
        }
        self.commit_unchecked(offsets).await
    }

    /// The committed offsets of `partitions` in the group, `None` where nothing is.
    pub async fn committed(&self, partitions: &[(String, u32)]) -> Result<Vec<Option<i64>>> {
        let group = self.group()?;
        self.client.fetch_group_offsets(group, partitions).await
    }

    /// Moves the position of owned `topic`/`partition`; the next `poll` reads from there.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<()> {
        let tp = (topic.to_string(), partition);
        if !self.positions.contains_key(&tp) {
            return Err(usage(format!("cannot seek {topic}-{partition}: not owned")));
        }
        let offset = match to {
            SeekTo::Offset(o) if o < 0 => {
                return Err(usage(format!("cannot seek to negative offset {o}")));
            }
            SeekTo::Offset(o) => o,
            SeekTo::Beginning => self.list(&tp, OffsetSpec::Earliest).await?,
            SeekTo::End => self.list(&tp, OffsetSpec::Latest).await?,
            SeekTo::Timestamp(ts) => match self.list(&tp, OffsetSpec::Timestamp(ts)).await? {
                o if o < 0 => self.list(&tp, OffsetSpec::Latest).await?,
                o => o,
            },
        };
        self.positions.insert(tp, Some(offset));
        Ok(())
    }

    /// The next offset `poll` reads from `topic`/`partition`, when owned and known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied().flatten()
    }

    /// The partitions owned now.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.positions.keys().cloned().collect()
    }

    /// Commits (with auto-commit), then leaves the group (epoch -1). Leaving is attempted
    /// even when the commit fails; the first error is returned.
    pub async fn close(mut self) -> Result<()> {
        let committed = match self.config.auto_commit_interval {
            Some(_) if self.config.group.is_some() => self.commit().await,
            _ => Ok(()),
        };
        let owned = self.assignment();
        let mode = std::mem::replace(&mut self.mode, Mode::Idle);
        if let Mode::Subscribed(m) = mode {
            if !owned.is_empty()
                && let Some(l) = &self.listener
            {
                l.on_revoked(&owned);
            }
            self.positions.clear();
            let left = m.leave().await;
            committed?;
            return left;
        }
        committed
    }

    fn known_positions(&self) -> Vec<(String, u32, i64)> {
        self.positions.iter().filter_map(|((t, p), o)| o.map(|o| (t.clone(), *p, o))).collect()
    }

    /// Commits as a member (retrying once at the next heartbeat's epoch when stale) or,
    /// without membership, as nobody.
    async fn commit_unchecked(&self, offsets: &[(String, u32, i64)]) -> Result<()> {
        let group = self.group()?;
        let Mode::Subscribed(m) = &self.mode else {
            return self.client.commit_group_offsets(group, None, offsets).await;
        };
        let (id, epoch) = m.identity();
        match self.client.commit_group_offsets(group, Some((&id, epoch)), offsets).await {
            Err(e) if e.code() == Some(ErrorCode::StaleMemberEpoch) => {
                m.next_heartbeat().await;
                let (id, epoch) = m.identity();
                self.client.commit_group_offsets(group, Some((&id, epoch)), offsets).await
            }
            r => r,
        }
    }

    async fn maybe_auto_commit(&mut self) {
        let Some(every) = self.config.auto_commit_interval else { return };
        if self.config.group.is_none() || self.last_auto_commit.elapsed() < every {
            return;
        }
        self.last_auto_commit = Instant::now();
        if let Err(e) = self.commit().await {
            tracing::warn!(error = %e, "auto-commit failed");
        }
    }

    async fn list(&self, tp: &Tp, spec: OffsetSpec) -> Result<i64> {
        self.client.list_offset(&tp.0, tp.1, spec).await
    }

    /// Where a partition without a usable offset starts.
    async fn reset_position(&self, tp: &Tp) -> Result<i64> {
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
        };
        self.list(tp, spec).await
    }

    /// Gives partitions without a position one: the committed offset, else the reset.
    async fn init_positions(&mut self) -> Result<()> {
        let missing: Vec<Tp> =
            self.positions.iter().filter(|(_, o)| o.is_none()).map(|(tp, _)| tp.clone()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let committed = match &self.config.group {
            Some(g) => self.client.fetch_group_offsets(g, &missing).await?,
            None => vec![None; missing.len()],
        };
        for (tp, c) in missing.into_iter().zip(committed) {
            let offset = match c {
                Some(o) => o,
                None => self.reset_position(&tp).await?,
            };
            if let Some(pos) = self.positions.get_mut(&tp) {
                *pos = Some(offset);
            }
        }
        Ok(())
    }

    /// Applies what the heartbeat task learnt: a loss, then the newest target assignment.
    async fn reconcile(&mut self) -> Result<()> {
        let Mode::Subscribed(m) = &self.mode else { return Ok(()) };
        let (lost, target, fatal) = {
            let mut s = m.shared.lock().unwrap();
            (std::mem::take(&mut s.lost), s.target.take(), s.fatal.take())
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        if lost {
            let all = self.assignment();
            self.positions.clear();
            if !all.is_empty()
                && let Some(l) = &self.listener
            {
                l.on_revoked(&all);
            }
            m.wake();
        }
        let Some(target) = target else { return Ok(()) };
        let revoked: Vec<Tp> =
            self.positions.keys().filter(|tp| !target.contains(*tp)).cloned().collect();
        if !revoked.is_empty() {
            if let Some(l) = &self.listener {
                l.on_revoked(&revoked);
            }
            if self.config.auto_commit_interval.is_some() {
                let offsets: Vec<(String, u32, i64)> = revoked
                    .iter()
                    .filter_map(|tp| self.position(&tp.0, tp.1).map(|o| (tp.0.clone(), tp.1, o)))
                    .collect();
                if !offsets.is_empty()
                    && let Err(e) = self.commit_unchecked(&offsets).await
                {
                    tracing::warn!(error = %e, "commit of revoked partitions failed");
                }
            }
            for tp in &revoked {
                self.positions.remove(tp);
            }
        }
        let added: Vec<Tp> =
            target.iter().filter(|tp| !self.positions.contains_key(*tp)).cloned().collect();
        for tp in &added {
            self.positions.insert(tp.clone(), None);
        }
        let Mode::Subscribed(m) = &self.mode else { return Ok(()) };
        {
            let mut s = m.shared.lock().unwrap();
            if s.lost {
                // Lost again while committing: the next poll drops everything.
                return Ok(());
            }
            s.owned = self.positions.keys().cloned().collect();
        }
        m.wake();
        if !added.is_empty()
            && let Some(l) = &self.listener
        {
            l.on_assigned(&added);
        }
        Ok(())
    }
}
