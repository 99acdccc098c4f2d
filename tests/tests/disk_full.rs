//! A broker whose disk fills up: its data directory is a 64 MiB tmpfs mounted in a private
//! mount namespace (`unshare -m`, held open by a `sleep` so the broker can be restarted into
//! it with `nsenter`), and writes go to the filesystem at once (`RAFKA_TEST_LAZY_IO=off`:
//! the simulated power loss of the test build would hold them until fsync). A filler file
//! leaves a few MiB above `min-free-bytes`; producing then runs into the threshold, and the
//! broker refuses produce with the retriable DISK_FULL (gRPC) and KAFKA_STORAGE_ERROR
//! (Kafka), keeps serving reads, accepts produce again by itself once the filler is gone,
//! and after a restart holds exactly what it acknowledged.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest as KafkaProduce;
use kafka_protocol::messages::ProduceResponse as KafkaProduceResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::protocol::StrBytes;
use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::ProduceRequest;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::broker::broker_binary;
use rafka_tests::http::http_get;
use rafka_tests::kafka::call;
use rafka_tests::records;
use rafka_tests::response::HasError;
use rafka_tests::wait::poll;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "full";
const MIN_FREE: u64 = 8 << 20;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// A process holding a private mount namespace open; killed on drop.
struct MountNamespace(Child);

impl MountNamespace {
    fn new() -> MountNamespace {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        MountNamespace(child)
    }

