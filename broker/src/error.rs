//! [`Error`]: why the broker refused or failed a request, one variant per kind of refusal,
//! each with exactly one stable wire code ([`Error::code`]). This is the one place errors of
//! the layers below (rafka-raft, batch validation, the controller's recorded refusals)
//! become broker errors; the wire protocols translate [`Error`] (the gRPC layer in
//! `server/`), nothing else.
//!
//! Retriable and fatal stay apart: a replica stopping because the broker shuts down is
//! [`Error::ShuttingDown`] (retriable elsewhere), a storage failure is [`Error::Storage`]
//! (fatal for that replica until the broker restarts).

use rafka_proto::ErrorCode;

use crate::acl::ResourceType;
use rafka_proto::batch::RecordBatchError;
use rafka_proto::legacy;

/// Where to ask instead: a broker id and its client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub broker_id: u64,
    pub address: String,
}

/// A replica's readable range: `[log_start_offset, high_watermark)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// A refused or failed request. `Display` is the human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// This broker does not lead the partition; `leader` is the leader or a broker hosting a
    /// replica (which knows the leader).
    #[error("{message}")]
    NotLeader { message: String, leader: Leader },
    /// The partition has no leader right now, or its new leader is not ready yet.
    #[error("{0}")]
    LeaderNotAvailable(String),
    /// This broker does not lead the controller; `leader` is the controller leader if known.
    #[error("{message}")]
    NotController { message: String, leader: Option<Leader> },
    /// This broker is not the group's coordinator; `coordinator` is (or knows) it.
    #[error("{message}")]
    NotCoordinator { message: String, coordinator: Leader },
    /// No live broker coordinates the group right now.
    #[error("{0}")]
    CoordinatorNotAvailable(String),
    /// The offset is outside the replica's log; with the range it judged against when the
    /// replica was allowed to answer the read.
    #[error("{message}")]
    OffsetOutOfRange { message: String, watermarks: Option<Watermarks> },
    /// The request did not complete in time; it may still take effect.
    #[error("{0}")]
    TimedOut(String),
    /// The broker (or the replica) is shutting down; another broker can serve.
    #[error("{0}")]
    ShuttingDown(String),
    /// Storage failed: the replica cannot serve until the broker restarts.
    #[error("{0}")]
    Storage(String),
    /// The data directory's free space is under `min-free-bytes`: writes are refused until
    /// space returns.
    #[error("{0}")]
    DiskFull(String),
    /// The record batch was refused: what was wrong with it, and the validator's message.
    #[error("{message}")]
    Batch { fault: BatchFault, message: String },
    #[error("{0}")]
    UnknownTopic(String),
    #[error("{0}")]
    UnknownPartition(String),
    #[error("{0}")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    /// A malformed or out-of-bounds request field.
    #[error("{0}")]
    InvalidRequest(String),
    /// Too few live brokers for the replicas asked for.
    #[error("{0}")]
    NotEnoughReplicas(String),
    #[error("{0}")]
    ReassignmentInProgress(String),
    /// An idempotent producer's epoch is older than the partition's.
    #[error("{0}")]
    ProducerFenced(String),
    /// An idempotent producer's sequence does not follow its last one.
    #[error("{0}")]
    OutOfOrderSequence(String),
    #[error("{0}")]
    UnknownProducer(String),
    #[error("{0}")]
    InvalidGroupId(String),
    #[error("{0}")]
    GroupIdNotFound(String),
    #[error("{0}")]
    GroupNotEmpty(String),
    #[error("{0}")]
    GroupMaxSizeReached(String),
    #[error("{0}")]
    UnknownMemberId(String),
    #[error("{0}")]
    FencedMemberEpoch(String),
    #[error("{0}")]
    StaleMemberEpoch(String),
    #[error("{0}")]
    UnsupportedAssignor(String),
    /// A classic group request of another generation than the group's.
    #[error("{0}")]
    IllegalGeneration(String),
    /// A classic group is rebalancing: the member must rejoin.
    #[error("{0}")]
    RebalanceInProgress(String),
    /// A classic join whose protocol type or protocols do not fit the group's.
    #[error("{0}")]
    InconsistentGroupProtocol(String),
    /// A static member's old member id, replaced by a newer instance.
    #[error("{0}")]
    FencedInstanceId(String),
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The caller may not do this to a resource of this type (no ACL allows it, or one
    /// denies it).
    #[error("{message}")]
    AuthorizationFailed { resource: ResourceType, message: String },
    /// A security request (ACLs) on a broker with authentication off.
    #[error("{0}")]
    SecurityDisabled(String),
    /// A broker bug or an outcome that cannot happen: not the client's fault, not retriable.
    #[error("{0}")]
    Internal(String),
}

