//! [`JsonEntry`]: a Raft entry payload holding one JSON-encoded command, shared by the
//! controller and the consumer-group coordinators (their logs hold small metadata changes,
//! where a readable format beats a compact one).
//!
//! # Format
//!
//! The stored payload is the command's JSON, as is. It carries no records (record count 0).

use std::fmt;
use std::io;

use bytes::Bytes;
use bytes::BytesMut;
use rafka_raft::LogPayload;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A command as stored in a metadata log (JSON).
#[derive(Clone, PartialEq, Eq)]
pub struct JsonEntry(pub Bytes);

impl JsonEntry {
    /// Encodes a command.
    pub fn new<T: Serialize>(cmd: &T) -> JsonEntry {
        JsonEntry(Bytes::from(serde_json::to_vec(cmd).expect("commands serialize")))
    }

    /// Decodes the command; `what` names it in the error.
    pub fn decode<T: DeserializeOwned>(&self, what: &str) -> io::Result<T> {
        serde_json::from_slice(&self.0)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad {what}: {e}")))
    }
}

impl fmt::Debug for JsonEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for JsonEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl LogPayload for JsonEntry {
    fn record_count(&self) -> u32 {
        0
    }

    fn max_timestamp(&self) -> i64 {
        i64::MIN
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(&self.0);
    }

    fn decode(bytes: Bytes) -> io::Result<Self> {
        Ok(JsonEntry(bytes))
    }
}
