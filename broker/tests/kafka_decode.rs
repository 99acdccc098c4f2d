//! Fuzzing of the Kafka listener's decoding, in-process and with the broker's allocator:
//! arbitrary frames, and arbitrary bodies for every served API and version (admin and
//! consumer-protocol APIs included), give a request or an error — never a panic, never an
//! abort. In particular a body claiming an array of 2^31 elements (which the protocol
//! library reserves room for before reading any) is an error, not the end of the process.

use bytes::Bytes;
use kafka_protocol::messages::AlterConfigsRequest;
use kafka_protocol::messages::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::CreateAclsRequest;
use kafka_protocol::messages::CreatePartitionsRequest;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::DeleteAclsRequest;
use kafka_protocol::messages::DeleteGroupsRequest;
use kafka_protocol::messages::DeleteTopicsRequest;
use kafka_protocol::messages::DescribeAclsRequest;
use kafka_protocol::messages::DescribeClusterRequest;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::DescribeUserScramCredentialsRequest;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::HeartbeatRequest;
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::messages::JoinGroupRequest;
use kafka_protocol::messages::LeaveGroupRequest;
use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::messages::OffsetCommitRequest;
use kafka_protocol::messages::OffsetFetchRequest;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::messages::SaslAuthenticateRequest;
use kafka_protocol::messages::SaslHandshakeRequest;
use kafka_protocol::messages::SyncGroupRequest;
use proptest::prelude::*;
use rafka_broker::kafka::frame;
use rafka_broker::kafka::versions;

#[global_allocator]
static ALLOCATOR: rafka_broker::alloc::Allocator = rafka_broker::alloc::Allocator;

/// Decodes `body` as the request of `key` at `version`: Ok or Err, whatever the bytes.
fn decode_any(key: ApiKey, version: i16, body: &[u8]) -> bool {
    let mut b = Bytes::copy_from_slice(body);
    match key {
        ApiKey::ApiVersions => frame::decode::<ApiVersionsRequest>(&mut b, version).is_ok(),
        ApiKey::Metadata => frame::decode::<MetadataRequest>(&mut b, version).is_ok(),
        ApiKey::Produce => frame::decode::<ProduceRequest>(&mut b, version).is_ok(),
        ApiKey::Fetch => frame::decode::<FetchRequest>(&mut b, version).is_ok(),
        ApiKey::ListOffsets => frame::decode::<ListOffsetsRequest>(&mut b, version).is_ok(),
        ApiKey::InitProducerId => frame::decode::<InitProducerIdRequest>(&mut b, version).is_ok(),
        ApiKey::FindCoordinator => frame::decode::<FindCoordinatorRequest>(&mut b, version).is_ok(),
        ApiKey::JoinGroup => frame::decode::<JoinGroupRequest>(&mut b, version).is_ok(),
        ApiKey::SyncGroup => frame::decode::<SyncGroupRequest>(&mut b, version).is_ok(),
        ApiKey::Heartbeat => frame::decode::<HeartbeatRequest>(&mut b, version).is_ok(),
        ApiKey::LeaveGroup => frame::decode::<LeaveGroupRequest>(&mut b, version).is_ok(),
        ApiKey::OffsetCommit => frame::decode::<OffsetCommitRequest>(&mut b, version).is_ok(),
        ApiKey::OffsetFetch => frame::decode::<OffsetFetchRequest>(&mut b, version).is_ok(),
        ApiKey::DescribeGroups => frame::decode::<DescribeGroupsRequest>(&mut b, version).is_ok(),
        ApiKey::ListGroups => frame::decode::<ListGroupsRequest>(&mut b, version).is_ok(),
        ApiKey::DeleteGroups => frame::decode::<DeleteGroupsRequest>(&mut b, version).is_ok(),
        ApiKey::CreateTopics => frame::decode::<CreateTopicsRequest>(&mut b, version).is_ok(),
        ApiKey::DeleteTopics => frame::decode::<DeleteTopicsRequest>(&mut b, version).is_ok(),
        ApiKey::CreatePartitions => {
            frame::decode::<CreatePartitionsRequest>(&mut b, version).is_ok()
        }
        ApiKey::DescribeConfigs => frame::decode::<DescribeConfigsRequest>(&mut b, version).is_ok(),
        ApiKey::AlterConfigs => frame::decode::<AlterConfigsRequest>(&mut b, version).is_ok(),
        ApiKey::IncrementalAlterConfigs => {
            frame::decode::<IncrementalAlterConfigsRequest>(&mut b, version).is_ok()
        }
        ApiKey::DescribeCluster => frame::decode::<DescribeClusterRequest>(&mut b, version).is_ok(),
        ApiKey::ConsumerGroupHeartbeat => {
            frame::decode::<ConsumerGroupHeartbeatRequest>(&mut b, version).is_ok()
        }
        ApiKey::ConsumerGroupDescribe => {
            frame::decode::<ConsumerGroupDescribeRequest>(&mut b, version).is_ok()
        }
        ApiKey::SaslHandshake => frame::decode::<SaslHandshakeRequest>(&mut b, version).is_ok(),
        ApiKey::SaslAuthenticate => {
            frame::decode::<SaslAuthenticateRequest>(&mut b, version).is_ok()
        }
        ApiKey::DescribeUserScramCredentials => {
            frame::decode::<DescribeUserScramCredentialsRequest>(&mut b, version).is_ok()
        }
        ApiKey::AlterUserScramCredentials => {
            frame::decode::<AlterUserScramCredentialsRequest>(&mut b, version).is_ok()
        }
        ApiKey::CreateAcls => frame::decode::<CreateAclsRequest>(&mut b, version).is_ok(),
        ApiKey::DescribeAcls => frame::decode::<DescribeAclsRequest>(&mut b, version).is_ok(),
        ApiKey::DeleteAcls => frame::decode::<DeleteAclsRequest>(&mut b, version).is_ok(),
        other => panic!("{other:?} is served but not fuzzed here: add it"),
    }
}

