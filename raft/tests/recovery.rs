//! Crash recovery: cut the active segment at every byte of its last entries, flip bytes,
//! reopen, and check that exactly the intact prefix survives and is never served corrupt.

mod common;

use std::fs;
use std::path::Path;
use std::path::PathBuf;

use common::TestApp;
use common::append_durable;
use common::normal;
use common::read_all;
use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use rafka_raft::LogConfig;
use rafka_raft::LogRuntime;

const GROUP: u64 = 1;
const ENTRIES: u64 = 40;

fn entry(i: u64) -> rafka_raft::types::Entry<TestApp> {
    // Varying sizes and record counts so offsets and positions are irregular.
    normal(1, i, (i % 3) as u32, 1_000 + i as i64, 20 + (i as usize * 7) % 50)
}

/// Writes ENTRIES entries into group GROUP under `dir` and returns the segment files
/// (sorted) as (log path, index path).
async fn build(dir: &Path, cfg: &LogConfig) -> Vec<(PathBuf, PathBuf)> {
    {
        let rt = LogRuntime::open(dir, cfg.clone()).unwrap();
        let mut log = rt.open_group::<TestApp>(GROUP).unwrap();
        for i in 0..ENTRIES {
            append_durable(&mut log, vec![entry(i)]).await.unwrap();
        }
    }
    segment_files(&dir.join("groups").join(format!("{GROUP:020}")))
}

fn segment_files(gdir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut logs: Vec<PathBuf> = fs::read_dir(gdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().unwrap() == "log")
        .collect();
    logs.sort();
    logs.into_iter().map(|l| (l.clone(), l.with_extension("index"))).collect()
}

/// Byte ranges of each entry in a segment file, parsed independently of the crate.
fn entry_spans(bytes: &[u8]) -> Vec<(u64, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let index = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        out.push((index, pos, pos + 4 + len));
        pos += 4 + len;
    }
    out
}

/// Copies the group's files into a fresh group `g` of `rt2`'s data dir, letting `edit`
/// change the active segment's bytes first.
fn install_copy(
    files: &[(PathBuf, PathBuf)],
    data2: &Path,
    g: u64,
    edit: impl FnOnce(&mut Vec<u8>),
) {
    let mut edit = Some(edit);
    let gdir = data2.join("groups").join(format!("{g:020}"));
    fs::create_dir_all(&gdir).unwrap();
    for (i, (log, idx)) in files.iter().enumerate() {
        let mut bytes = fs::read(log).unwrap();
        if i + 1 == files.len() {
            (edit.take().expect("one active segment"))(&mut bytes);
        }
        fs::write(gdir.join(log.file_name().unwrap()), bytes).unwrap();
        fs::copy(idx, gdir.join(idx.file_name().unwrap())).unwrap();
    }
}

async fn check_prefix(rt: &LogRuntime, g: u64, survivors: u64, what: &str) {
    let mut log =
        rt.open_group::<TestApp>(g).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let got = read_all(&mut log).await.unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    let want: Vec<_> = (0..survivors).map(entry).collect();
    assert_eq!(got, want, "{what}: wrong surviving entries");
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), survivors.checked_sub(1), "{what}");
    // Offsets continue correctly: the next append gets the offset after the survivors.
    let expect_next: i64 = (0..survivors).map(|i| (i % 3) as i64).sum();
    assert_eq!(log.log_end_offset(), expect_next, "{what}: log end offset");
    append_durable(&mut log, vec![entry(survivors)]).await.unwrap();
    let again = log.try_get_log_entries(survivors..survivors + 1).await.unwrap();
    assert_eq!(again, vec![entry(survivors)], "{what}: append after recovery");
}

