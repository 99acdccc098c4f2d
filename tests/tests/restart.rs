//! Acceptance: restarts keep everything.
//!
//! - `full_cluster_restart_keeps_topics_and_data`: three brokers, two topics with data; all
//!   brokers stopped with SIGTERM (each must exit 0) and started again: topics, configs,
//!   offsets and every stored batch are identical, and writing continues at the old end.
//! - `a_crash_before_a_directory_fsync_loses_no_acknowledged_record`: a broker built with
//!   `failpoints` and `lazy-io` aborts right before a directory fsync (a segment roll); the
//!   restart undoes the file creations and renames that fsync would have made durable, as a
//!   power cut would, and every acknowledged record is still there.
//! - `recovery_after_kill_9`: one broker with `RAFKA_TEST_RECOVERY_BYTES` of data (default
//!   64 MiB) in many small segments (`RAFKA_TEST_SEGMENT_BYTES`, default 4 MiB) is killed
//!   with SIGKILL and restarted; the time until `/readyz` and until the last offset can be
//!   fetched is printed (no bound asserted: CI machines vary), and all data must be there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_proto::v1::FetchedBatch;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::code_of;
use rafka_tests::poll;
use rafka_tests::records;
use rafka_tests::records::decode_batch;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;

/// Everything a client can see of a topic.
#[derive(Debug, PartialEq)]
struct TopicState {
    topic_id: u64,
    partitions: u32,
    configs: BTreeMap<String, String>,
    /// Per partition: earliest offset, latest offset, stored batches.
    data: Vec<(i64, i64, Vec<FetchedBatch>)>,
}

async fn topic_state(client: &TestClient, name: &str) -> TopicState {
    let listing = client.list_topics(false).await.unwrap();
    let t = listing
        .topics
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"));
    let described = client.describe_topic(name).await.unwrap();
    let mut data = Vec::new();
    for p in 0..t.partitions {
        let earliest = client.must_list_offset(name, p, Spec::Earliest(true)).await;
        let latest = client.must_list_offset(name, p, Spec::Latest(true)).await;
        let batches = client.fetch_batches(name, p, earliest).await.unwrap();
        data.push((earliest, latest, batches));
    }
    TopicState {
        topic_id: t.topic_id,
        partitions: t.partitions,
        configs: described.configs.into_iter().collect(),
        data,
    }
}

fn keyed(n: usize, tag: &str) -> Vec<NewRecord> {
    let ts = records::now_ms();
    (0..n)
        .map(|i| NewRecord {
            key: Some(Bytes::from(format!("k{}", i % 7))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            timestamp: ts + i as i64,
            headers: vec![],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_restart_keeps_topics_and_data() {
    let mut cluster = Cluster::start(3).await;
    bounded(
        "full_cluster_restart_keeps_topics_and_data",
        test_timeout(Duration::from_secs(150)),
        async {
            let topics = [("alpha", 3u32), ("beta", 2u32)];
            let client = cluster.client();
            client.must_create_topic("alpha", 3, 3).await;
            client.must_create_topic_with("beta", 2, 0, &[("max.message.bytes", "524288")]).await;
            let compressions = [Compression::None, Compression::Lz4, Compression::Zstd];
            for (name, partitions) in topics {
                for p in 0..partitions {
                    for i in 0..10 {
                        let b = records::batch(
                            &keyed(50, &format!("{name}{p}-{i}")),
                            None,
                            compressions[i % 3],
                        );
                        client.must_produce(name, p, b, Acks::All).await;
                    }
                }
            }
            let mut before = Vec::new();
            for (name, _) in topics {
                let s = topic_state(&client, name).await;
                assert!(
                    s.data.iter().all(|(e, l, _)| (*e, *l) == (0, 500)),
                    "{name}: offsets {:?}",
                    s.data.iter().map(|(e, l, _)| (e, l)).collect::<Vec<_>>()
                );
                before.push(s);
            }

            for id in [3, 2, 1] {
                let status = cluster.must_terminate(id, Duration::from_secs(30)).await;
                assert_eq!(status.code(), Some(0), "broker {id} after SIGTERM: {status:?}");
            }
            cluster.must_start_stopped();
            cluster.must_wait_ready(Duration::from_secs(60)).await;

            let client = cluster.client();
            for ((name, partitions), want) in topics.into_iter().zip(&before) {
                client.wait_for_leaders(name, partitions, Duration::from_secs(60)).await.unwrap();
                let got = topic_state(&client, name).await;
                assert_eq!(got.topic_id, want.topic_id, "{name}: topic id");
                assert_eq!(got.partitions, want.partitions, "{name}: partitions");
                assert_eq!(got.configs, want.configs, "{name}: configs");
                for (p, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
                    assert_eq!((g.0, g.1), (w.0, w.1), "{name}/{p}: earliest and latest offsets");
                    assert_eq!(g.2.len(), w.2.len(), "{name}/{p}: number of batches");
                    assert!(g.2 == w.2, "{name}/{p}: stored batches differ after the restart");
                }
            }
            let b = records::batch(&keyed(5, "after"), None, Compression::None);
            assert_eq!(
                client.must_produce("alpha", 0, b, Acks::All).await,
                500,
                "writing continues at the end"
            );
        },
    )
    .await;
}

/// The number of files named `*.log` under `dir` (segment files, if the broker names them so).
fn count_segments(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                count_segments(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "log"))
            }
        })
        .sum()
}

