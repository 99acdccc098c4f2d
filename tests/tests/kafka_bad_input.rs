//! Garbage on the Kafka port: a bad size, an unknown API, an unserved version, a truncated
//! request, a body claiming a 2^31-element array, random bytes — each closes its own
//! connection, while the broker keeps serving everyone else, stores nothing, and never
//! panics. An ApiVersions request of a version from the future is answered (as version 0,
//! with UNSUPPORTED_VERSION and the versions this broker knows).

use std::time::Duration;

use rafka_proto::v1::Acks;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::kafka::request;
use rafka_tests::kafka::round_trip;
use rafka_tests::kafka::send_until_closed;
use rafka_tests::records;
use rafka_tests::wait::test_timeout;

const CLOSE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_connection() {
    let cluster = Cluster::start(1).await;
    let limit = test_timeout(Duration::from_secs(120));
    bounded("garbage_closes_only_its_connection", limit, async {
        let client = cluster.client();
        let addr = cluster.broker(1).addr();
        client.must_create_topic("g", 1, 1).await;
        let b = records::values_batch(&["keep"], records::now_ms());
        assert_eq!(client.must_produce("g", 0, b, Acks::All).await, 0);

        let mut huge_array = 0x7fff_ffffi32.to_be_bytes().to_vec();
        huge_array.extend_from_slice(&[0, 1, b'a']);
        let mut produce_huge = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0x75, 0x30];
        produce_huge.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
        let mut truncated = request(3, 1, 7, &[0, 0, 0, 1, 0, 1, b'g']);
        truncated.truncate(truncated.len() - 3);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("negative size", (-5i32).to_be_bytes().to_vec()),
            ("size over the limit", (200i32 << 20).to_be_bytes().to_vec()),
            ("size below a header", vec![0, 0, 0, 3, 1, 2, 3]),
            ("unknown API key", request(9999, 0, 1, &[])),
            ("unserved API", request(23, 2, 1, &[])),
            ("unserved version", request(1, 3, 1, &[])),
            ("Produce below version 3", request(0, 2, 1, &[0, 1, 0, 0, 0, 0])),
            ("truncated request", truncated),
            ("Metadata claiming 2^31 topics", request(3, 1, 1, &huge_array)),
            ("Produce claiming 2^31 topics", request(0, 3, 1, &produce_huge)),
            ("undecodable body", request(3, 1, 1, &[0, 0, 0, 5, 0xff])),
            ("HTTP/1.1", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ];
        for (what, bytes) in &cases {
            let got = send_until_closed(addr, bytes, CLOSE)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert!(got.is_empty(), "{what}: the broker answered {got:?}");
        }

        // ApiVersions v99 (header v2: its tag byte first): answered as v0 (response header
        // v0: the correlation id only).
        let resp = round_trip(addr, &request(18, 99, 42, &[0])).await.unwrap();
        assert_eq!(&resp[..4], &42i32.to_be_bytes(), "correlation id");
        assert_eq!(&resp[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
        assert_eq!(&resp[6..10], &1i32.to_be_bytes(), "one entry: ApiVersions' own range");
        assert_eq!(&resp[10..16], &[0, 18, 0, 0, 0, 4], "ApiVersions 0..=4");
        // ApiVersions v0 lists every served API.
        let resp = round_trip(addr, &request(18, 0, 43, &[])).await.unwrap();
        assert_eq!(&resp[..6], &[0, 0, 0, 43, 0, 0]);
        let count = i32::from_be_bytes(resp[6..10].try_into().unwrap());
        let keys: Vec<i16> = (0..count as usize)
            .map(|i| i16::from_be_bytes(resp[10 + 6 * i..12 + 6 * i].try_into().unwrap()))
            .collect();
        for key in [0, 1, 2, 3, 18, 22] {
            assert!(keys.contains(&key), "API {key} advertised: {keys:?}");
        }

        // Nothing was stored, the broker serves on, nothing panicked.
        let all = client.fetch_all("g", 0, 0).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].value_bytes(), b"keep");
        assert_eq!(cluster.broker(1).http_status("/healthz").await.unwrap(), 200);
        let log = cluster.broker(1).log_tail(usize::MAX);
        let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
        assert!(panics.is_empty(), "{}", panics.join("\n"));
        assert!(log.contains("closing a Kafka connection"), "refusals are logged");
    })
    .await;
}
