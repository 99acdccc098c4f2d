//! The Python Kafka clients against a real 3-broker cluster: confluent-kafka (librdkafka
//! 2.16) and kafka-python 3.0 each produce with idempotence and compression and read every
//! partition back; rafka's own client reads the same records.

use std::collections::BTreeSet;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::cli_binary;
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

/// Classic consumer groups: confluent-kafka members share partitions, rebalance when one
/// leaves, and a static member comes back to its partitions without a rebalance;
/// kafka-python members share partitions and commit. The commits are the ones rafka's own
/// group API reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consumer_groups() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(420));
    bounded("python_consumer_groups", limit, async {
        let client = cluster.client();
        let bootstrap = cluster.broker(1).addr().to_string();
        client.must_create_topic("groups", 6, 3).await;
        client.wait_for_leaders("groups", 6, Duration::from_secs(60)).await.unwrap();
        let per = 20;
        for p in 0..6u32 {
            let values: Vec<String> = (0..per).map(|i| format!("p{p}-{i}")).collect();
            let b = rafka_tests::records::values_batch(&values, rafka_tests::records::now_ms());
            client.must_produce("groups", p, b, rafka_proto::v1::Acks::All).await;
        }
        let total = (6 * per).to_string();

        let out: Value = serde_json::from_str(
            &must_python("confluent_groups.py", &[&bootstrap, "groups", &total]).await,
        )
        .unwrap();
        let shares = out["shared_assignments"].as_array().unwrap();
        assert_eq!(shares.len(), 3);
        assert!(shares.iter().all(|a| !a.as_array().unwrap().is_empty()), "{out}");
        assert_eq!(out["shared_read"], 6 * per, "{out}");
        assert_eq!(out["shared_distinct"], 6 * per, "every record once: {out}");
        assert_eq!(out["after_leave"].as_array().unwrap().len(), 2, "{out}");
        assert_eq!(out["static_after"], out["static_before"], "static member's partitions: {out}");
        assert_eq!(out["static_b_rebalances"], 0, "the other member saw no rebalance: {out}");
        // confluent-kafka's commits, read through rafka's group API.
        let groups = rafka_tests::groups::GroupsClient::new(cluster.addrs());
        let committed = groups.must_fetch_offsets("shared").await;
        for p in 0..6u32 {
            let c = committed.get(&("groups".to_string(), p)).map(|c| c.offset);
            assert_eq!(c, Some(per as i64), "shared's commit of partition {p}");
        }

        let out: Value = serde_json::from_str(
            &must_python("kafka_python_groups.py", &[&bootstrap, "groups", "kp", &total]).await,
        )
        .unwrap();
        assert!(out["read"].as_u64().unwrap() >= 6 * per as u64, "{out}");
        assert_eq!(out["distinct"], 6 * per, "every record read: {out}");
        assert_eq!(out["readers"], serde_json::json!([0, 1]), "both members read: {out}");
        let committed = groups.must_fetch_offsets("kp").await;
        for p in 0..6u32 {
            let c = committed.get(&("groups".to_string(), p)).map(|c| c.offset);
            assert_eq!(c, Some(per as i64), "kp's commit of partition {p}");
        }
    })
    .await;
}

/// An idempotent confluent-kafka producer keeps producing while the partition's leader is
/// SIGKILLed: every delivery report succeeds, and the partition holds every record exactly
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_a_killed_leader() {
    let mut cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(300));
    bounded("idempotent_producer_survives_a_killed_leader", limit, async {
        let client = cluster.client();
        client.must_create_topic("failover", 1, 3).await;
        client.wait_for_leaders("failover", 1, Duration::from_secs(60)).await.unwrap();
        let n = 3000;
        let bootstrap = cluster.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
        let count = n.to_string();
        let marker = tempfile::tempdir().unwrap();
        let killed = marker.path().join("killed");
        let killed_arg = killed.to_string_lossy().into_owned();
        let producer = tokio::spawn(async move {
            must_python("confluent_idempotent.py", &[&bootstrap, "failover", &count, &killed_arg])
                .await
        });
        // Kill the leader once the producer is well under way.
        rafka_tests::poll("the producer under way", Duration::from_secs(60), || {
            let client = &client;
            async move {
                let hw = client.list_offsets("failover", 0, latest()).await?.offset;
                anyhow::ensure!(hw >= 300, "high watermark {hw}");
                anyhow::Ok(())
            }
        })
        .await
        .unwrap();
        let (leader, _) = client.leader("failover", 0).await.unwrap();
        cluster.must_kill(leader);
        std::fs::write(&killed, b"").unwrap();
        let out: Value = serde_json::from_str(&producer.await.unwrap()).unwrap();
        // The script hands records to the producer over several seconds and notes how far
        // it was when it saw the kill.
        let seen_at = out["seen_at"].as_u64().unwrap_or_else(|| panic!("kill never seen: {out}"));
        assert!(seen_at < n as u64, "the leader died mid-stream: {out}");
        assert_eq!(out["failed"], 0, "every delivery report succeeds: {out}");
        assert_eq!(out["delivered"], n, "{out}");
        let values: Vec<String> = client
            .fetch_all("failover", 0, 0)
            .await
            .unwrap()
            .iter()
            .map(|r| String::from_utf8(r.value_bytes().to_vec()).unwrap())
            .collect();
        let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        assert_eq!(values.len(), want.len(), "nothing lost, nothing duplicated");
        assert_eq!(values, want, "in order");
        cluster.must_restart(leader, Duration::from_secs(60)).await;
    })
    .await;
}

