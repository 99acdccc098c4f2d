//! kcat (librdkafka 2.0.2, Debian's) against a real 3-broker cluster on the brokers' one
//! port: metadata, producing keyed records with every codec and with idempotence, consuming
//! from the beginning and from a timestamp, and the same records read byte for byte by
//! rafka's own client — and the reverse.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use rafka_proto::batch::Compression;
use rafka_proto::batch::Header;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::kafka::must_kcat;
use rafka_tests::records;
use rafka_tests::wait::test_timeout;
use serde_json::Value;

const TOPIC: &str = "kc";
const CODECS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: usize = 20;

/// One record as kcat printed it (`-J`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn parse_consumed(out: &str) -> Vec<Seen> {
    let mut seen: Vec<Seen> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let text = |v: &Value| v.as_str().map(str::to_string);
            let headers = v["headers"]
                .as_array()
                .map(|h| h.chunks(2).map(|kv| (text(&kv[0]).unwrap(), text(&kv[1]))).collect())
                .unwrap_or_default();
            Seen {
                partition: v["partition"].as_u64().unwrap() as u32,
                offset: v["offset"].as_i64().unwrap(),
                timestamp: v["ts"].as_i64().unwrap(),
                key: text(&v["key"]),
                value: text(&v["payload"]),
                headers,
            }
        })
        .collect();
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_produces_and_consumes_on_three_brokers() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(240));
    bounded("kcat_lists_produces_and_consumes_on_three_brokers", limit, async {
        let client = cluster.client();
        let bootstrap = cluster.broker(2).addr().to_string();

        // Metadata: every broker at its advertised address, whichever broker is asked.
        let md: Value = serde_json::from_str(&must_kcat(&["-b", &bootstrap, "-L", "-J"], "").await)
            .expect("kcat -L -J prints JSON");
        let brokers: BTreeMap<u64, String> = md["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["id"].as_u64().unwrap(), b["name"].as_str().unwrap().to_string()))
            .collect();
        let want: BTreeMap<u64, String> =
            cluster.brokers().iter().map(|b| (b.id(), b.addr().to_string())).collect();
        assert_eq!(brokers, want, "brokers in Kafka metadata");

        // Produce keyed records with every codec, idempotent, to a 3-partition topic.
        client.must_create_topic(TOPIC, 3, 3).await;
        client.wait_for_leaders(TOPIC, 3, Duration::from_secs(60)).await.unwrap();
        let mut sent = BTreeSet::new();
        for codec in CODECS {
            let lines: String = (0..PER_CODEC)
                .map(|i| {
                    sent.insert((format!("key-{codec}-{i}"), format!("value-{codec}-{i}")));
                    format!("key-{codec}-{i}:value-{codec}-{i}\n")
                })
                .collect();
            must_kcat(
                &[
                    "-b",
                    &bootstrap,
                    "-P",
                    "-t",
                    TOPIC,
                    "-K:",
                    "-z",
                    codec,
                    "-X",
                    "enable.idempotence=true",
                ],
                &lines,
            )
            .await;
        }

        // Consume everything from the beginning: each record exactly once, dense offsets.
        let out = must_kcat(&["-b", &bootstrap, "-C", "-t", TOPIC, "-e", "-J"], "").await;
        let seen = parse_consumed(&out);
        let got: BTreeSet<(String, String)> =
            seen.iter().map(|s| (s.key.clone().unwrap(), s.value.clone().unwrap())).collect();
        assert_eq!(seen.len(), CODECS.len() * PER_CODEC, "records consumed");
        assert_eq!(got, sent, "what kcat consumed is what it produced");

        // rafka's own client reads the same records: offsets, keys, values, timestamps.
        let mut ours = Vec::new();
        for p in 0..3 {
            let batches = client.fetch_batches(TOPIC, p, 0).await.unwrap();
            for b in &batches {
                let h = records::header(&b.batch).unwrap();
                // librdkafka compresses what the broker's advertised versions allow it to.
                assert!(h.compression().is_ok());
                assert!(h.producer_id >= 0, "idempotent batches carry a producer id");
            }
            for r in client.fetch_all(TOPIC, p, 0).await.unwrap() {
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                ours.push(Seen {
                    partition: p,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: text(r.key),
                    value: text(r.value),
                    headers: Vec::new(),
                });
            }
        }
        ours.sort();
        assert_eq!(ours, seen, "rafka's client and kcat read the same log");
        let used: std::collections::HashSet<Compression> = {
            let mut used = std::collections::HashSet::new();
            for p in 0..3 {
                for b in client.fetch_batches(TOPIC, p, 0).await.unwrap() {
                    used.insert(records::header(&b.batch).unwrap().compression().unwrap());
                }
            }
            used
        };
        for c in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert!(used.contains(&c), "no {c:?} batch stored: {used:?}");
        }

        // From a timestamp: the first record at or after it.
        let target = seen.iter().find(|s| s.partition == 1 && s.offset == 5).unwrap();
        let from = format!("s@{}", target.timestamp);
        let out = must_kcat(
            &["-b", &bootstrap, "-C", "-t", TOPIC, "-p", "1", "-o", &from, "-e", "-J"],
            "",
        )
        .await;
        let after = parse_consumed(&out);
        let first = after.first().expect("records from the timestamp");
        let expected = seen
            .iter()
            .filter(|s| s.partition == 1 && s.timestamp >= target.timestamp)
            .map(|s| s.offset)
            .min()
            .unwrap();
        assert_eq!(first.offset, expected, "first offset at or after {}", target.timestamp);

        // The reverse: a batch produced with rafka's client — null key, null value, headers
        // with a null value — read by kcat as Kafka clients see it.
        let now = records::now_ms();
        let recs = [
            NewRecord {
                key: None,
                value: Some(Bytes::from_static(b"from-rafka")),
                timestamp: now,
                headers: vec![
                    Header { key: "h1".into(), value: Some(Bytes::from_static(b"v1")) },
                    Header { key: "h2".into(), value: None },
                ],
            },
            NewRecord {
                key: Some(Bytes::from_static(b"gone")),
                value: None,
                timestamp: now + 1,
                headers: vec![],
            },
        ];
        let batch = records::batch(&recs, None, Compression::Lz4);
        let base = client.must_produce(TOPIC, 2, batch, Acks::All).await;
        let offset = base.to_string();
        let out = must_kcat(
            &["-b", &bootstrap, "-C", "-t", TOPIC, "-p", "2", "-o", &offset, "-c", "2", "-J"],
            "",
        )
        .await;
        let back = parse_consumed(&out);
        assert_eq!(
            back,
            [
                Seen {
                    partition: 2,
                    offset: base,
                    timestamp: now,
                    key: None,
                    value: Some("from-rafka".into()),
                    headers: vec![("h1".into(), Some("v1".into())), ("h2".into(), None)],
                },
                Seen {
                    partition: 2,
                    offset: base + 1,
                    timestamp: now + 1,
                    key: Some("gone".into()),
                    value: None,
                    headers: vec![],
                },
            ]
        );
    })
    .await;
}

