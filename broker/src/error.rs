//! The broker's error: a wire [`ErrorCode`], a message and, for `NOT_LEADER` and
//! `NOT_CONTROLLER`, where the leader is. This is the one place errors of the layers below
//! (rafka-raft, batch validation) become wire codes.

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::batch::BatchError;
use rafka_proto::v1;
use rafka_proto::v1::LeaderHint;

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    /// The wire code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// Where the leader is, with `NOT_LEADER` / `NOT_CONTROLLER`.
    pub leader: Option<LeaderHint>,
    /// With `OFFSET_OUT_OF_RANGE` from a replica allowed to answer the read: the range it
    /// judged against, as Kafka reports it beside the error.
    pub watermarks: Option<Watermarks>,
}

/// A replica's readable range: `[log_start_offset, high_watermark)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Result with the broker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), leader: None, watermarks: None }
    }

    /// `OFFSET_OUT_OF_RANGE` from a readable replica, with the range it holds.
    pub fn out_of_range(message: impl Into<String>, watermarks: Watermarks) -> Error {
        Error { watermarks: Some(watermarks), ..Error::new(ErrorCode::OffsetOutOfRange, message) }
    }

    /// `NOT_LEADER` pointing at `leader` (broker id, client address), or
    /// `LEADER_NOT_AVAILABLE` when no leader is known.
    pub fn not_leader(what: &str, leader: Option<(u64, String)>) -> Error {
        match leader {
            Some((broker_id, address)) => Error {
                code: ErrorCode::NotLeader,
                message: format!(
                    "not the leader of {what}; leader is broker {broker_id} at {address}"
                ),
                leader: Some(LeaderHint { broker_id, address }),
                watermarks: None,
            },
            None => {
                Error::new(ErrorCode::LeaderNotAvailable, format!("{what} has no leader right now"))
            }
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> v1::Error {
        let mut e = v1::Error::new(self.code, self.message.clone());
        e.leader = self.leader.clone();
        e
    }

    /// Maps an error of the Raft layer for a request about `what`.
    pub fn from_raft(what: &str, e: rafka_raft::Error) -> Error {
        use rafka_raft::Error as R;
        match e {
            R::NotLeader { leader, .. } => {
                Error::not_leader(what, leader.map(|(_, n)| (n.broker_id, n.addr)))
            }
            R::Timeout { detail, .. } => Error::new(
                ErrorCode::RequestTimedOut,
                format!("{what}: timed out, outcome unknown: {detail}"),
            ),
            R::Stopped { detail, .. } => Error::new(
                ErrorCode::BrokerNotAvailable,
                format!("{what}: replica stopped on this broker: {detail}"),
            ),
            R::Io(e) => Error::new(ErrorCode::StorageError, format!("{what}: {e}")),
            R::Corrupt { detail, .. } => {
                Error::new(ErrorCode::StorageError, format!("{what}: {detail}"))
            }
            other => Error::new(ErrorCode::Unknown, format!("{what}: {other}")),
        }
    }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Error {
        Error::new(e.code(), e.to_string())
    }
}

impl From<crate::group::state::GroupError> for Error {
    fn from(e: crate::group::state::GroupError) -> Error {
        use crate::group::state::GroupError as G;
        let code = match e {
            G::UnknownMemberId { .. } => ErrorCode::UnknownMemberId,
            G::FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            G::StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
            G::UnsupportedAssignor { .. } => ErrorCode::UnsupportedAssignor,
        };
        Error::new(code, e.to_string())
    }
}

/// The wire `Error` of a result: NONE for Ok.
pub fn proto_error<T>(r: &Result<T>) -> v1::Error {
    match r {
        Ok(_) => v1::Error::none(),
        Err(e) => e.to_proto(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_errors_keep_their_retriability() {
        let e =
            Error::from_raft("t-0", rafka_raft::Error::Timeout { group: 1, detail: "slow".into() });
        assert_eq!(e.code, ErrorCode::RequestTimedOut);
        assert!(e.code.is_retriable());
        let e =
            Error::from_raft("t-0", rafka_raft::Error::Corrupt { group: 1, detail: "crc".into() });
        assert!(!e.code.is_retriable());
        let e = Error::not_leader("t-0", Some((2, "h:1".into())));
        assert_eq!(e.to_proto().leader.unwrap().address, "h:1");
        assert_eq!(Error::not_leader("t-0", None).code, ErrorCode::LeaderNotAvailable);
    }
}
