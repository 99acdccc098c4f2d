//! One hosted partition replica: its Raft group, produce with idempotence, fetch, offset
//! lookups and retention.
//!
//! Idempotence: the leader checks a batch's producer
//! epoch and sequence against the applied producer table plus its own in-flight proposals,
//! under one lock per partition, and proposes in that order. A new leader accepts no
//! produce until it has applied an entry of its own term ([`rafka_raft::Group::is_leader_ready`]),
//! so every batch an old leader replicated is in the table before a retry is checked: the
//! retry is answered with the original offset instead of being written twice.

pub mod entry;
pub mod files;
mod read;
pub mod retention;
pub mod sm;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rafka_raft::EntryPayload;
use rafka_raft::Group;
use rafka_raft::LogId;
use tokio::sync::watch;

pub use entry::BATCH_FORMAT;
pub use entry::PartitionEntry;
pub use read::OffsetSpec;
pub use sm::Applied;
pub use sm::PartitionSm;
pub use sm::RetentionPoint;

use crate::error::Error;
use crate::error::Result;
use crate::supervisor::Supervisor;

/// Kafka's leader epoch of a partition whose leader has Raft term `term` (terms beyond int32
/// saturate: Kafka's epochs are int32, and a term that large means billions of elections).
pub fn leader_epoch(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

/// The Raft application of partition groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionApp;

impl rafka_raft::App for PartitionApp {
    type Data = PartitionEntry;
    /// Base offset given to the applied batch (-1 for blank and membership entries).
    type Response = i64;
}

/// A partition group handle.
pub type PartitionGroup = Group<PartitionApp, PartitionSm>;

/// The result of one in-flight idempotent batch, shared with retries that arrive while it
/// is still being replicated.
type Outcome = watch::Receiver<Option<Result<i64>>>;

struct InflightBatch {
    first_seq: i64,
    last_seq: i64,
    outcome: Outcome,
}

struct InflightProducer {
    epoch: i32,
    batches: Vec<InflightBatch>,
}

/// Idempotent proposals of the current leader term that are not applied yet.
#[derive(Default)]
struct Inflight {
    term: u64,
    producers: HashMap<i64, InflightProducer>,
}

/// Topic-level limits a partition enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
}

/// One partition replica hosted by this broker.
pub struct Partition {
    /// `topic-partition`, for messages.
    pub name: String,
    pub group: PartitionGroup,
    applied: watch::Receiver<Applied>,
    inflight: Arc<tokio::sync::Mutex<Inflight>>,
    retention: Arc<Mutex<Option<RetentionPoint>>>,
    /// Runs the waiters that see a proposal through when its request is gone.
    tasks: Supervisor,
}

/// A batch read back for a consumer.
pub struct ReadBatch {
    pub base_offset: i64,
    pub batch: Bytes,
}

/// What a read returns.
pub struct ReadResult {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<ReadBatch>,
    /// Offset after the last batch returned (the requested offset if none).
    pub next_offset: i64,
}

impl Partition {
    /// Wraps a hosted group.
    pub fn new(
        name: String,
        group: PartitionGroup,
        applied: watch::Receiver<Applied>,
        retention: Arc<Mutex<Option<RetentionPoint>>>,
        tasks: Supervisor,
    ) -> Partition {
        Partition { name, group, applied, inflight: Arc::default(), retention, tasks }
    }

    fn leader_error(&self) -> Error {
        Error::not_leader(&self.name, self.group.leader().map(|(_, n)| (n.broker_id, n.addr)))
    }

    /// The applied high watermark and index.
    pub fn applied(&self) -> Applied {
        *self.applied.borrow()
    }

    /// First retained offset.
    pub fn log_start_offset(&self) -> i64 {
        self.group.log().log_start_offset()
    }

    /// Appends a validated batch. With `wait` (acks=all) returns its base offset once
    /// committed and applied; otherwise -1 once proposed.
    pub async fn produce(
        &self,
        entry: PartitionEntry,
        wait: bool,
        timeout: Duration,
    ) -> Result<i64> {
        self.admit(entry, timeout).await?.finish(wait).await
    }

    /// Proposes a validated batch: once this returns, the batch is ordered after every batch
    /// admitted before it (so a connection's batches keep their order however their
    /// replication overlaps). [`Admitted::finish`] waits for the outcome.
    pub async fn admit(&self, entry: PartitionEntry, timeout: Duration) -> Result<Admitted> {
        let name = self.name.clone();
        let admitted = |outcome| Admitted::Waiting { outcome, timeout, name };
        let info = entry.info;
        if !self.group.is_leader() {
            return Err(self.leader_error());
        }
        if !self.group.is_leader_ready()
            && !self.group.wait_leader_ready(timeout.min(Duration::from_secs(5))).await
        {
            return Err(self.leader_error());
        }
        if info.producer_id < 0 {
            let fut =
                self.group.propose(entry).await.map_err(|e| Error::from_raft(&self.name, e))?;
            let name = self.name.clone();
            let (tx, rx) = watch::channel(None);
            self.tasks.spawn("produce outcome", async move {
                let r = fut.await.map(|(_, base)| base).map_err(|e| Error::from_raft(&name, e));
                let _ = tx.send(Some(r));
            });
            Ok(admitted(rx))
        } else {
            match self.propose_idempotent(entry).await? {
                Ok(base) => Ok(Admitted::Duplicate(base)),
                Err(outcome) => Ok(admitted(outcome)),
            }
        }
    }

