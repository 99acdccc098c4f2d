//! Upgrading to Kafka's batch format: a data directory written before it still opens and
//! serves every record (converted), and a cluster keeps writing the old format until every
//! broker reads the new one (the controller's batch-format gate), so that a rolling upgrade
//! never sends an old broker an entry it cannot read.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rafka_proto::ErrorCode;
use rafka_proto::batch::Compression;
use rafka_proto::batch::Header;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::FetchedRecord;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::broker::cli_binary;
use rafka_tests::client::code_of;
use rafka_tests::groups::GroupsClient;
use rafka_tests::poll;
use rafka_tests::records;
use rafka_tests::wait::test_timeout;

const READY: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The records the old rafka read back from the fixture, per partition, as
/// `(offset, key, value, timestamp)`.
fn expected_records(partition: u32) -> Vec<(i64, Option<String>, Option<String>, i64)> {
    let text = std::fs::read_to_string(fixture("datadir-v1.expected.jsonl")).unwrap();
    let mut out: Vec<_> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["partition"] == partition)
        .map(|v| {
            let s = |k: &str| v[k].as_str().map(str::to_string);
            (v["offset"].as_i64().unwrap(), s("key"), s("value"), v["timestamp"].as_i64().unwrap())
        })
        .collect();
    out.sort();
    out
}

fn as_expected(got: &[FetchedRecord]) -> Vec<(i64, Option<String>, Option<String>, i64)> {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
    got.iter().map(|r| (r.offset, text(&r.key), text(&r.value), r.timestamp)).collect()
}

/// What DescribeCluster says the cluster's batch format is.
async fn cluster_format(client: &TestClient) -> u32 {
    client.describe_cluster().await.unwrap().batch_format
}

/// Waits until the cluster writes Kafka's batch format.
async fn wait_for_format_2(client: &TestClient) {
    poll("the cluster's batch format is 2", READY, || async {
        match cluster_format(client).await {
            2 => Ok(()),
            f => Err(format!("format {f}")),
        }
    })
    .await
    .unwrap();
}

/// A Kafka batch whose second record has a null value and a header with a null value.
fn with_nulls(tag: &str) -> Bytes {
    let recs: Vec<NewRecord> = (0..3)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("{tag}-k{i}"))),
            value: (i != 1).then(|| Bytes::from(format!("{tag}-v{i}"))),
            timestamp: records::now_ms(),
            headers: vec![Header { key: "h".into(), value: (i != 1).then(Bytes::new) }],
        })
        .collect();
    records::batch(&recs, None, Compression::Gzip)
}

/// A data directory written by rafka before the switch (`tests/fixtures/datadir-v1.tar.gz`,
/// made by `make-datadir-v1.sh` with that rafka): the broker opens it, serves every record
/// exactly as the old rafka read it back (converted to Kafka batches, CRC-checked, to the
/// test client and to the `rafka` CLI), keeps the consumer group's commits, raises the
/// cluster's batch format once it runs alone on the new version, and writes new batches —
/// nulls included — after the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_old_format_is_served_converted() {
    let mut cluster = Cluster::start(1).await;
    let limit = test_timeout(Duration::from_secs(120));
    bounded("a_data_directory_of_the_old_format_is_served_converted", limit, async {
        cluster.must_kill(1);
        let data = cluster.broker(1).data_dir().to_path_buf();
        std::fs::remove_dir_all(&data).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(fixture("datadir-v1.tar.gz"))
            .arg("-C")
            .arg(data.parent().unwrap())
            .status()
            .expect("running tar");
        assert!(status.success(), "unpacking the fixture: {status}");
        cluster.must_restart(1, READY).await;
        let client = cluster.client();

        for p in 0..2 {
            let got = client.fetch_all("legacy", p, 0).await.unwrap();
            let want = expected_records(p);
            assert!(!want.is_empty(), "the fixture has records in partition {p}");
            assert_eq!(as_expected(&got), want, "partition {p} as the old rafka read it");
        }
        // The CLI prints what the old CLI printed (JSON lines, here sorted: partitions
        // interleave differently from run to run).
        let out = tokio::process::Command::new(cli_binary())
            .args(["--bootstrap", &cluster.broker(1).addr().to_string()])
            .args(["consume", "legacy", "--output", "json", "--timeout-ms", "2000"])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "rafka consume: {}", String::from_utf8_lossy(&out.stderr));
        let sorted = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let expected = std::fs::read_to_string(fixture("datadir-v1.expected.jsonl")).unwrap();
        assert_eq!(sorted(&String::from_utf8_lossy(&out.stdout)), sorted(&expected));

        let groups = GroupsClient::new(cluster.addrs());
        let committed = groups.must_fetch_offsets("legacy-group").await;
        let p0 = committed.get(&("legacy".to_string(), 0)).expect("the group's commit");
        assert_eq!(p0.offset, 50, "the old group's committed offset");

        // The old log registered the broker as reading format 1; its heartbeats now say 2,
        // and with no other broker the cluster moves to Kafka's format.
        wait_for_format_2(&client).await;
        let end = client.must_list_offset("legacy", 1, latest()).await;
        let base = client.must_produce("legacy", 1, with_nulls("new"), Acks::All).await;
        assert_eq!(base, end, "new batches continue the old log");
        let all = client.fetch_all("legacy", 1, 0).await.unwrap();
        assert_eq!(as_expected(&all[..end as usize]), expected_records(1), "old records kept");
        let new = &all[end as usize..];
        assert_eq!(new.len(), 3);
        assert_eq!(new[1].value, None, "a null value is stored as null");
        assert_eq!(new[1].headers, [Header { key: "h".into(), value: None }]);
        assert_eq!(new[2].value.as_deref(), Some(&b"new-v2"[..]));
    })
    .await;
}