/// What was wrong with a refused record batch (each wire protocol has its own codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFault {
    /// Over the topic's `max.message.bytes`.
    TooLarge,
    /// Damaged: too short, a length that disagrees, a checksum that fails.
    Corrupt,
    /// An unknown compression codec.
    Codec,
    /// A batch format version the broker does not store.
    Version,
    /// What the cluster's current batch format cannot hold (during an upgrade).
    Format,
    /// Anything else: counts, producer fields, timestamps, records that do not parse.
    Invalid,
}

impl From<RecordBatchError> for Error {
    fn from(e: RecordBatchError) -> Error {
        use RecordBatchError as E;
        let fault = match &e {
            E::TooLarge { .. } => BatchFault::TooLarge,
            E::TooShort(_) | E::Length { .. } | E::Checksum { .. } => BatchFault::Corrupt,
            E::Compression(_) => BatchFault::Codec,
            E::Magic(_) => BatchFault::Version,
            E::Count { .. }
            | E::Producer { .. }
            | E::Timestamps { .. }
            | E::Control
            | E::Decompress(_)
            | E::DecompressedTooLarge { .. }
            | E::Record { .. }
            | E::SeveralBatches { .. }
            | E::RecordCount { .. } => BatchFault::Invalid,
        };
        Error::Batch { fault, message: e.to_string() }
    }
}

impl From<legacy::BatchError> for Error {
    fn from(e: legacy::BatchError) -> Error {
        use legacy::BatchError as E;
        let fault = match &e {
            E::TooLarge { .. } => BatchFault::TooLarge,
            E::Decode(_) | E::Checksum { .. } => BatchFault::Corrupt,
            E::UnknownCompression(_) => BatchFault::Codec,
            E::UnsupportedMagic(_) => BatchFault::Version,
            E::NoRecords
            | E::RecordTimestamp { .. }
            | E::Timestamps { .. }
            | E::Producer { .. }
            | E::Decompress(_)
            | E::DecompressedTooLarge { .. }
            | E::RecordCount { .. } => BatchFault::Invalid,
        };
        Error::Batch { fault, message: e.to_string() }
    }
}

impl From<legacy::DownConvertError> for Error {
    fn from(e: legacy::DownConvertError) -> Error {
        match e {
            legacy::DownConvertError::Batch(e) => e.into(),
            e @ (legacy::DownConvertError::NullValue(_)
            | legacy::DownConvertError::NullHeader(_)) => {
                Error::Batch { fault: BatchFault::Format, message: e.to_string() }
            }
        }
    }
}

