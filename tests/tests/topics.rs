//! Acceptance: topic lifecycle, retention and streaming (observability and leader placement
//! are in `observability.rs`).
//!
//! - `retention_by_size_moves_log_start`: `retention.bytes` deletes whole old segments; what
//!   is left is readable unchanged, below it is `OFFSET_OUT_OF_RANGE`, and at least
//!   `retention.bytes` stay on disk.
//! - `retention_by_time`: segments whose records are older than `retention.ms` go; records
//!   with current timestamps all stay.
//! - `alter_topic_config_applies`: `AlterTopicConfig` changes the effective config (retention
//!   runs, `max.message.bytes` is enforced); invalid configs change nothing.
//! - `delete_topic_removes_data_on_every_broker`: `DeleteTopic` removes every replica's files,
//!   also on a broker that was down during the delete; the name can be reused from offset 0.
//! - `subscribe_streams_committed_batches_and_resumes`: `Subscribe` streams every batch in
//!   order, follows new writes, and resumes from the batch holding an offset.
//!
//! Data-dir layout these tests look at (black box, but documented by the broker):
//! `<data>/groups/<20-digit group id>/` per Raft group (`00000000000000000000` is the
//! controller), segment files `*.log` in it, and `<data>/partitions/<group>.json` checkpoints.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::AlterTopicConfigRequest;
use rafka_proto::v1::AlterTopicConfigResponse;
use rafka_proto::v1::DeleteTopicRequest;
use rafka_proto::v1::DeleteTopicResponse;
use rafka_proto::v1::DescribeTopicResponse;
use rafka_proto::v1::Error;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchResponse;
use rafka_proto::v1::MetadataResponse;
use rafka_proto::v1::SubscribeRequest;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::code_of;
use rafka_tests::client::is_retriable_status;
use rafka_tests::poll;
use rafka_tests::produced::Produced;
use rafka_tests::produced::value;
use rafka_tests::records;
use rafka_tests::records::decode_batch;
use rafka_tests::wait::test_timeout;
use tonic::Status;
use tonic::Streaming;
use tonic::transport::Channel;

/// Segment size of the retention tests: small, so a megabyte makes many segments.
const SEGMENT_BYTES: u64 = 65536;
/// Name of the controller group's directory under `groups/`.
const CONTROLLER_DIR: &str = "00000000000000000000";
/// Group ids of the `__consumer_offsets` partitions: the controller creates that topic at
/// bootstrap, before a cluster is ready and so before any topic of a test, and the harness
/// gives it two partitions (`LOOPBACK_TOML`).
const OFFSETS_GROUPS: u64 = 2;
/// Two hours, in milliseconds.
const TWO_HOURS_MS: i64 = 2 * 3600 * 1000;

fn small_segments() -> String {
    format!("[log]\nsegment-bytes = {SEGMENT_BYTES}\n")
}

async fn start(brokers: usize, extra_toml: String) -> Cluster {
    Cluster::start_with(ClusterOptions { brokers, extra_toml, ..Default::default() }).await
}

/// Names in `dir`, sorted (none if it does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Partition group directories (20-digit names other than the controller's) of a broker.
fn partition_group_dirs(data_dir: &Path) -> Vec<String> {
    names_in(&data_dir.join("groups"))
        .into_iter()
        .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()) && n != CONTROLLER_DIR)
        .filter(|n| n.parse::<u64>().is_ok_and(|g| g > OFFSETS_GROUPS))
        .collect()
}

/// Bytes of the segment files (`*.log`) in `dir`.
fn segment_file_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The one partition group directory of a single-partition, single-broker test.
fn only_partition_dir(data_dir: &Path) -> std::path::PathBuf {
    let dirs = partition_group_dirs(data_dir);
    assert_eq!(dirs.len(), 1, "partition group directories under {}", data_dir.display());
    data_dir.join("groups").join(&dirs[0])
}

