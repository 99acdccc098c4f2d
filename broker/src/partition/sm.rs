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
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use bytes::Bytes;
use bytes::BytesMut;
use rafka_raft::Entry;
use rafka_raft::EntryPayload;
use rafka_raft::LogId;
use rafka_raft::Membership;
use rafka_raft::SegmentLog;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;
use rafka_raft::log_id;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

use super::PartitionApp;
use super::files::StateFiles;
use crate::supervisor::Supervisor;

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
        IdRepr { term: l.term, index: l.index }
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
        m.encode(&mut buf);
        MembershipRepr { log_id: log_id.map(Into::into), config: buf.to_vec() }
    }

    fn stored(&self) -> io::Result<StoredMembership> {
        let m = Membership::decode(Bytes::from(self.config.clone()))?;
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
}

/// The log of this replica, known once its group is created: checkpoints wait until what
/// they describe is durable in it.
pub type LogHandle = Arc<OnceLock<SegmentLog<PartitionApp>>>;

/// The state machine of one partition replica.
pub struct PartitionSm {
    state: Checkpoint,
    /// The latest snapshot built or installed; persisted in its own file
    /// (`<group>.snapshot.json`) as soon as it exists, because the log is purged after it.
    snapshot: Option<StoredSnapshot>,
    files: StateFiles,
    log: LogHandle,
    /// Owner of background checkpoint writes; without one they are written in place.
    background: Option<Supervisor>,
    since_checkpoint: (u64, u64),
    applied_tx: watch::Sender<Applied>,
    retention: Arc<Mutex<Option<RetentionPoint>>>,
}

/// Reads a state file (`None` if absent). Damage — a bad envelope or JSON that does not
/// parse — is an error: the replica refuses to open rather than start from a wrong state.
fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> io::Result<Option<T>> {
    let Some(bytes) = rafka_raft::durable::read_state_file(path)? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: bad partition state file: {e}", path.display()),
        )
    })
}

/// Replaces a state file atomically and durably ([`rafka_raft::durable::write_state_file`]).
fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    rafka_raft::durable::write_state_file(path, &bytes)
}

impl PartitionSm {
    /// Opens the state of a replica, from its checkpoint file if there is one.
    ///
    /// Periodic checkpoints are written by `background` (off the apply path) when given.
    pub fn open(
        files: StateFiles,
        log: LogHandle,
        retention: Arc<Mutex<Option<RetentionPoint>>>,
        background: Option<Supervisor>,
    ) -> io::Result<(PartitionSm, watch::Receiver<Applied>)> {
        let state = read_json(&files.checkpoint)?.unwrap_or_default();
        let snapshot = read_json(&files.snapshot)?;
        let (applied_tx, rx) = watch::channel(Applied::default());
        let mut sm = PartitionSm {
            state,
            snapshot,
            files,
            log,
            background,
            since_checkpoint: (0, 0),
            applied_tx,
            retention,
        };
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

    /// Writes the checkpoint file if every applied entry is durable in the local log (openraft
    /// applies entries a quorum committed, which may still be in flight to this replica's
    /// disk: a checkpoint must never describe more than a crash leaves). Returns whether it
    /// wrote. Also done periodically on apply.
    pub fn checkpoint(&mut self) -> io::Result<bool> {
        let applied = self.state.last_applied.map_or(0, |l| l.index);
        let durable =
            self.log.get().and_then(|l| l.flushed_log_id()).is_some_and(|f| f.index >= applied);
        if !durable {
            return Ok(false);
        }
        self.write_checkpoint()?;
        Ok(true)
    }

    /// The periodic checkpoint: serialized here, written and fsynced off the state-machine
    /// task (it runs on a runtime worker). Two writes of one partition may land out of order;
    /// an older checkpoint only means a longer replay, as both describe durable state.
    fn checkpoint_in_background(&mut self) {
        let Some(background) = self.background.clone() else {
            if let Err(e) = self.checkpoint() {
                tracing::warn!("partition checkpoint failed: {e}");
            }
            return;
        };
        let applied = self.state.last_applied.map_or(0, |l| l.index);
        let durable =
            self.log.get().and_then(|l| l.flushed_log_id()).is_some_and(|f| f.index >= applied);
        if !durable {
            return;
        }
        self.since_checkpoint = (0, 0);
        let (path, state) = (self.files.checkpoint.clone(), self.state.clone());
        background.spawn_blocking("partition checkpoint", move || {
            if let Err(e) = write_json(&path, &state) {
                tracing::warn!(path = %path.display(), "partition checkpoint failed: {e}");
            }
        });
    }

    fn write_checkpoint(&mut self) -> io::Result<()> {
        write_json(&self.files.checkpoint, &self.state)?;
        self.since_checkpoint = (0, 0);
        Ok(())
    }

    fn write_snapshot(&mut self) -> io::Result<()> {
        match &self.snapshot {
            Some(s) => write_json(&self.files.snapshot, s),
            None => Ok(()),
        }
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

    fn apply_batch(&mut self, index: u64, e: &super::PartitionEntry) -> io::Result<i64> {
        let base = self.state.next_offset;
        // Offsets are a function of the log, computed by the log on append and
        // again here; they must agree (checked whenever the entry is still cached).
        if let Some(logged) = self.log.get().and_then(|l| l.cached_base_offset(index))
            && logged != base
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {index}: the log gives offset {logged}, the state machine {base}"),
            ));
        }
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
        Ok(base)
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

