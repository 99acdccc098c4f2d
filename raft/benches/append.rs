//! Append throughput of the segmented log against the raw disk, in one run.
//!
//! For entry sizes of 1 KiB and 64 KiB, each iteration stores `BATCH` entries:
//! - `raw/fdatasync-each`: write + fdatasync per entry on a plain file (the disk's floor);
//! - `log/flush-each`: append one entry, wait until durable, repeat;
//! - `raw/fdatasync-batch`: write all entries, one fdatasync (the disk's ceiling);
//! - `log/pipelined`: all appends in flight at once on one group, wait for the last
//!   (openraft's pipelined replication does this), so fsyncs are shared;
//! - `log/16-groups`: 16 groups each appending and waiting, concurrently (group commit
//!   across groups).
//!
//! Run: `cargo bench -p rafka-raft --bench append` (set `RAFKA_BENCH_DIR` to pick the disk).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use criterion::BenchmarkId;
use criterion::Criterion;
use criterion::Throughput;
use criterion::criterion_group;
use criterion::criterion_main;
use openraft::EntryPayload;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use rafka_raft::App;
use rafka_raft::LogConfig;
use rafka_raft::LogPayload;
use rafka_raft::LogRuntime;
use rafka_raft::SegmentLog;
use rafka_raft::types::Entry;
use rafka_raft::types::TypeConfig;
use rafka_raft::types::log_id;

const BATCH: u64 = 64;

#[derive(Debug, Clone)]
struct Blob(Bytes);

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({})", self.0.len())
    }
}

impl LogPayload for Blob {
    fn record_count(&self) -> u32 {
        1
    }
    fn max_timestamp(&self) -> i64 {
        0
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn decode(mut b: Bytes) -> std::io::Result<Self> {
        Ok(Blob(b.copy_to_bytes(b.remaining())))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct BenchApp;

impl App for BenchApp {
    type Data = Blob;
    type Response = ();
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("RAFKA_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

struct Appender {
    log: SegmentLog<BenchApp>,
    next: u64,
    payload: Bytes,
}

impl Appender {
    fn entry(&mut self) -> Entry<BenchApp> {
        let e = Entry::<BenchApp> {
            log_id: log_id(1, self.next),
            payload: EntryPayload::Normal(Blob(self.payload.clone())),
        };
        self.next += 1;
        e
    }

    async fn append_wait(&mut self, n: u64) {
        for _ in 0..n {
            let (tx, rx) = TypeConfig::<BenchApp>::oneshot();
            let e = self.entry();
            self.log.append([e], IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
        }
    }

    async fn append_pipelined(&mut self, n: u64) {
        let mut waits = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (tx, rx) = TypeConfig::<BenchApp>::oneshot();
            let e = self.entry();
            self.log.append([e], IOFlushed::signal(tx)).await.unwrap();
            waits.push(rx);
        }
        for rx in waits {
            rx.await.unwrap().unwrap();
        }
    }
}

fn append(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for size in [1024usize, 64 << 10] {
        let label = if size < 65536 { "1KiB" } else { "64KiB" };
        let mut g = c.benchmark_group(format!("append-{label}"));
        g.throughput(Throughput::Bytes(size as u64 * BATCH));
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(4));
        let payload = Bytes::from(vec![0x5a; size]);

        let dir = bench_dir();
        let mut raw =
            OpenOptions::new().create(true).append(true).open(dir.path().join("raw")).unwrap();
        g.bench_function(BenchmarkId::new("raw", "fdatasync-each"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    raw.write_all(&payload).unwrap();
                    raw.sync_data().unwrap();
                }
            })
        });
        g.bench_function(BenchmarkId::new("raw", "fdatasync-batch"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    raw.write_all(&payload).unwrap();
                }
                raw.sync_data().unwrap();
            })
        });
        drop(raw);

        let log_rt = LogRuntime::open(&dir.path().join("log"), LogConfig::default()).unwrap();
        let mut one =
            Appender { log: log_rt.open_group(1).unwrap(), next: 0, payload: payload.clone() };
        g.bench_function(BenchmarkId::new("log", "flush-each"), |b| {
            b.iter(|| rt.block_on(one.append_wait(BATCH)))
        });
        g.bench_function(BenchmarkId::new("log", "pipelined"), |b| {
            b.iter(|| rt.block_on(one.append_pipelined(BATCH)))
        });
        let mut many: Vec<Appender> = (0..16)
            .map(|i| Appender {
                log: log_rt.open_group(100 + i).unwrap(),
                next: 0,
                payload: payload.clone(),
            })
            .collect();
        g.bench_function(BenchmarkId::new("log", "16-groups"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        let tasks: Vec<_> = many
                            .drain(..)
                            .map(|mut a| {
                                tokio::spawn(async move {
                                    a.append_wait(BATCH / 16).await;
                                    a
                                })
                            })
                            .collect();
                        for t in tasks {
                            many.push(t.await.unwrap());
                        }
                    });
                }
                start.elapsed()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
