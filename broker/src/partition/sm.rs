//! The partition state machine: next offset, producer table, membership history.
//!
//! The records themselves stay in the Raft log (the log *is* the data log); this state is
//! small. It is checkpointed to `<data>/partitions/<group>.json` (write temp, fsync, rename)
//! every [`CHECKPOINT_ENTRIES`] entries or [`CHECKPOINT_BYTES`] bytes applied, so a restart
//! re-applies a bounded tail of the log, not all of it (recovery in seconds for GiBs).
//!
//! Snapshots are taken at the *retention point* chosen by the retention task
//! ([`RetentionPoint`]): they carry the offset after that point, the membership in force
//! there and the producer table. The producer table is the one at the head, not at the
//! retention point: applying a producer's batch is monotone (an older batch never rolls a
//! newer state back), so a replica that installs the snapshot and then replays the retained
//! entries after it ends in the same state.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Bytes;
use bytes::BytesMut;
use rafka_raft::Entry;
use rafka_raft::EntryPayload;
use rafka_raft::LogId;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;
use rafka_raft::codec::decode_membership;
use rafka_raft::codec::encode_membership;
use rafka_raft::log_id;
use rafka_raft::types::Membership;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

use super::PartitionApp;

/// Checkpoint after this many applied entries...
pub const CHECKPOINT_ENTRIES: u64 = 4096;
/// ...or this many applied bytes, whichever comes first.
pub const CHECKPOINT_BYTES: u64 = 32 << 20;
/// Idempotent batches remembered per producer (Kafka keeps 5 in flight).
pub const PRODUCER_WINDOW: usize = 5;

/// What readers need of the applied state: the high watermark and the last applied index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Offset after the last applied record (consumers read below it).
    pub high_watermark: i64,
    /// Raft index of the last applied entry (0 when none).
    pub index: u64,
}

/// One remembered idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqBatch {
    pub first_seq: i64,
    pub last_seq: i64,
    pub base_offset: i64,
}

/// What the partition knows of one idempotent producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: i32,
    /// The last batches written, oldest first.
    pub batches: VecDeque<SeqBatch>,
}

impl ProducerState {
    /// Sequence of the last record written.
    pub fn last_seq(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// Where the retention task wants the next snapshot: the last entry of the last segment to
/// delete, and the record offset after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPoint {
    pub log_id: LogId,
    pub next_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct IdRepr {
    term: u64,
    index: u64,
}

impl From<LogId> for IdRepr {
    fn from(l: LogId) -> Self {
        IdRepr { term: l.committed_leader_id().term, index: l.index }
    }
}

impl From<IdRepr> for LogId {
    fn from(r: IdRepr) -> Self {
        log_id(r.term, r.index)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MembershipRepr {
    log_id: Option<IdRepr>,
    config: Vec<u8>,
}

impl MembershipRepr {
    fn new(log_id: Option<LogId>, m: &Membership) -> Self {
        let mut buf = BytesMut::new();
        encode_membership(m, &mut buf);
        MembershipRepr { log_id: log_id.map(Into::into), config: buf.to_vec() }
    }

    fn stored(&self) -> io::Result<StoredMembership> {
        let m = decode_membership(Bytes::from(self.config.clone()))?;
        Ok(StoredMembership::new(self.log_id.map(Into::into), m))
    }
}

/// The snapshot's content (JSON inside `SnapshotData::data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotBody {
    producers: BTreeMap<i64, ProducerState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    last_log_id: IdRepr,
    membership: MembershipRepr,
    snapshot_id: String,
    next_offset: i64,
    body: Vec<u8>,
}

/// The checkpoint file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    last_applied: Option<IdRepr>,
    next_offset: i64,
    /// Every membership applied (oldest first): a snapshot at an older retention point needs
    /// the membership in force there.
    memberships: Vec<MembershipRepr>,
    producers: BTreeMap<i64, ProducerState>,
    snapshot: Option<StoredSnapshot>,
}

/// The state machine of one partition replica.
pub struct PartitionSm {
    state: Checkpoint,
    path: PathBuf,
    since_checkpoint: (u64, u64),
    applied_tx: watch::Sender<Applied>,
    retention: Arc<Mutex<Option<RetentionPoint>>>,
}

impl PartitionSm {
    /// Opens the state of a replica, from its checkpoint file if there is one.
    pub fn open(
        path: PathBuf,
        retention: Arc<Mutex<Option<RetentionPoint>>>,
    ) -> io::Result<(PartitionSm, watch::Receiver<Applied>)> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: bad partition checkpoint: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Checkpoint::default(),
            Err(e) => return Err(e),
        };
        let (applied_tx, rx) = watch::channel(Applied::default());
        let mut sm = PartitionSm { state, path, since_checkpoint: (0, 0), applied_tx, retention };
        sm.publish();
        Ok((sm, rx))
    }

    /// The applied producer state of `producer_id`, if any.
    pub fn producer(&self, producer_id: i64) -> Option<ProducerState> {
        self.state.producers.get(&producer_id).cloned()
    }

    /// Offset after the last applied record.
    pub fn next_offset(&self) -> i64 {
        self.state.next_offset
    }

