//! Fuzzing of the Kafka protocol over the wire against one real broker with topic
//! auto-creation off: no request, however malformed, may crash the broker, panic a handler,
//! get an answer that does not decode, create a topic through Metadata, or change data it
//! must not.
//!
//! The broker's own ApiVersions answer says what to fuzz: every advertised API at every
//! served version gets, each round and all at once on separate connections, a well-formed
//! request as a client would send it (naming only the `victim` topic and group, or topics
//! that must never come to exist), the same request mutated (bytes flipped, set to extreme
//! values, truncated, grown, array counts made huge), and random bytes. Any answer or a
//! closed connection is acceptable; a response must decode as that API's response.
//!
//! Scale with `RAFKA_FUZZ_ROUNDS` (default 12); the seed is printed and `RAFKA_TEST_SEED`
//! replays the generated requests (the broker's state still depends on timing).

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::StrBytes;
use rafka_proto::batch::Compression;
use rafka_proto::v1::Acks;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::groups::GroupsClient;
use rafka_tests::groups::groups_toml;
use rafka_tests::kafka::call;
use rafka_tests::records;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const KEEP: &str = "keep";
const VICTIM: &str = "victim";
const KEEP_GROUP: &str = "keep-group";
/// Topics Metadata requests ask for: with auto-creation off, none may come to exist.
const NEVER: [&str; 2] = ["never-a", "never-b"];
/// Bound on one request's answer (fuzzed fetches may long-poll up to it).
const ANSWER: Duration = Duration::from_secs(3);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

/// A request of `key` a client could send, naming only what fuzzing may touch.
fn seed_request(key: ApiKey, batch: &Bytes) -> Option<RequestKind> {
    use kafka_protocol::messages as m;
    let group = GroupId(s(VICTIM));
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
                m::produce_request::TopicProduceData::default()
                    .with_name(topic(VICTIM))
                    .with_partition_data(vec![
                        m::produce_request::PartitionProduceData::default()
                            .with_records(Some(batch.clone())),
                    ]),
            ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default().with_max_wait_ms(100).with_max_bytes(1 << 20).with_topics(
                vec![
                    m::fetch_request::FetchTopic::default()
                        .with_topic(topic(KEEP))
                        .with_partitions(vec![
                            m::fetch_request::FetchPartition::default()
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ],
            ),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                m::list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic(KEEP))
                    .with_partitions(vec![
                        m::list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                    ]),
            ]))
        }
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(
                NEVER
                    .iter()
                    .map(|n| {
                        m::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(topic(n)))
                    })
                    .collect(),
            )),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(group)
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    m::offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic(KEEP))
                        .with_partitions(vec![
                            m::offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_group_id(group))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(s(VICTIM))
                .with_coordinator_keys(vec![s(VICTIM)]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(group)
                .with_session_timeout_ms(6000)
                .with_rebalance_timeout_ms(1000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    m::join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range")),
                ]),
        ),
        ApiKey::Heartbeat => {
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group))
        }
        ApiKey::LeaveGroup => {
            RequestKind::LeaveGroup(LeaveGroupRequest::default().with_group_id(group))
        }
        ApiKey::SyncGroup => {
            RequestKind::SyncGroup(SyncGroupRequest::default().with_group_id(group))
        }
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group]))
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            m::create_topics_request::CreatableTopic::default()
                .with_name(topic("fuzz-new"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![topic(VICTIM)]).with_topics(vec![
                m::delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic(VICTIM))),
            ]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                m::describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(KEEP)),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                m::alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(VICTIM))
                    .with_configs(vec![
                        m::alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("60000"))),
                    ]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                m::incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(VICTIM))
                    .with_configs(vec![
                        m::incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.bytes"))
                            .with_value(Some(s("1000000"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                m::create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic(VICTIM))
                    .with_count(3),
            ]))
        }
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group)
                .with_member_id(s("fuzz-member"))
                .with_subscribed_topic_names(Some(vec![topic(VICTIM)]))
                .with_subscribed_topic_regex(Some(s("vic.*")))
                .with_topic_partitions(Some(vec![])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![group]),
        ),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            m::SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            m::SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"n,,n=fuzz,r=fyko+d2lbbFgONRv9qkxdawL")),
        ),
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            m::DescribeUserScramCredentialsRequest::default().with_users(None),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            m::AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![
                    m::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(s("fuzz"))
                        .with_mechanism(1)
                        .with_iterations(4096)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from_static(&[7; 32])),
                ])
                .with_deletions(vec![
                    m::alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(s("nobody"))
                        .with_mechanism(2),
                ]),
        ),
        ApiKey::CreateAcls => {
            RequestKind::CreateAcls(m::CreateAclsRequest::default().with_creations(vec![
                m::create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("fuzz"))
                    .with_resource_pattern_type(4)
                    .with_principal(s("User:fuzz"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ]))
        }
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            m::DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(2)
                .with_resource_name_filter(Some(s("fuzz")))
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => {
            RequestKind::DeleteAcls(m::DeleteAclsRequest::default().with_filters(vec![
                m::delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_pattern_type_filter(1)
                    .with_principal_filter(Some(s("User:fuzz")))
                    .with_operation(1)
                    .with_permission_type(1),
            ]))
        }
        _ => return None,
    })
}

