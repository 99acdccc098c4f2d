//! Kafka clients and rafka's own, on one cluster: records a Kafka client produces are read
//! byte for byte (keys, values, headers, timestamps, offsets) by rafka's `Consumer` and by
//! `rafka consume`, and the reverse; offsets committed through rafka's API are the ones a
//! Kafka consumer reads back.

use std::time::Duration;

use bytes::Bytes;
use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::ConsumerRecord;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::cli_binary;
use rafka_tests::kafka::must_python;
use rafka_tests::wait::test_timeout;
use serde_json::Value;

/// One record as both sides see it; bytes as hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The records a script printed.
fn parse(out: &str) -> Vec<Rec> {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let text = |v: &Value| v.as_str().map(str::to_string);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Rec {
            partition: r["partition"].as_u64().unwrap() as u32,
            offset: r["offset"].as_i64().unwrap(),
            timestamp: r["timestamp"].as_i64().unwrap(),
            key: text(&r["key"]),
            value: text(&r["value"]),
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_string(), text(&h[1])))
                .collect(),
        })
        .collect()
}

fn from_consumer(r: &ConsumerRecord) -> Rec {
    Rec {
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.as_deref().map(hex),
        value: r.value.as_deref().map(hex),
        headers: r.headers.iter().map(|(k, v)| (k.clone(), v.as_deref().map(hex))).collect(),
    }
}

/// `rafka consume` of one partition as JSON lines.
async fn rafka_consume(bootstrap: &str, topic: &str, partition: u32, n: usize) -> Vec<Value> {
    let out = tokio::process::Command::new(cli_binary())
        .args(["--bootstrap", bootstrap, "consume", topic, "--partition", &partition.to_string()])
        .args(["--output", "json", "--max-messages", &n.to_string()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "rafka consume: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What `rafka consume --output json` prints for `r` (text lossily decoded from the bytes).
fn as_cli(topic: &str, r: &Rec) -> Value {
    let lossy =
        |h: &Option<String>| h.as_ref().map(|h| String::from_utf8_lossy(&unhex(h)).into_owned());
    let mut doc = serde_json::json!({
        "topic": topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": lossy(&r.key),
        "value": lossy(&r.value),
    });
    if !r.headers.is_empty() {
        doc["headers"] = r.headers.iter().map(|(k, v)| serde_json::json!([k, lossy(v)])).collect();
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_rafka_clients_read_each_others_records_and_offsets() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(300));
    bounded("kafka_and_rafka_clients_read_each_others_records_and_offsets", limit, async {
        let admin = cluster.client();
        for t in ["from-kafka", "from-rafka"] {
            admin.must_create_topic(t, 2, 3).await;
            admin.wait_for_leaders(t, 2, Duration::from_secs(60)).await.unwrap();
        }
        let bootstrap = cluster.broker(1).addr().to_string();

        // Kafka → rafka: confluent-kafka produces, rafka's Consumer and CLI read.
        let sent =
            parse(&must_python("confluent_cross.py", &["produce", &bootstrap, "from-kafka"]).await);
        assert_eq!(sent.len(), 40);
        assert!(sent.iter().any(|r| r.key.is_none()) && sent.iter().any(|r| r.value.is_none()));
        assert!(sent.iter().any(|r| r.headers.iter().any(|(_, v)| v.is_none())));
        let addrs: Vec<String> = cluster.addrs().iter().map(ToString::to_string).collect();
        let client = Client::connect(&addrs.join(",")).await.unwrap();
        let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default()).unwrap();
        consumer.assign(&[("from-kafka".into(), 0), ("from-kafka".into(), 1)]).unwrap();
        let mut read = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while read.len() < sent.len() && tokio::time::Instant::now() < deadline {
            read.extend(
                consumer.poll(Duration::from_millis(500)).await.unwrap().iter().map(from_consumer),
            );
        }
        read.sort();
        assert_eq!(read, sent, "rafka's Consumer reads what confluent-kafka produced");
        for p in 0..2u32 {
            let want: Vec<Value> =
                sent.iter().filter(|r| r.partition == p).map(|r| as_cli("from-kafka", r)).collect();
            let got = rafka_consume(&bootstrap, "from-kafka", p, want.len()).await;
            assert_eq!(got, want, "rafka consume of partition {p}");
        }

        // rafka → Kafka: rafka's Producer writes, confluent-kafka reads.
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        let mut written = Vec::new();
        for i in 0..40i64 {
            let key = (i % 6 != 0).then(|| Bytes::from(format!("rk-{i}")));
            let value = match i % 8 {
                3 => None,
                5 => Some(Bytes::from((0..=255u8).rev().collect::<Vec<u8>>())),
                _ => Some(Bytes::from(format!("rv-{i}"))),
            };
            let headers = if i % 4 == 0 {
                vec![
                    ("h".to_string(), Some(Bytes::from(format!("x{i}")))),
                    ("nil".to_string(), None),
                ]
            } else {
                Vec::new()
            };
            let record = ProducerRecord {
                topic: "from-rafka".into(),
                partition: Some((i % 2) as u32),
                key: key.clone(),
                value: value.clone(),
                headers: headers.clone(),
                timestamp: Some(1_600_000_000_000 + i),
            };
            let md = producer.send(record).await.unwrap().await.unwrap();
            written.push(Rec {
                partition: md.partition,
                offset: md.offset,
                timestamp: 1_600_000_000_000 + i,
                key: key.as_deref().map(hex),
                value: value.as_deref().map(hex),
                headers: headers.iter().map(|(k, v)| (k.clone(), v.as_deref().map(hex))).collect(),
            });
        }
        written.sort();
        let back = parse(
            &must_python("confluent_cross.py", &["consume", &bootstrap, "from-rafka", "40"]).await,
        );
        assert_eq!(back, written, "confluent-kafka reads what rafka's Producer wrote");

        // Offsets committed through rafka's API, read by a Kafka consumer of the group.
        let config = ConsumerConfig {
            group: Some("cross".into()),
            auto_commit_interval: None,
            ..Default::default()
        };
        let mut committer = Consumer::new(client, config).unwrap();
        committer.assign(&[("from-rafka".into(), 0), ("from-rafka".into(), 1)]).unwrap();
        committer
            .commit_offsets(&[("from-rafka".into(), 0, 7), ("from-rafka".into(), 1, 19)])
            .await
            .unwrap();
        let out: Value = serde_json::from_str(
            &must_python(
                "confluent_cross.py",
                &["committed", &bootstrap, "cross", "from-rafka", "2"],
            )
            .await,
        )
        .unwrap();
        assert_eq!(out, serde_json::json!([[0, 7], [1, 19]]), "rafka's commits, read over Kafka");
    })
    .await;
}
