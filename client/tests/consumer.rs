//! `Consumer` and group admin against real brokers from the rafka-tests harness: a group of
//! three with manual commits (exactly once while running, resume after restart), replay by
//! offset, beginning, end and timestamp, and bad input.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::ConsumerRecord;
use rafka_client::Error;
use rafka_client::ErrorCode;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_client::RebalanceListener;
use rafka_client::SeekTo;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;

mod common;
use common::create_topic;
use tokio::time::Instant;

const TEST_LIMIT: Duration = Duration::from_secs(240);
const FAST_GROUPS: &str = "[groups]\noffsets-topic-partitions = 2\nsession-timeout-ms = 3000\n\
                           heartbeat-interval-ms = 300\n";

async fn start(brokers: usize) -> (Cluster, Client) {
    let opts =
        ClusterOptions { brokers, extra_toml: FAST_GROUPS.to_string(), ..Default::default() };
    let cluster = Cluster::start_with(opts).await;
    let bootstrap = cluster.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    let client = Client::connect(&bootstrap).await.expect("connect");
    (cluster, client)
}

/// Produces `values` keyed `k{i % 50}` to `topic`; returns `(partition, offset)` of each.
async fn produce(client: &Client, topic: &str, values: &[String]) -> Vec<(u32, i64)> {
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut sends = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let r = ProducerRecord {
            topic: topic.to_string(),
            key: Some(Bytes::from(format!("k{}", i % 50))),
            value: Some(Bytes::from(v.clone())),
            ..ProducerRecord::default()
        };
        sends.push(producer.send(r).await.expect("queue"));
    }
    let acked = futures::future::try_join_all(sends).await.expect("produce");
    acked.into_iter().map(|m| (m.partition, m.offset)).collect()
}

fn manual(group: &str, name: &str) -> ConsumerConfig {
    ConsumerConfig {
        group: Some(group.to_string()),
        auto_commit_interval: None,
        fetch_max_wait: Duration::from_millis(100),
        client_id: name.to_string(),
        ..ConsumerConfig::default()
    }
}

/// A delivery: consumer index, partition, offset, value.
type Delivery = (usize, u32, i64, Bytes);

/// Polls `consumers` in turn, committing after each poll, until `want` records were
/// delivered in total; checks after every poll that each record came from a partition its
/// consumer owns and that no partition is owned twice.
async fn consume_all(consumers: &mut [Consumer], want: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = Vec::new();
    while out.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} delivered", out.len());
        for (i, c) in consumers.iter_mut().enumerate() {
            let records = c.poll(Duration::from_millis(100)).await.expect("poll");
            let owned: BTreeSet<(String, u32)> = c.assignment().into_iter().collect();
            for r in &records {
                assert!(owned.contains(&(r.topic.clone(), r.partition)), "{r:?} not owned");
                out.push((i, r.partition, r.offset, r.value.clone().unwrap()));
            }
            c.commit().await.expect("commit");
        }
        assert_disjoint(consumers);
    }
    out
}

fn assert_disjoint(consumers: &[Consumer]) {
    let mut seen = BTreeMap::new();
    for (i, c) in consumers.iter().enumerate() {
        for tp in c.assignment() {
            if let Some(j) = seen.insert(tp.clone(), i) {
                panic!("{tp:?} owned by consumers {j} and {i}");
            }
        }
    }
}

/// Polls until the consumers' assignments cover `partitions` of `topic`, each once.
async fn wait_balanced(consumers: &mut [Consumer], topic: &str, partitions: u32) {
    let all: BTreeSet<(String, u32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut owned = BTreeSet::new();
        for c in consumers.iter_mut() {
            assert!(c.poll(Duration::from_millis(50)).await.expect("poll").is_empty());
            owned.extend(c.assignment());
        }
        assert_disjoint(consumers);
        let busy = consumers.iter().all(|c| !c.assignment().is_empty());
        if owned == all && busy {
            return;
        }
        assert!(Instant::now() < deadline, "assignment never covered {all:?}: {owned:?}");
    }
}

