//! rafka's refusals as Kafka's error codes (`org.apache.kafka.common.protocol.Errors`).

use crate::acl::ResourceType;
use crate::error::BatchFault;
use crate::error::Error;

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const SECURITY_DISABLED: i16 = 54;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const BROKER_NOT_AVAILABLE: i16 = 8;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_CONFIG: i16 = 40;
pub const NOT_CONTROLLER: i16 = 41;
pub const INVALID_REQUEST: i16 = 42;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const REASSIGNMENT_IN_PROGRESS: i16 = 60;
pub const GROUP_NOT_EMPTY: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const INVALID_RECORD: i16 = 87;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const STALE_MEMBER_EPOCH: i16 = 113;
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;

/// Kafka's code for `e`. A broker that is shutting down answers partition requests as a
/// former leader would (NOT_LEADER_OR_FOLLOWER): clients then look the leader up again.
pub fn code(e: &Error) -> i16 {
    match e {
        Error::NotLeader { .. } | Error::ShuttingDown(_) => NOT_LEADER_OR_FOLLOWER,
        Error::LeaderNotAvailable(_) => LEADER_NOT_AVAILABLE,
        Error::NotController { .. } => NOT_CONTROLLER,
        Error::NotCoordinator { .. } => NOT_COORDINATOR,
        Error::CoordinatorNotAvailable(_) => COORDINATOR_NOT_AVAILABLE,
        Error::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        Error::TimedOut(_) => REQUEST_TIMED_OUT,
        // Retriable for Kafka's clients: they retry until space returns or delivery times out.
        Error::Storage(_) | Error::DiskFull(_) => KAFKA_STORAGE_ERROR,
        Error::Batch { fault, .. } => match fault {
            BatchFault::TooLarge => MESSAGE_TOO_LARGE,
            BatchFault::Corrupt => CORRUPT_MESSAGE,
            BatchFault::Codec => UNSUPPORTED_COMPRESSION_TYPE,
            BatchFault::Format => UNSUPPORTED_FOR_MESSAGE_FORMAT,
            // Kafka answers a batch of an older magic in a v3+ Produce so.
            BatchFault::Version | BatchFault::Invalid => INVALID_RECORD,
        },
        Error::UnknownTopic(_) | Error::UnknownPartition(_) => UNKNOWN_TOPIC_OR_PARTITION,
        Error::TopicAlreadyExists(_) => TOPIC_ALREADY_EXISTS,
        Error::InvalidTopic(_) => INVALID_TOPIC_EXCEPTION,
        Error::InvalidPartitions(_) => INVALID_PARTITIONS,
        Error::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
        Error::InvalidConfig(_) => INVALID_CONFIG,
        Error::InvalidRequest(_) => INVALID_REQUEST,
        Error::NotEnoughReplicas(_) => NOT_ENOUGH_REPLICAS,
        Error::ReassignmentInProgress(_) => REASSIGNMENT_IN_PROGRESS,
        Error::ProducerFenced(_) => INVALID_PRODUCER_EPOCH,
        Error::OutOfOrderSequence(_) => OUT_OF_ORDER_SEQUENCE_NUMBER,
        Error::UnknownProducer(_) => UNKNOWN_PRODUCER_ID,
        Error::InvalidGroupId(_) => INVALID_GROUP_ID,
        Error::GroupIdNotFound(_) => GROUP_ID_NOT_FOUND,
        Error::GroupNotEmpty(_) => GROUP_NOT_EMPTY,
        Error::GroupMaxSizeReached(_) => GROUP_MAX_SIZE_REACHED,
        Error::UnknownMemberId(_) => UNKNOWN_MEMBER_ID,
        Error::FencedMemberEpoch(_) => FENCED_MEMBER_EPOCH,
        Error::StaleMemberEpoch(_) => STALE_MEMBER_EPOCH,
        Error::UnsupportedAssignor(_) => UNSUPPORTED_ASSIGNOR,
        Error::IllegalGeneration(_) => ILLEGAL_GENERATION,
        Error::RebalanceInProgress(_) => REBALANCE_IN_PROGRESS,
        Error::InconsistentGroupProtocol(_) => INCONSISTENT_GROUP_PROTOCOL,
        Error::FencedInstanceId(_) => FENCED_INSTANCE_ID,
        Error::UnsupportedVersion(_) => UNSUPPORTED_VERSION,
        Error::AuthorizationFailed { resource, .. } => match resource {
            ResourceType::Topic => TOPIC_AUTHORIZATION_FAILED,
            ResourceType::Group => GROUP_AUTHORIZATION_FAILED,
            ResourceType::Cluster => CLUSTER_AUTHORIZATION_FAILED,
            ResourceType::TransactionalId => TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        },
        Error::SecurityDisabled(_) => SECURITY_DISABLED,
        Error::Internal(_) => UNKNOWN_SERVER_ERROR,
    }
}

/// The code of a result: [`NONE`] for success.
pub fn code_of<T>(r: &Result<T, Error>) -> i16 {
    r.as_ref().err().map_or(NONE, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_refusals_keep_their_kind() {
        let e = |fault| Error::Batch { fault, message: String::new() };
        assert_eq!(code(&e(BatchFault::Corrupt)), CORRUPT_MESSAGE);
        assert_eq!(code(&e(BatchFault::TooLarge)), MESSAGE_TOO_LARGE);
        assert_eq!(code(&e(BatchFault::Codec)), UNSUPPORTED_COMPRESSION_TYPE);
        assert_eq!(code(&e(BatchFault::Invalid)), INVALID_RECORD);
        assert_eq!(code(&Error::ShuttingDown("x".into())), NOT_LEADER_OR_FOLLOWER);
        assert_eq!(code(&Error::Internal("x".into())), UNKNOWN_SERVER_ERROR);
    }
}
