//! The broker-wide IO machinery behind every group's log: IO threads that write appends to
//! segment files (and sync a lone write themselves), and one flusher that fdatasyncs dirty
//! files and fires every waiting callback after the sync (group commit).

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use crate::config::FlushPolicy;
use crate::config::LogConfig;
use crate::error::Error;
use crate::log::SegmentLog;
use crate::meta::MetaStore;
use crate::metrics as m;
use crate::segfile::SegFile;
use crate::types::App;
use crate::types::GroupId;

/// Suffix of a group directory being removed.
const TOMBSTONE: &str = ".removing";

fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A unit of work for an IO thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;
/// Called once the file a write went to is durable (or failed to become so).
pub(crate) type FlushDone = Box<dyn FnOnce(io::Result<()>) + Send>;

/// The storage runtime of one broker: its metadata store, its IO threads and its flusher.
/// Open each hosted group's log with [`LogRuntime::open_group`].
#[derive(Clone)]
pub struct LogRuntime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub meta: MetaStore,
    pub config: LogConfig,
    pub root: PathBuf,
    io: Vec<IoThread>,
    pub flusher: Arc<Flusher>,
    /// Groups with a live log handle: a group's files have exactly one writer.
    open_groups: Mutex<HashMap<GroupId, Weak<dyn Any + Send + Sync>>>,
}

