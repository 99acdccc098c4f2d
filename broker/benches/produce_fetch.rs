//! End-to-end broker benchmark: a local 3-broker cluster of real `rafka-broker` processes
//! (this package's binary, built in the bench profile), clients over gRPC on loopback,
//! fsync on (`flush = always`).
//!
//! ```text
//! cargo bench --workspace --bench produce_fetch                   # 1 and 12 partitions
//! cargo bench --workspace --bench produce_fetch -- 12             # only 12 partitions
//! RAFKA_BENCH_MB=512 cargo bench --workspace --bench produce_fetch
//! ```
//!
//! For each partition count: create a topic (RF 3), produce `RAFKA_BENCH_MB` (default 256)
//! MiB of 1 KiB records with acks=all — batches of `RAFKA_BENCH_BATCH` records (default 16,
//! Kafka's 16 KiB `batch.size`), `RAFKA_BENCH_INFLIGHT` requests in flight per partition
//! (default 4) — then replay every partition from offset 0 with Fetch. Prints records/s,
//! MB/s, produce latency p50/p99/max per request, and fetch MB/s.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::data_client::DataClient;
use tonic::transport::Channel;

const RECORD: usize = 1024;

struct Cluster {
    children: Vec<Child>,
    addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn reserve() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_cluster(dir: tempfile::TempDir) -> Cluster {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (reserve(), reserve())).collect();
    let addrs: Vec<String> = ports.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
    let initial: Vec<String> =
        addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let children = ports
        .iter()
        .enumerate()
        .map(|(i, (p, h))| {
            let data = dir.path().join(format!("{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            let log = std::fs::File::create(data.join("broker.log")).unwrap();
            Command::new(env!("CARGO_BIN_EXE_rafka-broker"))
                .args(["--node-id", &(i + 1).to_string()])
                .args(["--listen", &format!("127.0.0.1:{p}")])
                .args(["--http", &format!("127.0.0.1:{h}")])
                .args(["--data-dir", data.to_str().unwrap()])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn rafka-broker")
        })
        .collect();
    let c = Cluster { children, addrs, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, h) in &ports {
        while !ready(*h) {
            assert!(Instant::now() < deadline, "cluster not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c
}

fn ready(http: u16) -> bool {
    use std::io::Read;
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) else { return false };
    let _ = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
}

fn batch(records: usize, seq: u64) -> Bytes {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let value = vec![b'x'; RECORD - 8];
    let recs: Vec<rafka_proto::batch::NewRecord> = (0..records)
        .map(|i| {
            let mut v = (seq * records as u64 + i as u64).to_le_bytes().to_vec();
            v.extend_from_slice(&value);
            rafka_proto::batch::NewRecord {
                key: None,
                value: Some(v.into()),
                timestamp: now,
                headers: vec![],
            }
        })
        .collect();
    rafka_proto::batch::build(&recs, None, rafka_proto::batch::Compression::None)
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn leaders(admin: &mut AdminClient<Channel>, topic: &str, n: usize) -> BTreeMap<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = admin
            .metadata(v1::MetadataRequest { topics: vec![topic.into()] })
            .await
            .unwrap()
            .into_inner();
        let brokers: BTreeMap<u64, String> =
            md.brokers.iter().map(|b| (b.broker_id, b.address.clone())).collect();
        let found: BTreeMap<u32, String> = md
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| Some((p.partition, brokers.get(&p.leader?)?.clone())))
            .collect();
        if found.len() == n {
            return found;
        }
        assert!(Instant::now() < deadline, "partitions without leaders after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(c: &Cluster, partitions: usize) {
    let total_mb = env_num("RAFKA_BENCH_MB", 256);
    let per_batch = env_num("RAFKA_BENCH_BATCH", 16);
    let inflight = env_num("RAFKA_BENCH_INFLIGHT", 4);
    let topic = format!("bench-{partitions}");
    let mut admin = AdminClient::connect(format!("http://{}", c.addrs[0])).await.unwrap();
    let r = admin
        .create_topic(v1::CreateTopicRequest {
            name: topic.clone(),
            partitions: partitions as u32,
            replication_factor: 3,
            configs: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.as_ref().is_none_or(|e| e.is_ok()), "create topic: {:?}", r.error);
    let leaders = leaders(&mut admin, &topic, partitions).await;
    let batches_total = total_mb * 1024 * 1024 / (RECORD * per_batch);
    let per_partition = batches_total.div_ceil(partitions);
    let mut clients = BTreeMap::new();
    for addr in leaders.values() {
        if !clients.contains_key(addr) {
            let ch =
                Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
            clients.insert(addr.clone(), DataClient::new(ch).max_decoding_message_size(64 << 20));
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, addr) in &leaders {
        for lane in 0..inflight {
            let mut client = clients[addr].clone();
            let topic = topic.clone();
            let p = *p;
            let count = (per_partition + inflight - 1 - lane) / inflight;
            // Load-generating client tasks, joined below: not broker code.
            #[allow(clippy::disallowed_methods)]
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(count);
                for i in 0..count {
                    let req = v1::ProduceRequest {
                        topic: topic.clone(),
                        partition: p,
                        acks: v1::Acks::All as i32,
                        batch: batch(per_batch, (i * inflight + lane) as u64),
                        timeout_ms: 30_000,
                    };
                    let t = Instant::now();
                    let r = client.produce(req).await.expect("produce rpc").into_inner();
                    assert!(r.error.as_ref().is_none_or(|e| e.is_ok()), "produce: {:?}", r.error);
                    lat.push(t.elapsed());
                    if std::env::var("RAFKA_BENCH_SLOW").is_ok()
                        && t.elapsed() > Duration::from_millis(20)
                    {
                        eprintln!("slow {:?} at {:?}", t.elapsed(), t);
                    }
                }
                lat
            }));
        }
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let records = lat.len() * per_batch;
    let mb = (records * RECORD) as f64 / 1e6;
    println!(
        "produce  partitions={partitions:<3} records={records} batch={per_batch}x{RECORD}B \
         inflight/partition={inflight}: {:.0} records/s, {:.1} MB/s; latency p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms",
        records as f64 / secs,
        mb / secs,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    // Replay every partition from offset 0, partitions in parallel.
    let started = Instant::now();
    let mut reads = FuturesUnordered::new();
    for (p, addr) in &leaders {
        let mut client = clients[addr].clone();
        let topic = topic.clone();
        let p = *p;
        reads.push(async move {
            let (mut offset, mut bytes, mut records) = (0i64, 0usize, 0usize);
            loop {
                let r = client
                    .fetch(v1::FetchRequest {
                        topic: topic.clone(),
                        partition: p,
                        offset,
                        max_bytes: 4 << 20,
                        ..Default::default()
                    })
                    .await
                    .expect("fetch rpc")
                    .into_inner();
                assert!(r.error.as_ref().is_none_or(|e| e.is_ok()), "fetch: {:?}", r.error);
                let Some(last) = r.batches.last() else { break };
                // Kafka record batches (the broker stores what the producer sent).
                for b in &r.batches {
                    bytes += b.batch.len();
                    let h = rafka_proto::batch::BatchHeader::parse(&b.batch).expect("batch");
                    records += h.records_count as usize;
                }
                let h = rafka_proto::batch::BatchHeader::parse(&last.batch).expect("batch");
                offset = last.base_offset + i64::from(h.last_offset_delta) + 1;
                if offset >= r.high_watermark {
                    break;
                }
            }
            (bytes, records)
        });
    }
    let (mut bytes, mut fetched) = (0, 0);
    while let Some((b, r)) = reads.next().await {
        bytes += b;
        fetched += r;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(fetched, records, "replay returned every produced record");
    println!(
        "fetch    partitions={partitions:<3} replay from 0: {:.0} records/s, {:.1} MB/s",
        fetched as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

/// The disk's own figure for the same pattern, measured in the same run: three writers (one
/// per broker) each appending `batch_bytes` and fdatasyncing, as a replica does per batch at
/// one request in flight; reported as client MB/s (one third of the bytes written).
fn raw_disk(dir: &Path, batch_bytes: usize, total_mb: usize) {
    use std::io::Write;
    let per_writer = (total_mb << 20) / 4;
    let started = Instant::now();
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let path = dir.join(format!("raw-{i}"));
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                let buf = vec![7u8; batch_bytes];
                let mut written = 0;
                while written < per_writer {
                    f.write_all(&buf).unwrap();
                    f.sync_data().unwrap();
                    written += batch_bytes;
                }
                drop(f);
                let _ = std::fs::remove_file(&path);
                written
            })
        })
        .collect();
    let bytes: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw disk 3 writers x ({batch_bytes} B write + fdatasync): {:.1} MB/s written, \
         {:.1} MB/s per replica set",
        bytes as f64 / 1e6 / secs,
        bytes as f64 / 3.0 / 1e6 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let counts: Vec<usize> = if args.is_empty() {
        vec![1, 12]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let base = std::env::var("RAFKA_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::Builder::new().prefix("rafka-bench-").tempdir_in(Path::new(&base)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    raw_disk(dir.path(), RECORD * env_num("RAFKA_BENCH_BATCH", 16), env_num("RAFKA_BENCH_MB", 256));
    let cluster = start_cluster(dir);
    rt.block_on(async {
        for n in counts {
            run(&cluster, n).await;
        }
    });
}