/// Counts partitions assigned and revoked.
#[derive(Default)]
struct Counts {
    assigned: AtomicUsize,
    revoked: AtomicUsize,
}

impl RebalanceListener for Counts {
    fn on_revoked(&self, partitions: &[(String, u32)]) {
        self.revoked.fetch_add(partitions.len(), Ordering::SeqCst);
    }
    fn on_assigned(&self, partitions: &[(String, u32)]) {
        self.assigned.fetch_add(partitions.len(), Ordering::SeqCst);
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Checks every produced `(partition, offset)` was delivered exactly once with its value.
fn assert_exactly_once(delivered: &[Delivery], produced: &[(u32, i64)], values: &[String]) {
    let mut at: HashMap<(u32, i64), &Bytes> = HashMap::new();
    for (_, p, o, v) in delivered {
        assert!(at.insert((*p, *o), v).is_none(), "{p}/{o} delivered twice");
    }
    assert_eq!(at.len(), produced.len(), "extra deliveries");
    for (tp, v) in produced.iter().zip(values) {
        assert_eq!(at.get(tp).map(|b| &b[..]), Some(v.as_bytes()), "{tp:?}");
    }
}

#[tokio::test]
async fn a_group_of_three_consumes_once_and_resumes_from_commits() {
    bounded("consumer group", TEST_LIMIT, async {
        let (_cluster, client) = start(3).await;
        let admin = Admin::new(client.clone());
        create_topic(&admin, "orders", 6, 3).await;

        let first = values("first", 600);
        let produced = produce(&client, "orders", &first).await;
        let mut delivered = Vec::new();
        let mut consumers = Vec::new();
        let counts = Arc::new(Counts::default());
        for i in 0..3 {
            let mut c = Consumer::new(client.clone(), manual("g", &format!("c{i}"))).unwrap();
            c.set_rebalance_listener(counts.clone());
            c.subscribe(&["orders"]).await.expect("subscribe");
            consumers.push(c);
            if i == 1 {
                // The third joins mid-way: partitions move while records are in flight.
                let n = consume_all(&mut consumers, 200).await;
                delivered.extend(n);
            }
        }
        let rest = first.len() - delivered.len();
        delivered.extend(consume_all(&mut consumers, rest).await);
        assert_exactly_once(&delivered, &produced, &first);
        wait_balanced(&mut consumers, "orders", 6).await;
        // Partitions moved: every revoked one was assigned again elsewhere.
        let (assigned, revoked) =
            (counts.assigned.load(Ordering::SeqCst), counts.revoked.load(Ordering::SeqCst));
        assert!(revoked > 0, "no rebalance happened");
        assert_eq!(assigned, 6 + revoked);

        let d = admin.describe_group("g").await.expect("describe");
        assert_eq!(d.members.len(), 3, "{d:?}");
        assert_eq!(d.partitions.len(), 6, "{d:?}");
        for p in &d.partitions {
            assert_eq!(p.lag, Some(0), "{p:?}");
            assert!(p.owner.is_some(), "{p:?}");
        }
        assert!(admin.list_groups().await.unwrap().iter().any(|g| g.group_id == "g"));
        assert_eq!(
            admin.delete_group("g").await.unwrap_err().code(),
            Some(ErrorCode::GroupNotEmpty)
        );

        for c in consumers.drain(..) {
            c.close().await.expect("close");
        }
        let after = admin.describe_group("g").await.expect("describe");
        assert!(after.members.is_empty(), "{after:?}");

        // A new generation resumes after the commits: only the new records arrive.
        let second = values("second", 300);
        let produced = produce(&client, "orders", &second).await;
        for i in 0..3 {
            let mut c = Consumer::new(client.clone(), manual("g", &format!("d{i}"))).unwrap();
            c.subscribe(&["orders"]).await.expect("subscribe");
            consumers.push(c);
        }
        let delivered = consume_all(&mut consumers, second.len()).await;
        // Nothing of the first generation comes back, even while rebalancing.
        for c in consumers.iter_mut() {
            assert!(c.poll(Duration::from_millis(200)).await.unwrap().is_empty());
        }
        assert_exactly_once(&delivered, &produced, &second);
        for c in consumers.drain(..) {
            c.close().await.expect("close");
        }

        // Without members, offsets can be reset and the group deleted.
        let reset = admin.reset_offsets("g", "orders", &[], SeekTo::Beginning, false).await;
        assert_eq!(reset.unwrap().len(), 6);
        let d = admin.describe_group("g").await.unwrap();
        assert!(d.partitions.iter().all(|p| p.committed_offset == Some(0)), "{d:?}");
        admin.delete_group("g").await.expect("delete");
        let gone = admin.describe_group("g").await.unwrap_err();
        assert_eq!(gone.code(), Some(ErrorCode::GroupIdNotFound));
    })
    .await
}

/// Reads `n` records from `c`, polling with a deadline.
async fn read(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} records", out.len());
        out.extend(c.poll(Duration::from_millis(200)).await.expect("poll"));
    }
    assert_eq!(out.len(), n, "more records than expected");
    out
}

