//! Request strategies of the RPC fuzzer: for every unary RPC of `Data`, `Admin` and
//! `Groups`, well-formed but adversarial requests (known and weird names, extreme numbers,
//! oversized fields), plus raw protobuf-like bodies.

use super::*;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Mostly small numbers, where validation branches are, and the extremes.
pub(super) fn u32_field() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        4 => 0u32..4,
        1 => Just(u32::MAX),
        1 => Just(1u32 << 31),
        2 => any::<u32>(),
    ]
}

pub(super) fn i32_field() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        4 => -2i32..4,
        1 => Just(i32::MIN),
        1 => Just(i32::MAX),
        2 => any::<i32>(),
    ]
}

pub(super) fn i64_field() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        4 => -2i64..4,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(i64::MAX - 1),
        2 => any::<i64>(),
    ]
}

/// A partition number: mostly one the topics have (two each), so the request gets past
/// routing.
pub(super) fn partition() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..2, 1 => u32_field()]
}

/// An offset: mostly within the data written, else anything.
pub(super) fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![2 => 0i64..20, 1 => i64_field()]
}

/// A member epoch: mostly join (0) or no membership (-1), else anything.
pub(super) fn member_epoch() -> impl Strategy<Value = i32> {
    prop_oneof![2 => Just(0), 1 => Just(-1), 1 => 1i32..4, 2 => i32_field()]
}

/// Offset metadata: mostly short, else weird (4097 bytes is one over the limit).
pub(super) fn metadata() -> impl Strategy<Value = String> {
    prop_oneof![2 => "[a-z]{0,8}", 1 => weird_string()]
}

/// A member id: mostly empty or plausible, else weird.
pub(super) fn member_id() -> impl Strategy<Value = String> {
    prop_oneof![2 => Just(String::new()), 1 => "m-[a-c]", 1 => weird_string()]
}

/// Strings no well-behaved client sends: empty, control characters and NUL, any unicode,
/// at and beyond length limits (249 topic name, 255 ids, 4096 metadata), one of 1 MiB.
pub(super) fn weird_string() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{1,40}",
        "[\\x00-\\x1f\\x7f]{1,8}",
        "[a-z]{0,3}\\x00[a-z]{0,3}",
        "[a-z.]{0,3}(\\.\\.|/|\\\\| )[a-z.]{0,3}",
        prop::sample::select(vec![249usize, 250, 255, 256, 4096, 4097, 1 << 20])
            .prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// A topic name for any RPC: known ones, valid random ones, weird ones. `keep` adds
/// [`KEEP`], which destructive RPCs never get.
pub(super) fn topic_name(keep: bool) -> BoxedStrategy<String> {
    prop_oneof![
        // KEEP always exists: it is where produced batches get past routing to validation.
        if keep { 4 } else { 0 } => Just(KEEP.to_string()),
        6 => prop::sample::select(vec![VICTIM, "fz-a", "fz-b"]).prop_map(String::from),
        2 => prop::sample::select(vec![OFFSETS_TOPIC, "nope", "__x", ".", ".."])
            .prop_map(String::from),
        1 => "[a-zA-Z0-9._-]{1,12}",
        2 => weird_string(),
    ]
    .boxed()
}

/// Names CreateTopic and DeleteTopic both use, so topics come and go. Few, so that the
/// fuzzing creates a bounded number of Raft groups.
pub(super) fn creatable_name() -> BoxedStrategy<String> {
    let names = vec![VICTIM, KEEP, "fz-a", "fz-b", "fz-c"];
    prop_oneof![
        4 => prop::sample::select(names).prop_map(String::from),
        1 => topic_name(false),
    ]
    .boxed()
}

pub(super) fn group_id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec!["g-a", "g-b", "g-c"]).prop_map(String::from),
        1 => "[a-zA-Z0-9._-]{1,20}",
        2 => weird_string(),
    ]
    .boxed()
}