/// Result with the broker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotLeader { .. } => ErrorCode::NotLeader,
            Error::LeaderNotAvailable(_) => ErrorCode::LeaderNotAvailable,
            Error::NotController { .. } => ErrorCode::NotController,
            Error::NotCoordinator { .. } => ErrorCode::NotCoordinator,
            Error::CoordinatorNotAvailable(_) => ErrorCode::CoordinatorNotAvailable,
            Error::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Error::TimedOut(_) => ErrorCode::RequestTimedOut,
            Error::ShuttingDown(_) => ErrorCode::BrokerNotAvailable,
            Error::Storage(_) => ErrorCode::StorageError,
            Error::DiskFull(_) => ErrorCode::DiskFull,
            Error::Batch { fault, .. } => match fault {
                BatchFault::TooLarge => ErrorCode::MessageTooLarge,
                BatchFault::Version => ErrorCode::UnsupportedVersion,
                BatchFault::Format => ErrorCode::UnsupportedForMessageFormat,
                BatchFault::Corrupt | BatchFault::Codec | BatchFault::Invalid => {
                    ErrorCode::InvalidRecord
                }
            },
            Error::UnknownTopic(_) => ErrorCode::UnknownTopic,
            Error::UnknownPartition(_) => ErrorCode::UnknownPartition,
            Error::TopicAlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            Error::InvalidTopic(_) => ErrorCode::InvalidTopic,
            Error::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            Error::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
            Error::InvalidConfig(_) => ErrorCode::InvalidConfig,
            Error::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Error::NotEnoughReplicas(_) => ErrorCode::NotEnoughReplicas,
            Error::ReassignmentInProgress(_) => ErrorCode::ReassignmentInProgress,
            Error::ProducerFenced(_) => ErrorCode::ProducerFenced,
            Error::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequence,
            Error::UnknownProducer(_) => ErrorCode::UnknownProducer,
            Error::InvalidGroupId(_) => ErrorCode::InvalidGroupId,
            Error::GroupIdNotFound(_) => ErrorCode::GroupIdNotFound,
            Error::GroupNotEmpty(_) => ErrorCode::GroupNotEmpty,
            Error::GroupMaxSizeReached(_) => ErrorCode::GroupMaxSizeReached,
            Error::UnknownMemberId(_) => ErrorCode::UnknownMemberId,
            Error::FencedMemberEpoch(_) => ErrorCode::FencedMemberEpoch,
            Error::StaleMemberEpoch(_) => ErrorCode::StaleMemberEpoch,
            Error::UnsupportedAssignor(_) => ErrorCode::UnsupportedAssignor,
            Error::IllegalGeneration(_) => ErrorCode::IllegalGeneration,
            Error::RebalanceInProgress(_) => ErrorCode::RebalanceInProgress,
            Error::InconsistentGroupProtocol(_) => ErrorCode::InconsistentGroupProtocol,
            Error::FencedInstanceId(_) => ErrorCode::FencedInstanceId,
            Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Error::AuthorizationFailed { .. } => ErrorCode::AuthorizationFailed,
            Error::SecurityDisabled(_) => ErrorCode::SecurityDisabled,
            Error::Internal(_) => ErrorCode::Unknown,
        }
    }

    /// Where to ask instead, with `NOT_LEADER`, `NOT_CONTROLLER` and `NOT_COORDINATOR`.
    pub fn leader(&self) -> Option<&Leader> {
        match self {
            Error::NotLeader { leader, .. } => Some(leader),
            Error::NotController { leader, .. } => leader.as_ref(),
            Error::NotCoordinator { coordinator, .. } => Some(coordinator),
            _ => None,
        }
    }

    /// The readable range an `OFFSET_OUT_OF_RANGE` was judged against, when known.
    pub fn watermarks(&self) -> Option<Watermarks> {
        match self {
            Error::OffsetOutOfRange { watermarks, .. } => *watermarks,
            _ => None,
        }
    }

    /// `OFFSET_OUT_OF_RANGE` from a readable replica, with the range it holds.
    pub fn out_of_range(message: impl Into<String>, watermarks: Watermarks) -> Error {
        Error::OffsetOutOfRange { message: message.into(), watermarks: Some(watermarks) }
    }

    /// `NOT_LEADER` pointing at `leader` (broker id, client address), or
    /// `LEADER_NOT_AVAILABLE` when no leader is known.
    pub fn not_leader(what: &str, leader: Option<(u64, String)>) -> Error {
        match leader {
            Some((broker_id, address)) => Error::NotLeader {
                message: format!(
                    "not the leader of {what}; leader is broker {broker_id} at {address}"
                ),
                leader: Leader { broker_id, address },
            },
            None => Error::LeaderNotAvailable(format!("{what} has no leader right now")),
        }
    }

    /// The error a replica's state machine recorded with this code (the controller's
    /// refusals are replicated as a code and a message).
    pub fn from_code(code: ErrorCode, message: String) -> Error {
        match code {
            ErrorCode::UnknownTopic => Error::UnknownTopic(message),
            ErrorCode::UnknownPartition => Error::UnknownPartition(message),
            ErrorCode::TopicAlreadyExists => Error::TopicAlreadyExists(message),
            ErrorCode::InvalidTopic => Error::InvalidTopic(message),
            ErrorCode::InvalidPartitions => Error::InvalidPartitions(message),
            ErrorCode::InvalidReplicationFactor => Error::InvalidReplicationFactor(message),
            ErrorCode::InvalidConfig => Error::InvalidConfig(message),
            ErrorCode::InvalidRequest => Error::InvalidRequest(message),
            ErrorCode::NotEnoughReplicas => Error::NotEnoughReplicas(message),
            ErrorCode::ReassignmentInProgress => Error::ReassignmentInProgress(message),
            ErrorCode::ProducerFenced => Error::ProducerFenced(message),
            ErrorCode::OutOfOrderSequence => Error::OutOfOrderSequence(message),
            ErrorCode::UnknownProducer => Error::UnknownProducer(message),
            ErrorCode::InvalidGroupId => Error::InvalidGroupId(message),
            ErrorCode::GroupIdNotFound => Error::GroupIdNotFound(message),
            ErrorCode::GroupNotEmpty => Error::GroupNotEmpty(message),
            ErrorCode::GroupMaxSizeReached => Error::GroupMaxSizeReached(message),
            ErrorCode::UnknownMemberId => Error::UnknownMemberId(message),
            ErrorCode::FencedMemberEpoch => Error::FencedMemberEpoch(message),
            ErrorCode::StaleMemberEpoch => Error::StaleMemberEpoch(message),
            ErrorCode::UnsupportedAssignor => Error::UnsupportedAssignor(message),
            ErrorCode::IllegalGeneration => Error::IllegalGeneration(message),
            ErrorCode::RebalanceInProgress => Error::RebalanceInProgress(message),
            ErrorCode::InconsistentGroupProtocol => Error::InconsistentGroupProtocol(message),
            ErrorCode::FencedInstanceId => Error::FencedInstanceId(message),
            ErrorCode::UnsupportedVersion => Error::UnsupportedVersion(message),
            ErrorCode::LeaderNotAvailable => Error::LeaderNotAvailable(message),
            ErrorCode::CoordinatorNotAvailable => Error::CoordinatorNotAvailable(message),
            ErrorCode::RequestTimedOut => Error::TimedOut(message),
            ErrorCode::BrokerNotAvailable => Error::ShuttingDown(message),
            ErrorCode::StorageError => Error::Storage(message),
            ErrorCode::DiskFull => Error::DiskFull(message),
            ErrorCode::OffsetOutOfRange => Error::OffsetOutOfRange { message, watermarks: None },
            ErrorCode::NotController => Error::NotController { message, leader: None },
            // Only cluster-wide requests are refused so by another broker.
            ErrorCode::SecurityDisabled => Error::SecurityDisabled(message),
            ErrorCode::AuthorizationFailed => {
                Error::AuthorizationFailed { resource: ResourceType::Cluster, message }
            }
            // Recorded refusals never name a broker: without one these cannot be told apart
            // from a broker bug.
            ErrorCode::None
            | ErrorCode::Unknown
            | ErrorCode::NotLeader
            | ErrorCode::NotCoordinator
            | ErrorCode::InvalidRecord
            | ErrorCode::MessageTooLarge
            | ErrorCode::UnsupportedForMessageFormat => {
                Error::Internal(format!("{code:?}: {message}"))
            }
        }
    }

    /// Maps an error of the Raft layer for a request about `what`.
    pub fn from_raft(what: &str, e: rafka_raft::Error) -> Error {
        use rafka_raft::Error as R;
        match e {
            R::NotLeader { leader, .. } => {
                Error::not_leader(what, leader.map(|(_, n)| (n.broker_id, n.addr)))
            }
            R::Timeout { detail, .. } => {
                Error::TimedOut(format!("{what}: timed out, outcome unknown: {detail}"))
            }
            R::Stopped { detail, .. } => {
                Error::ShuttingDown(format!("{what}: replica stopping on this broker: {detail}"))
            }
            // The replica is gone from this broker (deleted or moved away): the client asks
            // again and is routed to a broker that hosts one.
            R::UnknownGroup(_) | R::GroupInUse(_) => {
                Error::ShuttingDown(format!("{what}: replica not hosted here any more: {e}"))
            }
            R::Failed { detail, .. } => {
                Error::Storage(format!("{what}: replica failed (restart the broker): {detail}"))
            }
            R::Io(e) => Error::Storage(format!("{what}: {e}")),
            R::Corrupt { detail, .. } => Error::Storage(format!("{what}: {detail}")),
            R::ReplicaMismatch { .. } => Error::Storage(format!("{what}: {e}")),
            R::Membership { detail, .. } => {
                Error::InvalidRequest(format!("{what}: membership change refused: {detail}"))
            }
            R::Config(detail) => Error::Internal(format!("{what}: {detail}")),
            R::GroupExists(_) => Error::Internal(format!("{what}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_errors_keep_their_retriability() {
        let e =
            Error::from_raft("t-0", rafka_raft::Error::Timeout { group: 1, detail: "slow".into() });
        assert_eq!(e.code(), ErrorCode::RequestTimedOut);
        assert!(e.code().is_retriable());
        let e =
            Error::from_raft("t-0", rafka_raft::Error::Corrupt { group: 1, detail: "crc".into() });
        assert!(!e.code().is_retriable());
        let e = Error::not_leader("t-0", Some((2, "h:1".into())));
        assert_eq!(e.leader().unwrap().address, "h:1");
        assert_eq!(Error::not_leader("t-0", None).code(), ErrorCode::LeaderNotAvailable);
    }

    /// Shutting down is retriable (another broker serves); a failed replica is not.
    #[test]
    fn stopping_and_failing_are_told_apart() {
        let stopping = rafka_raft::Error::Stopped { group: 1, detail: "shutdown".into() };
        let e = Error::from_raft("t-0", stopping);
        assert_eq!(e.code(), ErrorCode::BrokerNotAvailable);
        assert!(e.code().is_retriable());
        let failed = rafka_raft::Error::Failed { group: 1, detail: "disk".into() };
        let e = Error::from_raft("t-0", failed);
        assert_eq!(e.code(), ErrorCode::StorageError);
        assert!(!e.code().is_retriable());
    }

    #[test]
    fn recorded_codes_come_back_as_the_same_code() {
        for code in [
            ErrorCode::UnknownTopic,
            ErrorCode::TopicAlreadyExists,
            ErrorCode::InvalidConfig,
            ErrorCode::ReassignmentInProgress,
            ErrorCode::NotController,
            ErrorCode::GroupNotEmpty,
        ] {
            assert_eq!(Error::from_code(code, "m".into()).code(), code);
        }
        assert_eq!(Error::from_code(ErrorCode::NotLeader, "m".into()).code(), ErrorCode::Unknown);
    }
}
