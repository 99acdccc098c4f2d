//! [`Error`]: every failure the client reports, with a stable mapping from the wire.
//!
//! A response's `Error` message becomes [`Error::Broker`]; a gRPC status becomes
//! [`Error::Transport`]. Only retriable broker codes ([`ErrorCode::is_retriable`]) and transport
//! unavailability are ever retried; a fatal code goes straight back to the caller.

use rafka_proto::ErrorCode;
use tonic::Code;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker answered with an error code in the response.
    #[error("broker error {code:?}: {message}")]
    Broker {
        /// The code from the response (unknown numbers read as `UNKNOWN`).
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The RPC failed below the response: connection refused or lost, per-request timeout,
    /// or a gRPC status the broker sent instead of a response.
    #[error("{}", describe_status(.0))]
    Transport(#[from] tonic::Status),
    /// The operation's total deadline passed while retrying; says what the last attempt got.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The configuration (or bootstrap string) is unusable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// No broker address is known.
    #[error("no brokers to talk to")]
    NoBrokers,
    /// The API was used in a way that cannot work (subscribe without a group, committing a
    /// partition the consumer does not own, ...); nothing was sent.
    #[error("invalid use: {0}")]
    Usage(String),
    /// A broker's answer does not make sense (e.g. a leader that is not among the brokers).
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A status in one line: the broker's own words for refusals it chose to send.
fn describe_status(s: &tonic::Status) -> String {
    match s.code() {
        Code::Unauthenticated => format!("not authenticated: {}", s.message()),
        Code::PermissionDenied => format!("permission denied: {}", s.message()),
        _ => format!("transport: {s}"),
    }
}

impl Error {
    /// The broker error code, when the broker sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same request may succeed if sent again (maybe to another broker): a
    /// retriable broker code, or the transport being unavailable. Never a fatal code.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { code, .. } => code.is_retriable(),
            Error::Transport(s) => is_retriable_status(s),
            _ => false,
        }
    }

    pub(crate) fn broker(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Broker { code, message: message.into() }
    }
}

/// Transport outcomes worth retrying: the broker may be down, restarting or slow. A status
/// the broker chose to send about the request itself (invalid argument, ...) is not.
fn is_retriable_status(s: &tonic::Status) -> bool {
    // A certificate refused (by either side) stays refused: say so at once.
    if tls_failure(s) {
        return false;
    }
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => true,
        // A connection reset mid-call surfaces as an h2 or transport error, not Unavailable.
        Code::Unknown | Code::Internal => {
            let m = s.message();
            m.contains("h2 protocol error") || m.contains("transport error")
        }
        _ => false,
    }
}

/// Whether `e` failed because of TLS: a certificate refused by this client or by the broker
/// (a fatal alert), or no version or cipher in common. Retrying cannot help.
///
/// HTTP/2 (h2) keeps only the kind and the text of the IO errors it passes on, so past it the
/// rustls error is gone and only its message tells: both rustls phrases are matched too.
pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    const RUSTLS: [&str; 3] =
        ["received fatal alert", "invalid peer certificate", "peer is incompatible"];
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An io::Error's `source` skips the error it wraps.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        let text = e.to_string();
        if RUSTLS.iter().any(|p| text.contains(p)) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_codes_are_not_retriable() {
        let fatal = Error::broker(ErrorCode::InvalidTopic, "bad");
        assert_eq!(fatal.code(), Some(ErrorCode::InvalidTopic));
        assert!(!fatal.is_retriable());
        assert!(Error::broker(ErrorCode::NotLeader, "moved").is_retriable());
    }

    #[test]
    fn only_unavailable_transport_is_retriable() {
        assert!(Error::Transport(tonic::Status::unavailable("refused")).is_retriable());
        assert!(!Error::Transport(tonic::Status::invalid_argument("no")).is_retriable());
        assert!(!Error::Timeout("late".into()).is_retriable());
        assert_eq!(Error::NoBrokers.code(), None);
    }

    #[test]
    fn refused_certificates_are_not_retried() {
        // As tonic reports a reset connection, and a TLS alert that passed through h2 (which
        // keeps only the text), and one still carrying rustls's error.
        let io = |e: std::io::Error| {
            let mut s = tonic::Status::unknown("transport error");
            s.set_source(std::sync::Arc::new(e));
            Error::Transport(s)
        };
        let reset = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        assert!(io(reset).is_retriable());
        let alert = "received fatal alert: CertificateRequired";
        assert!(!io(std::io::Error::new(std::io::ErrorKind::InvalidData, alert)).is_retriable());
        let typed = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert!(!io(std::io::Error::new(std::io::ErrorKind::InvalidData, typed)).is_retriable());
    }
}
