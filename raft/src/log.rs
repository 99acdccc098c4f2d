//! One group's segmented log and its openraft `RaftLogStorage` / `RaftLogReader`.
//!
//! Appends are encoded on the caller's task, kept in a tail cache (so they are readable at
//! once), and handed to the group's IO thread, which writes them to the active segment and
//! queues the file with the flusher; openraft's flush callback fires after the fdatasync.
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
use std::os::unix::fs::FileExt;
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
pub type SegmentLogReader<A> = SegmentLog<A>;

struct Shared<A: App> {
    group: GroupId,
    dir: PathBuf,
    rt: Arc<RuntimeInner>,
    recovery: RecoveryStats,
    state: Mutex<State<A>>,
    /// IO-thread side: the open index file of the last segment. Lock order: writer, state.
    writer: Mutex<Option<(u64, File)>>,
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
            None => self.next_offset,
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
    pub(crate) fn open(rt: Arc<RuntimeInner>, group: GroupId) -> Result<SegmentLog<A>, Error> {
        let dir = rt.group_dir(group);
        std::fs::create_dir_all(&dir)?;
        let mut firsts = Vec::new();
        for ent in std::fs::read_dir(&dir)? {
            let name = ent?.file_name();
            if let Some(first) = name.to_str().and_then(segment::parse_log_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = rt.meta.read_purged(group)?;
        let corrupt = |detail: String| Error::Corrupt { group, detail };

        let mut segments: Vec<Segment> = Vec::with_capacity(firsts.len());
        let n = firsts.len();
        let mut recovery = RecoveryStats { segments: n, ..RecoveryStats::default() };
        for (i, first) in firsts.into_iter().enumerate() {
            let rec = segment::recover(&dir, first, rt.config.index_interval_bytes)?;
            recovery.scanned_bytes += rec.scanned_bytes;
            let seg = rec.segment;
            if let Some((pos, reason, len)) = rec.invalid_tail {
                if i + 1 < n {
                    // A hole in the middle of the log cannot be repaired by truncation.
                    return Err(corrupt(format!(
                        "sealed segment {} is invalid at byte {pos} of {len}: {reason}",
                        seg.log_path.display()
                    )));
                }
                tracing::warn!(
                    group, segment = %seg.log_path.display(), pos, len, reason,
                    "truncating torn or corrupt tail of the active segment"
                );
                metrics::counter!(m::LOG_RECOVERY_TRUNCATED_BYTES).increment(len - pos);
                recovery.truncated_bytes += len - pos;
                seg.file.set_len(pos)?;
                seg.file.sync_data()?;
            }
            if i + 1 == n {
                // New index records are appended after the valid ones: drop any torn or
                // stale records after them first.
                let want = (seg.index_persisted * INDEX_RECORD_LEN) as u64;
                let idx = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&seg.index_path)?;
                if idx.metadata()?.len() != want {
                    idx.set_len(want)?;
                    idx.sync_data()?;
                }
            }
            segments.push(seg);
        }

        // Finish a purge that crashed between recording the purge point and deleting files.
        if let Some(p) = purged {
            while let Some(s) = segments.first() {
                let gone = match s.last_index() {
                    Some(l) => l <= p.log_id.index,
                    None => s.first_index <= p.log_id.index + 1,
                };
                if !gone {
                    break;
                }
                remove_segment_files(&segments.remove(0))?;
            }
        }

        // Check the remaining segments form one contiguous log, and fill in empty ones.
        let mut next_index = purged.map(|p| p.log_id.index + 1);
        let mut next_offset = purged.map(|p| p.next_offset);
        let mut last_log_id = purged.map(|p| p.log_id);
        let count = segments.len();
        for (i, s) in segments.iter_mut().enumerate() {
            if s.is_empty() {
                if i + 1 < count {
                    return Err(corrupt(format!(
                        "sealed segment {} is empty",
                        s.log_path.display()
                    )));
                }
                let off = next_offset.unwrap_or(0);
                s.base_offset = off;
                s.next_offset = off;
                continue;
            }
            let contiguous = match next_index {
                // The first retained segment may start before the purge point.
                Some(ni) if i == 0 => s.first_index <= ni && s.last_index() >= Some(ni - 1),
                Some(ni) => s.first_index == ni,
                None => true,
            };
            let offsets_agree = match (i, next_offset) {
                (0, _) | (_, None) => true,
                (_, Some(o)) => s.base_offset == o,
            };
            if !contiguous || !offsets_agree {
                return Err(corrupt(format!(
                    "segment {} does not continue the log (expected index {next_index:?}, offset {next_offset:?})",
                    s.log_path.display()
                )));
            }
            let (li, lt) = s.last.expect("non-empty");
            next_index = Some(li + 1);
            next_offset = Some(s.next_offset);
            last_log_id = Some(log_id(lt, li));
        }
        if count > 0 {
            segment::sync_dir(&dir)?;
        }

        let next_offset = next_offset.unwrap_or(0);
        let mut state = State {
            segments,
            tail: VecDeque::new(),
            tail_bytes: 0,
            last_log_id,
            next_offset,
            purged,
            flushed: last_log_id,
            flushed_offset: next_offset,
            vote: rt.meta.read_vote(group)?,
            snapshot_offset: None,
            generation: 0,
            failed: None,
        };
        state.recompute_prefix_max();
        Ok(SegmentLog {
            shared: Arc::new(Shared {
                group,
                dir,
                rt,
                recovery,
                state: Mutex::new(state),
                writer: Mutex::new(None),
            }),
        })
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.shared.group
    }

    /// What opening this log found on disk.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.shared.recovery
    }

