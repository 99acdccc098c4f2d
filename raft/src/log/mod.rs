//! One group's segmented log and its openraft `RaftLogStorage` / `RaftLogReader`.
//!
//! Appends are encoded on the caller's task, kept in a tail cache (so they are readable at
//! once), and handed to the group's IO thread, which writes them to the active segment and
//! fdatasyncs it itself when nothing else waits, else queues the file with the flusher;
//! openraft's flush callback fires after the fdatasync, in log order either way.
//! Truncate and purge run on the same IO thread, so they are ordered after earlier appends.
//!
//! "Written" (in the OS) and "durable" (fdatasynced) are separate: see
//! [`SegmentLog::written_log_id`] and [`SegmentLog::flushed_log_id`].

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use openraft::LogState;
use openraft::RaftLogReader;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;

use crate::codec::EntryHeader;
use crate::codec::INDEX_RECORD_LEN;
use crate::codec::IndexRecord;
use crate::codec::decode_entry;
use crate::codec::encode_entry;
use crate::config::FlushPolicy;
use crate::error::Error;
use crate::meta::PurgedState;
use crate::metrics as m;
use crate::runtime::FlushDone;
use crate::runtime::RuntimeInner;
use crate::segfile::SegFile;
use crate::segment;
use crate::segment::ScanEnd;
use crate::segment::Segment;
use crate::types::App;
use crate::types::Entry;
use crate::types::GroupId;
use crate::types::LogId;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::types::log_id;

mod open;
mod read;
use read::Target;
mod storage;
mod write;

/// Where an entry sits in record-offset space; the answer of offset and timestamp lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLocation {
    /// Raft index of the entry.
    pub index: u64,
    /// Record offset of its first record.
    pub base_offset: i64,
    /// Records it holds.
    pub record_count: u32,
    /// Largest record timestamp in it.
    pub max_timestamp: i64,
}

impl From<&EntryHeader> for EntryLocation {
    fn from(h: &EntryHeader) -> Self {
        EntryLocation {
            index: h.index,
            base_offset: h.base_offset,
            record_count: h.record_count,
            max_timestamp: h.max_timestamp,
        }
    }
}

/// One segment file as seen by retention: what it holds and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Raft index of its first entry.
    pub first_index: u64,
    /// Log id of its last entry, if it holds any.
    pub last: Option<crate::model::LogId>,
    /// Record offset of its first entry.
    pub base_offset: i64,
    /// Record offset after its last entry.
    pub next_offset: i64,
    /// Largest record timestamp in it (`i64::MIN` if none).
    pub max_timestamp: i64,
    /// Bytes of entries in the file.
    pub bytes: u64,
}

/// What opening a log found on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segment files opened.
    pub segments: usize,
    /// Bytes read to validate segment tails (the part after each segment's last durable
    /// index record), summed over segments.
    pub scanned_bytes: u64,
    /// Bytes cut from a torn or corrupt tail of the active segment.
    pub truncated_bytes: u64,
}

/// The log of one Raft group. Cheap to clone; all clones share one state.
pub struct SegmentLog<A: App> {
    shared: Arc<Shared<A>>,
}

impl<A: App> Clone for SegmentLog<A> {
    fn clone(&self) -> Self {
        SegmentLog { shared: self.shared.clone() }
    }
}

/// Reader handed to openraft's replication tasks; also serves offset and time lookups.
#[cfg(feature = "test-hooks")]
pub type SegmentLogReader<A> = SegmentLog<A>;

struct Shared<A: App> {
    group: GroupId,
    dir: PathBuf,
    rt: Arc<RuntimeInner>,
    recovery: RecoveryStats,
    state: Mutex<State<A>>,
    /// IO-thread side: the open index file of the last segment. Lock order: writer, state.
    writer: Mutex<Option<(u64, File)>>,
    /// Appends encoded but not yet handed to the IO thread, and whether a drain job is
    /// queued. Appends arriving while one is queued ride along in the same write.
    pending: Mutex<(Vec<PendingWrite>, bool)>,
    /// Appends submitted for an immediate sync under an interval flush policy and not yet
    /// synced: while any is, later appends wait for a sync too, so that acknowledgements reach
    /// openraft in log order.
    urgent: Arc<std::sync::atomic::AtomicU64>,
    /// Writes handed to the flusher whose callbacks have not all run yet. A write syncs on
    /// the IO thread itself only while this is zero, so callbacks still fire in log order.
    in_flusher: Arc<std::sync::atomic::AtomicU64>,
    /// The newest committed id openraft reported, while not yet stored. It is stored by the
    /// group's next IO-thread write (or when the log closes), not by openraft's task on every
    /// commit: it only tells a restarted replica how far it may apply before a leader says,
    /// so a stored value that lags is safe (see `SegmentLog::save_committed`).
    committed: Mutex<Option<Option<LogId>>>,
}

