//! `Producer` against a real 3-broker cluster from the rafka-tests harness.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_client::RecordMetadata;
use rafka_client::partition_for_key;
use rafka_proto::batch::Compression;
use rafka_tests::Cluster;
use rafka_tests::bounded;

mod common;
use tokio::task::JoinSet;

const TEST_LIMIT: Duration = Duration::from_secs(240);

fn bootstrap(cluster: &Cluster) -> String {
    cluster.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

async fn create_topic(admin: &Admin, topic: &str, partitions: u32) {
    common::create_topic(admin, topic, partitions, 3).await;
}

/// Sends `r` and waits for its delivery.
async fn send(producer: &Producer, r: ProducerRecord) -> rafka_client::Result<RecordMetadata> {
    producer.send(r).await?.await
}

fn record(topic: &str, key: Option<String>, value: String) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        key: key.map(Bytes::from),
        value: Some(Bytes::from(value)),
        ..ProducerRecord::default()
    }
}

/// Every record of `topic`/`partition` as `(offset, key, value)`, in offset order.
async fn read_all(
    client: &Client,
    topic: &str,
    partition: u32,
) -> Vec<(i64, Option<Bytes>, Bytes)> {
    let end = client
        .list_offset(topic, partition, rafka_client::OffsetSpec::Latest)
        .await
        .expect("latest");
    let mut out = Vec::new();
    let mut next = 0;
    while next < end {
        let f = client
            .fetch(topic, partition, next, 1 << 20, Duration::from_millis(100))
            .await
            .expect("fetch");
        for (base, bytes) in f.batches {
            let h = rafka_proto::batch::validate(&bytes, usize::MAX).expect("batch");
            let records = rafka_proto::batch::records(&bytes).expect("records");
            for r in records {
                let offset = base + i64::from(r.offset_delta);
                if offset >= next {
                    out.push((offset, r.key, r.value.expect("no null values here")));
                }
            }
            next = next.max(base + i64::from(h.records_count));
        }
    }
    out
}

/// Checks every acknowledged `(value, metadata)` sits exactly once at its offset and that no
/// value appears twice anywhere in `topic`.
async fn check_exactly_once(
    client: &Client,
    topic: &str,
    partitions: u32,
    acked: &[(String, RecordMetadata)],
) -> HashMap<u32, Vec<(i64, Option<Bytes>, Bytes)>> {
    let mut logs = HashMap::new();
    let mut at = HashMap::new();
    let mut seen = HashSet::new();
    for p in 0..partitions {
        let log = read_all(client, topic, p).await;
        for (offset, _, value) in &log {
            assert!(seen.insert(value.clone()), "value {value:?} written twice");
            at.insert((p, *offset), value.clone());
        }
        logs.insert(p, log);
    }
    for (value, md) in acked {
        assert_eq!(md.topic, topic);
        let found = at.get(&(md.partition, md.offset));
        assert_eq!(found.map(|v| &v[..]), Some(value.as_bytes()), "{value} at {md:?}");
    }
    logs
}

#[tokio::test]
async fn keyed_records_land_once_in_their_partition_in_order() {
    bounded("keyed producer", TEST_LIMIT, async {
        let cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "keyed", 6).await;
        let config = ProducerConfig { compression: Compression::Lz4, ..ProducerConfig::default() };
        let producer = Arc::new(Producer::new(client.clone(), config).unwrap());

        // One task per key sends its records in order; keys run concurrently.
        let mut tasks = JoinSet::new();
        for k in 0..50 {
            let producer = Arc::clone(&producer);
            tasks.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..100 {
                    let value = format!("k{k}-{i}");
                    let r = record("keyed", Some(format!("key-{k}")), value.clone());
                    let md = send(&producer, r).await.unwrap_or_else(|e| panic!("{value}: {e}"));
                    acked.push((value, md));
                }
                acked
            });
        }
        let acked: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        producer.flush().await;
        assert_eq!(acked.len(), 5_000);

        let logs = check_exactly_once(&client, "keyed", 6, &acked).await;
        assert_eq!(logs.values().map(Vec::len).sum::<usize>(), 5_000);
        for (p, log) in &logs {
            let mut next_index: HashMap<Bytes, usize> = HashMap::new();
            for (_, key, value) in log {
                let key = key.clone().expect("keyed");
                assert_eq!(partition_for_key(&key, 6), *p, "{key:?}");
                let i = next_index.entry(key.clone()).or_default();
                let k = std::str::from_utf8(&key[4..]).unwrap();
                assert_eq!(&value[..], format!("k{k}-{i}").as_bytes(), "order of {key:?}");
                *i += 1;
            }
        }
    })
    .await;
}