/// A request frame: size, header of the version's header version, body.
fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).expect("header encodes");
    buf.extend_from_slice(body);
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// `body` with a few random changes.
fn mutate(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if b.is_empty() { 0 } else { rng.random_range(0..b.len()) };
        match rng.random_range(0..6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.random_range(0..8),
            1 if !b.is_empty() => b[at] = [0x00, 0x7f, 0x80, 0xff][rng.random_range(0..4)],
            2 => b.truncate(at),
            3 => {
                let extra: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                b.splice(at..at, extra);
            }
            // A huge (or negative) array count or length.
            4 if b.len() >= at + 4 => {
                let v = [i32::MAX, -2, 0x4000_0000, 0x7fff][rng.random_range(0..4)];
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => {
                if !b.is_empty() {
                    let end = rng.random_range(at..b.len()) + 1;
                    let chunk = b[at..end].to_vec();
                    b.splice(at..at, chunk);
                }
            }
        }
    }
    b
}

/// What became of one request: its answer's body (after the size), or nothing (closed or
/// timed out; acks=0 produces are never answered).
async fn send(addr: SocketAddr, frame: Vec<u8>) -> Option<Vec<u8>> {
    let mut sock = TcpStream::connect(addr).await.ok()?;
    sock.write_all(&frame).await.ok()?;
    tokio::time::timeout(ANSWER, async {
        let mut size = [0u8; 4];
        sock.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(size)).ok()?];
        sock.read_exact(&mut body).await.ok()?;
        Some(body)
    })
    .await
    .ok()
    .flatten()
}