    /// Checks and proposes an idempotent batch. `Ok(Ok(offset))` for a duplicate of an
    /// applied batch, `Ok(Err(outcome))` to wait for.
    async fn propose_idempotent(
        &self,
        entry: PartitionEntry,
    ) -> Result<std::result::Result<i64, Outcome>> {
        let info = entry.info;
        let pid = info.producer_id;
        let first = info.base_sequence as i64;
        let last = entry.last_sequence();
        let mut inflight = self.inflight.lock().await;
        // Checked again under the lock, with the term it holds for: the applied table is
        // complete only once this leader applied an entry of its own term, and the proposal
        // below is fenced to that same term.
        let term = self.group.current_term();
        if !self.group.is_leader_ready() || self.group.current_term() != term {
            return Err(self.leader_error());
        }
        if inflight.term != term {
            // Proposals of an earlier term are either applied by now (they are in the
            // table) or lost: nothing of them may be trusted.
            inflight.term = term;
            inflight.producers.clear();
        }
        let applied =
            self.group.state_machine().lock().unwrap_or_else(|p| p.into_inner()).producer(pid);
        let pending = inflight.producers.get(&pid);
        if let Some(p) = pending
            && p.epoch == info.producer_epoch
            && let Some(b) = p.batches.iter().find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Err(b.outcome.clone()));
        }
        if let Some(a) = &applied
            && a.epoch == info.producer_epoch
            && let Some(b) = a.batches.iter().find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Ok(b.base_offset));
        }
        let (epoch, last_seq) = expected_after(pending, applied.as_ref());
        match epoch {
            Some(e) if info.producer_epoch < e => {
                return Err(Error::ProducerFenced(format!(
                    "{}: producer {pid} epoch {} is fenced by epoch {e}",
                    self.name, info.producer_epoch
                )));
            }
            Some(e) if info.producer_epoch == e => {
                if first != last_seq + 1 {
                    return Err(Error::OutOfOrderSequence(format!(
                        "{}: producer {pid} sent sequence {first}, expected {}",
                        self.name,
                        last_seq + 1
                    )));
                }
            }
            _ => {
                if first != 0 {
                    return Err(Error::OutOfOrderSequence(format!(
                        "{}: producer {pid} epoch {} must start at sequence 0, sent {first}",
                        self.name, info.producer_epoch
                    )));
                }
            }
        }
        if last > i32::MAX as i64 {
            return Err(Error::OutOfOrderSequence(format!(
                "{}: producer {pid} sequence overflows; re-initialise it",
                self.name
            )));
        }
        let fut = self
            .group
            .propose_in_term(entry, term)
            .await
            .map_err(|e| Error::from_raft(&self.name, e))?;
        let (tx, rx) = watch::channel(None);
        let p = inflight
            .producers
            .entry(pid)
            .or_insert(InflightProducer { epoch: info.producer_epoch, batches: Vec::new() });
        if p.epoch != info.producer_epoch {
            *p = InflightProducer { epoch: info.producer_epoch, batches: Vec::new() };
        }
        p.batches.push(InflightBatch { first_seq: first, last_seq: last, outcome: rx.clone() });
        drop(inflight);
        let name = self.name.clone();
        let this = self.inflight_cleanup();
        self.tasks.spawn("idempotent produce outcome", async move {
            let r = fut.await.map(|(_, base)| base).map_err(|e| Error::from_raft(&name, e));
            let failed = r.is_err();
            let _ = tx.send(Some(r));
            this.done(term, pid, info.producer_epoch, first, failed).await;
        });
        Ok(Err(rx))
    }

    fn inflight_cleanup(&self) -> InflightCleanup {
        InflightCleanup { inflight: self.inflight.clone() }
    }
}