/// Checks that each key's acknowledged records sit in the partition Kafka's murmur2 picks
/// for the key, in the order they were sent. Values are `k{K}-{I}` for key `key-{K}`, with
/// `I` rising in send order.
fn check_key_placement_and_order(acked: &[(String, RecordMetadata)], partitions: u32) {
    let mut last: HashMap<&str, (i64, u64)> = HashMap::new();
    for (value, md) in acked {
        let (k, i) = value[1..].split_once('-').expect("k{K}-{I}");
        let i: u64 = i.parse().expect("a sequence number");
        let key = format!("key-{k}");
        assert_eq!(md.partition, partition_for_key(key.as_bytes(), partitions), "{value}");
        if let Some((offset, prev)) = last.get(k) {
            assert!(
                i > *prev && md.offset > *offset,
                "{value} at {} after {prev} at {offset}",
                md.offset
            );
        }
        last.insert(k, (md.offset, i));
    }
}

/// Keyed sends across a leader kill: every acknowledged record is stored exactly once, at
/// its acknowledged offset, in its key's partition, in send order per key.
/// `RAFKA_TEST_RECORDS` sets the total (default 2000; the long run is 100000).
#[tokio::test]
async fn idempotent_sends_survive_killing_a_leader() {
    const KEYS: usize = 20;
    let total = rafka_tests::wait::env_u64("RAFKA_TEST_RECORDS", 2000) as usize;
    let per_key = total.div_ceil(KEYS);
    let total = per_key * KEYS;
    let limit = TEST_LIMIT.max(Duration::from_secs(total as u64 / 200));
    bounded("leader kill under producer", limit, async {
        let mut cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "moving", 3).await;
        let producer = Arc::new(Producer::new(client.clone(), ProducerConfig::default()).unwrap());
        let leader = admin.describe_topic("moving").await.unwrap().partitions[0].leader.unwrap();

        let (progress, mut progress_rx) = tokio::sync::watch::channel(0usize);
        let progress = Arc::new(progress);
        let mut tasks = JoinSet::new();
        for k in 0..KEYS {
            let producer = Arc::clone(&producer);
            let progress = Arc::clone(&progress);
            tasks.spawn(async move {
                let mut results = Vec::new();
                for i in 0..per_key {
                    let value = format!("k{k}-{i}");
                    let r = record("moving", Some(format!("key-{k}")), value.clone());
                    results.push((value, send(&producer, r).await));
                    progress.send_modify(|n| *n += 1);
                }
                results
            });
        }
        progress_rx.wait_for(|n| *n >= total * 3 / 10).await.unwrap();
        cluster.must_kill(leader);
        let results: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        producer.flush().await;

        let acked: Vec<_> =
            results.into_iter().filter_map(|(v, r)| r.ok().map(|md| (v, md))).collect();
        eprintln!("{} of {total} sends succeeded across the kill of broker {leader}", acked.len());
        assert!(acked.len() >= total * 3 / 10, "only {} of {total} sends succeeded", acked.len());
        check_exactly_once(&client, "moving", 3, &acked).await;
        check_key_placement_and_order(&acked, 3);
    })
    .await;
}

