//! The payload of a partition log entry: one record batch exactly as the producer sent it.
//!
//! # Format
//!
//! ```text
//! kind u8 (1 = record batch) | record_count u32 | max_timestamp i64 | producer_id i64 |
//! producer_epoch i32 | base_sequence i32 | batch bytes (an encoded rafka.v1.RecordBatch)
//! ```
//!
//! All integers little-endian. The header repeats what the broker validated in the batch so
//! that reading an entry (fetch, apply, recovery) never parses the protobuf again.

use std::fmt;
use std::io;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use rafka_proto::batch::BatchInfo;
use rafka_raft::LogPayload;

const KIND_BATCH: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 4 + 4;

/// A record batch in the partition log.
#[derive(Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// What validation found in the batch.
    pub info: BatchInfo,
    /// The encoded `RecordBatch`, byte for byte as produced.
    pub batch: Bytes,
}

impl fmt::Debug for PartitionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for PartitionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch({} records, {} bytes, producer {}/{}/{})",
            self.info.record_count,
            self.batch.len(),
            self.info.producer_id,
            self.info.producer_epoch,
            self.info.base_sequence
        )
    }
}

impl PartitionEntry {
    /// Sequence number of the batch's last record (idempotent batches).
    pub fn last_sequence(&self) -> i64 {
        self.info.base_sequence as i64 + self.info.record_count as i64 - 1
    }
}

impl LogPayload for PartitionEntry {
    fn record_count(&self) -> u32 {
        self.info.record_count
    }

    fn max_timestamp(&self) -> i64 {
        self.info.max_timestamp
    }

    fn encoded_len(&self) -> usize {
        HEADER_LEN + self.batch.len()
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(KIND_BATCH);
        buf.put_u32_le(self.info.record_count);
        buf.put_i64_le(self.info.max_timestamp);
        buf.put_i64_le(self.info.producer_id);
        buf.put_i32_le(self.info.producer_epoch);
        buf.put_i32_le(self.info.base_sequence);
        buf.put_slice(&self.batch);
    }

    fn decode(mut bytes: Bytes) -> io::Result<Self> {
        if bytes.len() < HEADER_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "partition entry truncated"));
        }
        let kind = bytes.get_u8();
        if kind != KIND_BATCH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown partition entry kind {kind}"),
            ));
        }
        let info = BatchInfo {
            record_count: bytes.get_u32_le(),
            max_timestamp: bytes.get_i64_le(),
            producer_id: bytes.get_i64_le(),
            producer_epoch: bytes.get_i32_le(),
            base_sequence: bytes.get_i32_le(),
        };
        Ok(PartitionEntry { info, batch: bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let e = PartitionEntry {
            info: BatchInfo {
                record_count: 3,
                max_timestamp: 99,
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: 10,
            },
            batch: Bytes::from_static(b"batch-bytes"),
        };
        let mut buf = BytesMut::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), e.encoded_len());
        let back = PartitionEntry::decode(buf.clone().freeze()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.last_sequence(), 12);
        assert!(PartitionEntry::decode(buf.freeze().slice(..HEADER_LEN - 1)).is_err());
        let mut bad = BytesMut::new();
        e.encode(&mut bad);
        bad[0] = 9;
        assert!(PartitionEntry::decode(bad.freeze()).is_err());
    }
}