/// Whether `answer` is a response to correlation id `cid` of `key`/`version` that decodes.
fn decodes(key: ApiKey, version: i16, cid: i32, answer: &[u8]) -> Result<(), String> {
    use kafka_protocol::protocol::Decodable;
    let mut b = Bytes::copy_from_slice(answer);
    // ApiVersions of an unserved version is answered as version 0 (KIP-511).
    let version =
        if key == ApiKey::ApiVersions && !(0..=4).contains(&version) { 0 } else { version };
    let h = ResponseHeader::decode(&mut b, key.response_header_version(version))
        .map_err(|e| e.to_string())?;
    if h.correlation_id != cid {
        return Err(format!("correlation id {} for {cid}", h.correlation_id));
    }
    ResponseKind::decode(key, &mut b, version).map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kafka_request_crashes_a_broker_or_changes_what_it_must_not() {
    let extra_toml = format!("auto-create-topics = false\n{}", groups_toml(2, 1, 10_000));
    let mut cluster =
        Cluster::start_with(ClusterOptions { brokers: 1, extra_toml, ..Default::default() }).await;
    let rounds = env_u64("RAFKA_FUZZ_ROUNDS", 12) as usize;
    let seed = env_u64("RAFKA_TEST_SEED", rand::random());
    bounded("no_kafka_request_crashes_a_broker", test_timeout(Duration::from_secs(300)), async {
        let started = Instant::now();
        let client = cluster.client();
        let groups = GroupsClient::new(cluster.addrs());
        let addr = cluster.broker(1).addr();
        client.must_create_topic(KEEP, 2, 1).await;
        client.must_create_topic(VICTIM, 2, 1).await;
        for p in 0..2 {
            for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
                let b =
                    records::batch(&[records::value_record("kept", records::now_ms())], None, c);
                client.must_produce(KEEP, p, b, Acks::All).await;
            }
        }
        let commits = (0..2).map(|p| rafka_tests::groups::offset(KEEP, p, 2, "m"));
        groups.must_commit(KEEP_GROUP, None, commits.collect()).await;
        let mut before = Vec::new();
        for p in 0..2 {
            before.push(client.fetch_batches(KEEP, p, 0).await.unwrap());
        }
        let offsets_before = groups.must_fetch_offsets(KEEP_GROUP).await;

        // What the broker says it serves.
        let versions: ApiVersionsResponse =
            call(addr, 3, &ApiVersionsRequest::default()).await.unwrap();
        let batch = records::values_batch(&["fuzz"], records::now_ms());
        let mut targets = Vec::new();
        for k in &versions.api_keys {
            let key = ApiKey::try_from(k.api_key).expect("a known API");
            let Some(request) = seed_request(key, &batch) else {
                panic!("no seed request for {key:?}")
            };
            // Produce is advertised from 0 but served from 3.
            let min = if key == ApiKey::Produce { 3 } else { k.min_version };
            for v in min..=k.max_version {
                let mut body = BytesMut::new();
                if request.encode(&mut body, v).is_ok() {
                    targets.push((key, v, body.freeze()));
                }
            }
        }
        assert!(targets.len() > 100, "{} (API, version) pairs", targets.len());
        eprintln!(
            "fuzz_kafka: {rounds} rounds of {} API versions, RAFKA_TEST_SEED={seed}",
            targets.len()
        );

        let mut rng = StdRng::seed_from_u64(seed);
        let mut answered = 0usize;
        let mut failures = Vec::new();
        let mut cid = 0i32;
        for round in 0..rounds {
            let mut calls = tokio::task::JoinSet::new();
            for (key, version, body) in &targets {
                let random: Vec<u8> = (0..rng.random_range(0..200)).map(|_| rng.random()).collect();
                for (what, b) in [
                    ("seed", body.to_vec()),
                    ("mutated", mutate(&mut rng, body)),
                    ("random", random),
                ] {
                    cid += 1;
                    let (key, version, id) = (*key, *version, cid);
                    let f = frame(key, version, id, &b);
                    calls.spawn(async move { (key, version, id, what, b, send(addr, f).await) });
                }
            }
            while let Some(done) = calls.join_next().await {
                let (key, version, id, what, body, answer) = done.expect("a call task panicked");
                if let Some(a) = answer {
                    answered += 1;
                    if let Err(e) = decodes(key, version, id, &a) {
                        failures.push(format!(
                            "{key:?} v{version} ({what} {body:02x?}): answer does not decode: {e}"
                        ));
                    }
                }
            }
            let broker = cluster.broker_mut(1);
            assert!(
                broker.is_running(),
                "seed {seed}: the broker died in round {round} ({:?}); log tail:\n{}",
                broker.last_exit(),
                broker.log_tail(60)
            );
        }
        eprintln!("fuzz_kafka: {answered} answers in {:?}", started.elapsed());
        assert!(
            failures.is_empty(),
            "seed {seed}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(answered > targets.len(), "most well-formed requests are answered: {answered}");

        let broker = cluster.broker_mut(1);
        assert!(broker.is_running(), "the broker died: {:?}", broker.last_exit());
        assert_eq!(broker.http_status("/healthz").await.unwrap(), 200, "/healthz");
        for (p, before) in before.iter().enumerate() {
            let after = client.fetch_batches(KEEP, p as u32, 0).await.unwrap();
            assert_eq!(&after[..before.len()], &before[..], "{KEEP}-{p} changed");
        }
        assert_eq!(groups.must_fetch_offsets(KEEP_GROUP).await, offsets_before);
        let topics = client.list_topics(true).await.unwrap();
        for t in &topics.topics {
            assert!(
                !NEVER.contains(&t.name.as_str()),
                "Metadata created {} with auto-creation off",
                t.name
            );
        }
        assert!(topics.topics.iter().any(|t| t.name == KEEP));
        let log = cluster.broker(1).log_tail(usize::MAX);
        let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
        assert!(panics.is_empty(), "seed {seed}: the broker panicked:\n{}", panics.join("\n"));
    })
    .await;
}