/// One task sends without waiting for deliveries (several batches of the partition in
/// flight at once) while the partition's leader is SIGKILLed: every delivery succeeds, and
/// the log holds each record once, in the order sent.
#[tokio::test]
async fn pipelined_sends_keep_their_order_across_a_leader_kill() {
    const RECORDS: usize = 3000;
    bounded("pipelined producer across a leader kill", TEST_LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "window", 1).await;
        let config = ProducerConfig { batch_size: 512, ..ProducerConfig::default() };
        let producer = Producer::new(client.clone(), config).unwrap();
        let leader = admin.describe_topic("window").await.unwrap().partitions[0].leader.unwrap();

        let (delivered_tx, mut delivered) = tokio::sync::watch::channel(0usize);
        let (deliveries, mut queue) = tokio::sync::mpsc::unbounded_channel();
        let waiter = tokio::spawn(async move {
            let mut acked = Vec::new();
            while let Some((value, delivery)) = queue.recv().await {
                let d: rafka_client::Delivery = delivery;
                let md = d.await.unwrap_or_else(|e| panic!("{value}: {e}"));
                acked.push((value, md));
                delivered_tx.send_modify(|n| *n += 1);
            }
            acked
        });
        // Paced so that the kill lands mid-stream; nothing waits for a delivery.
        let mut tick = tokio::time::interval(Duration::from_micros(500));
        let mut killed = false;
        for i in 0..RECORDS {
            tick.tick().await;
            let value = format!("v{i:05}");
            let delivery = producer.send(record("window", None, value.clone())).await.unwrap();
            deliveries.send((value, delivery)).unwrap();
            if !killed && *delivered.borrow_and_update() >= RECORDS * 3 / 10 {
                cluster.must_kill(leader);
                killed = true;
            }
        }
        drop(deliveries);
        let acked = waiter.await.unwrap();
        assert!(killed, "the leader was not killed mid-stream");
        assert_eq!(acked.len(), RECORDS);
        let logs = check_exactly_once(&client, "window", 1, &acked).await;
        let values: Vec<Bytes> = logs[&0].iter().map(|(_, _, v)| v.clone()).collect();
        let sent: Vec<Bytes> = acked.iter().map(|(v, _)| Bytes::from(v.clone())).collect();
        assert_eq!(values, sent, "the log holds every record once, in the order sent");
        let offsets: Vec<i64> = acked.iter().map(|(_, md)| md.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] + 1 == w[1]), "offsets dense and in send order");
    })
    .await;
}

#[tokio::test]
async fn keyless_records_stick_to_a_partition_per_batch_but_move_on() {
    bounded("sticky partitioner", TEST_LIMIT, async {
        let cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "keyless", 6).await;
        let config = ProducerConfig { batch_size: 2048, ..ProducerConfig::default() };
        let producer = Arc::new(Producer::new(client.clone(), config).unwrap());

        let mut tasks = JoinSet::new();
        for t in 0..10 {
            let producer = Arc::clone(&producer);
            tasks.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..40 {
                    let value = format!("t{t}-{i}-{}", "x".repeat(100));
                    let md = send(&producer, record("keyless", None, value.clone())).await.unwrap();
                    acked.push((value, md));
                }
                acked
            });
        }
        let acked: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        producer.flush().await;

        let logs = check_exactly_once(&client, "keyless", 6, &acked).await;
        let used: Vec<u32> = logs.iter().filter(|(_, l)| !l.is_empty()).map(|(p, _)| *p).collect();
        assert!(used.len() > 1, "all keyless records went to {used:?}");
        assert_eq!(logs.values().map(Vec::len).sum::<usize>(), 400);
    })
    .await;
}

#[tokio::test]
async fn a_record_that_would_overflow_the_batch_starts_the_next_one() {
    bounded("batch size bound", TEST_LIMIT, async {
        let cluster = Cluster::start(1).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        common::create_topic(&Admin::new(client.clone()), "bounded", 1, 1).await;
        // Each record counts 270 bytes plus the producer's per-record estimate (32): three
        // fit in 1,000 bytes, a fourth would not. The long linger leaves size as the only
        // reason a batch is sealed, but for the last one.
        let batch_size = 1000;
        let config = ProducerConfig {
            batch_size,
            linger: Duration::from_secs(2),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client.clone(), config).unwrap();
        let mut deliveries = Vec::new();
        for i in 0..30 {
            let value = format!("{i:03}{}", "v".repeat(267));
            let r = ProducerRecord { partition: Some(0), ..record("bounded", None, value) };
            deliveries.push(producer.send(r).await.expect("queued"));
        }
        for d in deliveries {
            d.await.expect("delivered");
        }

        let end = client
            .list_offset("bounded", 0, rafka_client::OffsetSpec::Latest)
            .await
            .expect("latest");
        assert_eq!(end, 30);
        let mut counts = Vec::new();
        let mut next = 0;
        while next < end {
            let f = client
                .fetch("bounded", 0, next, 1 << 20, Duration::from_millis(100))
                .await
                .expect("fetch");
            for (base, bytes) in f.batches {
                let h = rafka_proto::batch::validate(&bytes, usize::MAX).expect("batch");
                let records = rafka_proto::batch::records(&bytes).expect("records");
                for (j, r) in records.iter().enumerate() {
                    let want = format!("{:03}", base + j as i64);
                    assert_eq!(&r.value.as_ref().expect("value")[..3], want.as_bytes());
                }
                counts.push(h.records_count);
                next = next.max(base + i64::from(h.records_count));
            }
        }
        // Before a full batch was sealed only once it reached the size, with the record
        // that took it past: four records, 1,208 bytes.
        assert!(counts.iter().all(|&c| c <= 3), "batches of {counts:?} records");
        assert!(counts.iter().filter(|&&c| c == 3).count() >= 5, "batches of {counts:?} records");
    })
    .await;
}

