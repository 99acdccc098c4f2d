//! [`Supervisor`]: the owner of every background task of a broker. Loops, one-off jobs (a
//! replica deletion, a reassignment step, a controller proposal made on a heartbeat) and the
//! waiters that see a proposal through after its request is gone all run here, so shutdown
//! can cancel them and wait for them, and nothing outlives the broker.
//!
//! - A task is cancelled at its next `.await` once [`Supervisor::shutdown`] starts; loops
//!   need no stop flag of their own.
//! - A keyed task ([`Supervisor::spawn_keyed`]) runs at most once per [`TaskKey`] at a
//!   time: a second request while one runs is dropped. Level-triggered loops ask again on
//!   their next pass, so nothing is lost.
//! - Blocking work (a checkpoint file written off the apply path) is owned too: shutdown
//!   waits for it, so a final checkpoint never races a background one.
//! - After shutdown starts, nothing new is started.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::sync::WaitForCancellationFuture;

/// What at most one task may be doing at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKey {
    /// Deleting this broker's copy of a group.
    DeleteReplica(u64),
    /// Driving a group's reassignment (as its leader).
    Reassign(u64),
    /// Completing a group's reassignment (as controller leader).
    CompleteReassignment(u64),
    /// Changing the controller group's members and voters (as controller leader).
    ControllerMembers,
    /// Moving replicas off draining brokers (as controller leader).
    Drain,
    /// Removing a drained broker (as controller leader).
    RemoveBroker(u64),
    /// Creating `__consumer_offsets` (as controller leader).
    CreateOffsetsTopic,
    FinalizeBatchFormat,
    /// Creating `[auth] bootstrap-user` (as controller leader).
    BootstrapUser,
    /// Registering a broker, or a new incarnation of it (as controller leader).
    RegisterBroker(u64),
    /// Initialising a group that has no log yet: (group, replica). Keyed by replica too, so a
    /// replica hosted again after a deletion is not held up by its predecessor's task.
    Initialize(u64, u64),
}

/// Owns a broker's background tasks; cheap to clone (one shared set).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    token: CancellationToken,
    runtime: Handle,
    tasks: Mutex<JoinSet<()>>,
    running: Mutex<HashSet<TaskKey>>,
}

/// What shutdown found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that ended (cancelled or finished) within the grace period.
    pub stopped: usize,
    /// Tasks still running at the end of the grace period, aborted.
    pub aborted: usize,
}

/// Releases a task's key when the task ends, however it ends (finished, cancelled,
/// aborted, panicked).
struct KeyGuard {
    inner: Arc<Inner>,
    key: TaskKey,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl Supervisor {
    /// A supervisor whose tasks run on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[allow(clippy::new_without_default)] // needs a runtime: no silent `Default`
    pub fn new() -> Supervisor {
        Supervisor {
            inner: Arc::new(Inner {
                token: CancellationToken::new(),
                runtime: Handle::current(),
                tasks: Mutex::new(JoinSet::new()),
                running: Mutex::default(),
            }),
        }
    }

    /// Runs `task` until it ends or shutdown cancels it. `name` is for logs.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.start(name, None, task);
    }

    /// Runs `task` unless a task with `key` is running; returns whether it started.
    pub fn spawn_keyed(
        &self,
        key: TaskKey,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        if self.is_stopping() {
            return false;
        }
        if !self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).insert(key) {
            return false;
        }
        let guard = KeyGuard { inner: self.inner.clone(), key };
        self.start(name, Some(guard), task)
    }

    /// Runs blocking `work` on the blocking pool; shutdown waits for it (it cannot be
    /// cancelled). Callable from any thread.
    pub fn spawn_blocking(&self, name: &'static str, work: impl FnOnce() + Send + 'static) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_stopping() {
            tracing::debug!(task = name, "not started: shutting down");
            return;
        }
        reap(&mut tasks);
        tasks.spawn_blocking_on(work, &self.inner.runtime);
    }

    fn start(
        &self,
        name: &'static str,
        guard: Option<KeyGuard>,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_stopping() {
            tracing::debug!(task = name, "not started: shutting down");
            return false;
        }
        reap(&mut tasks);
        let token = self.inner.token.clone();
        tasks.spawn_on(
            async move {
                let _guard = guard;
                tokio::select! {
                    biased;
                    _ = token.cancelled() => tracing::trace!(task = name, "cancelled"),
                    _ = task => {}
                }
            },
            &self.inner.runtime,
        );
        true
    }

    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Resolves when shutdown starts: for loops that want to finish a step first.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// Whether a task with `key` is running.
    pub fn is_running(&self, key: TaskKey) -> bool {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).contains(&key)
    }

    /// Tasks not yet known to have ended.
    pub fn running(&self) -> usize {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        reap(&mut tasks);
        tasks.len()
    }

    /// Cancels every task and waits up to `grace` for all of them to end; aborts the rest
    /// (blocking work cannot be aborted: it is waited for). Starts nothing afterwards.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let mut tasks = {
            let mut guard = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.token.cancel();
            std::mem::take(&mut *guard)
        };
        let mut stopped = 0;
        let waited = tokio::time::timeout(grace, async {
            while let Some(r) = tasks.join_next().await {
                report_end(r);
                stopped += 1;
            }
        })
        .await;
        let aborted = tasks.len();
        if waited.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        ShutdownReport { stopped, aborted }
    }
}

/// Collects the results of tasks that have ended, so the set holds only running ones.
fn reap(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.try_join_next() {
        report_end(r);
    }
}

fn report_end(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!("a background task panicked: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn keyed_tasks_run_once_per_key_and_release_it() {
        let s = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert!(s.spawn_keyed(TaskKey::Reassign(7), "first", async {
            let _ = rx.await;
        }));
        assert!(!s.spawn_keyed(TaskKey::Reassign(7), "second", async {}));
        assert!(s.spawn_keyed(TaskKey::Reassign(8), "other key", async {}));
        tx.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while s.is_running(TaskKey::Reassign(7)) {
            assert!(tokio::time::Instant::now() < deadline, "key never released");
            tokio::task::yield_now().await;
        }
        assert!(s.spawn_keyed(TaskKey::Reassign(7), "again", async {}));
    }

    #[tokio::test]
    async fn shutdown_cancels_and_awaits_everything_and_starts_nothing_after() {
        let s = Supervisor::new();
        for _ in 0..3 {
            s.spawn("forever", std::future::pending());
        }
        let wrote = Arc::new(AtomicBool::new(false));
        let w = wrote.clone();
        s.spawn_blocking("write", move || w.store(true, Ordering::SeqCst));
        assert!(s.spawn_keyed(TaskKey::CreateOffsetsTopic, "keyed", std::future::pending()));
        let report = s.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report, ShutdownReport { stopped: 5, aborted: 0 });
        assert!(wrote.load(Ordering::SeqCst), "blocking work was waited for");
        assert!(!s.is_running(TaskKey::CreateOffsetsTopic), "key released on cancel");
        assert!(!s.spawn_keyed(TaskKey::CreateOffsetsTopic, "late", async {}));
        s.spawn("late", async { panic!("must not run") });
        assert_eq!(s.running(), 0);
    }
}
