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
}

impl Error {
    /// A stable, machine-readable name of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "CONFIG",
            Error::Io(_) => "IO",
            Error::Corrupt { .. } => "CORRUPT_LOG",
            Error::GroupInUse(_) => "GROUP_IN_USE",
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::Config(_) | Error::GroupInUse(_) => {
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
            }
            Error::Corrupt { .. } => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}