impl LogRuntime {
    /// Opens the runtime over `data_dir` (`meta/` holds RocksDB, `groups/` the segment files)
    /// and starts its threads. They stop when the last handle and group log are dropped.
    pub fn open(data_dir: &Path, config: LogConfig) -> Result<LogRuntime, Error> {
        config.validate()?;
        let groups = data_dir.join("groups");
        std::fs::create_dir_all(&groups)?;
        let meta = MetaStore::open(&data_dir.join("meta"))?;
        // Finish removals a crash interrupted.
        for ent in std::fs::read_dir(&groups)? {
            let path = ent?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let Some(id) = name.strip_suffix(TOMBSTONE).and_then(|id| id.parse::<u64>().ok()) {
                tracing::warn!(group = id, "finishing an interrupted group removal");
                meta.remove_group(id)?;
                remove_dir_if_present(&path)?;
            }
        }
        let flusher = Flusher::start(config.flush)?;
        let mut io = Vec::with_capacity(config.io_threads);
        for i in 0..config.io_threads {
            let (tx, rx) = mpsc::channel::<Job>();
            let queued = Arc::new(AtomicU64::new(0));
            let waiting = queued.clone();
            std::thread::Builder::new().name(format!("rafka-log-io-{i}")).spawn(move || {
                while let Ok(job) = rx.recv() {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    // A panicking job must not take down the thread every other group on
                    // it depends on.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a log IO job panicked");
                    }
                }
            })?;
            io.push(IoThread { tx: Mutex::new(tx), queued });
        }
        Ok(LogRuntime {
            inner: Arc::new(RuntimeInner {
                meta,
                config,
                root: data_dir.to_path_buf(),
                open_groups: Mutex::new(HashMap::new()),
                io,
                flusher,
            }),
        })
    }

    /// Opens (recovering, or creating when new) the log of `group`. Refused with
    /// [`Error::GroupInUse`] while another handle of the same group is alive.
    pub fn open_group<A: App>(&self, group: GroupId) -> Result<SegmentLog<A>, Error> {
        // Held across the open so two callers cannot both recover the same files.
        let mut open = self.inner.open_groups.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(&group).is_some_and(|w| w.strong_count() > 0) {
            return Err(Error::GroupInUse(group));
        }
        let log = SegmentLog::open(self.inner.clone(), group)?;
        open.insert(group, log.weak_any());
        Ok(log)
    }

    /// Deletes every trace of `group` on this broker: its Raft metadata first (so a crash
    /// midway leaves an intact log, not a purge point without files), then its segments.
    /// Refused with [`Error::GroupInUse`] while a handle of the group is alive.
    pub fn remove_group(&self, group: GroupId) -> Result<(), Error> {
        let mut open = self.inner.open_groups.lock().unwrap_or_else(|p| p.into_inner());
        if open.get(&group).is_some_and(|w| w.strong_count() > 0) {
            return Err(Error::GroupInUse(group));
        }
        open.remove(&group);
        let groups = self.inner.root.join("groups");
        let dir = self.inner.group_dir(group);
        let tomb = groups.join(format!("{group:020}{TOMBSTONE}"));
        if dir.exists() {
            // First make the whole directory disappear atomically, so a crash never leaves
            // half a log behind: an interrupted removal is finished by the next open.
            remove_dir_if_present(&tomb)?;
            crate::durable::rename(&dir, &tomb)?;
            crate::durable::sync_dir(&groups)?;
        }
        self.inner.meta.remove_group(group)?;
        remove_dir_if_present(&tomb)?;
        crate::durable::sync_dir(&groups)?;
        Ok(())
    }

    /// Ids of the groups with a log directory under this runtime (hosted or not), sorted.
    pub fn stored_groups(&self) -> Result<Vec<GroupId>, Error> {
        let mut ids = Vec::new();
        for ent in std::fs::read_dir(self.inner.root.join("groups"))? {
            let name = ent?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The replica id this broker's copy of `group` was created as, if it has one.
    pub fn stored_replica(&self, group: GroupId) -> Result<Option<u64>, Error> {
        Ok(self.inner.meta.read_replica(group)?)
    }

    /// The committed id stored in RocksDB for `group` (for tests: the log notes openraft's
    /// newest one and stores it with its next write, so this may lag).
    #[doc(hidden)]
    pub fn stored_committed(&self, group: GroupId) -> Result<Option<crate::model::LogId>, Error> {
        Ok(self.inner.meta.read_committed(group)?.map(Into::into))
    }

    /// The log settings in force.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Fault injection for tests: blocks the IO thread serving `group` until the returned
    /// sender is dropped, so appends queue up behind it.
    #[doc(hidden)]
    pub fn hold_io_thread(&self, group: GroupId) -> Result<mpsc::Sender<()>, Error> {
        let (tx, rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        self.inner.submit(
            group,
            Box::new(move || {
                let _ = started_tx.send(());
                let _ = rx.recv();
            }),
        )?;
        let _ = started_rx.recv();
        Ok(tx)
    }

    /// What the flusher has done since the runtime started.
    pub fn flush_stats(&self) -> FlushStats {
        let f = &self.inner.flusher;
        FlushStats {
            rounds: f.rounds.load(Ordering::Relaxed),
            syncs: f.syncs.load(Ordering::Relaxed),
            writes: f.writes.load(Ordering::Relaxed),
            inline: f.inline.load(Ordering::Relaxed),
        }
    }

    /// Fault injection for tests: while paused, the flusher starts no new round, so no
    /// append becomes durable (and no flush callback fires).
    #[doc(hidden)]
    pub fn set_flusher_paused(&self, paused: bool) {
        let f = &self.inner.flusher;
        let mut q = f.queue.lock().unwrap();
        q.paused = paused;
        f.paused.store(paused, Ordering::SeqCst);
        drop(q);
        f.wake.notify_one();
    }
}

/// Counters of the broker-wide flusher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Flush rounds run (each syncs every file dirtied since the previous round).
    pub rounds: u64,
    /// fdatasync calls made.
    pub syncs: u64,
    /// Segment writes made durable (or failed) by those rounds; one write carries every
    /// append that was waiting for the IO thread.
    pub writes: u64,
    /// Of the rounds, those an IO thread ran itself for one write, with nothing else waiting.
    pub inline: u64,
}

/// One IO thread's queue.
struct IoThread {
    tx: Mutex<mpsc::Sender<Job>>,
    /// Jobs queued and not yet started.
    queued: Arc<AtomicU64>,
}

impl RuntimeInner {
    fn io_of(&self, group: GroupId) -> &IoThread {
        &self.io[(group % self.io.len() as u64) as usize]
    }

    /// Queues `job` on the IO thread that owns `group`; a group's jobs run in order.
    pub fn submit(&self, group: GroupId, job: Job) -> io::Result<()> {
        let io = self.io_of(group);
        io.queued.fetch_add(1, Ordering::SeqCst);
        io.tx.lock().unwrap().send(job).map_err(|_| {
            io.queued.fetch_sub(1, Ordering::SeqCst);
            io::Error::other("log IO thread has stopped")
        })
    }

    /// Runs `f` if `group` was not removed since it was opened, holding off removals meanwhile
    /// (for a closing log's last metadata write, which must not outlive a removal).
    pub fn unless_removed(&self, group: GroupId, f: impl FnOnce()) {
        let open = self.open_groups.lock().unwrap_or_else(|p| p.into_inner());
        if open.contains_key(&group) {
            f();
        }
    }

    /// Whether the IO thread of `group` has no job waiting behind the one it runs.
    pub fn io_idle(&self, group: GroupId) -> bool {
        self.io_of(group).queued.load(Ordering::SeqCst) == 0
    }

    pub fn group_dir(&self, group: GroupId) -> PathBuf {
        self.root.join("groups").join(format!("{group:020}"))
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.flusher.stop();
    }
}

struct FlushReq {
    /// The file to sync, or the error the write already failed with.
    file: Result<Arc<SegFile>, io::Error>,
    done: FlushDone,
}

#[derive(Default)]
struct FlushQueue {
    reqs: Vec<FlushReq>,
    /// Requests that must not wait for the interval (see [`Flusher::submit_now`]).
    urgent: usize,
    stop: bool,
    paused: bool,
}

/// Files one flush round syncs at once, at most.
const PARALLEL_SYNCS: usize = 8;

/// `None` when a file synced, else the error's kind and message.
type SyncOutcome = Option<(io::ErrorKind, String)>;

/// fdatasyncs one file; its outcome and how long it took.
fn sync_file(file: &SegFile) -> (SyncOutcome, Duration) {
    let started = Instant::now();
    let res = file.sync_data();
    let outcome = res.err().map(|e| {
        tracing::error!(error = %e, "fdatasync of a segment file failed");
        (e.kind(), e.to_string())
    });
    (outcome, started.elapsed())
}

/// A share of a flush round for a helper thread.
struct SyncJob {
    files: Vec<Arc<SegFile>>,
    reply: mpsc::Sender<Vec<(SyncOutcome, Duration)>>,
}

/// The flusher's helper threads, each syncing one share of a round with many files. Started
/// when first needed and kept (starting threads every round cost more than the syncs); they
/// end when the flusher is dropped.
#[derive(Default)]
struct SyncHelpers {
    threads: Vec<mpsc::Sender<SyncJob>>,
}

impl SyncHelpers {
    /// Helper `i`, started now if it is the next one; `None` if no thread can be started.
    fn get(&mut self, i: usize) -> Option<&mpsc::Sender<SyncJob>> {
        if i == self.threads.len() {
            let (tx, rx) = mpsc::channel::<SyncJob>();
            let started =
                std::thread::Builder::new().name("rafka-log-sync".into()).spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let out = job.files.iter().map(|f| sync_file(f)).collect();
                        let _ = job.reply.send(out);
                    }
                });
            if started.is_err() {
                return None;
            }
            self.threads.push(tx);
        }
        self.threads.get(i)
    }
}