    fn applied_next_offset(&mut self) -> Option<i64> {
        Some(self.state.next_offset)
    }

    fn apply(&mut self, entry: Entry<PartitionApp>) -> io::Result<i64> {
        let id = entry.log_id;
        let mut bytes = 0;
        let base = match &entry.payload {
            EntryPayload::Blank => -1,
            EntryPayload::Normal(e) => {
                bytes = e.batch.len() as u64;
                self.apply_batch(id.index, e)?
            }
            EntryPayload::Membership(m) => {
                self.state.memberships.push(MembershipRepr::new(Some(id), m));
                -1
            }
        };
        // Mid-apply: the batch is counted, the applied id not yet moved.
        rafka_raft::crash_point!("partition-apply");
        self.state.last_applied = Some(id.into());
        self.since_checkpoint.0 += 1;
        self.since_checkpoint.1 += bytes;
        if self.since_checkpoint.0 >= CHECKPOINT_ENTRIES
            || self.since_checkpoint.1 >= CHECKPOINT_BYTES
        {
            // Skipped while not durable yet: tried again on the next apply.
            self.checkpoint_in_background();
        }
        self.publish();
        Ok(base)
    }

    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)> {
        let point = self.retention.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(point) = point else {
            return Err(io::Error::other("no retention point set: nothing to snapshot"));
        };
        // Never move the snapshot back (an installed one may be newer than this point).
        if let Some(s) = &self.snapshot
            && LogId::from(s.last_log_id) >= point.log_id
        {
            return self.current_snapshot()?.ok_or_else(|| io::Error::other("snapshot vanished"));
        }
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
            snapshot_id: format!("{}-{}", point.log_id.term, point.log_id.index),
            next_offset: point.next_offset,
            body: serde_json::to_vec(&body).map_err(io::Error::other)?,
        };
        self.snapshot = Some(stored);
        // Durable before openraft purges the log up to it.
        self.write_snapshot()?;
        self.current_snapshot()?.ok_or_else(|| io::Error::other("snapshot vanished"))
    }

    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        let Some(s) = &self.snapshot else {
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
        rafka_raft::crash_point!("snapshot-install");
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
        };
        self.snapshot = Some(StoredSnapshot {
            last_log_id: last.into(),
            membership,
            snapshot_id: format!("{}-{}", last.term, last.index),
            next_offset: data.next_offset,
            body: data.data.to_vec(),
        });
        // The log is purged up to the snapshot after this: both files first. The checkpoint
        // describes exactly the snapshot, which the leader's quorum holds.
        self.write_snapshot()?;
        self.write_checkpoint()?;
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rafka_raft::ReplicaNode;

    use super::*;
    use crate::partition::PartitionEntry;
    use crate::partition::entry::BatchInfo;
    use crate::partition::entry::Format;

    fn membership() -> Membership {
        let nodes = BTreeMap::from([(7, ReplicaNode { broker_id: 1, addr: "h:1".into() })]);
        Membership::new(vec![BTreeSet::from([7])], nodes).unwrap()
    }

    fn batch(producer: i64, seq: i32, count: u32) -> EntryPayload<PartitionApp> {
        EntryPayload::Normal(PartitionEntry {
            info: BatchInfo {
                record_count: count,
                max_timestamp: 0,
                producer_id: producer,
                producer_epoch: if producer < 0 { -1 } else { 0 },
                base_sequence: if producer < 0 { -1 } else { seq },
            },
            format: Format::Kafka,
            batch: Bytes::from_static(b"b"),
        })
    }

    fn open(dir: &std::path::Path) -> (PartitionSm, Arc<Mutex<Option<RetentionPoint>>>) {
        let retention = Arc::default();
        let files = StateFiles::of(dir, 1);
        std::fs::create_dir_all(files.checkpoint.parent().unwrap()).unwrap();
        let (sm, _) =
            PartitionSm::open(files, Arc::default(), Arc::clone(&retention), None).unwrap();
        (sm, retention)
    }

    /// A damaged checkpoint is refused (the replica does not open); one written before the
    /// envelope existed is read as it is.
    #[test]
    fn damaged_state_files_are_refused_and_legacy_ones_read() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::of(dir.path(), 1);
        std::fs::create_dir_all(files.checkpoint.parent().unwrap()).unwrap();
        let legacy = serde_json::to_vec(&Checkpoint { next_offset: 42, ..Default::default() });
        std::fs::write(&files.checkpoint, legacy.unwrap()).unwrap();
        let (sm, _) = open(dir.path());
        assert_eq!(sm.next_offset(), 42);
        drop(sm);
        rafka_raft::durable::write_state_file(&files.checkpoint, b"{\"next_offset\":7}").unwrap();
        let mut bytes = std::fs::read(&files.checkpoint).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&files.checkpoint, bytes).unwrap();
        let opened = PartitionSm::open(files, Arc::default(), Arc::default(), None);
        let e = opened.err().expect("a damaged checkpoint is refused");
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn offsets_producers_and_no_checkpoint_without_a_durable_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, _) = open(dir.path());
        sm.apply(Entry::<PartitionApp> {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(membership()),
        })
        .unwrap();
        assert_eq!(
            sm.apply(Entry::<PartitionApp> { log_id: log_id(1, 2), payload: batch(-1, 0, 3) })
                .unwrap(),
            0
        );
        assert_eq!(
            sm.apply(Entry::<PartitionApp> { log_id: log_id(1, 3), payload: batch(5, 0, 2) })
                .unwrap(),
            3
        );
        assert_eq!(
            sm.apply(Entry::<PartitionApp> { log_id: log_id(1, 4), payload: batch(5, 2, 2) })
                .unwrap(),
            5
        );
        // Replaying an older batch over a newer table changes nothing (snapshot install).
        sm.apply(Entry::<PartitionApp> { log_id: log_id(1, 5), payload: batch(5, 0, 2) }).unwrap();
        let p = sm.producer(5).unwrap();
        assert_eq!(p.last_seq(), 3);
        assert_eq!(p.batches.len(), 2);
        assert_eq!(sm.next_offset(), 9);
        assert_eq!(sm.applied_next_offset(), Some(9));
        // No log attached: nothing is known durable, so no checkpoint may be written.
        assert!(!sm.checkpoint().unwrap());
        assert!(!dir.path().join("1.json").exists());
    }

    #[test]
    fn snapshots_persist_at_once_and_never_move_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, retention) = open(dir.path());
        sm.apply(Entry::<PartitionApp> {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(membership()),
        })
        .unwrap();
        for i in 2..=10 {
            sm.apply(Entry::<PartitionApp> { log_id: log_id(1, i), payload: batch(-1, 0, 1) })
                .unwrap();
        }
        assert!(sm.build_snapshot().is_err(), "no retention point, no snapshot");
        *retention.lock().unwrap() = Some(RetentionPoint { log_id: log_id(1, 6), next_offset: 5 });
        let (meta, data) = sm.build_snapshot().unwrap();
        assert_eq!(meta.last_log_id, Some(log_id(1, 6)));
        assert_eq!(data.next_offset, 5);
        *retention.lock().unwrap() = Some(RetentionPoint { log_id: log_id(1, 4), next_offset: 3 });
        let (meta, _) = sm.build_snapshot().unwrap();
        assert_eq!(meta.last_log_id, Some(log_id(1, 6)), "an older point keeps the snapshot");
        // The snapshot file survives a restart on its own.
        let (mut reopened, _) = open(dir.path());
        let (meta, data) = reopened.current_snapshot().unwrap().unwrap();
        assert_eq!(meta.last_log_id, Some(log_id(1, 6)));
        assert_eq!(data.next_offset, 5);
        // Installing it elsewhere gives that state, checkpointed.
        let other = tempfile::tempdir().unwrap();
        let (mut follower, _) = open(other.path());
        follower.install_snapshot(&meta, data).unwrap();
        assert_eq!(follower.next_offset(), 5);
        let (mut again, _) = open(other.path());
        assert_eq!(again.applied_state().unwrap().0, Some(log_id(1, 6)));
        assert_eq!(again.next_offset(), 5);
    }
}