    /// Writes the checkpoint file now (also done periodically on apply).
    pub fn checkpoint(&mut self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.state).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.since_checkpoint = (0, 0);
        Ok(())
    }

    fn publish(&mut self) {
        let applied = Applied {
            high_watermark: self.state.next_offset,
            index: self.state.last_applied.map_or(0, |l| l.index),
        };
        self.applied_tx.send_if_modified(|a| {
            let changed = *a != applied;
            *a = applied;
            changed
        });
    }

    fn apply_batch(&mut self, e: &super::PartitionEntry) -> i64 {
        let base = self.state.next_offset;
        self.state.next_offset += e.info.record_count as i64;
        let info = &e.info;
        if info.producer_id >= 0 {
            let batch = SeqBatch {
                first_seq: info.base_sequence as i64,
                last_seq: e.last_sequence(),
                base_offset: base,
            };
            let p = self
                .state
                .producers
                .entry(info.producer_id)
                .or_insert(ProducerState { epoch: info.producer_epoch, batches: VecDeque::new() });
            if info.producer_epoch > p.epoch {
                p.epoch = info.producer_epoch;
                p.batches.clear();
            }
            // Monotone: replaying an older batch over a newer state changes nothing.
            if info.producer_epoch == p.epoch && batch.last_seq > p.last_seq() {
                p.batches.push_back(batch);
                while p.batches.len() > PRODUCER_WINDOW {
                    p.batches.pop_front();
                }
            }
        }
        base
    }

    fn latest_membership(&self) -> io::Result<StoredMembership> {
        match self.state.memberships.last() {
            Some(m) => m.stored(),
            None => Ok(StoredMembership::default()),
        }
    }
}

impl StateMachine<PartitionApp> for PartitionSm {
    fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.state.last_applied.map(Into::into), self.latest_membership()?))
    }

    fn apply(&mut self, entry: Entry<PartitionApp>) -> io::Result<i64> {
        let id = entry.log_id;
        let mut bytes = 0;
        let base = match &entry.payload {
            EntryPayload::Blank => -1,
            EntryPayload::Normal(e) => {
                bytes = e.batch.len() as u64;
                self.apply_batch(e)
            }
            EntryPayload::Membership(m) => {
                self.state.memberships.push(MembershipRepr::new(Some(id), m));
                -1
            }
        };
        self.state.last_applied = Some(id.into());
        self.since_checkpoint.0 += 1;
        self.since_checkpoint.1 += bytes;
        if self.since_checkpoint.0 >= CHECKPOINT_ENTRIES
            || self.since_checkpoint.1 >= CHECKPOINT_BYTES
        {
            self.checkpoint()?;
        }
        self.publish();
        Ok(base)
    }

    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)> {
        let point = self.retention.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(point) = point else {
            return Err(io::Error::other("no retention point set: nothing to snapshot"));
        };
        let applied = self.state.last_applied.map_or(0, |l| l.index);
        if point.log_id.index > applied {
            return Err(io::Error::other(format!(
                "retention point {} is past the applied index {applied}",
                point.log_id.index
            )));
        }
        // The membership in force at the retention point: the last one applied at or
        // before it.
        let membership = self
            .state
            .memberships
            .iter()
            .rev()
            .find(|m| m.log_id.is_some_and(|l| l.index <= point.log_id.index))
            .cloned()
            .ok_or_else(|| io::Error::other("no membership at or before the retention point"))?;
        let body = SnapshotBody { producers: self.state.producers.clone() };
        let stored = StoredSnapshot {
            last_log_id: point.log_id.into(),
            membership,
            snapshot_id: format!(
                "{}-{}",
                point.log_id.committed_leader_id().term,
                point.log_id.index
            ),
            next_offset: point.next_offset,
            body: serde_json::to_vec(&body).map_err(io::Error::other)?,
        };
        self.state.snapshot = Some(stored);
        self.checkpoint()?;
        self.current_snapshot()?.ok_or_else(|| io::Error::other("snapshot vanished"))
    }

    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        let Some(s) = &self.state.snapshot else {
            return Ok(None);
        };
        let meta = SnapshotMeta {
            last_log_id: Some(s.last_log_id.into()),
            last_membership: s.membership.stored()?,
        };
        let data = SnapshotData { next_offset: s.next_offset, data: Bytes::from(s.body.clone()) };
        Ok(Some((meta, data)))
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> io::Result<()> {
        let body: SnapshotBody = serde_json::from_slice(&data.data).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad snapshot: {e}"))
        })?;
        let last = meta
            .last_log_id
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "snapshot without log id"))?;
        let membership = MembershipRepr::new(
            meta.last_membership.log_id().as_ref().copied(),
            meta.last_membership.membership(),
        );
        self.state = Checkpoint {
            last_applied: Some(last.into()),
            next_offset: data.next_offset,
            memberships: vec![membership.clone()],
            producers: body.producers.clone(),
            snapshot: Some(StoredSnapshot {
                last_log_id: last.into(),
                membership,
                snapshot_id: format!("{}-{}", last.committed_leader_id().term, last.index),
                next_offset: data.next_offset,
                body: data.data.to_vec(),
            }),
        };
        self.checkpoint()?;
        self.publish();
        Ok(())
    }
}
