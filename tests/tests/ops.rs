//! Acceptance: operational details of one broker.
//!
//! - `json_logs`: `log-format = "json"` makes every log line a JSON object.
//! - `fetch_waits_for_min_bytes`: a long-poll fetch with `min_bytes` returns only once that
//!   much is committed (or `max_wait_ms` passes), not at the first batch.

use std::time::Duration;

use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::FetchRequest;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::records;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs() {
    let cluster = Cluster::start_with(ClusterOptions {
        brokers: 1,
        extra_toml: "log-format = \"json\"\n".into(),
        ..Default::default()
    })
    .await;
    bounded("json_logs", Duration::from_secs(60), async {
        cluster.client().must_create_topic("logged", 1, 1).await;
        let path = cluster.broker(1).log_path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        // The harness writes its own `=== rafka-tests: ...` lines into the same file.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("=== rafka-tests"))
            .collect();
        assert!(lines.len() > 3, "too few log lines in {}", path.display());
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_waits_for_min_bytes() {
    let cluster = Cluster::start(1).await;
    bounded("fetch_waits_for_min_bytes", Duration::from_secs(60), async {
        let client = cluster.client();
        client.must_create_topic("polled", 1, 1).await;
        let first = records::values_batch(&["one"], records::now_ms());
        let second = records::values_batch(&["two"], records::now_ms());
        let min_bytes = (first.len() + second.len()) as u32;
        client.must_produce("polled", 0, first, Acks::All).await;
        let fetching = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .fetch_with(FetchRequest {
                        topic: "polled".into(),
                        partition: 0,
                        offset: 0,
                        max_wait_ms: 20_000,
                        min_bytes,
                        ..Default::default()
                    })
                    .await
            })
        };
        // A deliberate quiet window: a fetch that ignored min_bytes would answer at once with
        // the first batch.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!fetching.is_finished(), "the fetch answered before min_bytes were committed");
        client.must_produce("polled", 0, second, Acks::All).await;
        let resp = fetching.await.unwrap().unwrap();
        assert!(resp.error.as_ref().is_none_or(|e| e.is_ok()), "{:?}", resp.error);
        assert_eq!(resp.batches.len(), 2, "the answer waited for min_bytes");
    })
    .await;
}