    /// Last entry appended (readable, maybe not yet written or durable).
    pub fn last_log_id(&self) -> Option<LogId> {
        lock(&self.shared.state).last_log_id
    }

    /// Last entry written to a segment file (in the OS page cache, maybe not durable).
    pub fn written_log_id(&self) -> Option<LogId> {
        let st = lock(&self.shared.state);
        st.segments
            .iter()
            .rev()
            .find_map(|s| s.last)
            .map(|(i, t)| log_id(t, i))
            .or(st.purged.map(|p| p.log_id))
    }

    /// Last entry known durable (fdatasynced).
    pub fn flushed_log_id(&self) -> Option<LogId> {
        lock(&self.shared.state).flushed
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

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        lock(&self.shared.state).segments.len()
    }

    /// The entry holding record `offset`, if it is retained.
    pub async fn find_offset(&self, offset: i64) -> io::Result<Option<EntryLocation>> {
        let shared = self.shared.clone();
        blocking(move || shared.find(Target::Offset(offset))).await
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

#[derive(Clone, Copy)]
enum Target {
    Offset(i64),
    Timestamp(i64),
}

impl Target {
    /// Whether the entry `h` is (or is past) what the lookup wants.
    fn reached(&self, h: &EntryHeader) -> bool {
        match *self {
            Target::Offset(o) => h.next_offset() > o && h.record_count > 0,
            Target::Timestamp(ts) => h.max_timestamp >= ts,
        }
    }
}

impl<A: App> Shared<A> {
    fn find(&self, target: Target) -> io::Result<Option<EntryLocation>> {
        let st = lock(&self.state);
        if let Target::Offset(o) = target
            && (o < st.log_start_offset() || o >= st.next_offset)
        {
            return Ok(None);
        }
        let purged = st.purged.map(|p| p.log_id.index);
        let first_seg = match target {
            Target::Offset(o) => st.segments.partition_point(|s| s.next_offset <= o),
            Target::Timestamp(ts) => st.segments.partition_point(|s| s.prefix_max_timestamp < ts),
        };
        for s in &st.segments[first_seg..] {
            let from = match target {
                Target::Offset(o) => s.seek_offset(o),
                Target::Timestamp(ts) => s.seek_timestamp(ts),
            };
            let mut found = None;
            segment::scan(&s.file, from, s.size, |h, _, _| {
                if Some(h.index) > purged && target.reached(h) {
                    found = Some(EntryLocation::from(h));
                    return false;
                }
                true
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        // Entries not yet written to a segment.
        let written = st.written_index();
        Ok(st
            .tail
            .iter()
            .filter(|c| Some(c.header.index) > written && Some(c.header.index) > purged)
            .find(|c| target.reached(&c.header))
            .map(|c| EntryLocation::from(&c.header)))
    }

    /// IO thread: writes one encoded append batch and queues it for flushing.
    ///
    /// Takes the `Arc` by value and lets go of it before signalling anyone, and flush
    /// completions hold only a `Weak`: once a caller has seen its last callback, dropping its
    /// handles really closes the group (and, with the last group, the RocksDB instance).
    fn write(self: Arc<Self>, buf: Bytes, headers: Vec<(EntryHeader, usize)>, done: FlushDone) {
        let res = self.write_inner(&buf, &headers);
        let rt = self.rt.clone();
        if let Err(e) = &res {
            tracing::error!(group = self.group, error = %e, "writing to the log failed");
            lock(&self.state).failed = Some(e.to_string());
        }
        let weak = Arc::downgrade(&self);
        drop(self);
        let (file, seg_first, size, generation) = match res {
            Ok(v) => v,
            Err(e) => return done(Err(e)),
        };
        let last = headers.last().expect("non-empty batch").0;
        let on_durable = move |r: &io::Result<()>| {
            if let (Ok(()), Some(shared)) = (r, weak.upgrade()) {
                shared.on_durable(seg_first, size, generation, &last);
            }
        };
        match rt.config.flush {
            FlushPolicy::Always => rt.flusher.submit(
                file,
                Box::new(move |r| {
                    on_durable(&r);
                    done(r)
                }),
            ),
            FlushPolicy::Interval(_) => {
                rt.flusher.submit(file, Box::new(move |r| on_durable(&r)));
                drop(rt);
                done(Ok(()))
            }
        }
    }

    fn write_inner(
        &self,
        buf: &[u8],
        headers: &[(EntryHeader, usize)],
    ) -> io::Result<(Arc<File>, u64, u64, u64)> {
        let cfg = &self.rt.config;
        let mut w = lock(&self.writer);
        let first = headers[0].0;
        enum Act {
            Append,
            Roll,
            New,
        }
        let act = {
            let mut st = lock(&self.state);
            st.check_failed()?;
            match st.segments.last() {
                None => Act::New,
                Some(s) if s.is_empty() && s.first_index != first.index => {
                    // Left empty by a roll just before everything in it was purged.
                    let s = st.segments.pop().expect("last");
                    remove_segment_files(&s)?;
                    *w = None;
                    Act::New
                }
                Some(s) if s.last_index().is_some_and(|l| l + 1 != first.index) => {
                    return Err(io::Error::other(format!(
                        "append at index {} would leave a hole after {:?}",
                        first.index,
                        s.last_index()
                    )));
                }
                Some(s)
                    if !s.is_empty()
                        && (s.size + buf.len() as u64 > cfg.segment_bytes
                            || s.created.elapsed() >= Duration::from_millis(cfg.segment_ms)) =>
                {
                    Act::Roll
                }
                Some(_) => Act::Append,
            }
        };
        if let Act::Roll = act {
            self.seal_last(&mut w)?;
            metrics::counter!(m::LOG_SEGMENTS_ROLLED).increment(1);
        }
        if matches!(act, Act::Roll | Act::New) {
            let seg = Segment::create(&self.dir, first.index, first.base_offset)?;
            let mut st = lock(&self.state);
            st.segments.push(seg);
            st.recompute_prefix_max();
        }

        let (file, pos0, seg_first, generation) = {
            let st = lock(&self.state);
            let s = st.segments.last().expect("active segment");
            (s.file.clone(), s.size, s.first_index, st.generation)
        };
        file.write_all_at(buf, pos0)?;
        metrics::counter!(m::LOG_APPENDED_BYTES).increment(buf.len() as u64);
        metrics::counter!(m::LOG_APPENDED_ENTRIES).increment(headers.len() as u64);

        let size = {
            let mut st = lock(&self.state);
            let n = st.segments.len();
            let prev_prefix =
                if n > 1 { st.segments[n - 2].prefix_max_timestamp } else { i64::MIN };
            let s = st.segments.last_mut().expect("active segment");
            for (h, at) in headers {
                let pos = pos0 + *at as u64;
                s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
                let due = match s.index.last() {
                    None => true,
                    Some(r) => pos - u64::from(r.position) >= u64::from(cfg.index_interval_bytes),
                };
                if due {
                    s.index.push(IndexRecord {
                        index: h.index,
                        position: pos as u32,
                        base_offset: h.base_offset,
                        max_timestamp: s.max_timestamp,
                    });
                }
                s.last = Some((h.index, h.term));
                s.next_offset = h.next_offset();
            }
            s.prefix_max_timestamp = prev_prefix.max(s.max_timestamp);
            s.size = pos0 + buf.len() as u64;
            let size = s.size;
            st.evict_tail(cfg.tail_cache_bytes);
            size
        };
        self.persist_index(&mut w)?;
        Ok((file, seg_first, size, generation))
    }

    /// Flusher: the bytes up to `size` of segment `seg_first` are durable.
    fn on_durable(&self, seg_first: u64, size: u64, generation: u64, last: &EntryHeader) {
        let mut st = lock(&self.state);
        if st.generation != generation {
            return;
        }
        if let Some(s) = st.segments.iter_mut().find(|s| s.first_index == seg_first) {
            s.durable_size = s.durable_size.max(size.min(s.size));
        }
        if st.flushed.is_none_or(|f| f.index < last.index) {
            st.flushed = Some(log_id(last.term, last.index));
            st.flushed_offset = last.next_offset();
        }
    }

    /// Appends to the active segment's index file the records whose entries are durable, so
    /// a persisted index record never points at bytes a crash could lose.
    fn persist_index(&self, w: &mut Option<(u64, File)>) -> io::Result<()> {
        let (first, bytes, n) = {
            let st = lock(&self.state);
            let Some(s) = st.segments.last() else { return Ok(()) };
            let mut bytes = Vec::new();
            let mut n = 0;
            for r in &s.index[s.index_persisted..] {
                if u64::from(r.position) >= s.durable_size {
                    break;
                }
                r.encode(&mut bytes);
                n += 1;
            }
            (s.first_index, bytes, n)
        };
        if n == 0 {
            return Ok(());
        }
        if w.as_ref().is_none_or(|(f, _)| *f != first) {
            let (_, index_path) = segment::paths(&self.dir, first);
            *w = Some((first, OpenOptions::new().append(true).create(true).open(index_path)?));
        }
        w.as_mut().expect("index file").1.write_all(&bytes)?;
        let mut st = lock(&self.state);
        if let Some(s) = st.segments.last_mut()
            && s.first_index == first
        {
            s.index_persisted += n;
        }
        Ok(())
    }

    /// Makes the active segment and its whole index durable before a new segment starts.
    fn seal_last(&self, w: &mut Option<(u64, File)>) -> io::Result<()> {
        let file = {
            let st = lock(&self.state);
            st.segments.last().map(|s| s.file.clone())
        };
        let Some(file) = file else { return Ok(()) };
        file.sync_data()?;
        {
            let mut st = lock(&self.state);
            let s = st.segments.last_mut().expect("segment");
            s.durable_size = s.size;
        }
        self.persist_index(w)?;
        if let Some((_, f)) = w.take() {
            f.sync_data()?;
        }
        Ok(())
    }

    /// IO thread: removes every entry after `last`.
    fn truncate(&self, last: Option<LogId>) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let mut st = lock(&self.state);
        st.check_failed()?;
        let cut = last.map_or(0, |l| l.index + 1);
        if st.last_log_id.is_none_or(|l| l.index < cut) {
            return Ok(());
        }
        if let Some(p) = st.purged
            && cut <= p.log_id.index
        {
            return Err(io::Error::other(format!(
                "truncate after {last:?} is inside the purged prefix"
            )));
        }
        let mut next_offset = None;
        let mut removed = false;
        while let Some(s) = st.segments.last() {
            if s.first_index < cut {
                break;
            }
            let s = st.segments.pop().expect("last");
            next_offset = Some(s.base_offset);
            remove_segment_files(&s)?;
            removed = true;
        }
        *w = None;
        if let Some(s) = st.segments.last_mut()
            && s.last_index().is_some_and(|l| l >= cut)
        {
            // Scan from the index record before `cut` to recompute the running max.
            let i = s.index.partition_point(|r| r.index < cut);
            let (from, mut max_ts) = match i.checked_sub(1) {
                None => (0, i64::MIN),
                Some(j) => (u64::from(s.index[j].position), s.index[j].max_timestamp),
            };
            let mut cut_at = None;
            let mut prev = None;
            segment::scan(&s.file, from, s.size, |h, pos, _| {
                if h.index == cut {
                    cut_at = Some((pos, h.base_offset));
                    return false;
                }
                max_ts = max_ts.max(h.max_timestamp);
                prev = Some((h.index, h.term));
                true
            })?;
            let (pos, base) = cut_at.ok_or_else(|| corrupt_read(s, cut))?;
            s.file.set_len(pos)?;
            s.file.sync_data()?;
            s.index.truncate(i);
            s.index_persisted = s.index_persisted.min(i);
            let idx =
                OpenOptions::new().write(true).create(true).truncate(false).open(&s.index_path)?;
            idx.set_len((s.index_persisted * INDEX_RECORD_LEN) as u64)?;
            idx.sync_data()?;
            s.size = pos;
            s.durable_size = s.durable_size.min(pos);
            s.last = prev;
            s.next_offset = base;
            s.max_timestamp = max_ts;
            next_offset = Some(base);
        }
        if removed {
            segment::sync_dir(&self.dir)?;
        }
        st.recompute_prefix_max();
        let next_offset = match next_offset {
            Some(o) => o,
            None => {
                return Err(io::Error::other(format!(
                    "truncate after {last:?}: entry {cut} not found"
                )));
            }
        };
        while st.tail.back().is_some_and(|c| c.header.index >= cut) {
            let c = st.tail.pop_back().expect("back");
            st.tail_bytes -= c.size;
        }
        st.last_log_id = last.or(st.purged.map(|p| p.log_id));
        st.next_offset = next_offset;
        st.generation += 1;
        if st.flushed.is_some_and(|f| f.index >= cut) {
            st.flushed = st.last_log_id;
            st.flushed_offset = next_offset;
        }
        Ok(())
    }

    /// IO thread: forgets every entry up to and including `upto`, deleting whole segments.
    fn purge(&self, upto: LogId) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let mut st = lock(&self.state);
        st.check_failed()?;
        if st.purged.is_some_and(|p| p.log_id.index >= upto.index) {
            return Ok(());
        }
        let beyond = st.last_log_id.is_none_or(|l| l.index <= upto.index);
        let next_offset = match st.header_of(upto.index)? {
            Some(h) => h.next_offset(),
            None => match st.snapshot_offset {
                Some((i, o)) if i == upto.index => o,
                _ if beyond => st.next_offset,
                // Below the first stored entry: nothing to delete, offsets start where the
                // stored entries do.
                _ if upto.index < st.first_index() => st.log_start_offset(),
                _ => return Err(io::Error::other(format!("purge up to {upto}: entry not found"))),
            },
        };
        let purged = PurgedState { log_id: upto, next_offset };
        self.rt.meta.save_purged(self.group, &purged)?;
        let mut removed = false;
        while let Some(s) = st.segments.first() {
            let gone = beyond || s.last_index().is_some_and(|l| l <= upto.index);
            if !gone {
                break;
            }
            remove_segment_files(&st.segments.remove(0))?;
            removed = true;
        }
        if beyond {
            *w = None;
        }
        if removed {
            segment::sync_dir(&self.dir)?;
        }
        st.purged = Some(purged);
        while st.tail.front().is_some_and(|c| c.header.index <= upto.index) {
            let c = st.tail.pop_front().expect("front");
            st.tail_bytes -= c.size;
        }
        if beyond {
            st.last_log_id = Some(upto);
            st.next_offset = next_offset;
            st.flushed = Some(upto);
            st.flushed_offset = next_offset;
        }
        st.recompute_prefix_max();
        Ok(())
    }

    /// Reads entries `[start, end)` from segment files; blocking.
    fn read_disk(&self, start: u64, end: u64) -> io::Result<Vec<Entry<A>>> {
        let mut out = Vec::with_capacity((end - start).min(1024) as usize);
        let mut next = start;
        while next < end {
            let (file, from, size, seg_last, path) = {
                let st = lock(&self.state);
                let Some(s) = st.segment_of(next) else {
                    return Err(io::Error::other(format!("entry {next} is in no segment")));
                };
                (
                    s.file.clone(),
                    s.seek_index(next),
                    s.size,
                    s.last_index().expect("non-empty"),
                    s.log_path.clone(),
                )
            };
            let stop = end.min(seg_last + 1);
            let mut err = None;
            let res = segment::scan(&file, from, size, |h, _, rec| {
                if h.index < next {
                    return true;
                }
                if h.index != next {
                    err = Some(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: expected entry {next}, found {}", path.display(), h.index),
                    ));
                    return false;
                }
                match decode_entry::<A>(h, rec.clone()) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        err = Some(e);
                        return false;
                    }
                }
                next += 1;
                next < stop
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if let ScanEnd::Invalid { pos, reason } = res {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: corrupt entry at byte {pos}: {reason}", path.display()),
                ));
            }
            if next < stop {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: entry {next} missing", path.display()),
                ));
            }
        }
        Ok(out)
    }
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

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<A: App> RaftLogReader<TypeConfig<A>> for SegmentLog<A> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry<A>>> {
        let (start, end) = bounds(&range);
        let (disk, tail) = {
            let st = lock(&self.shared.state);
            let lo = start.max(st.first_index());
            let hi = st.last_log_id.map_or(lo, |l| end.min(l.index + 1));
            if lo >= hi {
                return Ok(Vec::new());
            }
            let tail_first = st.tail.front().map_or(hi, |c| c.header.index.max(lo));
            let tail: Vec<Entry<A>> = st
                .tail
                .iter()
                .filter(|c| c.header.index >= lo && c.header.index < hi)
                .map(|c| c.entry.clone())
                .collect();
            (lo..tail_first.min(hi), tail)
        };
        if disk.is_empty() {
            return Ok(tail);
        }
        let shared = self.shared.clone();
        let mut out = blocking(move || shared.read_disk(disk.start, disk.end)).await?;
        out.extend(tail);
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(lock(&self.shared.state).vote)
    }
}