/// Syncs files written by the IO threads. With [`FlushPolicy::Always`] a round starts as soon
/// as anything waits, and every append that arrived during the previous round shares the
/// next one: one fdatasync per dirty file per round, however many appends it holds.
pub(crate) struct Flusher {
    queue: Mutex<FlushQueue>,
    /// Mirrors `queue.paused`, read without the lock by [`Flusher::sync_inline`].
    paused: AtomicBool,
    wake: Condvar,
    rounds: AtomicU64,
    syncs: AtomicU64,
    writes: AtomicU64,
    inline: AtomicU64,
    helpers: Mutex<SyncHelpers>,
}

impl Flusher {
    fn start(policy: FlushPolicy) -> io::Result<Arc<Flusher>> {
        let f = Arc::new(Flusher {
            queue: Mutex::new(FlushQueue::default()),
            paused: AtomicBool::new(false),
            wake: Condvar::new(),
            rounds: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            helpers: Mutex::new(SyncHelpers::default()),
        });
        let run = f.clone();
        std::thread::Builder::new()
            .name("rafka-log-flusher".into())
            .spawn(move || run.run(policy))?;
        Ok(f)
    }

    /// Calls `done` once `file` has been fdatasynced after this call.
    pub fn submit(&self, file: Arc<SegFile>, done: FlushDone) {
        self.push(FlushReq { file: Ok(file), done });
    }

    /// Like [`Flusher::submit`], but starts a round at once under an interval policy too:
    /// for entries that must be durable before they are acknowledged whatever the policy.
    pub fn submit_now(&self, file: Arc<SegFile>, done: FlushDone) {
        self.queue.lock().unwrap().urgent += 1;
        self.push(FlushReq { file: Ok(file), done });
    }

    /// Runs a flush round of its own for `file` on the calling IO thread: what a write does
    /// instead of handing its file to the flusher when nothing else waits (see
    /// `Shared::write`), which saves a thread hand-off on the way to the acknowledgement.
    /// Gives `done` back while the flusher is paused (tests): the caller submits instead.
    pub fn sync_inline(&self, file: Arc<SegFile>, done: FlushDone) -> Result<(), FlushDone> {
        if self.paused.load(Ordering::SeqCst) {
            return Err(done);
        }
        self.inline.fetch_add(1, Ordering::Relaxed);
        self.flush_round(vec![FlushReq { file: Ok(file), done }]);
        Ok(())
    }