/// A fetch at `offset` must be refused with `OFFSET_OUT_OF_RANGE`, naming the range it
/// judged against (Kafka's answer too): a log start at or past `start` (retention may have
/// moved on since) and beyond `offset`, and a high watermark at or past the log start.
async fn assert_out_of_range(client: &TestClient, topic: &str, offset: i64, start: i64) {
    let resp = client.fetch(topic, 0, offset).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        code_of(&resp),
        ErrorCode::OffsetOutOfRange,
        "fetch at {offset}, below the log start {start}: {:?} with {} batches",
        resp.error,
        resp.batches.len()
    );
    let (reported, hw) = (resp.log_start_offset, resp.high_watermark);
    assert!(reported >= start && reported > offset, "log start {reported} reported at {offset}");
    assert!(hw >= reported, "high watermark {hw} reported with log start {reported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_moves_log_start() {
    const TOPIC: &str = "sized";
    const RETENTION: u64 = 200_000;
    let cluster = start(1, small_segments()).await;
    bounded("retention_by_size_moves_log_start", test_timeout(Duration::from_secs(60)), async {
        let client = cluster.client();
        let retention = RETENTION.to_string();
        client.must_create_topic_with(TOPIC, 1, 1, &[("retention.bytes", &retention)]).await;
        // 256 batches of 4 records of 1000 bytes: about 1 MiB, 16 segments.
        let mut sent = Produced::default();
        sent.append(&client, TOPIC, 0, 256, (4, 1000), records::now_ms()).await;
        let latest = sent.end();

        let dir = only_partition_dir(cluster.broker(1).data_dir());
        // Retention deletes every old segment it may in one pass: until then the log keeps
        // more than a segment beyond the limit.
        let start = poll("retention by size to settle", Duration::from_secs(20), || async {
            let start = client.list_offsets(TOPIC, 0, Spec::Earliest(true)).await?.offset;
            let on_disk = segment_file_bytes(&dir);
            anyhow::ensure!(
                start > 0 && on_disk < RETENTION + SEGMENT_BYTES,
                "log start {start}, {on_disk} bytes of segments on disk"
            );
            Ok::<_, anyhow::Error>(start)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

        let on_disk = segment_file_bytes(&dir);
        eprintln!(
            "retention.bytes {RETENTION}: log start {start} of {latest}, {on_disk} bytes of \
             segments kept"
        );
        assert!(
            on_disk >= RETENTION,
            "only {on_disk} bytes of segments kept: retention must keep at least retention.bytes \
             ({RETENTION}), deleting whole segments only"
        );
        assert!(
            sent.batches.iter().any(|b| b.base == start),
            "log start {start} is not a batch boundary"
        );
        assert_out_of_range(&client, TOPIC, start - 1, start).await;
        assert_out_of_range(&client, TOPIC, 0, start).await;
        let batches = client.fetch_batches(TOPIC, 0, start).await.unwrap();
        assert_eq!(batches.first().map(|b| b.base_offset), Some(start), "first retained batch");
        let kept: usize = batches.iter().map(|b| b.batch.len()).sum();
        assert!(kept as u64 <= on_disk, "{kept} bytes of batches from {on_disk} bytes on disk");
        let got = client.fetch_all(TOPIC, 0, start).await.unwrap();
        sent.check_from(&got, start, "after retention by size");
        assert_eq!(
            client.must_list_offset(TOPIC, 0, Spec::Latest(true)).await,
            latest,
            "latest offset after retention"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time() {
    const TOPIC: &str = "timed";
    let cluster = start(1, small_segments()).await;
    bounded("retention_by_time", test_timeout(Duration::from_secs(60)), async {
        let client = cluster.client();
        client.must_create_topic_with(TOPIC, 1, 1, &[("retention.ms", "60000")]).await;
        let mut sent = Produced::default();
        let old = records::now_ms() - TWO_HOURS_MS;
        // About 200 KB two hours old (three or four segments), then current records.
        sent.append(&client, TOPIC, 0, 48, (4, 1000), old).await;
        let first_current = sent.end();
        sent.append(&client, TOPIC, 0, 4, (4, 1000), records::now_ms()).await;
        let latest = sent.end();

        // Settled when the old records left fit in one segment: the one holding the first
        // current record (sealed segments of old records only all go).
        let old_bytes_from = |start: i64| -> usize {
            sent.batches
                .iter()
                .filter(|b| b.base >= start && b.timestamp == old)
                .map(|b| b.bytes)
                .sum()
        };
        let start = poll("retention by time to settle", Duration::from_secs(20), || async {
            let start = client.list_offsets(TOPIC, 0, Spec::Earliest(true)).await?.offset;
            let old_left = old_bytes_from(start);
            anyhow::ensure!(
                start > 0 && (old_left as u64) < SEGMENT_BYTES,
                "log start {start}, {old_left} bytes of old batches left"
            );
            Ok::<_, anyhow::Error>(start)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

        eprintln!(
            "retention.ms 60000: log start {start}; old records 0..{first_current}, current \
             records {first_current}..{latest}"
        );
        assert!(
            start <= first_current,
            "log start {start} passed the first record with a current timestamp ({first_current})"
        );
        assert_out_of_range(&client, TOPIC, start - 1, start).await;
        let got = client.fetch_all(TOPIC, 0, start).await.unwrap();
        sent.check_from(&got, start, "after retention by time");
        assert_eq!(
            client.must_list_offset(TOPIC, 0, Spec::Latest(true)).await,
            latest,
            "latest offset after retention"
        );
        let recent = client
            .list_offsets(TOPIC, 0, Spec::Timestamp(records::now_ms() - 60_000))
            .await
            .unwrap();
        assert_eq!(
            (code_of(&recent), recent.offset),
            (ErrorCode::None, first_current),
            "offset of the first record of the last minute"
        );
    })
    .await;
}

/// Admin responses this file sends without a harness helper.
trait AdminAnswer {
    fn err(&self) -> Error;
}

impl AdminAnswer for DeleteTopicResponse {
    fn err(&self) -> Error {
        self.error.clone().unwrap_or_else(Error::none)
    }
}

impl AdminAnswer for AlterTopicConfigResponse {
    fn err(&self) -> Error {
        self.error.clone().unwrap_or_else(Error::none)
    }
}

/// Sends an admin request to the brokers in turn until one answers with success or a fatal
/// code (retriable codes and transport failures are retried for 30 s).
async fn admin<T, F, Fut>(cluster: &Cluster, what: &str, mut call: F) -> T
where
    T: AdminAnswer,
    F: FnMut(AdminClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let client = cluster.client();
    let addrs: Vec<String> = cluster
        .brokers()
        .iter()
        .filter(|b| b.pid().is_some())
        .map(|b| b.addr().to_string())
        .collect();
    let mut turn = 0;
    poll(what, Duration::from_secs(30), || {
        let addr = addrs[turn % addrs.len()].clone();
        turn += 1;
        let fut = client.admin_at(&addr).map(&mut call);
        async move {
            let resp = tokio::time::timeout(Duration::from_secs(10), fut?)
                .await
                .map_err(|_| anyhow::anyhow!("{addr}: no answer in 10 s"))?;
            match resp {
                Err(s) if is_retriable_status(&s) => anyhow::bail!("{addr}: {s}"),
                Err(s) => panic!("{addr} answered with gRPC status {s}"),
                Ok(r) => {
                    let r = r.into_inner();
                    let e = r.err();
                    anyhow::ensure!(
                        !e.error_code().is_retriable(),
                        "{addr}: {:?}: {}",
                        e.error_code(),
                        e.message
                    );
                    Ok(r)
                }
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

async fn alter_config(cluster: &Cluster, topic: &str, configs: &[(&str, &str)]) -> Error {
    let req = AlterTopicConfigRequest {
        name: topic.to_string(),
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let what = format!("alter the config of {topic} to {configs:?}");
    let resp = admin(cluster, &what, |mut c| {
        let req = req.clone();
        async move { c.alter_topic_config(req).await }
    })
    .await;
    resp.err()
}

async fn delete_topic(cluster: &Cluster, topic: &str) -> Error {
    let req = DeleteTopicRequest { name: topic.to_string() };
    let resp = admin(cluster, &format!("delete topic {topic}"), |mut c| {
        let req = req.clone();
        async move { c.delete_topic(req).await }
    })
    .await;
    resp.err()
}

/// A topic's effective configs, as DescribeTopic shows them.
async fn describe(client: &TestClient, topic: &str) -> DescribeTopicResponse {
    let d = client.describe_topic(topic).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(code_of(&d), ErrorCode::None, "describe {topic}: {:?}", d.error);
    d
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// What DescribeTopic says of a topic apart from live figures (HW, log start, in-sync).
fn identity(d: &DescribeTopicResponse) -> (String, u64, BTreeMap<String, String>, Vec<Vec<u64>>) {
    let replicas = d.partitions.iter().map(|p| p.replicas.clone()).collect();
    (d.name.clone(), d.topic_id, d.configs.clone().into_iter().collect(), replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_topic_config_applies() {
    const TOPIC: &str = "altered";
    let cluster = start(1, small_segments()).await;
    bounded("alter_topic_config_applies", test_timeout(Duration::from_secs(60)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 1).await;
        let defaults = configs(&[
            ("max.message.bytes", "1048576"),
            ("retention.bytes", "-1"),
            ("retention.ms", "604800000"),
        ]);
        let d = describe(&client, TOPIC).await;
        assert_eq!(d.configs.clone().into_iter().collect::<BTreeMap<_, _>>(), defaults);
        // 100 batches of 4 KB: about 400 KB in seven segments, none retention may delete.
        let mut sent = Produced::default();
        sent.append(&client, TOPIC, 0, 100, (4, 1000), records::now_ms()).await;
        assert_eq!(client.must_list_offset(TOPIC, 0, Spec::Earliest(true)).await, 0);

        let e = alter_config(&cluster, TOPIC, &[("retention.bytes", "100000")]).await;
        assert!(e.is_ok(), "alter retention.bytes: {:?}: {}", e.error_code(), e.message);
        let start = poll("the log start to move", Duration::from_secs(20), || async {
            let start = client.list_offsets(TOPIC, 0, Spec::Earliest(true)).await?.offset;
            anyhow::ensure!(start > 0, "log start {start}");
            Ok::<_, anyhow::Error>(start)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let got = client.fetch_all(TOPIC, 0, start).await.unwrap();
        sent.check_from(&got, start, "after retention.bytes was altered");
        let altered = describe(&client, TOPIC).await;
        let mut want = defaults.clone();
        want.insert("retention.bytes".into(), "100000".into());
        let shown: BTreeMap<_, _> = altered.configs.clone().into_iter().collect();
        assert_eq!(shown, want, "effective configs after the alter");

        for bad in [
            vec![("cleanup.policy", "compact")],
            vec![("retention.bytes", "lots")],
            vec![("retention.ms", "0")],
            vec![("max.message.bytes", "0")],
            // A valid key beside an invalid one: nothing of it may apply.
            vec![("retention.bytes", "50000"), ("segment.bytes", "1024")],
        ] {
            let e = alter_config(&cluster, TOPIC, &bad).await;
            assert_eq!(e.error_code(), ErrorCode::InvalidConfig, "alter to {bad:?}: {e:?}");
            let now = describe(&client, TOPIC).await;
            assert_eq!(identity(&now), identity(&altered), "describe after the refused {bad:?}");
        }
        let e = alter_config(&cluster, "no-such-topic", &[("retention.bytes", "100000")]).await;
        assert_eq!(e.error_code(), ErrorCode::UnknownTopic, "alter of a missing topic: {e:?}");

        // Overrides are replaced as a whole: retention.bytes returns to its default.
        let e = alter_config(&cluster, TOPIC, &[("max.message.bytes", "8192")]).await;
        assert!(e.is_ok(), "alter max.message.bytes: {:?}: {}", e.error_code(), e.message);
        let mut want = defaults.clone();
        want.insert("max.message.bytes".into(), "8192".into());
        let shown: BTreeMap<_, _> = describe(&client, TOPIC).await.configs.into_iter().collect();
        assert_eq!(shown, want, "effective configs after replacing the overrides");
        let ts = records::now_ms();
        let small = records::values_batch(&[vec![b's'; 4000]], ts);
        client.must_produce(TOPIC, 0, small, Acks::All).await;
        let large = records::values_batch(&[vec![b'l'; 10_000]], ts);
        let resp = client.produce(TOPIC, 0, large, Acks::All).await.unwrap();
        assert_eq!(
            code_of(&resp),
            ErrorCode::MessageTooLarge,
            "a 10 KB batch with max.message.bytes = 8192: {:?}",
            resp.error
        );
    })
    .await;
}

/// Waits until every broker in `ids` holds `groups` partition group directories and as many
/// checkpoints.
async fn wait_for_replica_files(cluster: &Cluster, ids: &[u64], groups: usize) {
    let what = format!("{groups} partition group directories and checkpoints on brokers {ids:?}");
    poll(&what, Duration::from_secs(30), || async {
        for &id in ids {
            let d = cluster.broker(id).data_dir();
            let (dirs, checkpoints) =
                (partition_group_dirs(d), names_in(&d.join("partitions")).len());
            anyhow::ensure!(
                dirs.len() == groups && checkpoints == groups,
                "broker {id}: group dirs {dirs:?}, {checkpoints} checkpoints"
            );
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Waits until every broker in `ids` holds no partition group of a user topic and no
/// checkpoint.
async fn wait_until_clean(cluster: &Cluster, ids: &[u64], timeout: Duration) {
    let what = format!("only the controller's data on brokers {ids:?}");
    poll(&what, timeout, || async {
        for &id in ids {
            let d = cluster.broker(id).data_dir();
            let (groups, checkpoints) = (partition_group_dirs(d), names_in(&d.join("partitions")));
            anyhow::ensure!(
                groups.is_empty() && checkpoints.is_empty(),
                "broker {id}: groups/ {groups:?}, partitions/ {checkpoints:?}"
            );
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Creates `topic` (3 partitions, 3 replicas, retention small enough that every replica
/// snapshots and so writes a checkpoint) and writes about 200 KB to each partition.
async fn create_and_fill(cluster: &Cluster, topic: &str) {
    let client = cluster.client();
    client.must_create_topic_with(topic, 3, 3, &[("retention.bytes", "100000")]).await;
    for p in 0..3 {
        Produced::default().append(&client, topic, p, 25, (4, 2000), records::now_ms()).await;
    }
}

/// The topic must be gone from every view a client has.
async fn assert_topic_gone(cluster: &Cluster, topic: &str) {
    let client = cluster.client();
    let md: MetadataResponse = client.metadata(&[topic]).await.unwrap();
    let t = md.topics.iter().find(|t| t.name == topic).expect("an entry per requested topic");
    assert_eq!(code_of(t), ErrorCode::UnknownTopic, "metadata of the deleted {topic}: {t:?}");
    let d = client.describe_topic(topic).await.unwrap();
    assert_eq!(code_of(&d), ErrorCode::UnknownTopic, "describe the deleted {topic}: {d:?}");
    let listed = client.list_topics(true).await.unwrap();
    assert!(!listed.topics.iter().any(|t| t.name == topic), "{topic} still listed");
    let batch = records::values_batch(&["late"], records::now_ms());
    let resp = client.produce(topic, 0, batch, Acks::All).await.unwrap();
    assert_eq!(code_of(&resp), ErrorCode::UnknownTopic, "produce to the deleted {topic}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topic_removes_data_on_every_broker() {
    const TOPIC: &str = "doomed";
    const TOPIC_2: &str = "doomed-while-down";
    let mut cluster = start(3, small_segments()).await;
    let limit = test_timeout(Duration::from_secs(90));
    bounded("delete_topic_removes_data_on_every_broker", limit, async {
        let all = cluster.ids();
        let client = cluster.client();
        create_and_fill(&cluster, TOPIC).await;
        let old_id = describe(&client, TOPIC).await.topic_id;
        wait_for_replica_files(&cluster, &all, 3).await;

        let e = delete_topic(&cluster, TOPIC).await;
        assert!(e.is_ok(), "delete {TOPIC}: {:?}: {}", e.error_code(), e.message);
        wait_until_clean(&cluster, &all, Duration::from_secs(30)).await;
        assert_topic_gone(&cluster, TOPIC).await;
        let again = delete_topic(&cluster, TOPIC).await;
        assert_eq!(again.error_code(), ErrorCode::UnknownTopic, "second delete: {again:?}");

        // Deleted while a broker is down: it deletes its copy when it is back.
        create_and_fill(&cluster, TOPIC_2).await;
        wait_for_replica_files(&cluster, &all, 3).await;
        let md = client.metadata(&[]).await.unwrap();
        let victim = *all.iter().rev().find(|&&id| Some(id) != md.controller_id).unwrap();
        let others: Vec<u64> = all.iter().copied().filter(|&id| id != victim).collect();
        cluster.must_kill(victim);
        let e = delete_topic(&cluster, TOPIC_2).await;
        assert!(e.is_ok(), "delete {TOPIC_2} with broker {victim} down: {e:?}");
        wait_until_clean(&cluster, &others, Duration::from_secs(30)).await;
        let kept = partition_group_dirs(cluster.broker(victim).data_dir());
        assert_eq!(kept.len(), 3, "the stopped broker {victim} still has its files: {kept:?}");
        cluster.must_restart(victim, Duration::from_secs(60)).await;
        wait_until_clean(&cluster, &all, Duration::from_secs(30)).await;
        assert_topic_gone(&cluster, TOPIC_2).await;

        // The name is free again and the new topic starts empty.
        let client = cluster.client();
        client.must_create_topic(TOPIC, 3, 3).await;
        assert_ne!(describe(&client, TOPIC).await.topic_id, old_id, "a new topic id");
        for p in 0..3 {
            let batch = records::values_batch(&[format!("new-{p}")], records::now_ms());
            let base = client.must_produce(TOPIC, p, batch, Acks::All).await;
            assert_eq!(base, 0, "first offset of {TOPIC}/{p} after re-creation");
            let got = client.fetch_all(TOPIC, p, 0).await.unwrap();
            let values: Vec<&[u8]> = got.iter().map(|r| r.value_bytes()).collect();
            assert_eq!(values, [format!("new-{p}").as_bytes()], "{TOPIC}/{p} after re-creation");
        }
    })
    .await;
}

/// The next message of a subscription (10 s at most).
async fn next_message(stream: &mut Streaming<FetchResponse>, what: &str) -> Option<FetchResponse> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap_or_else(|_| panic!("{what}: no message in 10 s"))
        .unwrap_or_else(|s| panic!("{what}: stream failed: {s}"))
}

/// Reads the stream until offset `end`, checking that batches follow each other from
/// `next` and hold the records produced at their offsets (values of `len` bytes).
async fn read_stream(stream: &mut Streaming<FetchResponse>, mut next: i64, end: i64, len: usize) {
    while next < end {
        let what = format!("subscription at offset {next} (reading until {end})");
        let msg = next_message(stream, &what).await.unwrap_or_else(|| panic!("{what}: ended"));
        assert_eq!(code_of(&msg), ErrorCode::None, "{what}: {:?}", msg.error);
        assert!(!msg.batches.is_empty(), "{what}: a message without batches");
        for b in &msg.batches {
            assert_eq!(b.base_offset, next, "{what}: batches must follow each other");
            for r in decode_batch(b.base_offset, &b.batch).unwrap() {
                assert!(r.offset < end, "{what}: offset {} was never produced", r.offset);
                assert!(
                    r.value_bytes() == value(r.offset, len),
                    "{what}: the value at {}",
                    r.offset
                );
                next = r.offset + 1;
            }
        }
    }
}

async fn subscribe(cluster: &Cluster, topic: &str, offset: i64) -> Streaming<FetchResponse> {
    let req = SubscribeRequest { topic: topic.to_string(), partition: 0, offset, max_bytes: 0 };
    let mut data = cluster.broker(1).data_client();
    tokio::time::timeout(Duration::from_secs(10), data.subscribe(req))
        .await
        .expect("Subscribe answered within 10 s")
        .unwrap_or_else(|s| panic!("subscribe to {topic} at {offset}: {s}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_committed_batches_and_resumes() {
    const TOPIC: &str = "stream";
    const PER_BATCH: usize = 3;
    const LEN: usize = 100;
    let cluster = start(1, String::new()).await;
    let limit = test_timeout(Duration::from_secs(60));
    bounded("subscribe_streams_committed_batches_and_resumes", limit, async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 1).await;
        let mut sent = Produced::default();
        sent.append(&client, TOPIC, 0, 100, (PER_BATCH, LEN), records::now_ms()).await;
        let first_end = sent.end();

        let mut stream = subscribe(&cluster, TOPIC, 0).await;
        read_stream(&mut stream, 0, first_end, LEN).await;

        // Written while the subscription waits: it follows.
        let writer = tokio::spawn({
            let client = client.clone();
            async move {
                sent.append(&client, TOPIC, 0, 20, (PER_BATCH, LEN), records::now_ms()).await;
                sent
            }
        });
        let end = first_end + 20 * PER_BATCH as i64;
        read_stream(&mut stream, first_end, end, LEN).await;
        let sent = writer.await.expect("the writer task");
        assert_eq!(sent.end(), end, "records produced");
        drop(stream);

        // Resume from the middle of a batch: the stream starts at the batch holding it.
        let middle = 50 * PER_BATCH as i64 + 1;
        let mut stream = subscribe(&cluster, TOPIC, middle).await;
        let first = next_message(&mut stream, "resumed subscription").await.expect("a message");
        assert_eq!(code_of(&first), ErrorCode::None, "resumed subscription: {:?}", first.error);
        let base = first.batches.first().map(|b| b.base_offset);
        assert_eq!(base, Some(middle - 1), "the first batch of a subscription from {middle}");
        let mut next = middle - 1;
        for b in &first.batches {
            assert_eq!(b.base_offset, next, "resumed subscription: batches follow each other");
            next += decode_batch(b.base_offset, &b.batch).unwrap().len() as i64;
        }
        read_stream(&mut stream, next, end, LEN).await;
        drop(stream);

        // Past the end: one error message, then the stream ends.
        let mut past = subscribe(&cluster, TOPIC, end + 10).await;
        let msg = next_message(&mut past, "subscription past the end").await.expect("a message");
        assert_eq!(code_of(&msg), ErrorCode::OffsetOutOfRange, "past the end: {:?}", msg.error);
        assert_eq!(msg.high_watermark, end, "the refusal names the high watermark");
        assert!(next_message(&mut past, "after the error").await.is_none(), "stream ended");
    })
    .await;
}