impl<A: App> RaftLogStorage<TypeConfig<A>> for SegmentLog<A> {
    type LogReader = SegmentLog<A>;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig<A>>> {
        let st = lock(&self.shared.state);
        let purged = st.purged.map(|p| p.log_id);
        Ok(LogState { last_purged_log_id: purged, last_log_id: st.last_log_id.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // Through the IO thread, so the vote is ordered after earlier log writes (openraft
        // requires all write IO to be applied in order).
        let v = *vote;
        self.run_io(move |s| {
            s.rt.meta.save_vote(s.group, &v)?;
            lock(&s.state).vote = Some(v);
            Ok(())
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.shared.rt.meta.save_committed(self.shared.group, committed)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.shared.rt.meta.read_committed(self.shared.group)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig<A>>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry<A>> + Send,
        I::IntoIter: Send,
    {
        let mut buf = BytesMut::new();
        let mut headers = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            st.check_failed()?;
            for entry in entries {
                let index = entry.log_id.index;
                if let Some(l) = st.last_log_id
                    && l.index + 1 != index
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("append of entry {index} after {l} would leave a hole"),
                    ));
                }
                let at = buf.len();
                let header = encode_entry::<A>(&entry, st.next_offset, &mut buf);
                st.next_offset = header.next_offset();
                st.last_log_id = Some(entry.log_id);
                let size = buf.len() - at;
                st.tail_bytes += size;
                st.tail.push_back(Cached { entry, header, size });
                headers.push((header, at));
            }
        }
        if headers.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let shared = self.shared.clone();
        let buf = buf.freeze();
        let done: FlushDone = Box::new(move |r| callback.io_completed(r));
        self.shared
            .rt
            .submit(self.shared.group, Box::new(move || Shared::write(shared, buf, headers, done)))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.run_io(move |s| s.truncate(last_log_id)).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.run_io(move |s| s.purge(log_id)).await
    }
}
