//! Acceptance: bad input is refused with the right error code, never crashes a broker and
//! never changes stored data.
//!
//! One three-broker cluster takes, in order: oversized batches, corrupt batches, unknown
//! topics and partitions, invalid topic names, out-of-range offsets, garbage protobuf and
//! random bytes as raw gRPC request bodies. Afterwards every broker is alive and serving,
//! and the batches written before are byte for byte what they were. `RAFKA_TEST_FUZZ` sets
//! the number of random request bodies (default 200); the seed is printed, and
//! `RAFKA_TEST_SEED` replays one.

use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_proto::v1::CreateTopicRequest;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::ProduceRequest;
use rafka_proto::v1::ProduceResponse;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::code_of;
use rafka_tests::raw::raw_unary;
use rafka_tests::raw::raw_unary_on;
use rafka_tests::records;
use rafka_tests::records::value_record;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;
use rand::Rng;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::Code;

const GOOD: &str = "good";
const SMALL: &str = "small";
const PRODUCE: &str = "/rafka.v1.Data/Produce";
/// Methods that get random bodies (not CreateTopic: a body that happens to decode as a
/// valid request would create a topic, which is no failure).
const FUZZ_PATHS: [&str; 6] = [
    PRODUCE,
    "/rafka.v1.Data/Fetch",
    "/rafka.v1.Data/ListOffsets",
    "/rafka.v1.Admin/Metadata",
    "/rafka.v1.Admin/DescribeTopic",
    "/rafka.v1.Admin/ListTopics",
];

fn recs(n: usize, value_len: usize) -> Vec<NewRecord> {
    let ts = records::now_ms();
    (0..n).map(|i| value_record(vec![b'a' + (i % 26) as u8; value_len], ts + i as i64)).collect()
}

/// Produces `batch` to `topic`/`partition` (routed, retried) and returns the answer's code.
async fn produce_code(client: &TestClient, topic: &str, partition: u32, batch: Bytes) -> ErrorCode {
    let resp = client
        .produce(topic, partition, batch, Acks::All)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(code_of(&resp) != ErrorCode::None || resp.base_offset >= 0, "{resp:?}");
    code_of(&resp)
}

async fn fetch_code(client: &TestClient, topic: &str, partition: u32, offset: i64) -> ErrorCode {
    code_of(&client.fetch(topic, partition, offset).await.unwrap_or_else(|e| panic!("{e:#}")))
}