/// The epoch a producer's next batch must have (at least) and the sequence it must follow:
/// from the newest of its proposals in flight and its applied batches. Both count: a
/// proposal leaves the in-flight table only after it is applied, and not necessarily in
/// order (each proposal's cleanup runs on its own), so the in-flight table may still hold
/// older applied batches while newer ones have left it.
fn expected_after(
    pending: Option<&InflightProducer>,
    applied: Option<&sm::ProducerState>,
) -> (Option<i32>, i64) {
    let pending_last = pending.and_then(|p| p.batches.iter().map(|b| b.last_seq).max());
    match (pending, applied) {
        (Some(p), Some(a)) if a.epoch == p.epoch => {
            (Some(p.epoch), pending_last.unwrap_or(-1).max(a.last_seq()))
        }
        (Some(p), _) => (Some(p.epoch), pending_last.unwrap_or(-1)),
        (None, Some(a)) => (Some(a.epoch), a.last_seq()),
        (None, None) => (None, -1),
    }
}

/// Removes a finished proposal from the in-flight table. A failed one drops the producer's
/// whole in-flight state: later sequences cannot be trusted to follow it.
struct InflightCleanup {
    inflight: Arc<tokio::sync::Mutex<Inflight>>,
}

impl InflightCleanup {
    async fn done(&self, term: u64, pid: i64, epoch: i32, first: i64, failed: bool) {
        let mut inflight = self.inflight.lock().await;
        if inflight.term != term {
            return;
        }
        // Only the producer incarnation that proposed: a newer epoch's batches stay.
        if inflight.producers.get(&pid).is_none_or(|p| p.epoch != epoch) {
            return;
        }
        if failed {
            inflight.producers.remove(&pid);
            return;
        }
        if let Some(p) = inflight.producers.get_mut(&pid) {
            p.batches.retain(|b| b.first_seq != first);
            if p.batches.is_empty() {
                inflight.producers.remove(&pid);
            }
        }
    }
}

/// A batch proposed to its partition (see [`Partition::admit`]).
pub enum Admitted {
    /// A duplicate of a batch already written, at this base offset.
    Duplicate(i64),
    /// Proposed; its outcome is on the way.
    Waiting { outcome: Outcome, timeout: Duration, name: String },
}

impl Admitted {
    /// The batch's base offset once committed and applied (-1 at once unless `wait`).
    pub async fn finish(self, wait: bool) -> Result<i64> {
        match self {
            Admitted::Duplicate(base) => Ok(base),
            Admitted::Waiting { .. } if !wait => Ok(-1),
            Admitted::Waiting { outcome, timeout, name } => {
                wait_outcome(outcome, timeout, &name).await
            }
        }
    }
}

async fn wait_outcome(mut outcome: Outcome, timeout: Duration, name: &str) -> Result<i64> {
    let waited = tokio::time::timeout(timeout, outcome.wait_for(|o| o.is_some())).await;
    match waited {
        Ok(Ok(r)) => r.clone().expect("checked by wait_for"),
        Ok(Err(_)) => {
            Err(Error::TimedOut(format!("{name}: the proposal was dropped; outcome unknown")))
        }
        Err(_) => Err(Error::TimedOut(format!(
            "{name}: not committed within {} ms; outcome unknown",
            timeout.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflight(epoch: i32, batches: &[(i64, i64)]) -> InflightProducer {
        let (_, outcome) = watch::channel(None);
        let batches = batches
            .iter()
            .map(|&(first_seq, last_seq)| InflightBatch {
                first_seq,
                last_seq,
                outcome: outcome.clone(),
            })
            .collect();
        InflightProducer { epoch, batches }
    }

    fn applied(epoch: i32, batches: &[(i64, i64)]) -> sm::ProducerState {
        let batches = batches
            .iter()
            .map(|&(first_seq, last_seq)| sm::SeqBatch { first_seq, last_seq, base_offset: 0 })
            .collect();
        sm::ProducerState { epoch, batches }
    }

    /// Seen under a pipelined producer (release build, 5 batches in flight): the cleanups of
    /// three applied proposals had not run yet while a newer applied one had left the
    /// in-flight table, which then named a last sequence older than the applied one, and the
    /// next batch got OUT_OF_ORDER_SEQUENCE.
    #[test]
    fn the_next_sequence_follows_the_newest_of_in_flight_and_applied() {
        let pending = inflight(0, &[(38112, 38127), (38128, 38143), (38144, 38159)]);
        let done = applied(
            0,
            &[(38096, 38111), (38112, 38127), (38128, 38143), (38144, 38159), (38160, 38175)],
        );
        assert_eq!(expected_after(Some(&pending), Some(&done)), (Some(0), 38175));
        // In flight beyond what is applied.
        let ahead = inflight(0, &[(38176, 38191), (38192, 38207)]);
        assert_eq!(expected_after(Some(&ahead), Some(&done)), (Some(0), 38207));
        // A new epoch in flight starts over whatever the old one applied.
        let fresh = inflight(1, &[(0, 15)]);
        assert_eq!(expected_after(Some(&fresh), Some(&done)), (Some(1), 15));
        assert_eq!(expected_after(None, Some(&done)), (Some(0), 38175));
        assert_eq!(expected_after(None, None), (None, -1));
    }
}