fn latest() -> rafka_proto::v1::offset_spec::Spec {
    rafka_proto::v1::offset_spec::Spec::Latest(true)
}

/// confluent-kafka's admin ListOffsets: earliest, latest, by timestamp, and MAX_TIMESTAMP
/// (ListOffsets v7) — the first record with the largest timestamp, wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_spec() {
    let cluster = Cluster::start(1).await;
    let limit = test_timeout(Duration::from_secs(120));
    bounded("list_offsets_by_spec", limit, async {
        let client = cluster.client();
        client.must_create_topic("times", 1, 1).await;
        let t0 = rafka_tests::records::now_ms() - 10_000;
        // Timestamps t0, t0+1, ... except record 4, the latest of all (twice: 4 and 7).
        let stamp = |i: i64| if i == 4 || i == 7 { t0 + 5_000 } else { t0 + i };
        for batch in [0..5i64, 5..10] {
            let recs: Vec<_> = batch
                .map(|i| rafka_tests::records::value_record(format!("v{i}"), stamp(i)))
                .collect();
            let b = rafka_tests::records::batch(&recs, None, rafka_proto::batch::Compression::None);
            client.must_produce("times", 0, b, rafka_proto::v1::Acks::All).await;
        }
        let bootstrap = cluster.broker(1).addr().to_string();
        let ts = (t0 + 6).to_string();
        let out: Value = serde_json::from_str(
            &must_python("confluent_offsets.py", &[&bootstrap, "times", &ts]).await,
        )
        .unwrap();
        assert_eq!(out["earliest"][0], 0, "{out}");
        assert_eq!(out["latest"][0], 10, "{out}");
        assert_eq!(out["max_timestamp"], serde_json::json!([4, t0 + 5_000]), "{out}");
        assert_eq!(out["for_timestamp"][0], 4, "first at or after t0+6: {out}");
    })
    .await;
}