pub(super) fn configs() -> impl Strategy<Value = std::collections::HashMap<String, String>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec!["retention.ms", "retention.bytes", "max.message.bytes"])
            .prop_map(String::from),
        1 => weird_string(),
    ];
    let value = prop_oneof![
        3 => i64_field().prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec!["-1", "0", "1", " 7 ", "1e9", "99999999999999999999999"])
            .prop_map(String::from),
        1 => weird_string(),
    ];
    // Mostly none, so that the other fields of a create get looked at.
    prop_oneof![
        2 => Just(std::collections::HashMap::new()),
        1 => prop::collection::hash_map(key, value, 1..4),
    ]
}

pub(super) fn topic_partitions() -> impl Strategy<Value = v1::TopicPartitions> {
    (topic_name(true), prop::collection::vec(partition(), 0..5))
        .prop_map(|(topic, partitions)| v1::TopicPartitions { topic, partitions })
}

/// Records with timestamps near an arbitrary base: [`rafka_proto::batch::build`] needs the
/// spread of one batch to fit an i64.
pub(super) fn new_records() -> impl Strategy<Value = Vec<NewRecord>> {
    let record = (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        prop::collection::vec(any::<u8>(), 0..64),
        0i64..1000,
    );
    (i64_field(), prop::collection::vec(record, 1..6)).prop_map(|(base, recs)| {
        recs.into_iter()
            .map(|(key, value, delta)| NewRecord {
                key: key.map(Bytes::from),
                value: Some(value.into()),
                timestamp: base.saturating_add(delta),
                headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"v")) }],
            })
            .collect()
    })
}

pub(super) fn compression() -> impl Strategy<Value = Compression> {
    prop::sample::select(vec![
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ])
}

/// Sets a Kafka batch's CRC from its content.
fn reseal(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// What a produce request carries: valid Kafka batches (some idempotent with made-up
/// producer fields), rafka's older batches, corrupt ones, corrupt ones re-sealed with a
/// correct checksum, lying headers, random bytes, nothing, and 2 MiB (over the default
/// max.message.bytes).
pub(super) fn batch_bytes() -> BoxedStrategy<Bytes> {
    let built = || (new_records(), compression());
    prop_oneof![
        3 => built().prop_map(|(r, c)| records::batch(&r, None, c)),
        1 => (built(), (i64_field(), i32_field(), i32_field())).prop_map(
            |((r, c), (id, epoch, seq))| {
                let id = id.max(0);
                let epoch = (epoch.max(0) % i32::from(i16::MAX)) as i16;
                rafka_proto::batch::build(&r, Some((id, epoch, seq.max(0))), c)
            }
        ),
        1 => built().prop_map(|(r, _)| {
            let old: Vec<legacy::NewRecord> = r
                .into_iter()
                .map(|r| legacy::NewRecord {
                    key: r.key,
                    value: r.value.unwrap_or_default(),
                    timestamp: r.timestamp,
                    headers: Vec::new(),
                })
                .collect();
            legacy::build(&old, None, v1::Compression::Zstd).encode_to_vec().into()
        }),
        2 => (built(), any::<usize>(), 1..=u8::MAX, any::<bool>()).prop_map(
            |((r, c), at, mask, resealed)| {
                let mut b = records::batch(&r, None, c).to_vec();
                let i = 61 + at % (b.len() - 61);
                b[i] ^= mask;
                if resealed {
                    reseal(&mut b);
                }
                b.into()
            }
        ),
        2 => (built(), i32_field(), 0i16..8, -3i64..3).prop_map(|((r, c), count, comp, shift)| {
            let mut b = records::batch(&r, None, c).to_vec();
            b[57..61].copy_from_slice(&count.to_be_bytes());
            b[21..23].copy_from_slice(&comp.to_be_bytes());
            let max = i64::from_be_bytes(b[35..43].try_into().unwrap()).saturating_add(shift);
            b[35..43].copy_from_slice(&max.to_be_bytes());
            reseal(&mut b);
            b.into()
        }),
        2 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(Bytes::from),
        1 => Just(Bytes::new()),
        1 => Just(Bytes::from(vec![0x55u8; 2 << 20])),
    ]
    .boxed()
}

/// Bytes shaped like protobuf: fields with random numbers and wire types (invalid ones
/// included), varints up to 10 bytes, length-delimited values that are random or nested
/// fields, and lengths that lie.
pub(super) fn protobuf_like() -> impl Strategy<Value = Bytes> {
    // Mostly the field numbers and wire types rafka's messages use (varints and
    // length-delimited), and text-like payloads (string fields must be UTF-8), so that many
    // bodies decode and reach the handlers.
    let number = prop_oneof![4 => 1u64..9, 1 => 9u64..20];
    let wire = prop_oneof![4 => Just(0u64), 4 => Just(2u64), 2 => 0u64..8];
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        "[a-z0-9._-]{0,12}".prop_map(String::into_bytes),
    ];
    let field = (number, wire, i64_field().prop_map(|n| n as u64), payload);
    let fields = prop::collection::vec((field, any::<bool>(), 0u8..8), 0..10);
    fields.prop_map(|fields| {
        let mut out = Vec::new();
        for ((number, wire, n, payload), nested, lie) in fields {
            prost::encoding::encode_varint((number << 3) | wire, &mut out);
            match wire {
                0 => prost::encoding::encode_varint(n, &mut out),
                1 => out.extend_from_slice(&n.to_le_bytes()),
                5 => out.extend_from_slice(&(n as u32).to_le_bytes()),
                2 => {
                    let mut value = payload;
                    if nested {
                        // A submessage: one more field inside.
                        let mut inner = Vec::new();
                        prost::encoding::encode_varint(((n % 16 + 1) << 3) | (n % 3), &mut inner);
                        prost::encoding::encode_varint(value.len() as u64, &mut inner);
                        inner.extend_from_slice(&value);
                        value = inner;
                    }
                    // One time in eight the length is off by a little.
                    let len = match lie {
                        0 => value.len() as u64 + 1 + n % 1000,
                        _ => value.len() as u64,
                    };
                    prost::encoding::encode_varint(len, &mut out);
                    out.extend_from_slice(&value);
                }
                // Groups (3, 4) and the undefined 6 and 7: nothing follows.
                _ => {}
            }
        }
        Bytes::from(out)
    })
}

