//! `Client` and `Admin` against a real 3-broker cluster from the rafka-tests harness.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rafka_client::Acks;
use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::Error;
use rafka_client::ErrorCode;
use rafka_client::OffsetSpec;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::poll;

mod common;
use common::wait_for_leaders;

const TEST_LIMIT: Duration = Duration::from_secs(180);

fn bootstrap(cluster: &Cluster) -> String {
    cluster.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

/// An encoded batch of `n` records whose values name `tag`.
fn batch(tag: &str, n: usize) -> Bytes {
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            timestamp: 1_700_000_000_000,
            headers: Vec::new(),
        })
        .collect();
    rafka_proto::batch::build(&records, None, Compression::None)
}

/// An address nothing listens on: bound by the OS, then released.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn admin_lifecycle_and_produce_fetch_every_partition() {
    bounded("admin and data round trip", TEST_LIMIT, async {
        let cluster = Cluster::start(3).await;
        // One dead bootstrap address before the live ones still connects.
        let client = Client::connect(&format!("{},{}", dead_addr(), bootstrap(&cluster)))
            .await
            .expect("connect");
        let admin = Admin::new(client.clone());

        let cluster_desc = admin.describe_cluster().await.unwrap();
        assert_eq!(cluster_desc.brokers.len(), 3, "{cluster_desc:?}");

        let configs = HashMap::from([("retention.ms".to_string(), "3600000".to_string())]);
        let id = admin.create_topic("events", 3, 3, configs).await.expect("create");
        wait_for_leaders(&admin, "events").await;
        let desc = admin.describe_topic("events").await.unwrap();
        assert_eq!((desc.name.as_str(), desc.topic_id), ("events", id));
        assert_eq!(desc.partitions.len(), 3);
        for p in &desc.partitions {
            assert_eq!(p.replicas.len(), 3, "{p:?}");
        }
        let listed = admin.list_topics(false).await.unwrap();
        assert!(listed.iter().any(|t| t.name == "events" && t.partitions == 3), "{listed:?}");
        let md = admin.metadata(&["events"]).await.unwrap();
        assert_eq!(md.topic("events").map(|t| t.partitions.len()), Some(3));

        for partition in 0..3 {
            let mut offsets = Vec::new();
            for round in 0..3 {
                let b = batch(&format!("p{partition}r{round}"), 2);
                let off = client.produce_batch("events", partition, b, Acks::All).await.unwrap();
                offsets.push(off);
            }
            assert_eq!(offsets, vec![0, 2, 4], "partition {partition}");
            let latest = client.list_offset("events", partition, OffsetSpec::Latest).await;
            assert_eq!(latest.unwrap(), 6);
            let earliest = client.list_offset("events", partition, OffsetSpec::Earliest).await;
            assert_eq!(earliest.unwrap(), 0);

            let mut next = 0;
            let mut seen = Vec::new();
            while next < 6 {
                let f = client
                    .fetch("events", partition, next, 1 << 20, Duration::from_millis(100))
                    .await
                    .unwrap();
                assert_eq!(f.high_watermark, 6);
                for (base, bytes) in f.batches {
                    let h = rafka_proto::batch::validate(&bytes, usize::MAX).unwrap();
                    seen.push(base);
                    next = base + i64::from(h.records_count);
                }
            }
            assert_eq!(seen, vec![0, 2, 4], "partition {partition}");
        }

        let (producer_id, _epoch) = client.init_producer("p1").await.unwrap();
        assert!(producer_id >= 0);

        let more = HashMap::from([("retention.ms".to_string(), "7200000".to_string())]);
        admin.alter_topic_config("events", more).await.unwrap();

        admin.delete_topic("events").await.unwrap();
        poll("topic deleted", Duration::from_secs(30), || async {
            let topics = admin.list_topics(false).await?;
            match topics.iter().any(|t| t.name == "events") {
                true => Err(Error::Protocol("still listed".into())),
                false => Ok(()),
            }
        })
        .await
        .expect("deleted");
    })
    .await;
}

#[tokio::test]
async fn invalid_topic_is_fatal_and_not_retried() {
    bounded("invalid topic", TEST_LIMIT, async {
        let cluster = Cluster::start(3).await;
        let client = Client::connect(&bootstrap(&cluster)).await.unwrap();
        let admin = Admin::new(client.clone());
        let start = std::time::Instant::now();
        let err = admin.create_topic("bad/name!", 1, 1, HashMap::new()).await.unwrap_err();
        assert!(matches!(err, Error::Broker { code: ErrorCode::InvalidTopic, .. }), "{err:?}");
        assert!(!err.is_retriable());
        let err = client.produce_batch("bad/name!", 0, batch("x", 1), Acks::All).await.unwrap_err();
        assert!(!err.is_retriable(), "{err:?}");
        // Retrying until the 30 s total deadline would take far longer.
        assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    })
    .await;
}

#[tokio::test]
async fn produce_survives_killing_the_leader() {
    bounded("leader kill", TEST_LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let config = ClientConfig {
            total_timeout: Duration::from_secs(90),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::new(&bootstrap(&cluster)).unwrap()
        };
        let client = Client::with_config(config).await.unwrap();
        let admin = Admin::from(client.clone());
        admin.create_topic("moving", 1, 3, HashMap::new()).await.unwrap();
        wait_for_leaders(&admin, "moving").await;
        client.produce_batch("moving", 0, batch("before", 1), Acks::All).await.unwrap();

        let desc = admin.describe_topic("moving").await.unwrap();
        let leader = desc.partitions[0].leader.expect("leader");
        assert_eq!(client.leader_for("moving", 0).await.unwrap().0, leader);
        cluster.must_kill(leader);

        let mut last = 0;
        for i in 0..10 {
            let off = client
                .produce_batch("moving", 0, batch(&format!("after{i}"), 1), Acks::All)
                .await
                .unwrap_or_else(|e| panic!("produce {i} after killing broker {leader}: {e}"));
            assert!(off > last, "offset {off} after {last}");
            last = off;
        }
        let (now, _) = client.leader_for("moving", 0).await.unwrap();
        assert_ne!(now, leader);
        let f = client.fetch("moving", 0, last, 1 << 20, Duration::ZERO).await.unwrap();
        assert_eq!(f.batches.first().map(|b| b.0), Some(last));
    })
    .await;
}

#[tokio::test]
async fn connect_fails_without_live_brokers() {
    bounded("no brokers", Duration::from_secs(30), async {
        let config = ClientConfig {
            total_timeout: Duration::from_millis(500),
            ..ClientConfig::new(&dead_addr()).unwrap()
        };
        let err = Client::with_config(config).await.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert!(matches!(Client::connect("").await, Err(Error::NoBrokers)));
        assert!(matches!(Client::connect("nohost").await, Err(Error::InvalidConfig(_))));
    })
    .await;
}