#[tokio::test]
async fn replay_from_an_offset_is_byte_identical() {
    bounded("replay", TEST_LIMIT, async {
        let (_cluster, client) = start(1).await;
        let admin = Admin::new(client.clone());
        create_topic(&admin, "log", 1, 1).await;
        let t0 = 1_700_000_000_000i64;
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        for i in 0..50i64 {
            let key = (i % 7 != 0).then(|| Bytes::from(format!("key-{i}")));
            let headers = vec![
                ("n".to_string(), Some(Bytes::from(i.to_string()))),
                ("bin".to_string(), Some(Bytes::from(vec![0u8, 255, i as u8]))),
                ("null".to_string(), None),
            ];
            let r = ProducerRecord {
                topic: "log".into(),
                partition: Some(0),
                key,
                // Every fifth a null value (a tombstone).
                value: (i % 5 != 0).then(|| Bytes::from(vec![i as u8; (i as usize) * 3])),
                headers,
                timestamp: Some(t0 + i * 10),
            };
            producer.send(r).await.expect("queue").await.expect("send");
        }

        let tp = ("log".to_string(), 0);
        let config = ConsumerConfig { group: Some("replayer".into()), ..Default::default() };
        let mut c = Consumer::new(client.clone(), config.clone()).unwrap();
        c.assign(std::slice::from_ref(&tp)).unwrap();
        let first = read(&mut c, 50).await;
        assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
        assert_eq!(first[3].timestamp, t0 + 30);
        assert_eq!(first[7].key, None);
        assert_eq!(first[10].value, None);
        assert_eq!(first[11].value.as_deref(), Some(&[11u8; 33][..]));
        assert_eq!(
            first[2].headers[1],
            ("bin".to_string(), Some(Bytes::from_static(&[0, 255, 2])))
        );
        assert_eq!(first[2].headers[2], ("null".to_string(), None));
        assert_eq!(c.position("log", 0), Some(50));

        c.seek("log", 0, SeekTo::Offset(20)).await.unwrap();
        assert_eq!(read(&mut c, 30).await, first[20..]);
        c.seek("log", 0, SeekTo::Beginning).await.unwrap();
        assert_eq!(read(&mut c, 50).await, first);
        c.seek("log", 0, SeekTo::Timestamp(t0 + 255)).await.unwrap();
        assert_eq!(c.position("log", 0), Some(26));
        assert_eq!(read(&mut c, 24).await, first[26..]);
        c.seek("log", 0, SeekTo::End).await.unwrap();
        assert_eq!(c.position("log", 0), Some(50));
        assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        // Past the end: the fetch is out of range and the position resets to the earliest.
        c.seek("log", 0, SeekTo::Offset(1000)).await.unwrap();
        assert_eq!(read(&mut c, 50).await, first);

        // A stored offset, committed without membership, is where the next consumer starts.
        c.commit_offsets(&[("log".into(), 0, 40)]).await.unwrap();
        assert_eq!(c.committed(std::slice::from_ref(&tp)).await.unwrap(), vec![Some(40)]);
        c.close().await.unwrap(); // auto-commit: commits the position 50
        let mut again = Consumer::new(client.clone(), config).unwrap();
        again.assign(std::slice::from_ref(&tp)).unwrap();
        assert!(again.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        assert_eq!(again.position("log", 0), Some(50));
        again.seek("log", 0, SeekTo::Offset(40)).await.unwrap();
        assert_eq!(read(&mut again, 10).await, first[40..]);
    })
    .await
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    bounded("bad input", TEST_LIMIT, async {
        let (_cluster, client) = start(1).await;
        let admin = Admin::new(client.clone());
        create_topic(&admin, "t", 2, 1).await;
        let usage = |r: Result<(), Error>| match r {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        };

        let bad = ConsumerConfig { fetch_max_bytes: 0, ..Default::default() };
        assert!(matches!(Consumer::new(client.clone(), bad), Err(Error::InvalidConfig(_))));

        let mut nogroup = Consumer::new(client.clone(), ConsumerConfig::default()).unwrap();
        let m = usage(nogroup.subscribe(&["t"]).await);
        assert!(m.contains("group"), "{m}");
        nogroup.assign(&[("t".into(), 0)]).unwrap();
        assert!(usage(nogroup.commit().await).contains("group"));
        assert!(nogroup.committed(&[("t".into(), 0)]).await.is_err());

        let config = ConsumerConfig { group: Some("bad".into()), ..Default::default() };
        let mut c = Consumer::new(client.clone(), config.clone()).unwrap();
        assert!(usage(c.subscribe(&[]).await).contains("topic"));
        c.assign(&[("t".into(), 0)]).unwrap();
        assert!(usage(c.subscribe(&["t"]).await).contains("assign"));
        let m = usage(c.commit_offsets(&[("t".into(), 1, 5)]).await);
        assert!(m.contains("t-1"), "{m}");
        assert!(usage(c.commit_offsets(&[("t".into(), 0, -1)]).await).contains("negative"));
        assert!(usage(c.seek("t", 1, SeekTo::Beginning).await).contains("t-1"));
        assert!(usage(c.seek("t", 0, SeekTo::Offset(-3)).await).contains("negative"));

        // A member joins: commits without membership are now refused by the coordinator.
        let mut member = Consumer::new(client.clone(), config).unwrap();
        member.subscribe(&["t"]).await.expect("subscribe");
        assert!(usage(member.assign(&[("t".into(), 0)])).contains("subscribe"));
        assert!(usage(member.subscribe(&["t"]).await).contains("already"));
        let err = c.commit_offsets(&[("t".into(), 0, 1)]).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::UnknownMemberId), "{err:?}");
        assert_eq!(
            admin.reset_offsets("bad", "t", &[], SeekTo::End, true).await.unwrap_err().code(),
            Some(ErrorCode::GroupNotEmpty)
        );
        member.close().await.unwrap();
        c.commit_offsets(&[("t".into(), 0, 0)]).await.expect("no members: commit allowed");
        let unknown = admin.describe_group("no-such-group").await.unwrap_err();
        assert_eq!(unknown.code(), Some(ErrorCode::GroupIdNotFound));
    })
    .await
}