/// Two `kcat -G` members share a topic's partitions (each reads some, none twice, all
/// together everything), commit as they close, and a later member of the group resumes
/// from those commits — which rafka's group API reads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_group_members_share_and_resume() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(240));
    bounded("kcat_group_members_share_and_resume", limit, async {
        let client = cluster.client();
        let bootstrap = cluster.broker(1).addr().to_string();
        client.must_create_topic("kg", 4, 3).await;
        client.wait_for_leaders("kg", 4, Duration::from_secs(60)).await.unwrap();
        for p in 0..4u32 {
            let values: Vec<String> = (0..10).map(|i| format!("p{p}-{i}")).collect();
            client
                .must_produce("kg", p, records::values_batch(&values, records::now_ms()), Acks::All)
                .await;
        }
        let member = |bootstrap: String| async move {
            let args = [
                "-b",
                &bootstrap,
                "-G",
                "kcat-group",
                "kg",
                "-e",
                "-J",
                "-X",
                "auto.offset.reset=earliest",
            ];
            must_kcat(&args, "").await
        };
        // Both start within the group's initial rebalance delay: one generation, shared.
        let (a, b) = tokio::join!(member(bootstrap.clone()), member(bootstrap.clone()));
        let (a, b) = (parse_consumed(&a), parse_consumed(&b));
        assert!(!a.is_empty() && !b.is_empty(), "both members read: {} and {}", a.len(), b.len());
        let pa: BTreeSet<u32> = a.iter().map(|s| s.partition).collect();
        let pb: BTreeSet<u32> = b.iter().map(|s| s.partition).collect();
        assert!(pa.is_disjoint(&pb), "partitions shared out, not duplicated: {pa:?} {pb:?}");
        let all: BTreeSet<(u32, i64)> =
            a.iter().chain(&b).map(|s| (s.partition, s.offset)).collect();
        assert_eq!(all.len(), 40, "every record once");

        let groups = rafka_tests::groups::GroupsClient::new(cluster.addrs());
        let committed = groups.must_fetch_offsets("kcat-group").await;
        for p in 0..4u32 {
            let c = committed.get(&("kg".to_string(), p)).map(|c| c.offset);
            assert_eq!(c, Some(10), "the group's commit of partition {p}");
        }
        // New records; a new member resumes from the commits.
        for p in 0..4u32 {
            let b = records::values_batch(&[format!("new-{p}")], records::now_ms());
            client.must_produce("kg", p, b, Acks::All).await;
        }
        let later = parse_consumed(&member(bootstrap.clone()).await);
        let values: BTreeSet<String> = later.iter().filter_map(|s| s.value.clone()).collect();
        let want: BTreeSet<String> = (0..4).map(|p| format!("new-{p}")).collect();
        assert_eq!(values, want, "only what came after the commits");
    })
    .await;
}