pub(super) fn raw_body() -> BoxedStrategy<Bytes> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Bytes::from),
        2 => protobuf_like(),
    ]
    .boxed()
}

/// One generated request: its encoded body and a short description for failure reports.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) body: Bytes,
    pub(super) what: String,
}

pub(super) fn case<M: Message + Debug>(m: M) -> Case {
    let mut what = format!("{m:?}");
    if what.len() > 400 {
        let mut end = 400;
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        what = format!("{}... ({} bytes of Debug)", &what[..end], what.len());
    }
    Case { body: m.encode_to_vec().into(), what }
}

/// A unary RPC: its gRPC path and the well-formed adversarial requests it gets.
pub(super) struct Rpc {
    pub(super) path: &'static str,
    pub(super) requests: BoxedStrategy<Case>,
}

pub(super) fn rpc<M: Message + Debug + 'static>(
    path: &'static str,
    s: impl Strategy<Value = M> + 'static,
) -> Rpc {
    Rpc { path, requests: s.prop_map(case).boxed() }
}

/// Every unary RPC of Data, Admin and Groups with its request strategy.
pub(super) fn unary_rpcs() -> Vec<Rpc> {
    let many = |s: &'static str, n: usize| vec![s.to_string(); n];
    vec![
        rpc(
            "/rafka.v1.Data/Produce",
            (topic_name(true), partition(), i32_field(), batch_bytes(), u32_field()).prop_map(
                |(topic, partition, acks, batch, timeout_ms)| v1::ProduceRequest {
                    topic,
                    partition,
                    // Mostly the two valid values, so the batch gets looked at.
                    acks: if acks.unsigned_abs() < 4 { acks.rem_euclid(2) } else { acks },
                    batch,
                    timeout_ms,
                },
            ),
        ),
        rpc(
            "/rafka.v1.Data/Fetch",
            (
                (topic_name(true), partition(), offset()),
                (u32_field(), prop_oneof![19 => 0u32..100, 1 => any::<u32>()], u32_field()),
                any::<bool>(),
            )
                .prop_map(
                    |((topic, partition, offset), (max_bytes, max_wait_ms, min_bytes), f)| {
                        v1::FetchRequest {
                            topic,
                            partition,
                            offset,
                            max_bytes,
                            max_wait_ms,
                            min_bytes,
                            allow_follower: f,
                        }
                    },
                ),
        ),
        rpc(
            "/rafka.v1.Data/ListOffsets",
            (
                topic_name(true),
                partition(),
                prop::option::weighted(
                    0.9,
                    prop::option::weighted(
                        0.9,
                        prop_oneof![
                            any::<bool>().prop_map(offset_spec::Spec::Earliest),
                            any::<bool>().prop_map(offset_spec::Spec::Latest),
                            i64_field().prop_map(offset_spec::Spec::Timestamp),
                        ],
                    ),
                ),
                any::<bool>(),
            )
                .prop_map(|(topic, partition, spec, allow_follower)| {
                    v1::ListOffsetsRequest {
                        topic,
                        partition,
                        spec: spec.map(|spec| v1::OffsetSpec { spec }),
                        allow_follower,
                    }
                }),
        ),
        rpc(
            "/rafka.v1.Data/InitProducer",
            prop_oneof![Just(String::new()), "[a-z]{1,4}", weird_string()]
                .prop_map(|producer_name| v1::InitProducerRequest { producer_name }),
        ),
        rpc(
            "/rafka.v1.Admin/CreateTopic",
            (
                creatable_name(),
                prop_oneof![
                    4 => 1u32..4,
                    1 => Just(0),
                    1 => Just(MAX_PARTITIONS + 1),
                    1 => (MAX_PARTITIONS + 1)..=u32::MAX,
                ],
                prop_oneof![3 => 0u32..2, 1 => u32_field()],
                configs(),
            )
                .prop_map(|(name, partitions, replication_factor, configs)| {
                    v1::CreateTopicRequest { name, partitions, replication_factor, configs }
                }),
        ),
        rpc(
            "/rafka.v1.Admin/DeleteTopic",
            prop_oneof![
                prop::sample::select(vec![VICTIM, "fz-a", "fz-b", "fz-c"]).prop_map(String::from),
                topic_name(false),
            ]
            .prop_map(|name| v1::DeleteTopicRequest { name }),
        ),
        rpc(
            "/rafka.v1.Admin/ListTopics",
            any::<bool>().prop_map(|include_internal| v1::ListTopicsRequest { include_internal }),
        ),
        rpc(
            "/rafka.v1.Admin/DescribeTopic",
            topic_name(true).prop_map(|name| v1::DescribeTopicRequest { name }),
        ),
        rpc(
            "/rafka.v1.Admin/AlterTopicConfig",
            (topic_name(false), configs())
                .prop_map(|(name, configs)| v1::AlterTopicConfigRequest { name, configs }),
        ),
        rpc(
            "/rafka.v1.Admin/CreatePartitions",
            (
                topic_name(false),
                prop_oneof![
                    4 => 0u32..6,
                    1 => Just(MAX_PARTITIONS + 1),
                    1 => (MAX_PARTITIONS + 1)..=u32::MAX,
                ],
            )
                .prop_map(|(name, total_count)| v1::CreatePartitionsRequest { name, total_count }),
        ),
        rpc(
            "/rafka.v1.Admin/Metadata",
            prop_oneof![
                9 => prop::collection::vec(topic_name(true), 0..8),
                1 => (1usize..20_000).prop_map(move |n| many("nope", n)),
            ]
            .prop_map(|topics| v1::MetadataRequest { topics }),
        ),
        rpc("/rafka.v1.Admin/DescribeCluster", Just(v1::DescribeClusterRequest {})),
        rpc(
            "/rafka.v1.Admin/ReassignPartition",
            (
                topic_name(false),
                partition(),
                prop_oneof![
                    4 => prop::collection::vec(prop_oneof![4 => 0u64..3, 1 => any::<u64>()], 0..5),
                    1 => (1usize..20_000).prop_map(|n| vec![1u64; n]),
                ],
            )
                .prop_map(|(topic, partition, brokers)| v1::ReassignPartitionRequest {
                    topic,
                    partition,
                    brokers,
                }),
        ),
        rpc(
            "/rafka.v1.Admin/TransferLeadership",
            (topic_name(true), partition(), prop_oneof![3 => 0u64..3, 1 => any::<u64>()]).prop_map(
                |(topic, partition, broker)| v1::TransferLeadershipRequest {
                    topic,
                    partition,
                    broker,
                },
            ),
        ),
        rpc(
            "/rafka.v1.Admin/AlterUsers",
            (
                prop::collection::vec(
                    (
                        "[a-z=,]{0,8}",
                        -1i32..4,
                        prop_oneof![Just(4096u32), any::<u32>()],
                        prop::collection::vec(any::<u8>(), 0..40),
                        prop::collection::vec(any::<u8>(), 0..70),
                    ),
                    0..4,
                ),
                prop::collection::vec(("[a-z]{0,8}", -1i32..4), 0..4),
            )
                .prop_map(|(ups, dels)| v1::AlterUsersRequest {
                    upsertions: ups
                        .into_iter()
                        .map(|(user, mechanism, iterations, salt, salted)| v1::ScramUpsertion {
                            user,
                            mechanism,
                            iterations,
                            salt: salt.into(),
                            salted_password: salted.into(),
                        })
                        .collect(),
                    deletions: dels
                        .into_iter()
                        .map(|(user, mechanism)| v1::ScramDeletion { user, mechanism })
                        .collect(),
                }),
        ),
        rpc("/rafka.v1.Admin/ListUsers", Just(v1::ListUsersRequest {})),
        // Decommissioning is refused here (every topic has as many replicas as brokers) or
        // names no broker; nothing is moved.
        rpc(
            "/rafka.v1.Admin/DecommissionBroker",
            prop_oneof![3 => 0u64..5, 1 => any::<u64>()]
                .prop_map(|broker_id| v1::DecommissionBrokerRequest { broker_id }),
        ),
        rpc("/rafka.v1.Admin/Rebalance", Just(v1::RebalanceRequest {})),
        rpc(
            "/rafka.v1.Admin/CreateAcls",
            prop::collection::vec(acl_binding(), 0..4)
                .prop_map(|acls| v1::CreateAclsRequest { acls }),
        ),
        rpc(
            "/rafka.v1.Admin/ListAcls",
            prop::option::of(acl_filter()).prop_map(|filter| v1::ListAclsRequest { filter }),
        ),
        rpc(
            "/rafka.v1.Admin/DeleteAcls",
            prop::collection::vec(acl_filter(), 0..3)
                .prop_map(|filters| v1::DeleteAclsRequest { filters }),
        ),
        rpc(
            "/rafka.v1.Groups/GroupHeartbeat",
            (
                (group_id(), member_id()),
                member_epoch(),
                prop_oneof![
                    9 => prop::collection::vec(topic_name(true), 0..5),
                    1 => Just(many("nope", 10_001)),
                ],
                prop_oneof![
                    9 => prop::collection::vec(topic_partitions(), 0..4),
                    1 => Just(vec![v1::TopicPartitions {
                        topic: KEEP.into(),
                        partitions: (0..100_001).collect(),
                    }]),
                ],
                prop_oneof![
                    prop::sample::select(vec!["", "uniform", "range", "sticky"])
                        .prop_map(String::from),
                    weird_string(),
                ],
                weird_string(),
            )
                .prop_map(
                    |((group_id, member_id), epoch, subscribed, owned, assignor, client)| {
                        v1::GroupHeartbeatRequest {
                            group_id,
                            member_id,
                            member_epoch: epoch,
                            subscribed_topics: subscribed,
                            owned_partitions: owned,
                            server_assignor: assignor,
                            client_id: client,
                        }
                    },
                ),
        ),
        rpc(
            "/rafka.v1.Groups/CommitOffsets",
            (
                group_id(),
                // The id and epoch go together; mostly keep them consistent so the offsets
                // get looked at.
                prop_oneof![
                    2 => Just((String::new(), -1)),
                    3 => (member_id(), member_epoch()),
                ],
                prop::collection::vec(
                    (topic_name(true), partition(), offset(), metadata()).prop_map(
                        |(topic, partition, offset, metadata)| v1::OffsetCommit {
                            topic,
                            partition,
                            offset,
                            metadata,
                        },
                    ),
                    0..5,
                ),
            )
                .prop_map(|(group_id, (member_id, member_epoch), offsets)| {
                    v1::CommitOffsetsRequest { group_id, member_id, member_epoch, offsets }
                }),
        ),
        rpc(
            "/rafka.v1.Groups/FetchOffsets",
            (group_id(), prop::collection::vec(topic_partitions(), 0..4)).prop_map(
                |(group_id, partitions)| v1::FetchOffsetsRequest { group_id, partitions },
            ),
        ),
        rpc(
            "/rafka.v1.Groups/DescribeGroup",
            group_id().prop_map(|group_id| v1::DescribeGroupRequest { group_id }),
        ),
        rpc("/rafka.v1.Groups/ListGroups", Just(v1::ListGroupsRequest {})),
        rpc(
            "/rafka.v1.Groups/DeleteGroup",
            group_id().prop_map(|group_id| v1::DeleteGroupRequest { group_id }),
        ),
        rpc(
            "/rafka.v1.Groups/ResetOffsets",
            (
                (group_id(), topic_name(true)),
                prop_oneof![
                    9 => prop::collection::vec(partition(), 0..5),
                    1 => Just((0..100_000).collect::<Vec<u32>>()),
                ],
                prop::option::weighted(
                    0.9,
                    prop::option::weighted(
                        0.9,
                        prop_oneof![
                            any::<bool>().prop_map(reset_spec::Spec::Earliest),
                            any::<bool>().prop_map(reset_spec::Spec::Latest),
                            i64_field().prop_map(reset_spec::Spec::Timestamp),
                            i64_field().prop_map(reset_spec::Spec::Offset),
                        ],
                    ),
                ),
                any::<bool>(),
            )
                .prop_map(|((group_id, topic), partitions, spec, dry_run)| {
                    v1::ResetOffsetsRequest {
                        group_id,
                        topic,
                        partitions,
                        spec: spec.map(|spec| v1::ResetSpec { spec }),
                        dry_run,
                    }
                }),
        ),
    ]
}

