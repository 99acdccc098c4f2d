//! Acceptance: a single broker started with no flags at all serves produce, fetch (from the
//! start, from the middle, by timestamp) and offset lookups.
//!
//! Uses the fixed default ports 127.0.0.1:9092 and :9644 (the point of the test); fails at
//! once with a clear message if they are taken. `RAFKA_TEST_RECORDS` (default 10,000, a
//! multiple of 100 is best) sets the number of records.

use std::time::Duration;

use bytes::Bytes;
use rafka_proto::batch::Compression;
use rafka_proto::batch::Header;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Broker;
use rafka_tests::FetchedRecord;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::records;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "t";
const BATCH: usize = 100;

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i:06}"))
}

/// Record i, stamped `base_ts + i`: every third has a key, every seventh a null value,
/// every tenth two headers (the second with a null value), so that all of them survive the
/// trip.
fn record(base_ts: i64, i: usize) -> NewRecord {
    NewRecord {
        key: i.is_multiple_of(3).then(|| Bytes::from(format!("key-{i}"))),
        value: (!i.is_multiple_of(7)).then(|| value(i)),
        timestamp: base_ts + i as i64,
        headers: if i.is_multiple_of(10) {
            vec![
                Header { key: "n".into(), value: Some(Bytes::from(i.to_string())) },
                Header { key: "null".into(), value: None },
            ]
        } else {
            vec![]
        },
    }
}

fn check_records(got: &[FetchedRecord], base_ts: i64, first: usize, total: usize) {
    assert_eq!(got.len(), total - first, "records fetched from offset {first}");
    for (k, r) in got.iter().enumerate() {
        let i = first + k;
        let want = record(base_ts, i);
        assert_eq!(r.offset, i as i64, "offset of record #{k} fetched from {first}");
        assert_eq!(r.value, want.value, "value at offset {i}");
        assert_eq!(r.key, want.key, "key at offset {i}");
        assert_eq!(r.timestamp, want.timestamp, "timestamp at offset {i}");
        assert_eq!(r.headers, want.headers, "headers at offset {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_with_no_flags() {
    let total = env_u64("RAFKA_TEST_RECORDS", 10_000) as usize;
    assert!(total >= 10, "RAFKA_TEST_RECORDS must be at least 10");
    // Recent timestamps (retention deletes old ones), ending now.
    let base_ts = records::now_ms() - total as i64;
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::start_no_flags(cwd.path()).await;

    bounded("single_node_with_no_flags", test_timeout(Duration::from_secs(120)), async {
        assert!(
            cwd.path().join("rafka-data").is_dir(),
            "no ./rafka-data in the broker's working directory"
        );
        assert_eq!(broker.http_status("/healthz").await.unwrap(), 200, "/healthz");
        let client = TestClient::new([broker.addr()]);
        client.must_create_topic(TOPIC, 1, 0).await;

        let compressions = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        let mut first = 0;
        while first < total {
            let end = (first + BATCH).min(total);
            let recs: Vec<NewRecord> = (first..end).map(|i| record(base_ts, i)).collect();
            let compression = compressions[(first / BATCH) % compressions.len()];
            let batch = records::batch(&recs, None, compression);
            let base = client.must_produce(TOPIC, 0, batch, Acks::All).await;
            assert_eq!(base, first as i64, "base offset of the batch of records {first}..{end}");
            first = end;
        }

        let all = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        check_records(&all, base_ts, 0, total);

        let middle = total / 2;
        let from_middle = client.fetch_all(TOPIC, 0, middle as i64).await.unwrap();
        check_records(&from_middle, base_ts, middle, total);

        let at = total * 7 / 10;
        let resp =
            client.list_offsets(TOPIC, 0, Spec::Timestamp(base_ts + at as i64)).await.unwrap();
        assert!(resp.error.as_ref().is_none_or(|e| e.code == 0), "list offsets by time: {resp:?}");
        assert_eq!(resp.offset, at as i64, "offset of the first record at timestamp of #{at}");
        assert_eq!(resp.timestamp, base_ts + at as i64, "timestamp of the record found");
        let from_time = client.fetch_all(TOPIC, 0, resp.offset).await.unwrap();
        check_records(&from_time, base_ts, at, total);

        // Past the last timestamp: the high watermark.
        let after =
            client.must_list_offset(TOPIC, 0, Spec::Timestamp(base_ts + total as i64)).await;
        assert_eq!(after, total as i64, "offset for a timestamp after every record");
        assert_eq!(client.must_list_offset(TOPIC, 0, Spec::Earliest(true)).await, 0, "earliest");
        assert_eq!(
            client.must_list_offset(TOPIC, 0, Spec::Latest(true)).await,
            total as i64,
            "latest"
        );

        let status = broker.terminate(Duration::from_secs(30)).await.unwrap();
        assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status:?}");
    })
    .await;
}