impl<A: App> Shared<A> {
    /// Stores the committed id reported since the last call, if any.
    fn store_committed(&self) -> io::Result<()> {
        match lock(&self.committed).take() {
            Some(c) => self.rt.meta.save_committed(self.group, c),
            None => Ok(()),
        }
    }
}

impl<A: App> Drop for Shared<A> {
    fn drop(&mut self) {
        self.rt.unless_removed(self.group, || {
            if let Err(e) = self.store_committed() {
                tracing::warn!(group = self.group, error = %e, "storing the committed id failed");
            }
        });
    }
}

/// One encoded append waiting for the IO thread.
struct PendingWrite {
    buf: Bytes,
    headers: Vec<(EntryHeader, usize)>,
    done: FlushDone,
}

struct Cached<A: App> {
    entry: Entry<A>,
    header: EntryHeader,
    size: usize,
}

struct State<A: App> {
    segments: Vec<Segment>,
    /// Recent entries, contiguous by index; always holds every entry not yet written.
    tail: VecDeque<Cached<A>>,
    tail_bytes: usize,
    last_log_id: Option<LogId>,
    /// Record offset after the last appended entry (log end offset).
    next_offset: i64,
    purged: Option<PurgedState>,
    flushed: Option<LogId>,
    flushed_offset: i64,
    vote: Option<Vote>,
    /// Offset after the entry a snapshot ends at, given by the state machine.
    snapshot_offset: Option<(u64, i64)>,
    /// Bumped by truncation, so flush completions of truncated writes are ignored.
    generation: u64,
    /// A sticky IO failure: the group refuses further writes.
    failed: Option<String>,
}

impl<A: App> State<A> {
    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(msg) => Err(io::Error::other(format!("log failed earlier: {msg}"))),
        }
    }

    fn written_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(|s| s.last_index())
    }

    /// Drops cached entries over budget, oldest first, but never one not yet written.
    fn evict_tail(&mut self, budget: usize) {
        let written = self.written_index();
        while self.tail_bytes > budget {
            match self.tail.front() {
                Some(c) if Some(c.header.index) <= written => {
                    self.tail_bytes -= c.size;
                    self.tail.pop_front();
                }
                _ => break,
            }
        }
    }

    fn tail_position(&self, index: u64) -> Option<usize> {
        let first = self.tail.front()?.header.index;
        let i = index.checked_sub(first)? as usize;
        (i < self.tail.len()).then_some(i)
    }

    fn segment_of(&self, index: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.first_index <= index);
        let s = self.segments.get(i.checked_sub(1)?)?;
        (s.last_index()? >= index).then_some(s)
    }

    /// Header of entry `index`, from the cache or the segment files.
    fn header_of(&self, index: u64) -> io::Result<Option<EntryHeader>> {
        if let Some(i) = self.tail_position(index) {
            return Ok(Some(self.tail[i].header));
        }
        let Some(s) = self.segment_of(index) else { return Ok(None) };
        let mut found = None;
        segment::scan(&s.file, s.seek_index(index), s.size, |h, _, _| {
            if h.index == index {
                found = Some(*h);
            }
            h.index < index
        })?;
        found.map(Some).ok_or_else(|| corrupt_read(s, index))
    }

    /// Index of the first retained entry (or of the next one, when none is retained).
    fn first_index(&self) -> u64 {
        let on_disk = self.segments.first().map(|s| s.first_index);
        let cached = self.tail.front().map(|c| c.header.index);
        let stored = match (on_disk, cached) {
            (Some(d), Some(c)) => d.min(c),
            (d, c) => d.or(c).unwrap_or(0),
        };
        match self.purged {
            Some(p) => stored.max(p.log_id.index + 1),
            None => stored,
        }
    }

    fn recompute_prefix_max(&mut self) {
        let mut acc = i64::MIN;
        for s in &mut self.segments {
            acc = acc.max(s.max_timestamp);
            s.prefix_max_timestamp = acc;
        }
    }

    fn log_start_offset(&self) -> i64 {
        match self.segments.iter().find(|s| !s.is_empty()) {
            Some(s) => {
                // The first retained entry may sit inside a partly purged segment.
                match self.purged {
                    Some(p) if s.first_index <= p.log_id.index => p.next_offset,
                    _ => s.base_offset,
                }
            }
            // Nothing written yet: the first cached entry, else the purge point.
            None => match (self.tail.front(), self.purged) {
                (Some(c), _) => c.header.base_offset,
                (None, Some(p)) => p.next_offset,
                (None, None) => self.next_offset,
            },
        }
    }
}