#[tokio::test]
async fn auto_commit_covers_revoked_partitions_and_close() {
    bounded("auto-commit", TEST_LIMIT, async {
        let (_cluster, client) = start(1).await;
        let admin = Admin::new(client.clone());
        create_topic(&admin, "auto", 4, 1).await;
        let vals = values("auto", 400);
        // Small batches and one batch per fetch, so reading takes many polls.
        let mut produced = Vec::new();
        for chunk in vals.chunks(20) {
            produced.extend(produce(&client, "auto", chunk).await);
        }
        let auto = |name: &str| ConsumerConfig {
            auto_commit_interval: Some(Duration::from_millis(100)),
            fetch_max_bytes: 1,
            ..manual("ga", name)
        };
        let mut first = Consumer::new(client.clone(), auto("a0")).unwrap();
        first.subscribe(&["auto"]).await.unwrap();
        let mut delivered = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while delivered.len() < 100 {
            assert!(Instant::now() < deadline, "first consumer read {}", delivered.len());
            for r in first.poll(Duration::from_millis(100)).await.unwrap() {
                delivered.push((0, r.partition, r.offset, r.value.unwrap()));
            }
        }
        // The second member takes partitions from the first, which commits them on revocation
        // (no manual commit anywhere): the second continues exactly where the first stopped.
        let mut second = Consumer::new(client.clone(), auto("a1")).unwrap();
        second.subscribe(&["auto"]).await.unwrap();
        let mut both = vec![first, second];
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered.len() < vals.len() {
            assert!(Instant::now() < deadline, "read {} of {}", delivered.len(), vals.len());
            for (i, c) in both.iter_mut().enumerate() {
                for r in c.poll(Duration::from_millis(100)).await.unwrap() {
                    delivered.push((i, r.partition, r.offset, r.value.unwrap()));
                }
            }
            assert_disjoint(&both);
        }
        assert_exactly_once(&delivered, &produced, &vals);
        assert!(delivered.iter().any(|d| d.0 == 1), "the second consumer read nothing");
        for c in both {
            c.close().await.unwrap();
        }
        let d = admin.describe_group("ga").await.unwrap();
        assert_eq!(d.partitions.len(), 4, "{d:?}");
        assert!(d.partitions.iter().all(|p| p.lag == Some(0) && p.owner.is_none()), "{d:?}");
    })
    .await
}