#[tokio::test]
async fn sends_wait_for_buffer_memory_and_all_succeed() {
    bounded("backpressure", TEST_LIMIT, async {
        let cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "tight", 2).await;
        // 50 concurrent senders of ~240-byte records need far more than 2 KiB at once.
        let config =
            ProducerConfig { batch_size: 1024, buffer_memory: 2048, ..ProducerConfig::default() };
        let producer = Arc::new(Producer::new(client.clone(), config).unwrap());

        let mut tasks = JoinSet::new();
        for t in 0..50 {
            let producer = Arc::clone(&producer);
            tasks.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..10 {
                    let value = format!("t{t}-{i}-{}", "y".repeat(200));
                    let r = record("tight", Some(format!("t{t}")), value.clone());
                    acked.push((value, send(&producer, r).await.unwrap()));
                }
                acked
            });
        }
        let acked: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        producer.flush().await;
        let logs = check_exactly_once(&client, "tight", 2, &acked).await;
        assert_eq!(logs.values().map(Vec::len).sum::<usize>(), 500);
    })
    .await;
}

/// A batch that times out while every broker is down fails, and the producer carries on once
/// they are back, under a new producer id: later records are written once each, in order, and
/// the timed-out record at most once.
#[tokio::test]
async fn an_idempotent_producer_carries_on_after_a_delivery_timeout() {
    bounded("producer after a timeout", TEST_LIMIT, async {
        let mut cluster = Cluster::start(1).await;
        let client = Client::connect(&bootstrap(&cluster)).await.expect("connect");
        common::create_topic(&Admin::new(client.clone()), "renew", 1, 1).await;
        let config = ProducerConfig {
            delivery_timeout: Duration::from_secs(2),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client.clone(), config).unwrap();
        let send_value = |v: &str| send(&producer, record("renew", None, v.to_string()));
        let first = send_value("before").await.expect("first send");
        let negative = ProducerRecord { timestamp: Some(-5), ..record("renew", None, "t".into()) };
        let refused = send(&producer, negative).await;
        assert!(matches!(refused, Err(rafka_client::Error::InvalidConfig(_))), "{refused:?}");

        cluster.must_kill(1);
        let lost = send_value("during").await;
        assert!(lost.is_err(), "a send with no broker up succeeded: {lost:?}");
        cluster.must_restart(1, Duration::from_secs(60)).await;

        let mut acked = vec![("before".to_string(), first)];
        for i in 0..5 {
            let v = format!("after-{i}");
            let md = send_value(&v).await.unwrap_or_else(|e| panic!("{v} after the restart: {e}"));
            acked.push((v, md));
        }
        let logs = check_exactly_once(&client, "renew", 1, &acked).await;
        let values: Vec<Bytes> = logs[&0].iter().map(|(_, _, v)| v.clone()).collect();
        let after: Vec<&Bytes> = values.iter().filter(|v| v.starts_with(b"after")).collect();
        assert_eq!(after.len(), 5, "{values:?}");
        assert!(after.windows(2).all(|w| w[0] < w[1]), "out of order: {values:?}");
    })
    .await;
}
