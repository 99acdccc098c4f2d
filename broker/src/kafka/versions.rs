//! The Kafka APIs and versions this broker serves, as ApiVersions advertises them.
//!
//! Clients choose features from these ranges, not only versions: librdkafka enables
//! record format v2 only when Produce 3 and Fetch 4 are in range, idempotence when
//! InitProducerId 0 is, zstd when Produce 7 and Fetch 10 are; kafka-python guesses the
//! broker's version from which maximum versions are present. Produce is advertised from 0,
//! as Kafka 4 does (librdkafka before 2.11 sends uncompressed batches otherwise), but a
//! request below 3 (message formats before v2) closes the connection.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::errors;

/// The lowest Produce version actually served.
pub const PRODUCE_MIN_SERVED: i16 = 3;

/// `(api, min, max)` for every API served.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The served range of `key`, if it is served.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, ..)| *k == key).map(|&(_, min, max)| (min, max))
}

/// Whether `version` of `key` is served.
pub fn served(key: ApiKey, version: i16) -> bool {
    let min = if key == ApiKey::Produce { PRODUCE_MIN_SERVED } else { i16::MIN };
    range(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version) && version >= min)
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// The answer to ApiVersions.
pub fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(errors::NONE).with_api_keys(api_keys())
}

/// The answer to an ApiVersions request of a version this broker does not know: sent as
/// version 0 with UNSUPPORTED_VERSION and this broker's ApiVersions range, so the client
/// retries with a version both know.
pub fn unsupported_api_versions() -> ApiVersionsResponse {
    let (min, max) = range(ApiKey::ApiVersions).expect("ApiVersions is served");
    ApiVersionsResponse::default().with_error_code(errors::UNSUPPORTED_VERSION).with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(min)
            .with_max_version(max),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every advertised range is one the protocol library can decode (Produce below 3
    /// excepted: advertised for clients' feature checks, refused when used).
    #[test]
    fn advertised_ranges_are_decodable() {
        for &(key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            let lowest = if key == ApiKey::Produce { PRODUCE_MIN_SERVED } else { min };
            assert!(valid.min <= lowest && max <= valid.max, "{key:?} {min}..={max}: {valid:?}");
            assert!(served(key, max) && served(key, lowest));
        }
        assert!(!served(ApiKey::Produce, 2));
        assert!(!served(ApiKey::Fetch, 3));
        assert!(!served(ApiKey::OffsetForLeaderEpoch, 2), "not advertised, not served");
    }
}