    /// Reports a failed write to `done` in order with the writes queued before it.
    pub fn submit_failed(&self, error: io::Error, done: FlushDone) {
        self.push(FlushReq { file: Err(error), done });
    }

    fn push(&self, req: FlushReq) {
        let mut q = self.queue.lock().unwrap();
        if q.stop {
            // Shutting down: the flusher thread may be gone, so do the round here.
            drop(q);
            self.flush_round(vec![req]);
            return;
        }
        q.reqs.push(req);
        drop(q);
        self.wake.notify_one();
    }

    fn stop(&self) {
        self.queue.lock().unwrap().stop = true;
        self.wake.notify_one();
    }

    fn run(&self, policy: FlushPolicy) {
        loop {
            let (reqs, stop) = {
                let mut q = self.queue.lock().unwrap();
                match policy {
                    FlushPolicy::Always => {
                        while (q.reqs.is_empty() || q.paused) && !q.stop {
                            q = self.wake.wait(q).unwrap();
                        }
                    }
                    FlushPolicy::Interval(every) => {
                        let deadline = Instant::now() + every;
                        while !q.stop {
                            let now = Instant::now();
                            if (now >= deadline || q.urgent > 0) && !q.paused {
                                break;
                            }
                            let wait = deadline.saturating_duration_since(now).max(every / 4);
                            q = self.wake.wait_timeout(q, wait).unwrap().0;
                        }
                    }
                }
                q.urgent = 0;
                (std::mem::take(&mut q.reqs), q.stop)
            };
            self.flush_round(reqs);
            if stop {
                return;
            }
        }
    }

    /// fdatasyncs `files`, several at once when there are several (the syncs of different
    /// files overlap in the device and share the filesystem's journal commits); the outcome
    /// of each, in order: `None` when synced, else the error's kind and message.
    fn sync_all(&self, files: &[&Arc<SegFile>]) -> Vec<SyncOutcome> {
        let chunk = files.len().div_ceil(files.len().clamp(1, PARALLEL_SYNCS));
        let mut shares = files.chunks(chunk.max(1));
        let first = shares.next().unwrap_or_default();
        // The other shares go to helper threads, started once and kept for later rounds.
        let mut pending = Vec::new();
        {
            let mut helpers = self.helpers.lock().unwrap_or_else(|p| p.into_inner());
            for (i, share) in shares.enumerate() {
                let reply = helpers.get(i).and_then(|helper| {
                    let (tx, rx) = mpsc::channel();
                    let files = share.iter().map(|f| Arc::clone(f)).collect();
                    helper.send(SyncJob { files, reply: tx }).ok().map(|()| rx)
                });
                pending.push((share, reply));
            }
        }
        let mut out: Vec<SyncOutcome> = first.iter().map(|f| self.record(sync_file(f))).collect();
        for (share, reply) in pending {
            match reply.and_then(|rx| rx.recv().ok()) {
                Some(res) => out.extend(res.into_iter().map(|r| self.record(r))),
                // No helper to be had (or it is gone): sync the share here.
                None => out.extend(share.iter().map(|f| self.record(sync_file(f)))),
            }
        }
        out
    }

    fn record(&self, (outcome, took): (SyncOutcome, Duration)) -> SyncOutcome {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!(m::LOG_FSYNC_SECONDS).record(took.as_secs_f64());
        outcome
    }

    fn flush_round(&self, reqs: Vec<FlushReq>) {
        if reqs.is_empty() {
            return;
        }
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(reqs.len() as u64, Ordering::Relaxed);
        metrics::histogram!(m::LOG_FLUSH_BATCH_WRITES).record(reqs.len() as f64);
        crate::crash_point!(crate::crash::LOG_BEFORE_FSYNC);
        let mut seen = std::collections::HashSet::new();
        let files: Vec<&Arc<SegFile>> = reqs
            .iter()
            .filter_map(|r| r.file.as_ref().ok())
            .filter(|f| seen.insert(Arc::as_ptr(f)))
            .collect();
        let outcomes = self.sync_all(&files);
        let synced: HashMap<*const SegFile, SyncOutcome> =
            files.iter().map(|f| Arc::as_ptr(f)).zip(outcomes).collect();
        crate::crash_point!(crate::crash::LOG_AFTER_FSYNC);
        for r in reqs {
            let res = match r.file {
                Err(e) => Err(e),
                Ok(file) => match &synced[&Arc::as_ptr(&file)] {
                    None => Ok(()),
                    Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
                },
            };
            (r.done)(res);
        }
    }
}
