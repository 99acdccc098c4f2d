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

use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::run_cli;
use rafka_tests::load::Load;
use rafka_tests::load::assert_stored_once;
use rafka_tests::load::stored_values;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "roll";
const PARTITIONS: u32 = 6;
/// Longest a send may wait during the restart, on a debug build.
const SEND_BOUND: Duration = Duration::from_secs(5);

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
        let load = Load::start(producer, TOPIC, "m", rate);
        let reader =
            tokio::spawn(consume(Client::connect(&bootstrap).await.unwrap(), stop.clone()));
        // Two seconds' worth of acknowledged sends before the first broker goes.
        let steady = rate as usize * 2;
        load.wait_acked(steady, Duration::from_secs(60)).await.unwrap();

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
        // on through that too (three seconds' worth of acknowledged sends).
        let after = load.acked() + rate as usize * 3;
        load.wait_acked(after, Duration::from_secs(60)).await.unwrap();
        let sent = load.finish().await;
        stop.store(true, Ordering::Relaxed);
        let seen = reader.await.unwrap();

        assert!(
            sent.failed.is_empty(),
            "sends failed: {:?}",
            &sent.failed[..sent.failed.len().min(5)]
        );
        let mut waits: Vec<Duration> = sent.waits.iter().map(|(_, w, _)| *w).collect();
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
        let slow: Vec<(Duration, Duration)> = sent
            .waits
            .iter()
            .filter(|(_, w, _)| *w >= Duration::from_millis(300))
            .map(|(at, w, _)| (*at, *w))
            .collect();
        eprintln!("sends of 300 ms or more (start, wait): {:?}", summarize(&slow));
        let mut per_partition: BTreeMap<u32, Duration> = BTreeMap::new();
        for (_, w, p) in &sent.waits {
            let l = per_partition.entry(*p).or_default();
            *l = (*l).max(*w);
        }
        eprintln!("longest send wait per partition: {per_partition:?}");
        assert!(longest < SEND_BOUND, "a send waited {longest:?}");

        // Every acknowledged record is stored exactly once.
        let stored = stored_values(&client, TOPIC, PARTITIONS).await;
        assert_stored_once(&sent.acked, &stored);
        let unique: BTreeSet<String> = stored.into_iter().collect();
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
