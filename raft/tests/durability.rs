//! Group commit and durability: flush callbacks fire only after the fsync that covers them,
//! concurrent appends share fsyncs, metadata survives restarts, bad requests change nothing.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::TestApp;
use common::append_durable;
use common::append_pending;
use common::normal;
use common::read_all;
use common::reopen_and_read;
use futures::FutureExt;
use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use rafka_raft::FlushPolicy;
use rafka_raft::LogConfig;
use rafka_raft::LogRuntime;
use rafka_raft::types::Vote;
use rafka_raft::types::log_id;

/// Polls `cond` until it holds, failing after a generous deadline.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_callbacks_wait_for_one_shared_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    rt.set_flusher_paused(true);

    let mut pending = Vec::new();
    for i in 0..50 {
        pending.push(append_pending(&mut log, vec![normal(1, i, 1, i as i64, 100)]).await);
    }
    // Readable at once (before it is even written) ...
    assert_eq!(log.try_get_log_entries(0..50).await.unwrap().len(), 50);
    // A vote goes through the group's IO thread after the writes: once it is saved, every
    // write has been handed to the (paused) flusher.
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    assert_eq!(log.written_log_id(), Some(rafka_raft::log_id(1, 49)));
    // ... written, but not durable: no callback may have fired.
    assert_eq!(log.flushed_log_id(), None);
    for rx in &mut pending {
        assert!(rx.now_or_never().is_none(), "a flush callback fired before any fsync");
    }

    let before = rt.flush_stats();
    rt.set_flusher_paused(false);
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    let after = rt.flush_stats();
    assert_eq!(after.rounds - before.rounds, 1, "one round for everything queued");
    assert_eq!(after.syncs - before.syncs, 1, "one fsync for 50 appends to one file");
    let writes = after.writes - before.writes;
    assert!((1..=50).contains(&writes), "{writes} writes for 50 appends");
    assert_eq!(log.flushed_log_id(), Some(rafka_raft::log_id(1, 49)));
    assert_eq!(log.flushed_offset(), 50);

    // The coalesced writes hold exactly the entries, in order.
    drop(log);
    drop(rt);
    let (_rt, log, got) = reopen_and_read(dir.path(), 1).await;
    let want: Vec<_> = (0..50).map(|i| normal(1, i, 1, i as i64, 100)).collect();
    assert_eq!(got, want);
    assert_eq!(log.find_offset(37).await.unwrap().map(|l| l.index), Some(37));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_share_flush_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut logs: Vec<_> = (0..8).map(|g| rt.open_group::<TestApp>(g).unwrap()).collect();
    rt.set_flusher_paused(true);
    let mut pending = Vec::new();
    for log in &mut logs {
        pending.push(append_pending(log, vec![normal(1, 0, 1, 0, 10)]).await);
    }
    for log in &mut logs {
        log.save_vote(&Vote::new(1, 1)).await.unwrap(); // IO-thread barrier, as above
        assert!(log.written_log_id().is_some());
    }
    let before = rt.flush_stats();
    rt.set_flusher_paused(false);
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    let after = rt.flush_stats();
    assert_eq!(after.rounds - before.rounds, 1);
    assert_eq!(after.syncs - before.syncs, 8, "one fsync per dirty file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_is_synced_by_its_io_thread() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    for i in 0..20 {
        let before = rt.flush_stats();
        append_durable(&mut log, vec![normal(1, i, 1, i as i64, 100)]).await.unwrap();
        let after = rt.flush_stats();
        assert_eq!(after.inline - before.inline, 1, "append {i}: nothing else waited");
        assert_eq!(after.syncs - before.syncs, 1);
        assert_eq!(log.flushed_log_id(), Some(rafka_raft::log_id(1, i)));
    }
    drop(log);
    drop(rt);
    let (_rt, _log, got) = reopen_and_read(dir.path(), 1).await;
    assert_eq!(got.len(), 20);
}

type FlushRx = openraft::type_config::alias::OneshotReceiverOf<common::C, std::io::Result<()>>;

/// One pass over a group's appends, newest first, recording which were acknowledged: an
/// append seen acknowledged while an older one is then seen not acknowledged was acknowledged
/// out of order.
fn check_ack_order(g: u64, pending: &mut [Option<FlushRx>], fired: &mut [bool]) {
    let mut newer_done = None;
    for i in (0..pending.len()).rev() {
        // `try_recv`: polling would stop answering after tokio's budget of 128.
        if !fired[i]
            && let Some(res) = pending[i].as_mut().and_then(|rx| rx.try_recv().ok())
        {
            res.unwrap();
            fired[i] = true;
            pending[i] = None;
        }
        match newer_done {
            Some(n) if !fired[i] => panic!("group {g}: append {n} acknowledged before append {i}"),
            None if fired[i] => newer_done = Some(i),
            _ => {}
        }
    }
}

