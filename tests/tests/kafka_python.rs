//! The Python Kafka clients against a real 3-broker cluster: confluent-kafka (librdkafka
//! 2.16) and kafka-python 3.0 each produce with idempotence and compression and read every
//! partition back; rafka's own client reads the same records.

use std::collections::BTreeSet;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::kafka::must_python;
use rafka_tests::wait::test_timeout;
use serde_json::Value;

const RECORDS: usize = 200;

/// `(partition, offset, key, value)` of the JSON lines a script printed.
fn parse(out: &str) -> BTreeSet<(u64, i64, String, String)> {
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (v["partition"].as_u64().unwrap(), v["offset"].as_i64().unwrap(), s("key"), s("value"))
        })
        .collect()
}

async fn ours(cluster: &Cluster, topic: &str) -> BTreeSet<(u64, i64, String, String)> {
    let client = cluster.client();
    let mut out = BTreeSet::new();
    for p in 0..3u32 {
        for r in client.fetch_all(topic, p, 0).await.unwrap() {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            out.insert((
                u64::from(p),
                r.offset,
                text(r.key.as_deref().unwrap()),
                text(r.value_bytes()),
            ));
        }
    }
    out
}

fn expected_keys() -> BTreeSet<(String, String)> {
    (0..RECORDS).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_produce_and_consume() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(300));
    bounded("python_clients_produce_and_consume", limit, async {
        let client = cluster.client();
        let bootstrap = cluster.broker(1).addr().to_string();
        let n = RECORDS.to_string();
        for (script, topic) in
            [("confluent_roundtrip.py", "py-confluent"), ("kafka_python_roundtrip.py", "py-kafka")]
        {
            client.must_create_topic(topic, 3, 3).await;
            client.wait_for_leaders(topic, 3, Duration::from_secs(60)).await.unwrap();
            let read = parse(&must_python(script, &[&bootstrap, topic, &n]).await);
            let keys: BTreeSet<(String, String)> =
                read.iter().map(|(_, _, k, v)| (k.clone(), v.clone())).collect();
            assert_eq!(read.len(), RECORDS, "{script}: each record read once");
            assert_eq!(keys, expected_keys(), "{script}: what it wrote is what it read");
            assert_eq!(ours(&cluster, topic).await, read, "{script}: rafka reads the same log");
        }
    })
    .await;
}