/// The admin clients of confluent-kafka and kafka-python: topics created (one only
/// validated, bad ones refused with Kafka's codes), described, their configs read and
/// altered (incrementally and by replacement), grown, deleted; the cluster described; a
/// consumer group listed, described with its member's assignment, refused deletion while
/// the member is in, deleted once it left. Each client talks to a broker that may not lead
/// the controller, so requests are forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_admin_clients() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(300));
    bounded("python_admin_clients", limit, async {
        let bootstrap = cluster.broker(2).addr().to_string();
        let cli = cli_binary().display().to_string();
        let out: Value =
            serde_json::from_str(&must_python("confluent_admin.py", &[&bootstrap, &cli]).await)
                .unwrap();
        assert_eq!(out["created"], serde_json::json!({"adm-a": null, "adm-b": null}), "{out}");
        assert_eq!(out["validated"], Value::Null, "validate-only succeeds: {out}");
        assert_eq!(out["validated_exists"], false, "and creates nothing: {out}");
        assert_eq!(
            out["refused"],
            serde_json::json!({
                "adm-a": "TOPIC_ALREADY_EXISTS",
                "bad/name": "TOPIC_EXCEPTION",
                "adm-c": "INVALID_CONFIG",
                "adm-d": "INVALID_REPLICATION_FACTOR",
            }),
            "{out}"
        );
        assert_eq!(out["refused_exist"], serde_json::json!([]), "{out}");
        assert_eq!(out["partitions"], serde_json::json!({"adm-a": 3, "adm-b": 2}), "{out}");
        assert_eq!(out["replicas"], serde_json::json!({"adm-a": 3, "adm-b": 3}), "{out}");
        // [value, source (1: topic override, 5: default), read-only]
        let c = &out["configs"];
        assert_eq!(c["retention.ms"], serde_json::json!(["60000", 1, false]), "{out}");
        assert_eq!(c["retention.bytes"], serde_json::json!(["-1", 5, false]), "{out}");
        assert_eq!(c["cleanup.policy"], serde_json::json!(["delete", 5, true]), "{out}");
        assert_eq!(out["incremental"], Value::Null, "{out}");
        let c = &out["configs_incremental"];
        assert_eq!(c["retention.bytes"], serde_json::json!(["1048576", 1, false]), "{out}");
        assert_eq!(c["retention.ms"][1], 5, "deleted override back to default: {out}");
        assert_eq!(out["incremental_bad"], "INVALID_CONFIG", "{out}");
        let c = &out["configs_replaced"];
        assert_eq!(c["max.message.bytes"], serde_json::json!(["2000000", 1, false]), "{out}");
        assert_eq!(c["retention.bytes"][1], 5, "replacing drops other overrides: {out}");
        assert_eq!(out["broker_configs"]["broker.id"], "1", "{out}");
        assert_eq!(out["broker_configs"]["default.replication.factor"], "3", "{out}");
        assert_eq!(out["grown"], Value::Null, "{out}");
        assert_eq!(out["shrunk"], "INVALID_PARTITIONS", "{out}");
        assert_eq!(out["partitions_after"], 5, "{out}");
        let ours = cluster.client().describe_cluster().await.unwrap();
        assert_eq!(out["cluster"]["id"], ours.cluster_id.as_str(), "{out}");
        assert_eq!(out["cluster"]["controller"], ours.controller_id.unwrap(), "{out}");
        assert_eq!(out["cluster"]["nodes"], serde_json::json!([1, 2, 3]), "{out}");
        assert_eq!(out["group_read"], 10, "{out}");
        let assigned = serde_json::json!([[["adm-b", 0], ["adm-b", 1]]]);
        assert_eq!(out["described_in"]["state"], "STABLE", "{out}");
        assert_eq!(out["described_in"]["members"], assigned, "{out}");
        assert_eq!(out["listed_in"], "STABLE", "{out}");
        // `rafka group describe` shows the classic group, its member and its commits.
        let ours = &out["rafka_describe_in"];
        assert_eq!(ours["protocol"], "classic", "{out}");
        assert_eq!(ours["state"], "stable", "{out}");
        assert_eq!(ours["assignor"], "range", "{out}");
        let members = ours["members"].as_array().unwrap();
        assert_eq!(members.len(), 1, "{out}");
        assert_eq!(members[0]["subscribed_topics"], serde_json::json!(["adm-b"]), "{out}");
        assert_eq!(
            members[0]["assignment"],
            serde_json::json!([{"topic": "adm-b", "partition": 0}, {"topic": "adm-b", "partition": 1}]),
            "{out}"
        );
        let committed: Vec<&Value> =
            ours["partitions"].as_array().unwrap().iter().map(|p| &p["committed_offset"]).collect();
        assert_eq!(committed, [&serde_json::json!(5), &serde_json::json!(5)], "{out}");
        assert_eq!(out["delete_with_member"], "NON_EMPTY_GROUP", "{out}");
        assert_eq!(out["described_out"]["state"], "EMPTY", "{out}");
        assert_eq!(out["listed_out"], "EMPTY", "{out}");
        assert_eq!(out["deleted"], Value::Null, "{out}");
        assert_eq!(out["listed_after_delete"], Value::Null, "{out}");
        assert_eq!(out["delete_unknown"], "GROUP_ID_NOT_FOUND", "{out}");
        assert_eq!(
            out["deleted_topics"],
            serde_json::json!({"adm-a": null, "adm-b": null, "adm-none": "UNKNOWN_TOPIC_OR_PART"}),
            "{out}"
        );
        assert_eq!(out["left"], serde_json::json!([]), "{out}");

        let bootstrap = cluster.broker(3).addr().to_string();
        let out: Value =
            serde_json::from_str(&must_python("kafka_python_admin.py", &[&bootstrap]).await)
                .unwrap();
        assert_eq!(
            out["created"],
            serde_json::json!({"kp-a": [0, 2, 3], "kp-b": [0, 1, 3]}),
            "[error, partitions, replication factor]: {out}"
        );
        assert_eq!(out["again"], 36, "TOPIC_ALREADY_EXISTS: {out}");
        assert_eq!(out["modified"], serde_json::json!({"retention.ms": "50000"}), "{out}");
        assert_eq!(
            out["modified_after"],
            serde_json::json!({"retention.bytes": "2000000", "retention.ms": "50000"}),
            "kafka-python alters incrementally where the broker can: {out}"
        );
        assert_eq!(out["partitions"], 4, "{out}");
        assert_eq!(out["cluster"]["brokers"], serde_json::json!([1, 2, 3]), "{out}");
        assert_eq!(out["read"], 6, "{out}");
        assert_eq!(out["listed"], serde_json::json!([["kp-g", "consumer", "Stable"]]), "{out}");
        let d = &out["described"];
        assert_eq!(d["state"], "Stable", "{out}");
        assert_eq!(d["protocol"], "range", "{out}");
        assert_eq!(d["subscriptions"], serde_json::json!([["kp-b"]]), "{out}");
        assert_eq!(d["assignments"], serde_json::json!([[["kp-b", [0]]]]), "{out}");
        assert_eq!(out["offsets"], serde_json::json!([["kp-b", 0, 6]]), "{out}");
        assert_eq!(
            out["deleted_groups"],
            serde_json::json!({"kp-g": "OK", "kp-none": "GroupIdNotFoundError"}),
            "{out}"
        );
        assert_eq!(out["deleted_topics"], serde_json::json!([["kp-a", 0], ["kp-b", 0]]), "{out}");
        let left = cluster.client().list_topics(false).await.unwrap();
        assert!(left.topics.is_empty(), "rafka sees every topic gone: {:?}", left.topics);
    })
    .await;
}