fn corrupt_read(s: &Segment, index: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("entry {index} not found intact in segment {}", s.log_path.display()),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug elsewhere; the data itself stays consistent
    // enough to report errors, so keep serving instead of cascading panics.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<A: App> SegmentLog<A> {
    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.shared.group
    }

    /// A type-erased weak handle, for the runtime's registry of open groups.
    pub(crate) fn weak_any(&self) -> std::sync::Weak<dyn std::any::Any + Send + Sync> {
        Arc::downgrade(&self.shared) as _
    }

    /// What opening this log found on disk.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.shared.recovery
    }

    /// Last entry appended (readable, maybe not yet written or durable).
    pub fn last_log_id(&self) -> Option<crate::model::LogId> {
        self.last_raft_log_id().map(Into::into)
    }

    pub(crate) fn last_raft_log_id(&self) -> Option<LogId> {
        lock(&self.shared.state).last_log_id
    }

    /// Last entry written to a segment file (in the OS page cache, maybe not durable).
    pub fn written_log_id(&self) -> Option<crate::model::LogId> {
        let st = lock(&self.shared.state);
        st.segments
            .iter()
            .rev()
            .find_map(|s| s.last)
            .map(|(i, t)| log_id(t, i))
            .or(st.purged.map(|p| p.log_id))
            .map(Into::into)
    }

    /// Last entry known durable (fdatasynced).
    pub fn flushed_log_id(&self) -> Option<crate::model::LogId> {
        lock(&self.shared.state).flushed.map(Into::into)
    }

    /// Record offset after the last appended entry.
    pub fn log_end_offset(&self) -> i64 {
        lock(&self.shared.state).next_offset
    }

    /// Record offset after the last durable entry.
    pub fn flushed_offset(&self) -> i64 {
        lock(&self.shared.state).flushed_offset
    }

    /// Record offset of the first retained record.
    pub fn log_start_offset(&self) -> i64 {
        lock(&self.shared.state).log_start_offset()
    }

    /// Tells the log the record offset that follows the last entry of an installed snapshot,
    /// so appends after a purge beyond the local log continue the offsets correctly. The
    /// state machine calls this from `install_snapshot`, before openraft purges the log.
    pub fn set_snapshot_offset(&self, last_index: u64, next_offset: i64) {
        lock(&self.shared.state).snapshot_offset = Some((last_index, next_offset));
    }

    /// The record offset of entry `index` if it is still in the tail cache (no IO): lets a
    /// state machine check on apply that it counts offsets exactly as the log does.
    pub fn cached_base_offset(&self, index: u64) -> Option<i64> {
        let st = lock(&self.shared.state);
        let first = st.tail.front()?.header.index;
        let c = st.tail.get(index.checked_sub(first)? as usize)?;
        (c.header.index == index).then_some(c.header.base_offset)
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        lock(&self.shared.state).segments.len()
    }

    /// The segment files in index order; the last one is the active segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = lock(&self.shared.state);
        st.segments
            .iter()
            .map(|s| SegmentInfo {
                first_index: s.first_index,
                last: s.last.map(|(i, t)| crate::model::log_id(t, i)),
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                max_timestamp: s.max_timestamp,
                bytes: s.size,
            })
            .collect()
    }

    /// Reads the retained entries with indexes in `[start, end)`, from the tail cache or the
    /// segment files. Entries before the first retained one are skipped, not an error.
    pub async fn read(&self, start: u64, end: u64) -> io::Result<Vec<crate::model::Entry<A>>> {
        let mut reader = self.clone();
        let entries = reader.try_get_log_entries(start..end).await?;
        Ok(entries.into_iter().map(crate::model::Entry::from_raft).collect())
    }

    /// The entry holding record `offset`, if it is retained.
    pub async fn find_offset(&self, offset: i64) -> io::Result<Option<EntryLocation>> {
        let shared = self.shared.clone();
        blocking(move || shared.find(Target::Offset(offset))).await
    }

    /// Where the retained entry at Raft `index` sits in record-offset space (`None` if the
    /// log does not hold it).
    pub async fn find_index(&self, index: u64) -> io::Result<Option<EntryLocation>> {
        let shared = self.shared.clone();
        let found = blocking(move || shared.find(Target::Index(index))).await?;
        Ok(found.filter(|l| l.index == index))
    }

    /// The first entry whose max timestamp is at least `ts` (ListOffsets by time), if any.
    pub async fn find_timestamp(&self, ts: i64) -> io::Result<Option<EntryLocation>> {
        let shared = self.shared.clone();
        blocking(move || shared.find(Target::Timestamp(ts))).await
    }

    async fn run_io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared<A>) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = self.shared.clone();
        self.shared.rt.submit(
            self.shared.group,
            Box::new(move || {
                let res = f(&shared);
                drop(shared);
                let _ = tx.send(res);
            }),
        )?;
        rx.await.map_err(|_| io::Error::other("log IO thread dropped a request"))?
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking read panicked: {e}")))?
}

fn remove_segment_files(s: &Segment) -> io::Result<()> {
    for p in [&s.log_path, &s.index_path] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