pub(super) fn subscribe_requests() -> impl Strategy<Value = v1::SubscribeRequest> {
    (topic_name(true), partition(), offset(), u32_field()).prop_map(
        |(topic, partition, offset, max_bytes)| v1::SubscribeRequest {
            topic,
            partition,
            offset,
            max_bytes,
        },
    )
}

/// An ACL, valid or not: enum numbers out of range, empty or odd names and principals.
fn acl_binding() -> impl Strategy<Value = v1::AclBinding> {
    (
        (-1i32..6, -1i32..5, prop_oneof![Just("kafka-cluster".to_string()), "[a-z*]{0,6}"]),
        (prop_oneof![Just("User:fuzz".to_string()), "[A-Za-z:*]{0,8}"], "[0-9.*]{0,9}"),
        (-1i32..13, -1i32..4),
    )
        .prop_map(
            |((resource_type, pattern_type, name), (principal, host), (operation, permission))| {
                v1::AclBinding {
                    resource_type,
                    pattern_type,
                    name,
                    principal,
                    host,
                    operation,
                    permission,
                }
            },
        )
}

/// A filter of ACLs, valid or not.
fn acl_filter() -> impl Strategy<Value = v1::AclFilter> {
    (
        (-1i32..6, -1i32..5, prop::option::of("[a-z*]{0,6}")),
        (prop::option::of("[A-Za-z:*]{0,8}"), prop::option::of("[0-9.*]{0,9}")),
        (-1i32..13, -1i32..4),
    )
        .prop_map(
            |((resource_type, pattern_type, name), (principal, host), (operation, permission))| {
                v1::AclFilter {
                    resource_type,
                    pattern_type,
                    name,
                    principal,
                    host,
                    operation,
                    permission,
                }
            },
        )
}
