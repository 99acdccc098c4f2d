//! The error type of rafka-raft.

use std::io;

/// Errors of the Raft runtime and its storage. Each has a stable [`Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or malformed.
    #[error("invalid log config: {0}")]
    Config(String),
    /// An IO call failed.
    #[error("io error: {0}")]
    Io(#[from] io::Error),
    /// The group's log is already open (or still referenced) in this runtime.
    #[error("group {0} is in use: its log is open in this runtime")]
    GroupInUse(u64),
    /// Stored data failed validation somewhere it cannot be repaired by truncating a torn tail.
    #[error("group {group}: corrupt log: {detail}")]
    Corrupt { group: u64, detail: String },
    /// The group is not hosted by this node (never created, stopped or deleted).
    #[error("group {0} is not hosted on this node")]
    UnknownGroup(u64),
    /// The group is already hosted by this node.
    #[error("group {0} already exists on this node")]
    GroupExists(u64),
    /// The stored copy of the group belongs to another replica id (ids are never reused).
    #[error("group {group}: the stored copy is replica {stored}, not {requested}")]
    ReplicaMismatch { group: u64, stored: u64, requested: u64 },
    /// The request needs the group's leader and this replica is not it.
    #[error("group {group}: not the leader; leader is {leader:?}")]
    NotLeader { group: u64, leader: Option<(u64, crate::types::ReplicaNode)> },
    /// A membership change was refused (unknown replica, id reused, change in progress...).
    #[error("group {group}: membership change refused: {detail}")]
    Membership { group: u64, detail: String },
    /// The group's Raft core stopped normally: the group or the node is shutting down (or
    /// the replica is being deleted). Another replica can serve.
    #[error("group {group}: raft stopped: {detail}")]
    Stopped { group: u64, detail: String },
    /// The group's Raft core failed (a storage error, or a panic) and stays stopped until
    /// the node restarts.
    #[error("group {group}: raft failed: {detail}")]
    Failed { group: u64, detail: String },
    /// The operation did not complete in time; it may still take effect.
    #[error("group {group}: timed out: {detail}")]
    Timeout { group: u64, detail: String },
}

impl Error {
    /// A stable, machine-readable name of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "CONFIG",
            Error::Io(_) => "IO",
            Error::Corrupt { .. } => "CORRUPT_LOG",
            Error::GroupInUse(_) => "GROUP_IN_USE",
            Error::UnknownGroup(_) => "UNKNOWN_GROUP",
            Error::GroupExists(_) => "GROUP_EXISTS",
            Error::ReplicaMismatch { .. } => "REPLICA_MISMATCH",
            Error::NotLeader { .. } => "NOT_LEADER",
            Error::Membership { .. } => "MEMBERSHIP",
            Error::Stopped { .. } => "STOPPED",
            Error::Failed { .. } => "FAILED",
            Error::Timeout { .. } => "TIMEOUT",
        }
    }

    /// Whether retrying (after refreshing the leader) may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::NotLeader { .. } | Error::Timeout { .. })
    }
}

/// The error of a stopped Raft core: shutting down, or failed.
pub(crate) fn fatal<C: openraft::RaftTypeConfig>(
    group: u64,
    e: openraft::errors::Fatal<C>,
) -> Error {
    use openraft::errors::Fatal;
    match e {
        Fatal::Stopped => Error::Stopped { group, detail: e.to_string() },
        Fatal::StorageError(_) | Fatal::Panicked => Error::Failed { group, detail: e.to_string() },
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::Corrupt { .. } => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            _ => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        }
    }
}