/// Consumer groups of the consumer protocol (KIP-848) from confluent-kafka with
/// `group.protocol=consumer`: two members share a topic and commit, one leaves and the
/// other takes everything; a regex subscription is resolved by the broker, also for a
/// topic created later; the admin client and `rafka group describe` describe the groups,
/// and rafka's group API reads the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consumer_protocol_groups() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(300));
    bounded("python_consumer_protocol_groups", limit, async {
        let bootstrap = cluster.broker(3).addr().to_string();
        let cli = cli_binary().display().to_string();
        let n = 20;
        let out: Value = serde_json::from_str(
            &must_python("confluent_consumer_protocol.py", &[&bootstrap, &n.to_string(), &cli])
                .await,
        )
        .unwrap();
        let shares = out["shared_assignments"].as_array().unwrap();
        assert!(shares.iter().all(|a| !a.as_array().unwrap().is_empty()), "both members: {out}");
        // A partition moved before its first reader committed is read again (as Kafka
        // does with manual commits); every record is read, none made up.
        assert!(out["shared_read"].as_u64().unwrap() >= 4 * n as u64, "{out}");
        assert_eq!(out["shared_distinct"], 4 * n, "every record: {out}");
        assert_eq!(out["described"]["state"], "STABLE", "{out}");
        assert_eq!(out["described"]["members"], 2, "{out}");
        let all_a = serde_json::json!([["kip-a", 0], ["kip-a", 1], ["kip-a", 2], ["kip-a", 3]]);
        assert_eq!(out["described"]["assigned"], all_a, "{out}");
        assert_eq!(out["after_leave"], all_a, "the remaining member took over: {out}");
        let matched = serde_json::json!([
            ["kip-a", 0],
            ["kip-a", 1],
            ["kip-a", 2],
            ["kip-a", 3],
            ["kip-b", 0],
            ["kip-b", 1]
        ]);
        assert_eq!(out["regex_assigned"], matched, "{out}");
        assert_eq!(out["regex_read"], 6 * n, "{out}");
        let later = out["regex_assigned_later"].as_array().unwrap();
        assert!(later.contains(&serde_json::json!(["kip-later", 0])), "{out}");
        assert_eq!(out["regex_read_later"], serde_json::json!(["kip-later-0-0", n]), "{out}");
        let ours = &out["rafka_describe_re"];
        assert_eq!(ours["protocol"], "consumer", "{out}");
        let member = &ours["members"][0];
        assert!(member["subscribed_regex"].as_str().unwrap().contains("kip-later"), "{out}");
        assert_eq!(
            member["subscribed_topics"],
            serde_json::json!(["kip-a", "kip-b", "kip-later"]),
            "the broker resolved the regex: {out}"
        );
        // The members' commits, read through rafka's group API.
        let groups = rafka_tests::groups::GroupsClient::new(cluster.addrs());
        let committed = groups.must_fetch_offsets("kip").await;
        for p in 0..4u32 {
            let c = committed.get(&("kip-a".to_string(), p)).map(|c| c.offset);
            assert_eq!(c, Some(n as i64), "kip's commit of partition {p}");
        }
    })
    .await;
}
