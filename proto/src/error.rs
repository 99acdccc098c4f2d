//! Error-code helpers.

use crate::v1::Error;
use crate::v1::ErrorCode;
use crate::v1::LeaderHint;

impl ErrorCode {
    /// Whether a client may retry the same request (maybe at another broker) and expect it
    /// to succeed. Fatal codes mean the request as sent will never succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::BrokerNotAvailable
                | ErrorCode::NotController
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::DiskFull
        )
    }
}

/// Constructors and accessors for the `Error` message carried by every response.
pub trait ErrorExt {
    /// The success value (`NONE`, empty message).
    fn none() -> Self;
    /// An error with a code and message.
    fn new(code: ErrorCode, message: impl Into<String>) -> Self;
    /// `NOT_LEADER` with a hint where the leader is.
    fn not_leader(leader: Option<LeaderHint>) -> Self;
    /// The code, mapping unknown numbers (from a newer peer) to `UNKNOWN`.
    fn error_code(&self) -> ErrorCode;
    /// True when the code is `NONE`.
    fn is_ok(&self) -> bool;
}

impl ErrorExt for Error {
    fn none() -> Self {
        Error { code: ErrorCode::None as i32, message: String::new(), leader: None }
    }

    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code: code as i32, message: message.into(), leader: None }
    }

    fn not_leader(leader: Option<LeaderHint>) -> Self {
        let message = match &leader {
            Some(l) => format!("not the leader; leader is broker {} at {}", l.broker_id, l.address),
            None => "not the leader; leader unknown".to_string(),
        };
        Error { code: ErrorCode::NotLeader as i32, message, leader }
    }

    fn error_code(&self) -> ErrorCode {
        ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Unknown)
    }

    fn is_ok(&self) -> bool {
        self.code == ErrorCode::None as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_and_fatal_codes_are_distinct() {
        for c in [ErrorCode::NotLeader, ErrorCode::LeaderNotAvailable, ErrorCode::RequestTimedOut] {
            assert!(c.is_retriable(), "{c:?}");
        }
        for c in [
            ErrorCode::InvalidRecord,
            ErrorCode::MessageTooLarge,
            ErrorCode::UnknownTopic,
            ErrorCode::OffsetOutOfRange,
            ErrorCode::ProducerFenced,
            ErrorCode::OutOfOrderSequence,
        ] {
            assert!(!c.is_retriable(), "{c:?}");
        }
    }

    #[test]
    fn unknown_code_numbers_read_as_unknown() {
        let e = Error { code: 9999, message: String::new(), leader: None };
        assert_eq!(e.error_code(), ErrorCode::Unknown);
        assert!(!e.is_ok());
        assert!(Error::none().is_ok());
    }

    #[test]
    fn not_leader_carries_hint() {
        let e = Error::not_leader(Some(LeaderHint { broker_id: 2, address: "h:1".into() }));
        assert_eq!(e.error_code(), ErrorCode::NotLeader);
        assert_eq!(e.leader.unwrap().broker_id, 2);
    }
}