#[tokio::test]
async fn a_member_that_stops_polling_is_fenced_then_rejoins() {
    bounded("fenced member", TEST_LIMIT, async {
        let extra = format!("{FAST_GROUPS}rebalance-timeout-ms = 1000\n");
        let opts = ClusterOptions { brokers: 1, extra_toml: extra, ..Default::default() };
        let cluster = Cluster::start_with(opts).await;
        let client = Client::connect(&cluster.addrs()[0].to_string()).await.expect("connect");
        let admin = Admin::new(client.clone());
        create_topic(&admin, "f", 4, 1).await;
        produce(&client, "f", &values("f", 40)).await;

        let counts = Arc::new(Counts::default());
        let mut stuck = Consumer::new(client.clone(), manual("gf", "stuck")).unwrap();
        stuck.set_rebalance_listener(counts.clone());
        stuck.subscribe(&["f"]).await.unwrap();
        assert_eq!(read_group(&mut stuck, 40).await, 40);
        stuck.commit().await.unwrap();

        // `stuck` stops polling, so it never gives up what the coordinator revokes: it is
        // fenced, and once its session lapses the newcomer gets everything.
        let mut fresh = Consumer::new(client.clone(), manual("gf", "fresh")).unwrap();
        fresh.subscribe(&["f"]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while fresh.assignment().len() < 4 {
            assert!(Instant::now() < deadline, "fresh owns {:?}", fresh.assignment());
            assert!(fresh.poll(Duration::from_millis(100)).await.unwrap().is_empty());
        }
        assert_eq!(stuck.assignment().len(), 4, "not told yet: it has not polled");

        // Its next poll drops everything (listener told), then it rejoins and gets a share.
        assert!(stuck.poll(Duration::from_millis(10)).await.unwrap().is_empty());
        assert_eq!(counts.revoked.load(Ordering::SeqCst), 4);
        let mut both = [stuck, fresh];
        wait_balanced(&mut both, "f", 4).await;
        for c in both {
            c.close().await.unwrap();
        }
    })
    .await
}

/// Polls a group member until it has read `n` records; returns how many it read.
async fn read_group(c: &mut Consumer, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "read {got} of {n}");
        got += c.poll(Duration::from_millis(100)).await.unwrap().len();
    }
    got
}
