//! Acceptance: three brokers, a topic of 6 partitions with 3 replicas, idempotent producers
//! writing with acks=all on every partition at once while the leader of partition 0 is
//! killed with SIGKILL and later restarted. Every acknowledged record must be in the log
//! exactly once, at its acknowledged offset, in order; every replica must end up with the
//! same batches as the leader.
//!
//! Knobs: `RAFKA_TEST_RECORDS` (default 50,000 in total), `RAFKA_TEST_BATCH` (records per
//! batch, default 100).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use rafka_proto::ErrorExt;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::FetchedBatch;
use rafka_tests::Cluster;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::poll;
use rafka_tests::records::Sequencer;
use rafka_tests::records::check_dense;
use rafka_tests::records::value_record;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;
use tokio::task::JoinHandle;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;

/// A batch the cluster acknowledged.
#[derive(Debug)]
struct Acked {
    base_offset: i64,
    values: Vec<Bytes>,
}

/// Writes `count` records `p{partition}-{n}` to one partition, batch by batch, each batch
/// retried (same bytes, same sequence) until acknowledged.
async fn produce_partition(
    client: TestClient,
    partition: u32,
    count: usize,
    batch: usize,
    progress: Arc<AtomicUsize>,
) -> Vec<Acked> {
    let (id, epoch) = client.must_init_producer("").await;
    let mut producer = Sequencer::new(id, epoch);
    let mut acked = Vec::new();
    let ts = rafka_tests::records::now_ms();
    let mut n = 0;
    while n < count {
        let end = (n + batch).min(count);
        let values: Vec<Bytes> = (n..end).map(|i| format!("p{partition}-{i}").into()).collect();
        let recs: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(k, v)| value_record(v.clone(), ts + (n + k) as i64))
            .collect();
        let compression =
            if n.is_multiple_of(2 * batch) { Compression::None } else { Compression::Lz4 };
        let bytes = producer.batch(partition, &recs, compression);
        let base_offset = client.must_produce(TOPIC, partition, bytes, Acks::All).await;
        acked.push(Acked { base_offset, values });
        progress.fetch_add(end - n, Ordering::Relaxed);
        n = end;
    }
    acked
}

/// The producer tasks, one per partition, and how many records they have had acknowledged.
struct Producers {
    running: Vec<(u32, JoinHandle<Vec<Acked>>)>,
    done: Vec<(u32, Vec<Acked>)>,
    progress: Arc<AtomicUsize>,
}

impl Producers {
    fn acked(&self) -> usize {
        self.progress.load(Ordering::Relaxed)
    }

