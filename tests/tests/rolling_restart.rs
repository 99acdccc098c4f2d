//! A rolling restart under load: three brokers, a producer sending at a steady rate and a
//! consumer group reading, while each broker in turn is stopped gracefully (SIGTERM: it
//! hands its partition, controller and coordinator leaderships over and exits), started
//! again, and the next one waits until the cluster is whole (`rafka cluster health --wait`).
//! Nothing acknowledged is lost or written twice, the group reads everything, and no send
//! waits longer than a bound: 5 s here, on debug builds sharing two cores (the README quotes
//! the release figure). The figures — longest send, per-broker exit time — are printed.
//!
//! `RAFKA_TEST_ROLL_RATE` sets the sends per second (default 300).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::run_cli;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "roll";
const PARTITIONS: u32 = 6;
/// Longest a send may wait during the restart, on a debug build.
const SEND_BOUND: Duration = Duration::from_secs(5);

/// What the producer saw: acknowledged values and each send's wait, failures.
#[derive(Debug, Default)]
struct Sent {
    acked: BTreeSet<String>,
    waits: Vec<Duration>,
    /// Sends that waited 300 ms or more: when they started (since the load began), how long.
    slow: Vec<(Duration, Duration)>,
    /// The longest wait of an acknowledged send, per partition.
    longest: BTreeMap<u32, Duration>,
    failed: Vec<String>,
}

/// Sends `rate` records a second until `stop`; each send's wait runs from `send` to its
/// acknowledgement.
async fn produce(producer: Producer, rate: u64, stop: Arc<AtomicBool>) -> Sent {
    let mut sent = Sent::default();
    let mut pending = FuturesUnordered::new();
    let tick = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = tokio::time::Instant::now();
    let mut i = 0u64;
    let t0 = Instant::now();
    let note = |sent: &mut Sent, started: Instant| {
        let wait = started.elapsed();
        sent.waits.push(wait);
        if wait >= Duration::from_millis(300) {
            sent.slow.push((started - t0, wait));
        }
    };
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                next += tick;
                let value = format!("m{i:07}");
                i += 1;
                let record = ProducerRecord {
                    topic: TOPIC.into(),
                    partition: None,
                    key: Some(Bytes::from(format!("k{}", i % 97))),
                    value: Some(Bytes::from(value.clone())),
                    headers: Vec::new(),
                    timestamp: None,
                };
                let started = Instant::now();
                match producer.send(record).await {
                    Ok(d) => pending.push(async move { (value, started, d.await) }),
                    Err(e) => sent.failed.push(format!("{value}: {e}")),
                }
            }
            Some((value, started, r)) = pending.next(), if !pending.is_empty() => {
                note(&mut sent, started);
                match r {
                    Ok(md) => {
                        sent.acked.insert(value);
                        let l = sent.longest.entry(md.partition).or_default();
                        *l = (*l).max(started.elapsed());
                    }
                    Err(e) => sent.failed.push(format!("{value}: {e}")),
                }
            }
        }
    }
    while let Some((value, started, r)) = pending.next().await {
        note(&mut sent, started);
        match r {
            Ok(md) => {
                sent.acked.insert(value);
                let l = sent.longest.entry(md.partition).or_default();
                *l = (*l).max(started.elapsed());
            }
            Err(e) => sent.failed.push(format!("{value}: {e}")),
        }
    }
    sent
}

/// A group member reading until `stop`; the values it saw (repeats allowed: at least once).
async fn consume(client: Client, stop: Arc<AtomicBool>) -> BTreeSet<String> {
    let config = ConsumerConfig { group: Some("rollers".into()), ..Default::default() };
    let mut consumer = Consumer::new(client, config).unwrap();
    consumer.subscribe(&[TOPIC]).await.unwrap();
    let mut seen = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        // Errors while a coordinator moves are retried by polling again.
        if let Ok(records) = consumer.poll(Duration::from_millis(200)).await {
            for r in records {
                seen.insert(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into());
            }
        }
    }
    let _ = consumer.close().await;
    seen
}