async fn create_code(client: &TestClient, name: &str) -> ErrorCode {
    let req = CreateTopicRequest { name: name.into(), partitions: 1, ..Default::default() };
    code_of(&client.create_topic(req).await.unwrap_or_else(|e| panic!("{e:#}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let mut cluster = Cluster::start(3).await;
    bounded(
        "bad_input_is_refused_and_changes_nothing",
        test_timeout(Duration::from_secs(150)),
        async {
            let client = cluster.client();
            client.must_create_topic(GOOD, 1, 0).await;
            client.must_create_topic_with(SMALL, 1, 0, &[("max.message.bytes", "1024")]).await;
            for (i, c) in
                [Compression::None, Compression::Lz4, Compression::Zstd].into_iter().enumerate()
            {
                let b = records::batch(&recs(20 + i, 30), None, c);
                client.must_produce(GOOD, 0, b, Acks::All).await;
            }
            let before = client.fetch_batches(GOOD, 0, 0).await.unwrap();
            let hw_before = client.must_list_offset(GOOD, 0, Spec::Latest(true)).await;
            assert_eq!(hw_before, 20 + 21 + 22);

            // Size limit: the topic's max.message.bytes, not a global one.
            let small_ok = records::batch(&recs(2, 100), None, Compression::None);
            assert!(small_ok.len() < 1024);
            assert_eq!(client.must_produce(SMALL, 0, small_ok, Acks::All).await, 0);
            let too_big = records::batch(&recs(20, 100), None, Compression::None);
            assert!(too_big.len() > 1024);
            assert_eq!(produce_code(&client, SMALL, 0, too_big).await, ErrorCode::MessageTooLarge);
            // 8 MiB: above the topic default (1 MiB) and tonic's default 4 MiB message limit;
            // either answer is a refusal, and the broker must survive it.
            let huge = records::batch(&recs(8, 1 << 20), None, Compression::None);
            let req = ProduceRequest {
                topic: GOOD.into(),
                partition: 0,
                batch: huge,
                ..Default::default()
            };
            for b in cluster.brokers() {
                match client.produce_at(&b.addr().to_string(), req.clone()).await {
                    Ok(r) => assert!(
                        matches!(code_of(&r), ErrorCode::MessageTooLarge | ErrorCode::NotLeader),
                        "8 MiB batch at broker {}: {r:?}",
                        b.id()
                    ),
                    Err(s) => assert_eq!(s.code(), Code::ResourceExhausted, "8 MiB batch: {s}"),
                }
            }

            // Corruption: a wrong CRC, a flipped record byte, bytes that are no RecordBatch.
            let mut b = records::batch(&recs(5, 10), None, Compression::None).to_vec();
            b[20] ^= 1; // the CRC's last byte
            let bad_crc: Bytes = b.into();
            assert_eq!(
                produce_code(&client, GOOD, 0, bad_crc).await,
                ErrorCode::InvalidRecord,
                "bad crc"
            );
            let mut flipped = records::batch(&recs(5, 10), None, Compression::Lz4).to_vec();
            let last = flipped.len() - 1;
            flipped[last] ^= 0x40;
            assert_eq!(
                produce_code(&client, GOOD, 0, flipped.into()).await,
                ErrorCode::InvalidRecord,
                "flip"
            );
            let garbage = Bytes::from_static(b"\xff\xff\xff\xff this is not a record batch");
            assert_eq!(
                produce_code(&client, GOOD, 0, garbage).await,
                ErrorCode::InvalidRecord,
                "garbage"
            );
            // An idempotent producer id without epoch and sequence, with a correct CRC.
            let mut lying = records::batch(&recs(5, 10), None, Compression::None).to_vec();
            lying[43..51].copy_from_slice(&42i64.to_be_bytes());
            let crc = crc32c::crc32c(&lying[21..]);
            lying[17..21].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(
                produce_code(&client, GOOD, 0, lying.into()).await,
                ErrorCode::InvalidRecord,
                "producer"
            );
            // Kafka's older message formats (magic 0 and 1) are not stored.
            let mut old_magic = records::batch(&recs(5, 10), None, Compression::None).to_vec();
            old_magic[16] = 1;
            assert_eq!(
                produce_code(&client, GOOD, 0, old_magic.into()).await,
                ErrorCode::UnsupportedVersion,
                "magic 1"
            );
            // rafka's own format before Kafka's: a corrupt one is refused like any batch.
            let legacy = rafka_proto::legacy::build(
                &[rafka_proto::legacy::NewRecord { value: "v".into(), ..Default::default() }],
                None,
                rafka_proto::v1::Compression::None,
            );
            let mut bad_legacy = legacy.clone();
            bad_legacy.crc ^= 1;
            assert_eq!(
                produce_code(&client, GOOD, 0, bad_legacy.encode_to_vec().into()).await,
                ErrorCode::InvalidRecord,
                "legacy batch with a bad crc"
            );

            // Unknown topics and partitions.
            let ok_batch = records::batch(&recs(1, 1), None, Compression::None);
            assert_eq!(
                produce_code(&client, "nope", 0, ok_batch.clone()).await,
                ErrorCode::UnknownTopic
            );
            assert_eq!(fetch_code(&client, "nope", 0, 0).await, ErrorCode::UnknownTopic);
            let resp = client.list_offsets("nope", 0, Spec::Latest(true)).await.unwrap();
            assert_eq!(code_of(&resp), ErrorCode::UnknownTopic, "list offsets: {resp:?}");
            for p in [1, 7, u32::MAX] {
                assert_eq!(
                    produce_code(&client, GOOD, p, ok_batch.clone()).await,
                    ErrorCode::UnknownPartition,
                    "produce p{p}"
                );
                assert_eq!(
                    fetch_code(&client, GOOD, p, 0).await,
                    ErrorCode::UnknownPartition,
                    "fetch p{p}"
                );
            }

            // Topic names.
            let long = "a".repeat(250);
            for name in ["", "a/b", long.as_str(), "__x", "a b", "tópico"] {
                assert_eq!(
                    create_code(&client, name).await,
                    ErrorCode::InvalidTopic,
                    "create {name:?}"
                );
            }
            assert_eq!(
                create_code(&client, &"b".repeat(249)).await,
                ErrorCode::None,
                "249 chars is valid"
            );
            assert_eq!(create_code(&client, GOOD).await, ErrorCode::TopicAlreadyExists);

            // Partition counts only grow, within the limit; internal topics are fixed.
            for (name, count, want) in [
                (GOOD, 1, ErrorCode::InvalidPartitions),
                (GOOD, 0, ErrorCode::InvalidPartitions),
                (GOOD, u32::MAX, ErrorCode::InvalidPartitions),
                ("missing", 2, ErrorCode::UnknownTopic),
                ("__consumer_offsets", 99, ErrorCode::InvalidTopic),
                ("a/b", 2, ErrorCode::InvalidTopic),
            ] {
                let resp = client.create_partitions(name, count).await.unwrap();
                assert_eq!(code_of(&resp), want, "create partitions {name:?} {count}: {resp:?}");
            }
            let described = client.describe_topic(GOOD).await.unwrap();
            assert_eq!(described.partitions.len(), 1, "refused requests changed {GOOD}");

            // Offsets: below the log start or above the high watermark. At the high watermark
            // a fetch is no error: it long-polls and returns nothing.
            for offset in [-1, i64::MIN, hw_before + 1, i64::MAX] {
                assert_eq!(
                    fetch_code(&client, GOOD, 0, offset).await,
                    ErrorCode::OffsetOutOfRange,
                    "fetch at {offset}"
                );
            }
            let started = Instant::now();
            let req = FetchRequest {
                topic: GOOD.into(),
                partition: 0,
                offset: hw_before,
                max_wait_ms: 300,
                ..Default::default()
            };
            let at_hw = client.fetch_with(req).await.unwrap();
            assert_eq!(code_of(&at_hw), ErrorCode::None, "fetch at the high watermark: {at_hw:?}");
            assert!(at_hw.batches.is_empty(), "fetch at the high watermark returned batches");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "long poll of 300 ms took {:?}",
                started.elapsed()
            );

            // Raw gRPC bodies no client would send. A body that is not protobuf is a status;
            // an empty request (every field default) decodes and must be refused by code.
            let invalid: [&[u8]; 3] =
                [b"\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x22\x7f", b"\xff"];
            for b in cluster.brokers() {
                for path in [
                    "/rafka.v1.Data/Produce",
                    "/rafka.v1.Data/Fetch",
                    "/rafka.v1.Admin/CreateTopic",
                ] {
                    for body in invalid {
                        let r = raw_unary(
                            b.addr(),
                            path,
                            Bytes::from_static(body),
                            Duration::from_secs(10),
                        )
                        .await;
                        let s = r.expect_err(&format!(
                            "{path} with body {body:?} at broker {} was answered",
                            b.id()
                        ));
                        assert!(
                            matches!(s.code(), Code::InvalidArgument | Code::Internal),
                            "{path} with body {body:?}: {s}"
                        );
                    }
                }
                let r = raw_unary(
                    b.addr(),
                    "/rafka.v1.Data/Produce",
                    Bytes::new(),
                    Duration::from_secs(10),
                )
                .await;
                if let Ok(body) = r {
                    let resp = ProduceResponse::decode(body).expect("a ProduceResponse");
                    assert_ne!(
                        code_of(&resp),
                        ErrorCode::None,
                        "an empty produce request succeeded"
                    );
                }
            }
            let seed = env_u64("RAFKA_TEST_SEED", rand::random());
            let count = env_u64("RAFKA_TEST_FUZZ", 200);
            eprintln!("fuzzing {count} request bodies, RAFKA_TEST_SEED={seed}");
            let mut rng = StdRng::seed_from_u64(seed);
            let channels: Vec<_> = cluster.brokers().iter().map(|b| b.channel()).collect();
            for i in 0..count {
                let mut body = vec![0u8; rng.random_range(1..512)];
                rng.fill_bytes(&mut body);
                let channel = channels[i as usize % channels.len()].clone();
                let path = FUZZ_PATHS[rng.random_range(0..FUZZ_PATHS.len())];
                let timeout = Duration::from_secs(10);
                let r = raw_unary_on(channel, path, body.clone().into(), timeout).await;
                match r {
                    Err(s) => assert_ne!(
                        s.code(),
                        Code::DeadlineExceeded,
                        "seed {seed}, {path} body #{i} {body:?}: {s}"
                    ),
                    Ok(answer) if path == PRODUCE => {
                        let resp = ProduceResponse::decode(answer).expect("a ProduceResponse");
                        assert_ne!(
                            code_of(&resp),
                            ErrorCode::None,
                            "seed {seed}: random body #{i} {body:?} was written"
                        );
                    }
                    Ok(_) => {}
                }
            }

            // Everyone is still up and serving, and nothing stored changed.
            for b in cluster.brokers_mut() {
                assert!(b.is_running(), "broker {} died: {:?}", b.id(), b.last_exit());
                assert_eq!(
                    b.http_status("/healthz").await.unwrap(),
                    200,
                    "broker {} /healthz",
                    b.id()
                );
            }
            let after = client.fetch_batches(GOOD, 0, 0).await.unwrap();
            assert_eq!(after, before, "stored batches changed");
            let b = records::batch(&recs(3, 3), None, Compression::None);
            assert_eq!(
                client.must_produce(GOOD, 0, b.clone(), Acks::All).await,
                hw_before,
                "next offset"
            );
            let tail = client.fetch_batches(GOOD, 0, hw_before).await.unwrap();
            assert_eq!(tail.len(), 1);
            assert_eq!(tail[0].base_offset, hw_before, "the new batch's offset");
            assert_eq!(
                records::without_epoch(&tail[0].batch),
                records::at_offset(&b, hw_before),
                "the new batch, as sent"
            );
            let small = client.fetch_all(SMALL, 0, 0).await.unwrap();
            assert_eq!(small.len(), 2, "the small topic holds only its one accepted batch");
        },
    )
    .await;
}