/// Writes that sync on their IO thread and writes the flusher syncs interleave (other groups'
/// jobs on the same IO thread decide which): every group's flush callbacks must still fire in
/// the order of its appends, as openraft requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_callbacks_fire_in_append_order_whoever_syncs() {
    const GROUPS: u64 = 6;
    const APPENDS: usize = 300;
    // Appends of a group not yet acknowledged, at most: small, so that the writes are many.
    const WINDOW: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let before = rt.flush_stats();
    let mut writers = Vec::new();
    for g in 0..GROUPS {
        let mut log = rt.open_group::<TestApp>(g).unwrap();
        writers.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut fired = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..APPENDS {
                let entry = normal(1, i as u64, 1, 0, 200);
                pending.push(Some(append_pending(&mut log, vec![entry]).await));
                fired.push(false);
                loop {
                    check_ack_order(g, &mut pending, &mut fired);
                    if i < WINDOW || fired[i - WINDOW] {
                        break;
                    }
                    assert!(Instant::now() < deadline, "group {g}: appends never acknowledged");
                    tokio::task::yield_now().await;
                }
            }
            while fired.iter().any(|f| !f) {
                check_ack_order(g, &mut pending, &mut fired);
                assert!(Instant::now() < deadline, "group {g}: appends never acknowledged");
                tokio::task::yield_now().await;
            }
            log
        }));
    }
    for w in writers {
        let log = w.await.unwrap();
        assert_eq!(log.flushed_offset(), APPENDS as i64);
    }
    let after = rt.flush_stats();
    eprintln!("rounds {} inline {}", after.rounds - before.rounds, after.inline - before.inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_policy_acknowledges_before_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush: FlushPolicy::Interval(Duration::from_millis(20)),
        ..LogConfig::default()
    };
    let rt = LogRuntime::open(dir.path(), cfg).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    rt.set_flusher_paused(true);
    append_durable(&mut log, vec![normal(1, 0, 3, 0, 10)]).await.unwrap();
    assert_eq!(log.flushed_log_id(), None, "acknowledged, but nothing synced yet");
    rt.set_flusher_paused(false);
    wait_until("the interval flush catches up", || {
        log.flushed_log_id() == Some(rafka_raft::log_id(1, 0))
    })
    .await;
    assert_eq!(log.flushed_offset(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let rt =
        LogRuntime::open(dir.path(), LogConfig { segment_ms: 1, ..LogConfig::default() }).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while log.segment_count() < 3 {
        assert!(Instant::now() < deadline, "segments never rolled by age");
        append_durable(&mut log, vec![normal(1, i, 1, 0, 10)]).await.unwrap();
        i += 1;
    }
    assert_eq!(read_all(&mut log).await.unwrap().len() as u64, i);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_committed_and_purge_point_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(7, 3);
    {
        let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
        let mut log = rt.open_group::<TestApp>(4).unwrap();
        let entries = (0..10).map(|i| normal(2, i, 2, 0, 10)).collect();
        append_durable(&mut log, entries).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(2, 8))).await.unwrap();
        log.purge(log_id(2, 3)).await.unwrap();
    }
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(4).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 8)));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(2, 3)));
    assert_eq!(st.last_log_id, Some(log_id(2, 9)));
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.log_end_offset(), 20);
    let first = read_all(&mut log).await.unwrap()[0].log_id;
    assert_eq!(first, log_id(2, 4));
    // Another group on the same runtime is untouched.
    let mut other = rt.open_group::<TestApp>(5).unwrap();
    assert_eq!(other.read_vote().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_id_is_stored_by_the_next_write_not_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(3).unwrap();
    append_durable(&mut log, (0..4).map(|i| normal(1, i, 1, 0, 10)).collect()).await.unwrap();
    // Noted, not written: a commit does not wait for RocksDB.
    log.save_committed(Some(log_id(1, 2))).await.unwrap();
    assert_eq!(rt.stored_committed(3).unwrap(), None);
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 2)));
    // The group's next write stores it.
    append_durable(&mut log, vec![normal(1, 4, 1, 0, 10)]).await.unwrap();
    assert_eq!(rt.stored_committed(3).unwrap(), Some(rafka_raft::log_id(1, 2)));
    // A newer one noted and the log closed: the close stores it.
    log.save_committed(Some(log_id(1, 4))).await.unwrap();
    assert_eq!(rt.stored_committed(3).unwrap(), Some(rafka_raft::log_id(1, 2)));
    drop(log);
    assert_eq!(rt.stored_committed(3).unwrap(), Some(rafka_raft::log_id(1, 4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    append_durable(&mut log, (0..8).map(|i| normal(1, i, 1, 0, 10)).collect()).await.unwrap();
    log.purge(log_id(1, 4)).await.unwrap();
    let before = read_all(&mut log).await.unwrap();

    // An append that would leave a hole.
    let err = append_durable(&mut log, vec![normal(1, 10, 1, 0, 10)]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // A batch whose second entry leaves a hole: refused whole, the first entry included.
    let batch = vec![normal(1, 8, 1, 0, 10), normal(1, 10, 1, 0, 10)];
    assert!(append_durable(&mut log, batch).await.is_err());
    assert_eq!(log.last_log_id(), Some(rafka_raft::log_id(1, 7)));
    // A truncation inside the purged prefix.
    assert!(log.truncate_after(Some(log_id(1, 2))).await.is_err());

    // Purging past the end of the log without the snapshot's record offset.
    let err = log.purge(log_id(1, 20)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    // An entry over the size limit.
    let err = append_durable(&mut log, vec![normal(1, 8, 1, 0, 64 << 20)]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");

    assert_eq!(read_all(&mut log).await.unwrap(), before);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(1, 4)));
    // The log still works.
    append_durable(&mut log, vec![normal(1, 8, 1, 0, 10)]).await.unwrap();
    assert_eq!(log.last_log_id(), Some(rafka_raft::log_id(1, 8)));
}

#[test]
fn invalid_config_is_refused_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err =
        LogRuntime::open(&data, LogConfig { io_threads: 0, ..LogConfig::default() }).err().unwrap();
    assert_eq!(err.code(), "CONFIG");
    assert!(!data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_has_one_writer_and_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(3).unwrap();
    append_durable(&mut log, (0..5).map(|i| normal(1, i, 1, 0, 10)).collect()).await.unwrap();
    log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();

    // A second handle to the same files, or removing them under a live handle, is refused.
    assert_eq!(rt.open_group::<TestApp>(3).err().unwrap().code(), "GROUP_IN_USE");
    assert_eq!(rt.remove_group(3).unwrap_err().code(), "GROUP_IN_USE");
    let clone = log.clone();
    drop(log);
    assert_eq!(rt.remove_group(3).unwrap_err().code(), "GROUP_IN_USE", "a clone is alive");
    drop(clone);

    rt.remove_group(3).unwrap();
    assert!(!dir.path().join("groups").join(format!("{:020}", 3)).exists());
    let mut log = rt.open_group::<TestApp>(3).unwrap();
    assert!(read_all(&mut log).await.unwrap().is_empty());
    assert_eq!(log.read_vote().await.unwrap(), None);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, None);
    // Removing a group that never existed is fine.
    rt.remove_group(99).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_appends_are_coalesced_into_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    let hold = rt.hold_io_thread(1).unwrap();
    let mut pending = Vec::new();
    for i in 0..50 {
        let entry = normal(1, i, 2, i as i64, 10 + i as usize);
        pending.push(append_pending(&mut log, vec![entry]).await);
    }
    let before = rt.flush_stats();
    drop(hold);
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    let after = rt.flush_stats();
    assert_eq!(after.writes - before.writes, 1, "50 queued appends, one write");
    assert_eq!(log.flushed_offset(), 100);
    drop(log);
    drop(rt);
    let (_rt, log, got) = reopen_and_read(dir.path(), 1).await;
    let want: Vec<_> = (0..50).map(|i| normal(1, i, 2, i as i64, 10 + i as usize)).collect();
    assert_eq!(got, want);
    assert_eq!(log.find_offset(77).await.unwrap().map(|l| l.index), Some(38));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_removal_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
        let mut log = rt.open_group::<TestApp>(6).unwrap();
        append_durable(&mut log, vec![normal(1, 0, 1, 0, 10)]).await.unwrap();
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    }
    // As if remove_group crashed right after renaming the directory away.
    let groups = dir.path().join("groups");
    std::fs::rename(groups.join(format!("{:020}", 6)), groups.join(format!("{:020}.removing", 6)))
        .unwrap();
    let rt = LogRuntime::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(std::fs::read_dir(&groups).unwrap().count(), 0, "tombstone left behind");
    let mut log = rt.open_group::<TestApp>(6).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), None);
    assert!(read_all(&mut log).await.unwrap().is_empty());
}
