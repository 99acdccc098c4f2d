//! `RecordBatch` checksum and validation.
//!
//! # Format
//!
//! A batch is the protobuf `RecordBatch` message (see the .proto). Its `crc` is CRC32C over
//! the little-endian fixed-width header
//! `magic u32 | producer_id i64 | producer_epoch i32 | base_sequence i32 | base_timestamp i64 |
//! max_timestamp i64 | record_count u32 | compression u32` followed by the `records` bytes.

use prost::Message;

use crate::v1::Compression;
use crate::v1::ErrorCode;
use crate::v1::RecordBatch;

/// The batch format version this crate writes and accepts.
pub const MAGIC: u32 = 1;

/// What the broker needs to know about a valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub record_count: u32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub base_sequence: i32,
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("batch is not a valid RecordBatch message: {0}")]
    Decode(String),
    #[error("unsupported batch magic {0} (this broker speaks {MAGIC})")]
    UnsupportedMagic(u32),
    #[error("batch holds no records")]
    NoRecords,
    #[error("unknown compression {0}")]
    UnknownCompression(i32),
    #[error("batch checksum mismatch: header says {expected:#010x}, content gives {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("max_timestamp {max} is below base_timestamp {base}")]
    Timestamps { base: i64, max: i64 },
    #[error("inconsistent producer fields: id {id}, epoch {epoch}, base sequence {seq}")]
    Producer { id: i64, epoch: i32, seq: i32 },
}

impl BatchError {
    /// The wire error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::UnsupportedMagic(_) => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::InvalidRecord,
        }
    }
}

/// Computes the checksum of `b` as defined in the module docs.
pub fn checksum(b: &RecordBatch) -> u32 {
    let mut h = [0u8; 48];
    h[0..4].copy_from_slice(&b.magic.to_le_bytes());
    h[4..12].copy_from_slice(&b.producer_id.to_le_bytes());
    h[12..16].copy_from_slice(&b.producer_epoch.to_le_bytes());
    h[16..20].copy_from_slice(&b.base_sequence.to_le_bytes());
    h[20..28].copy_from_slice(&b.base_timestamp.to_le_bytes());
    h[28..36].copy_from_slice(&b.max_timestamp.to_le_bytes());
    h[36..40].copy_from_slice(&b.record_count.to_le_bytes());
    h[40..44].copy_from_slice(&(b.compression as u32).to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&h[..44]), &b.records)
}

/// Sets `b.crc` from its content.
pub fn seal(b: &mut RecordBatch) {
    b.crc = checksum(b);
}

/// Checks size, structure and checksum of an encoded batch without decompressing it.
pub fn validate(bytes: &[u8], max_bytes: usize) -> Result<BatchInfo, BatchError> {
    if bytes.len() > max_bytes {
        return Err(BatchError::TooLarge { size: bytes.len(), max: max_bytes });
    }
    let b = RecordBatch::decode(bytes).map_err(|e| BatchError::Decode(e.to_string()))?;
    if b.magic != MAGIC {
        return Err(BatchError::UnsupportedMagic(b.magic));
    }
    if b.record_count == 0 || b.records.is_empty() {
        return Err(BatchError::NoRecords);
    }
    if Compression::try_from(b.compression).is_err() {
        return Err(BatchError::UnknownCompression(b.compression));
    }
    if b.max_timestamp < b.base_timestamp {
        return Err(BatchError::Timestamps { base: b.base_timestamp, max: b.max_timestamp });
    }
    let idempotent = b.producer_id >= 0;
    if idempotent && (b.producer_epoch < 0 || b.base_sequence < 0)
        || !idempotent && (b.producer_id != -1 || b.producer_epoch != -1 || b.base_sequence != -1)
    {
        return Err(BatchError::Producer {
            id: b.producer_id,
            epoch: b.producer_epoch,
            seq: b.base_sequence,
        });
    }
    let actual = checksum(&b);
    if actual != b.crc {
        return Err(BatchError::Checksum { expected: b.crc, actual });
    }
    Ok(BatchInfo {
        record_count: b.record_count,
        max_timestamp: b.max_timestamp,
        producer_id: b.producer_id,
        producer_epoch: b.producer_epoch,
        base_sequence: b.base_sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Record;
    use crate::v1::Records;

    fn sample() -> RecordBatch {
        let records = Records {
            records: vec![
                Record {
                    timestamp_delta: 0,
                    key: Some(b"k".to_vec().into()),
                    value: b"v1".to_vec().into(),
                    headers: vec![],
                },
                Record {
                    timestamp_delta: 5,
                    key: None,
                    value: b"v2".to_vec().into(),
                    headers: vec![],
                },
            ],
        };
        let mut b = RecordBatch {
            magic: MAGIC,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: 1_000,
            max_timestamp: 1_005,
            record_count: 2,
            compression: Compression::None as i32,
            crc: 0,
            records: records.encode_to_vec().into(),
        };
        seal(&mut b);
        b
    }

    #[test]
    fn valid_batch_passes() {
        let bytes = sample().encode_to_vec();
        let info = validate(&bytes, 1 << 20).unwrap();
        assert_eq!(info.record_count, 2);
        assert_eq!(info.max_timestamp, 1_005);
    }

    #[test]
    fn no_single_bit_flip_changes_an_accepted_batch() {
        // A flip is either refused, or lands in bits protobuf ignores (say the high bits of
        // a 10-byte varint holding an int32), leaving the decoded batch identical.
        let original = sample();
        let bytes = original.encode_to_vec();
        let mut refused = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                match validate(&bad, 1 << 20) {
                    Err(_) => refused += 1,
                    Ok(_) => assert_eq!(
                        RecordBatch::decode(&bad[..]).unwrap(),
                        original,
                        "flip of bit {bit} in byte {i} accepted with different content"
                    ),
                }
            }
        }
        assert!(refused > bytes.len() * 6, "only {refused} flips refused");
    }

    #[test]
    fn refusals_have_the_right_codes() {
        let bytes = sample().encode_to_vec();
        assert_eq!(validate(&bytes, 10).unwrap_err().code(), ErrorCode::MessageTooLarge);
        assert_eq!(
            validate(b"\xff\xff\xff", 1 << 20).unwrap_err().code(),
            ErrorCode::InvalidRecord
        );
        let mut b = sample();
        b.magic = 7;
        seal(&mut b);
        assert_eq!(
            validate(&b.encode_to_vec(), 1 << 20).unwrap_err().code(),
            ErrorCode::UnsupportedVersion
        );
        let mut b = sample();
        b.record_count = 0;
        seal(&mut b);
        assert_eq!(validate(&b.encode_to_vec(), 1 << 20), Err(BatchError::NoRecords));
        let mut b = sample();
        b.producer_id = 5; // idempotent id without epoch and sequence
        seal(&mut b);
        assert!(matches!(validate(&b.encode_to_vec(), 1 << 20), Err(BatchError::Producer { .. })));
    }
}