/// What was written: per batch, its base offset, checksum and record count.
type Written = Vec<(i64, u32, i32)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_a_directory_fsync_loses_no_acknowledged_record() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        brokers: 1,
        extra_toml: "[log]\nsegment-bytes = 65536\n".into(),
        ..Default::default()
    })
    .await;
    bounded("crash before a directory fsync", test_timeout(Duration::from_secs(120)), async {
        let client = cluster.client();
        client.must_create_topic("dirsync", 1, 1).await;
        cluster.broker(1).arm_crash_point("before-dir-fsync", "1*return").await.unwrap();
        let quick = client.clone().with_timeout(Duration::from_secs(3));
        let mut acked = Vec::new();
        // 1 KiB records: the 64 KiB segment rolls after about 60 of them.
        for i in 0..2000 {
            let v = format!("{i:04}-{}", "x".repeat(1000));
            let batch = records::values_batch(&[v.as_str()], records::now_ms());
            match quick.produce("dirsync", 0, batch, Acks::All).await {
                Ok(r) if r.error.as_ref().is_none_or(|e| e.code == 0) => acked.push(v),
                _ => break,
            }
        }
        assert!(acked.len() < 2000, "the crash point was never reached");
        poll("the broker to abort", Duration::from_secs(10), || {
            let running = cluster.broker_mut(1).is_running();
            async move { if running { Err("running") } else { Ok(()) } }
        })
        .await
        .unwrap();
        cluster.must_restart(1, Duration::from_secs(60)).await;
        let log = std::fs::read_to_string(cluster.broker(1).log_path()).unwrap();
        assert!(log.contains("rolling back a namespace operation"), "nothing was rolled back");
        let got: Vec<String> = client
            .fetch_all("dirsync", 0, 0)
            .await
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(r.value_bytes()).into_owned())
            .collect();
        assert!(got.len() >= acked.len(), "{} of {} acknowledged records", got.len(), acked.len());
        assert_eq!(got[..acked.len()], acked[..], "acknowledged records changed");
        // The log goes on where it was.
        let batch = records::values_batch(&["after"], records::now_ms());
        assert_eq!(client.must_produce("dirsync", 0, batch, Acks::All).await, got.len() as i64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_kill_9() {
    const TOPIC: &str = "big";
    const RECORD: usize = 1024;
    const PER_BATCH: usize = 500;
    let total_bytes = env_u64("RAFKA_TEST_RECOVERY_BYTES", 64 << 20);
    let segment_bytes = env_u64("RAFKA_TEST_SEGMENT_BYTES", 4 << 20);
    let mut cluster = Cluster::start_with(ClusterOptions {
        brokers: 1,
        extra_toml: format!("[log]\nsegment-bytes = {segment_bytes}\n"),
        ..Default::default()
    })
    .await;
    bounded("recovery_after_kill_9", test_timeout(Duration::from_secs(180)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 1).await;

        let mut written: Written = Vec::new();
        let (mut bytes, mut next) = (0u64, 0i64);
        let started = Instant::now();
        let ts = records::now_ms();
        while bytes < total_bytes {
            let recs: Vec<NewRecord> = (0..PER_BATCH)
                .map(|k| {
                    let offset = next + k as i64;
                    let mut value = format!("record {offset:012} ").into_bytes();
                    value.resize(RECORD, b'a' + (offset % 26) as u8);
                    records::value_record(value, ts + offset / 1000)
                })
                .collect();
            let batch = records::batch(&recs, None, Compression::None);
            let crc = records::header(&batch).unwrap().crc;
            let base = client.must_produce(TOPIC, 0, batch.clone(), Acks::All).await;
            assert_eq!(base, next, "batches of one producer are written in order");
            written.push((base, crc, PER_BATCH as i32));
            bytes += batch.len() as u64;
            next += PER_BATCH as i64;
        }
        let hw = next;
        let start = client.must_list_offset(TOPIC, 0, Spec::Earliest(true)).await;
        assert_eq!(start, 0, "log start moved before the kill (retention deleted data?)");
        let data_dir = cluster.broker(1).data_dir().to_path_buf();
        eprintln!(
            "wrote {} MiB ({hw} records, {} batches) in {:?}; {} segment files under {}",
            bytes >> 20,
            written.len(),
            started.elapsed(),
            count_segments(&data_dir),
            data_dir.display()
        );

        cluster.must_kill(1);
        let killed = Instant::now();
        let broker = cluster.broker_mut(1);
        broker.restart().unwrap();
        broker.wait_ready(Duration::from_secs(120)).await.unwrap_or_else(|e| panic!("{e:#}"));
        let ready = killed.elapsed();
        let client = cluster.client();
        poll("a fetch of the last offset", Duration::from_secs(60), || async {
            let resp = client.fetch(TOPIC, 0, hw - 1).await?;
            let first = resp.batches.first();
            match (code_of(&resp), first) {
                (rafka_proto::v1::ErrorCode::None, Some(b)) if b.base_offset < hw => Ok(()),
                (code, _) => Err(anyhow::anyhow!(
                    "{code:?}, {} batches, hw {}",
                    resp.batches.len(),
                    resp.high_watermark
                )),
            }
        })
        .await
        .unwrap();
        let readable = killed.elapsed();
        eprintln!(
            "recovery after kill -9 with {} MiB in {} segment files: ready in {ready:?}, last \
             offset readable in {readable:?}",
            bytes >> 20,
            count_segments(&data_dir)
        );

        assert_eq!(
            client.must_list_offset(TOPIC, 0, Spec::Latest(true)).await,
            hw,
            "high watermark"
        );
        let mut i = 0;
        let mut last: Option<FetchedBatch> = None;
        client
            .scan_batches(TOPIC, 0, 0, |b| {
                let header = records::header(&b.batch)?;
                let got = (b.base_offset, header.crc, header.records_count);
                anyhow::ensure!(
                    written.get(i) == Some(&got),
                    "batch #{i}: {got:?}, wrote {:?}",
                    written.get(i)
                );
                i += 1;
                last = Some(b.clone());
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(i, written.len(), "batches after recovery");
        let last = last.expect("at least one batch");
        let recs = decode_batch(last.base_offset, &last.batch).unwrap();
        let tail = recs.last().expect("records");
        assert_eq!(tail.offset, hw - 1);
        assert!(
            tail.value_bytes().starts_with(format!("record {:012} ", hw - 1).as_bytes()),
            "last record's value"
        );
    })
    .await;
}