    /// Collects the tasks that ended, re-raising a producer's panic.
    async fn reap(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].1.is_finished() {
                let (p, task) = self.running.swap_remove(i);
                match task.await {
                    Ok(acked) => self.done.push((p, acked)),
                    Err(e) => panic!("the producer of partition {p} failed: {e}"),
                }
            } else {
                i += 1;
            }
        }
    }

    /// Waits until `target` records are acknowledged in total.
    async fn wait_for(&mut self, what: &str, target: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap().await;
            let acked = self.acked();
            if acked >= target {
                return;
            }
            assert!(!self.running.is_empty(), "{what}: producers ended at {acked} of {target}");
            assert!(
                Instant::now() < deadline,
                "{what}: only {acked} of {target} records acknowledged after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for every producer; returns the acknowledged batches by partition.
    async fn finish(mut self) -> Vec<Vec<Acked>> {
        for (p, task) in self.running.drain(..) {
            match task.await {
                Ok(acked) => self.done.push((p, acked)),
                Err(e) => panic!("the producer of partition {p} failed: {e}"),
            }
        }
        self.done.sort_by_key(|(p, _)| *p);
        self.done.into_iter().map(|(_, acked)| acked).collect()
    }
}

/// The batches of one partition as the broker at `addr` has them (follower reads allowed),
/// from offset 0 up to `hw`.
async fn replica_batches(
    client: &TestClient,
    addr: &str,
    partition: u32,
    hw: i64,
) -> anyhow::Result<Vec<FetchedBatch>> {
    let mut out = Vec::new();
    let mut next = 0;
    while next < hw {
        let mut data = client.data_at(addr)?;
        let req = FetchRequest {
            topic: TOPIC.into(),
            partition,
            offset: next,
            allow_follower: true,
            ..Default::default()
        };
        let resp = tokio::time::timeout(Duration::from_secs(5), data.fetch(req))
            .await
            .map_err(|_| anyhow::anyhow!("{addr}: no answer to a fetch at {next} in 5 s"))??
            .into_inner();
        let e = resp.error.clone().unwrap_or_else(rafka_proto::v1::Error::none);
        anyhow::ensure!(e.is_ok(), "{addr}: fetch at {next}: {:?}: {}", e.error_code(), e.message);
        anyhow::ensure!(!resp.batches.is_empty(), "{addr}: at {next}, hw {}", resp.high_watermark);
        for b in resp.batches {
            let info = rafka_proto::batch::validate(&b.batch, usize::MAX)?;
            anyhow::ensure!(b.base_offset == next, "{addr}: batch at {} for {next}", b.base_offset);
            next += i64::from(info.records_count);
            out.push(b);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_records_survive_a_leader_kill_exactly_once() {
    let total = env_u64("RAFKA_TEST_RECORDS", 50_000) as usize;
    let batch = env_u64("RAFKA_TEST_BATCH", 100) as usize;
    assert!(total >= PARTITIONS as usize * batch, "RAFKA_TEST_RECORDS too small for the test");
    let mut cluster = Cluster::start(3).await;

    bounded("acked_records_survive_a_leader_kill", test_timeout(Duration::from_secs(150)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, PARTITIONS, 3).await;

        let progress = Arc::new(AtomicUsize::new(0));
        let running = (0..PARTITIONS)
            .map(|p| {
                let share = total / PARTITIONS as usize
                    + usize::from((p as usize) < total % PARTITIONS as usize);
                let task = produce_partition(client.clone(), p, share, batch, progress.clone());
                (p, tokio::spawn(task))
            })
            .collect();
        let mut producers = Producers { running, done: Vec::new(), progress };

        let minute = Duration::from_secs(60);
        producers.wait_for("a third acknowledged", total / 3, minute).await;
        let (victim, _) = client.leader(TOPIC, 0).await.expect("leader of partition 0");
        let at_kill = producers.acked();
        cluster.must_kill(victim);
        eprintln!("killed broker {victim} (leader of {TOPIC}/0) after {at_kill} of {total} acks");
        assert!(
            at_kill < total,
            "the producers finished before the kill; raise RAFKA_TEST_RECORDS to test failover"
        );
        let half = (total / 2).max(at_kill + 1);
        producers.wait_for("progress with a broker down", half, minute).await;
        cluster.must_restart(victim, minute).await;
        eprintln!("restarted broker {victim} at {} acks", producers.acked());
        let acked = producers.finish().await;

        for (p, batches) in acked.iter().enumerate() {
            let p = p as u32;
            let log = client.fetch_all(TOPIC, p, 0).await.unwrap_or_else(|e| panic!("{e:#}"));
            check_dense(&log, 0).unwrap_or_else(|e| panic!("partition {p}: {e:#}"));
            let expected: usize = batches.iter().map(|b| b.values.len()).sum();
            let mut end = 0;
            for b in batches {
                assert!(
                    b.base_offset >= end,
                    "partition {p}: batch acknowledged at {} overlaps the previous (ends {end})",
                    b.base_offset
                );
                for (k, v) in b.values.iter().enumerate() {
                    let at = b.base_offset as usize + k;
                    let got = log.get(at).and_then(|r| r.value.as_ref());
                    let base = b.base_offset;
                    assert_eq!(got, Some(v), "partition {p}: offset {at} (acked batch at {base})");
                }
                end = b.base_offset + b.values.len() as i64;
            }
            let mut seen = HashSet::new();
            for r in &log {
                assert!(
                    seen.insert(&r.value),
                    "partition {p}: value {:?} appears twice (again at offset {})",
                    r.value,
                    r.offset
                );
            }
            assert_eq!(log.len(), expected, "partition {p}: records in the log vs acknowledged");
        }

        // Every replica, the restarted one included, converges to the leader's batches.
        let md = client.metadata(&[TOPIC]).await.unwrap();
        let topic = md.topics.iter().find(|t| t.name == TOPIC).expect("topic in metadata");
        for p in 0..PARTITIONS {
            let leader = client.fetch_batches(TOPIC, p, 0).await.unwrap();
            let hw: i64 = acked[p as usize].iter().map(|b| b.values.len() as i64).sum();
            let info = topic.partitions.iter().find(|i| i.partition == p).expect("partition");
            assert_eq!(info.replicas.len(), 3, "partition {p} replicas {:?}", info.replicas);
            for &id in &info.replicas {
                let addr = cluster.broker(id).addr().to_string();
                let what = format!("replica on broker {id} of {TOPIC}/{p} matches the leader");
                poll(&what, Duration::from_secs(30), || async {
                    let theirs = replica_batches(&client, &addr, p, hw).await?;
                    anyhow::ensure!(theirs == leader, "{} batches differ", theirs.len());
                    Ok::<_, anyhow::Error>(())
                })
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            }
        }
    })
    .await;
}