/// Slow sends grouped by the 100 ms in which they started: (start, count, longest wait).
fn summarize(slow: &[(Duration, Duration)]) -> Vec<(Duration, usize, Duration)> {
    let mut by: BTreeMap<u128, (usize, Duration)> = BTreeMap::new();
    for (start, wait) in slow {
        let e = by.entry(start.as_millis() / 100).or_default();
        e.0 += 1;
        e.1 = e.1.max(*wait);
    }
    by.into_iter().map(|(k, (n, w))| (Duration::from_millis(k as u64 * 100), n, w)).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing_and_stalls_no_send() {
    bounded("rolling restart", test_timeout(Duration::from_secs(600)), async {
        let mut cluster = Cluster::start(3).await;
        let client = cluster.client();
        client.must_create_topic(TOPIC, PARTITIONS, 3).await;
        let bootstrap: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
        let bootstrap = bootstrap.join(",");
        let health = |wait: &str| {
            let args = ["--bootstrap", &bootstrap, "cluster", "health", "--wait", wait];
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&args, &[], "").await
            }
        };
        let ok = health("60000").await;
        assert_eq!(ok.code, Some(0), "not healthy before: {}{}", ok.stdout, ok.stderr);

        let rate = env_u64("RAFKA_TEST_ROLL_RATE", 300);
        let producer_client = Client::connect(&bootstrap).await.unwrap();
        let producer = Producer::new(producer_client, ProducerConfig::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let load = tokio::spawn(produce(producer, rate, stop.clone()));
        let reader =
            tokio::spawn(consume(Client::connect(&bootstrap).await.unwrap(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut exits = BTreeMap::new();
        for id in cluster.ids() {
            let started = Instant::now();
            let status = cluster.must_terminate(id, Duration::from_secs(30)).await;
            assert!(status.success(), "broker {id} exited with {status}");
            exits.insert(id, started.elapsed());
            cluster.broker_mut(id).start().unwrap();
            cluster.broker_mut(id).wait_ready(Duration::from_secs(60)).await.unwrap();
            let ready = t0.elapsed();
            let whole = health("120000").await;
            eprintln!(
                "broker {id}: SIGTERM at {:?}, exited after {:?}, ready at {ready:?}, whole at {:?}",
                started - t0,
                exits[&id],
                t0.elapsed()
            );
            assert_eq!(whole.code, Some(0), "after broker {id}: {}{}", whole.stdout, whole.stderr);
        }
        // Leaderships move back to their preferred replicas after the restart: keep the load
        // on through that too.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let sent = load.await.unwrap();
        let seen = reader.await.unwrap();

        assert!(
            sent.failed.is_empty(),
            "sends failed: {:?}",
            &sent.failed[..sent.failed.len().min(5)]
        );
        let mut waits = sent.waits.clone();
        waits.sort();
        let longest = *waits.last().unwrap();
        eprintln!(
            "rolling restart at {rate} sends/s: {} acknowledged, send wait p50 {:?}, p99 {:?}, \
             p99.9 {:?}, longest {longest:?}; exits {exits:?}",
            sent.acked.len(),
            percentile(&waits, 0.5),
            percentile(&waits, 0.99),
            percentile(&waits, 0.999),
        );
        eprintln!("sends of 300 ms or more (start, wait): {:?}", summarize(&sent.slow));
        eprintln!("longest send wait per partition: {:?}", sent.longest);
        assert!(longest < SEND_BOUND, "a send waited {longest:?}");

        // Every acknowledged record is stored exactly once.
        let mut stored = Vec::new();
        for p in 0..PARTITIONS {
            for r in client.fetch_all(TOPIC, p, 0).await.unwrap() {
                stored.push(String::from_utf8_lossy(r.value_bytes()).into_owned());
            }
        }
        let unique: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(unique.len(), stored.len(), "a record was stored twice");
        let missing: Vec<&String> = sent.acked.difference(&unique).take(5).collect();
        assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
        // The group read on through the restarts (what it had not reached when stopped is
        // not a loss: it is stored, as checked above).
        assert!(
            seen.len() * 2 > sent.acked.len(),
            "the group read {} of {}",
            seen.len(),
            sent.acked.len()
        );
        assert!(seen.is_subset(&unique), "the group read records never stored");
    })
    .await;
}