fn cfg() -> LogConfig {
    // Several segments; index records sparse enough that the tail scan matters.
    LogConfig { segment_bytes: 1024, index_interval_bytes: 256, ..LogConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_active_segment_at_every_byte_of_last_entries() {
    let src = tempfile::tempdir().unwrap();
    let files = build(src.path(), &cfg()).await;
    assert!(files.len() >= 3, "want several segments, got {}", files.len());
    let active = fs::read(&files.last().unwrap().0).unwrap();
    let spans = entry_spans(&active);
    let last_k = spans.len().min(4);
    let from = spans[spans.len() - last_k].1;

    let data2 = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(data2.path(), cfg()).unwrap();
    for (g, cut) in (from..=active.len()).enumerate() {
        let g = g as u64 + 100;
        install_copy(&files, data2.path(), g, |b| b.truncate(cut));
        // Survivors: every entry ending at or before the cut.
        let survivors = spans
            .iter()
            .filter(|(_, _, end)| *end <= cut)
            .map(|(i, _, _)| i + 1)
            .max()
            .unwrap_or(spans[0].0);
        check_prefix(&rt, g, survivors, &format!("cut at byte {cut}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_in_the_tail_are_truncated() {
    // A sparse index (one record per segment) so the whole active segment is the tail that
    // recovery scans.
    let cfg = LogConfig { index_interval_bytes: 1 << 20, ..cfg() };
    let src = tempfile::tempdir().unwrap();
    let files = build(src.path(), &cfg).await;
    let active = fs::read(&files.last().unwrap().0).unwrap();
    let spans = entry_spans(&active);
    let last_k = spans.len().min(3);

    let data2 = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(data2.path(), cfg.clone()).unwrap();
    let mut g = 1000;
    for &(index, start, end) in &spans[spans.len() - last_k..] {
        for pos in start..end {
            g += 1;
            install_copy(&files, data2.path(), g, |b| b[pos] ^= 0xA5);
            let log = rt.open_group::<TestApp>(g).unwrap();
            assert!(log.recovery_stats().truncated_bytes > 0, "flip at byte {pos} not noticed");
            drop(log);
            check_prefix(&rt, g, index, &format!("flip at byte {pos} of entry {index}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_before_the_last_checkpoint_is_never_served() {
    // Dense index: recovery trusts everything before the last durable index record and
    // scans only after it; a flipped byte there must still never reach a reader.
    let cfg = LogConfig { index_interval_bytes: 1, segment_bytes: 1 << 20, ..cfg() };
    let src = tempfile::tempdir().unwrap();
    let files = build(src.path(), &cfg).await;
    assert_eq!(files.len(), 1);
    let active = fs::read(&files.last().unwrap().0).unwrap();
    let spans = entry_spans(&active);
    // An entry in the middle that holds records (entry i holds i % 3).
    let (index, start, _) = *spans[spans.len() / 2..].iter().find(|(i, _, _)| i % 3 != 0).unwrap();

    let data2 = tempfile::tempdir().unwrap();
    let rt = LogRuntime::open(data2.path(), cfg).unwrap();
    install_copy(&files, data2.path(), 5, |b| b[start + 30] ^= 0xFF);
    let mut log = rt.open_group::<TestApp>(5).unwrap();
    assert!(
        log.recovery_stats().scanned_bytes < active.len() as u64,
        "recovery scanned the whole segment"
    );
    let err = log.try_get_log_entries(index..index + 1).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // Lookups do not skip past the damage either.
    let base: i64 = (0..index).map(|i| (i % 3) as i64).sum();
    let err = log.find_offset(base).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // Entries before the damaged one are still readable.
    let ok = log.try_get_log_entries(0..index).await.unwrap();
    assert_eq!(ok.len() as u64, index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_sealed_segment_refuses_to_open() {
    let cfg = LogConfig { index_interval_bytes: 1 << 20, ..cfg() };
    let src = tempfile::tempdir().unwrap();
    let files = build(src.path(), &cfg).await;
    let data2 = tempfile::tempdir().unwrap();
    let gdir = data2.path().join("groups").join(format!("{:020}", 9));
    fs::create_dir_all(&gdir).unwrap();
    for (i, (log, idx)) in files.iter().enumerate() {
        let mut bytes = fs::read(log).unwrap();
        if i == 0 {
            let n = bytes.len();
            bytes[n - 3] ^= 0xFF; // inside the first (sealed) segment's last entry
        }
        fs::write(gdir.join(log.file_name().unwrap()), bytes).unwrap();
        fs::copy(idx, gdir.join(idx.file_name().unwrap())).unwrap();
    }
    let rt = LogRuntime::open(data2.path(), cfg).unwrap();
    let err = rt.open_group::<TestApp>(9).err().expect("open must fail");
    assert_eq!(err.code(), "CORRUPT_LOG", "{err}");
    // Nothing was changed on disk by the failed open.
    for (log, _) in &files {
        let copy = gdir.join(log.file_name().unwrap());
        assert_eq!(fs::metadata(copy).unwrap().len(), fs::metadata(log).unwrap().len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_scans_only_the_tail() {
    // 64 entries of ~1 KiB in one big segment, index every 4 KiB: a reopen reads at most
    // about one index interval plus one entry, not the segment.
    let cfg =
        LogConfig { segment_bytes: 1 << 20, index_interval_bytes: 4096, ..LogConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = LogRuntime::open(dir.path(), cfg.clone()).unwrap();
        let mut log = rt.open_group::<TestApp>(3).unwrap();
        for i in 0..64 {
            append_durable(&mut log, vec![normal(1, i, 1, i as i64, 1000)]).await.unwrap();
        }
        // One more append so the index record covering the last durable data is persisted.
        append_durable(&mut log, vec![normal(1, 64, 1, 64, 10)]).await.unwrap();
    }
    let rt = LogRuntime::open(dir.path(), cfg).unwrap();
    let mut log = rt.open_group::<TestApp>(3).unwrap();
    let stats = log.recovery_stats();
    assert_eq!(stats.segments, 1);
    assert!(stats.scanned_bytes <= 4096 + 2 * 1100, "scanned {} bytes", stats.scanned_bytes);
    assert_eq!(read_all(&mut log).await.unwrap().len(), 65);
}