fn latest() -> rafka_proto::v1::offset_spec::Spec {
    rafka_proto::v1::offset_spec::Spec::Latest(true)
}

/// Rewrites broker `id`'s config file without `report-batch-format`: its next start plays
/// an upgraded broker.
fn upgrade_config(cluster: &Cluster, id: u64) {
    let path = cluster.dir().join(id.to_string()).join("broker.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> =
        text.lines().filter(|l| !l.trim_start().starts_with("report-batch-format")).collect();
    assert_ne!(kept.len(), text.lines().count(), "{} set report-batch-format", path.display());
    std::fs::write(&path, kept.join("\n")).unwrap();
}

/// A rolling upgrade from the old format: three brokers that report reading only format 1
/// (as brokers of the old version do) found a cluster at format 1. Batches are then stored
/// in the old format — a Kafka batch is converted down, one with a null value is refused
/// with UNSUPPORTED_FOR_MESSAGE_FORMAT — and served converted. Upgrading two brokers keeps
/// the cluster at 1 (one broker still reads only 1); upgrading the last lets brokers write
/// Kafka batches, nulls included, and everything written before still reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_format_waits_for_the_last_old_broker() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        brokers: 3,
        extra_toml: "report-batch-format = 1\n".into(),
        ..ClusterOptions::default()
    })
    .await;
    let limit = test_timeout(Duration::from_secs(240));
    bounded("the_batch_format_waits_for_the_last_old_broker", limit, async {
        let client = cluster.client();
        assert_eq!(cluster_format(&client).await, 1, "founded by format-1 brokers");
        client.must_create_topic("t", 1, 3).await;
        let plain = records::values_batch(&["a", "b"], records::now_ms());
        assert_eq!(client.must_produce("t", 0, plain, Acks::All).await, 0);
        let refused = client.produce("t", 0, with_nulls("old"), Acks::All).await.unwrap();
        assert_eq!(code_of(&refused), ErrorCode::UnsupportedForMessageFormat, "{refused:?}");

        for id in [1, 2] {
            upgrade_config(&cluster, id);
            cluster.must_restart(id, READY).await;
            poll("the upgraded broker's registration", READY, || async {
                let c = client.describe_cluster().await.unwrap();
                match c.brokers.iter().any(|b| b.broker_id == id && b.batch_format == 2) {
                    true => Ok(()),
                    false => Err(format!("brokers {:?}", c.brokers)),
                }
            })
            .await
            .unwrap();
            assert_eq!(cluster_format(&client).await, 1, "broker 3 still reads format 1 only");
            let refused = client.produce("t", 0, with_nulls("mid"), Acks::All).await.unwrap();
            assert_eq!(code_of(&refused), ErrorCode::UnsupportedForMessageFormat);
        }
        let kafka = records::batch(
            &[records::value_record("c", records::now_ms())],
            None,
            Compression::Snappy,
        );
        assert_eq!(client.must_produce("t", 0, kafka, Acks::All).await, 2, "converted down");

        upgrade_config(&cluster, 3);
        cluster.must_restart(3, READY).await;
        wait_for_format_2(&client).await;
        assert_eq!(client.must_produce("t", 0, with_nulls("new"), Acks::All).await, 3);
        let all = client.fetch_all("t", 0, 0).await.unwrap();
        let values: Vec<Option<&[u8]>> = all.iter().map(|r| r.value.as_deref()).collect();
        assert_eq!(
            values,
            [Some(&b"a"[..]), Some(b"b"), Some(b"c"), Some(b"new-v0"), None, Some(b"new-v2")]
        );
        // Every replica holds the same: entries of both formats, read from each broker's
        // own copy (followers may trail a moment).
        for id in [1, 2, 3] {
            let addr = cluster.broker(id).addr().to_string();
            let copy = poll("a follower's copy", READY, || {
                let client = &client;
                let addr = addr.clone();
                async move {
                    let req = rafka_proto::v1::FetchRequest {
                        topic: "t".into(),
                        partition: 0,
                        offset: 0,
                        max_bytes: 1 << 20,
                        allow_follower: true,
                        ..Default::default()
                    };
                    let resp = client.data_at(&addr)?.fetch(req).await?.into_inner();
                    anyhow::ensure!(resp.high_watermark == 6, "high watermark {resp:?}");
                    let mut got = Vec::new();
                    for b in resp.batches {
                        got.extend(records::decode_batch(b.base_offset, &b.batch)?);
                    }
                    anyhow::Ok(got)
                }
            })
            .await
            .unwrap();
            assert_eq!(copy, all, "broker {id}'s copy");
        }
    })
    .await;
}