/// Every (API, version) the listener decodes.
fn served() -> Vec<(ApiKey, i16)> {
    versions::SUPPORTED
        .iter()
        .flat_map(|&(key, min, max)| (min..=max).map(move |v| (key, v)))
        .filter(|&(key, v)| versions::served(key, v))
        .collect()
}

#[test]
fn claimed_huge_arrays_are_errors_not_aborts() {
    // The allocator itself: a reservation of over a TiB succeeds and costs nothing.
    let v: Vec<[u8; 512]> = Vec::with_capacity(i32::MAX as usize);
    assert!(v.capacity() >= i32::MAX as usize);
    drop(v);
    // Metadata v1: a topics array of i32::MAX entries, then one short name.
    assert!(!decode_any(ApiKey::Metadata, 1, &[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']));
    // Metadata v9 (flexible): a compact array of 2^32 - 2 entries.
    assert!(!decode_any(ApiKey::Metadata, 9, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0]));
    // Produce v3: no transactional id, acks, timeout, then i32::MAX topics.
    let mut produce = vec![0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30];
    produce.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(!decode_any(ApiKey::Produce, 3, &produce));
    // Every served request type with every 4-byte count at every position of a small body.
    for (key, version) in served() {
        for at in 0..24 {
            let mut body = vec![0u8; 32];
            body[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
            decode_any(key, version, &body);
            body[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
            decode_any(key, version, &body);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bodies for every served request type and version.
    #[test]
    fn arbitrary_bodies_decode_or_fail(
        pick in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let all = served();
        let (key, version) = all[pick.index(all.len())];
        decode_any(key, version, &body);
    }

    /// Arbitrary frames: the size prefix, the fixed header and the request header are read
    /// without panicking, and sizes beyond the limits are refused before being read.
    #[test]
    fn arbitrary_frames_read_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = rt.block_on(frame::read(&mut &bytes[..]));
        if let Ok(Some(f)) = read {
            prop_assert!(f.bytes.len() + 4 <= bytes.len());
            if let Ok(key) = ApiKey::try_from(f.key) {
                let _ = frame::header(&f, key);
            }
            let mut b = f.bytes.clone();
            let _ = frame::decode::<RequestHeader>(&mut b, 2);
        }
    }
}