    /// Runs `args` inside the namespace; its standard output.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["--target", &self.0.id().to_string(), "--mount", "--"])
            .args(args)
            .output()
            .expect("nsenter runs");
        assert!(
            out.status.success(),
            "{args:?} in the mount namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Free bytes of the filesystem holding `dir`, as the namespace sees it.
    fn available(&self, dir: &Path) -> u64 {
        let out = self.run(&["df", "--block-size=1", "--output=avail", &dir.to_string_lossy()]);
        out.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's figure")
    }
}

impl Drop for MountNamespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A broker "binary" that enters the namespace, mounts a 64 MiB tmpfs on its `--data-dir`
/// once, and runs the real broker there with the simulated power loss off.
fn wrapper(dir: &Path, ns: &MountNamespace) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
data=""
prev=""
for a in "$@"; do
    [ "$prev" = "--data-dir" ] && data="$a"
    prev="$a"
done
export RAFKA_TEST_LAZY_IO=off
exec nsenter --target {pid} --mount -- sh -c '
    mountpoint -q "$0" || mount -t tmpfs -o size=64m rafka-disk-full "$0" || exit 1
    exec "$@"' "$data" {broker} "$@"
"#,
        pid = ns.0.id(),
        broker = broker_binary().unwrap().display(),
    );
    let path = dir.join("rafka-broker-on-tmpfs");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The value of the unlabelled metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn kafka_produce(value: &[u8]) -> KafkaProduce {
    let batch = records::values_batch(&[value], records::now_ms());
    KafkaProduce::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(batch)),
            ]),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_produce_keeps_reads_and_recovers() {
    bounded("disk full", test_timeout(Duration::from_secs(300)), async {
        let scratch = tempfile::tempdir().unwrap();
        let ns = MountNamespace::new();
        let mut cluster = Cluster::start_with(ClusterOptions {
            brokers: 1,
            binary: Some(wrapper(scratch.path(), &ns)),
            extra_toml: format!("min-free-bytes = {MIN_FREE}\n[log]\nsegment-bytes = 4194304\n"),
            ..Default::default()
        })
        .await;
        let broker = &cluster.brokers()[0];
        let (addr, data_dir) = (broker.addr().to_string(), broker.data_dir().to_path_buf());
        assert!(
            ns.run(&["findmnt", "--noheadings", "--output", "FSTYPE", &data_dir.to_string_lossy()])
                .contains("tmpfs"),
            "the data directory is the tmpfs"
        );
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 1).await;

        // Fill the tmpfs until a few MiB above the threshold.
        let filler = data_dir.join("filler");
        let keep = MIN_FREE + (4 << 20);
        let fill = ns.available(&data_dir).saturating_sub(keep);
        ns.run(&["fallocate", "--length", &fill.to_string(), &filler.to_string_lossy()]);
        // The broker measures once a second; another process's writes count from then on.
        let http = broker.http_addr();
        poll("the broker sees the filler", Duration::from_secs(30), || async {
            let (_, text) = http_get(http, "/metrics", Duration::from_secs(5)).await?;
            let free = metric(&text, "rafka_broker_disk_free_bytes");
            match free {
                Some(f) if f <= (keep + (1 << 20)) as f64 => Ok(()),
                other => Err(anyhow::anyhow!("free {other:?}")),
            }
        })
        .await
        .unwrap();

        // Produce 256 KiB batches until the broker refuses one.
        let value = vec![b'x'; 256 << 10];
        let mut acked: Vec<i64> = Vec::new();
        let refusal = loop {
            let req = ProduceRequest {
                topic: TOPIC.into(),
                partition: 0,
                acks: Acks::All as i32,
                batch: records::values_batch(&[&value], records::now_ms()),
                ..Default::default()
            };
            let resp = client.produce_at(&addr, req).await.expect("an answer");
            let e = resp.error();
            match e.error_code() {
                ErrorCode::None => acked.push(resp.base_offset),
                ErrorCode::DiskFull => break e.message,
                other => panic!("produce refused with {other:?}: {}", e.message),
            }
            assert!(acked.len() < 100, "produced 25 MiB into 12 MiB and was never refused");
        };
        assert!(refusal.contains("min-free-bytes"), "{refusal}");
        assert!(!acked.is_empty(), "nothing was accepted before the disk filled");
        assert!(ns.available(&data_dir) > 0, "the filesystem itself never filled");

        // Kafka clients are told KAFKA_STORAGE_ERROR (retriable), with the reason.
        let sock = broker.addr();
        let resp: KafkaProduceResponse = call(sock, 9, &kafka_produce(&value)).await.unwrap();
        let part = &resp.responses[0].partition_responses[0];
        assert_eq!(part.error_code, KAFKA_STORAGE_ERROR);
        let message = part.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains("min-free-bytes"), "{message}");
        let (_, metrics) = http_get(http, "/metrics", Duration::from_secs(5)).await.unwrap();
        assert_eq!(metric(&metrics, "rafka_broker_disk_full"), Some(1.0), "disk_full gauge");

        // Reads go on: every acknowledged record is there.
        let read = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let offsets: Vec<i64> = read.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, acked, "reads while the disk is full");
        assert!(read.iter().all(|r| r.value_bytes() == value.as_slice()));

        // Space returns: produce is accepted again without a restart.
        ns.run(&["rm", &filler.to_string_lossy()]);
        let more = Bytes::from_static(b"after");
        let at = poll("produce accepted again", Duration::from_secs(30), || async {
            let req = ProduceRequest {
                topic: TOPIC.into(),
                partition: 0,
                acks: Acks::All as i32,
                batch: records::values_batch(&[&more], records::now_ms()),
                ..Default::default()
            };
            let resp = client.produce_at(&addr, req).await.map_err(|s| anyhow::anyhow!("{s}"))?;
            let e = resp.error();
            match e.error_code() {
                ErrorCode::None => Ok(resp.base_offset),
                c => Err(anyhow::anyhow!("{c:?}: {}", e.message)),
            }
        })
        .await
        .unwrap();
        assert_eq!(at, acked.last().unwrap() + 1, "nothing refused was stored");

        // A restart finds exactly what was acknowledged, undamaged.
        cluster.must_restart(1, Duration::from_secs(60)).await;
        let client = cluster.client();
        let read = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let offsets: Vec<i64> = read.iter().map(|r| r.offset).collect();
        let mut want = acked.clone();
        want.push(at);
        assert_eq!(offsets, want, "after a restart");
        assert_eq!(read.last().unwrap().value_bytes(), b"after");
    })
    .await;
}
