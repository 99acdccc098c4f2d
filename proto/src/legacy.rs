//! rafka's batch format before it stored Kafka's: the protobuf `RecordBatch` (magic 1). Kept
//! for one release so that brokers accept batches from older `rafka-client`s and convert
//! them ([`to_v2`]), serve data written before the switch converted, and write this format
//! while a cluster still has brokers that read nothing else ([`from_v2`]).
//!
//! # Format
//!
//! A batch is the protobuf `RecordBatch` message (see the .proto). prost writes fields in
//! number order and `magic` (field 1, value 1) is never left out, so an encoded batch starts
//! with the bytes `08 01` — where a Kafka batch has the high bytes of its base offset, which
//! producers send as 0 ([`is_legacy`]). Its `crc` is CRC32C over
//! the little-endian fixed-width header
//! `magic u32 | producer_id i64 | producer_epoch i32 | base_sequence i32 | base_timestamp i64 |
//! max_timestamp i64 | record_count u32 | compression u32` followed by the `records` bytes.

use std::io::Read;

use bytes::Bytes;
use prost::Message;

use crate::batch as v2;
use crate::v1::Compression;
use crate::v1::ErrorCode;
use crate::v1::Record;
use crate::v1::RecordBatch;
use crate::v1::RecordHeader;
use crate::v1::Records;

/// The batch format version this crate writes and accepts.
pub const MAGIC: u32 = 1;

/// The most bytes [`records`] will decompress one batch into. A batch is at most
/// `max.message.bytes` compressed, but a few KiB of zstd can claim gigabytes: a decompression
/// bomb must be refused, not allocated.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// zstd level [`build`] compresses with (zstd's own default).
const ZSTD_LEVEL: i32 = 3;

/// A record to put into a batch with [`build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Optional key; `None` is a null key.
    pub key: Option<Bytes>,
    /// The value; may be empty.
    pub value: Bytes,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Application headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

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
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    #[error("record {index} has timestamp delta {delta}, outside the batch's [{base}, {max}]")]
    RecordTimestamp { index: usize, delta: i64, base: i64, max: i64 },
    #[error("max_timestamp {max} is below base_timestamp {base}")]
    Timestamps { base: i64, max: i64 },
    #[error("inconsistent producer fields: id {id}, epoch {epoch}, base sequence {seq}")]
    Producer { id: i64, epoch: i32, seq: i32 },
    #[error("records block does not decompress: {0}")]
    Decompress(String),
    #[error(
        "records block decompresses to more than {limit} bytes (refused as a decompression bomb)"
    )]
    DecompressedTooLarge { limit: usize },
    #[error("record_count says {expected} records but the records block holds {actual}")]
    RecordCount { expected: u32, actual: usize },
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

/// Builds a sealed batch (checksum set) of `records`.
///
/// `producer` is `(producer id, epoch, base sequence)` for an idempotent producer; `None`
/// writes -1 into all three. The base timestamp is the smallest record timestamp, and each
/// record stores its distance from it. An empty `records` gives a batch [`validate`] refuses,
/// and so do timestamps more than `i64::MAX` apart (the distance wraps; it never panics).
pub fn build(
    records: &[NewRecord],
    producer: Option<(i64, i32, i32)>,
    compression: Compression,
) -> RecordBatch {
    let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let block = Records {
        records: records
            .iter()
            .map(|r| Record {
                timestamp_delta: r.timestamp.wrapping_sub(base_timestamp),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| RecordHeader { key: k.clone(), value: v.clone() })
                    .collect(),
            })
            .collect(),
    }
    .encode_to_vec();
    let block = match compression {
        Compression::None => block,
        Compression::Lz4 => lz4_flex::compress_prepend_size(&block),
        // Compressing an in-memory buffer has no I/O to fail; an error here is a zstd bug.
        Compression::Zstd => zstd::encode_all(&block[..], ZSTD_LEVEL).expect("zstd compression"),
    };
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let mut b = RecordBatch {
        magic: MAGIC,
        producer_id,
        producer_epoch,
        base_sequence,
        base_timestamp,
        max_timestamp,
        record_count: u32::try_from(records.len()).expect("more than u32::MAX records"),
        compression: compression as i32,
        crc: 0,
        records: block.into(),
    };
    seal(&mut b);
    b
}

/// Decompresses and decodes the records of `b`, refusing more than
/// [`MAX_DECOMPRESSED_BYTES`] and a record count that disagrees with `b.record_count`.
///
/// Does not verify the checksum: call [`validate`] on the encoded batch first.
pub fn records(b: &RecordBatch) -> Result<Records, BatchError> {
    let compression = Compression::try_from(b.compression)
        .map_err(|_| BatchError::UnknownCompression(b.compression))?;
    let block: Bytes = match compression {
        Compression::None => b.records.clone(),
        Compression::Lz4 => {
            // lz4_flex allocates whatever the size prefix claims: check it first.
            let prefix = b.records.get(..4).ok_or_else(|| {
                BatchError::Decompress("lz4 block shorter than its size prefix".into())
            })?;
            let size = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
            if size > MAX_DECOMPRESSED_BYTES {
                return Err(BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES });
            }
            lz4_flex::decompress_size_prepended(&b.records)
                .map_err(|e| BatchError::Decompress(format!("lz4: {e}")))?
                .into()
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&b.records[..])
                .map_err(|e| BatchError::Decompress(format!("zstd: {e}")))?;
            let mut out = Vec::new();
            decoder
                .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BatchError::Decompress(format!("zstd: {e}")))?;
            if out.len() > MAX_DECOMPRESSED_BYTES {
                return Err(BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES });
            }
            out.into()
        }
    };
    let decoded = Records::decode(block).map_err(|e| BatchError::Decode(e.to_string()))?;
    if decoded.records.len() != b.record_count as usize {
        return Err(BatchError::RecordCount {
            expected: b.record_count,
            actual: decoded.records.len(),
        });
    }
    Ok(decoded)
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

/// [`validate`], then decompresses and decodes the records and checks them against the
/// header: the count, and every record timestamp within `[base_timestamp, max_timestamp]`.
/// What a broker runs before storing a batch, so consumers never meet a batch they cannot
/// read.
pub fn validate_records(bytes: &[u8], max_bytes: usize) -> Result<BatchInfo, BatchError> {
    let info = validate(bytes, max_bytes)?;
    let b = RecordBatch::decode(bytes).map_err(|e| BatchError::Decode(e.to_string()))?;
    let records = records(&b)?;
    for (i, r) in records.records.iter().enumerate() {
        let ts = b.base_timestamp.checked_add(r.timestamp_delta);
        if ts.is_none_or(|ts| ts < b.base_timestamp || ts > b.max_timestamp) {
            return Err(BatchError::RecordTimestamp {
                index: i,
                delta: r.timestamp_delta,
                base: b.base_timestamp,
                max: b.max_timestamp,
            });
        }
    }
    Ok(info)
}

/// Whether `bytes` is a batch of this format rather than a Kafka RecordBatch v2 (see the
/// module docs).
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x08, MAGIC as u8])
}

/// Converts a valid batch of this format (call [`validate_records`] first on untrusted
/// bytes) into a Kafka RecordBatch v2 with the same records, timestamps and producer fields:
/// values become non-null, lz4 becomes Kafka's lz4 frame, zstd stays zstd. The result is the
/// same for the same input, so a batch converted on every read keeps one checksum.
pub fn to_v2(bytes: &[u8]) -> Result<Bytes, BatchError> {
    let b = RecordBatch::decode(bytes).map_err(|e| BatchError::Decode(e.to_string()))?;
    let records = records(&b)?;
    let producer = if b.producer_id >= 0 {
        let epoch = i16::try_from(b.producer_epoch).map_err(|_| BatchError::Producer {
            id: b.producer_id,
            epoch: b.producer_epoch,
            seq: b.base_sequence,
        })?;
        Some((b.producer_id, epoch, b.base_sequence))
    } else {
        None
    };
    let compression = match Compression::try_from(b.compression) {
        Ok(Compression::Lz4) => v2::Compression::Lz4,
        Ok(Compression::Zstd) => v2::Compression::Zstd,
        _ => v2::Compression::None,
    };
    let records: Vec<v2::NewRecord> = records
        .records
        .into_iter()
        .map(|r| v2::NewRecord {
            key: r.key,
            value: Some(r.value),
            timestamp: b.base_timestamp.wrapping_add(r.timestamp_delta),
            headers: r
                .headers
                .into_iter()
                .map(|h| v2::Header { key: h.key, value: Some(h.value) })
                .collect(),
        })
        .collect();
    Ok(v2::build(&records, producer, compression))
}

/// Why a Kafka batch cannot be written in this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownConvertError {
    #[error(transparent)]
    Batch(#[from] v2::RecordBatchError),
    #[error(
        "record {0} has a null value, which brokers still on batch format 1 cannot store (the cluster finishes its upgrade once every broker runs a version with format 2)"
    )]
    NullValue(usize),
    #[error(
        "record {0} has a header with a null value, which brokers still on batch format 1 cannot store (the cluster finishes its upgrade once every broker runs a version with format 2)"
    )]
    NullHeader(usize),
}

impl DownConvertError {
    /// The wire error code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            DownConvertError::Batch(e) => e.code(),
            DownConvertError::NullValue(_) | DownConvertError::NullHeader(_) => {
                ErrorCode::UnsupportedForMessageFormat
            }
        }
    }
}

/// Converts a valid Kafka batch (call [`v2::validate`] first on untrusted bytes) into this
/// format, for a cluster whose brokers do not all read Kafka's yet: the same records,
/// timestamps and producer fields; gzip and snappy become zstd. Null values and null header
/// values have no representation here and are refused.
pub fn from_v2(bytes: &[u8]) -> Result<Bytes, DownConvertError> {
    let h = v2::BatchHeader::parse(bytes)?;
    let mut records = Vec::with_capacity(h.records_count.max(0) as usize);
    for (i, r) in v2::records(bytes)?.into_iter().enumerate() {
        let headers = r
            .headers
            .into_iter()
            .map(|h| h.value.map(|v| (h.key, v)).ok_or(DownConvertError::NullHeader(i)))
            .collect::<Result<_, _>>()?;
        records.push(NewRecord {
            key: r.key,
            value: r.value.ok_or(DownConvertError::NullValue(i))?,
            timestamp: r.timestamp,
            headers,
        });
    }
    let producer = (h.producer_id >= 0).then_some((
        h.producer_id,
        i32::from(h.producer_epoch),
        h.base_sequence,
    ));
    let compression = match h.compression()? {
        v2::Compression::None => Compression::None,
        v2::Compression::Lz4 => Compression::Lz4,
        v2::Compression::Gzip | v2::Compression::Snappy | v2::Compression::Zstd => {
            Compression::Zstd
        }
    };
    Ok(build(&records, producer, compression).encode_to_vec().into())
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

    fn sample_records() -> Vec<NewRecord> {
        (0..50)
            .map(|i: usize| NewRecord {
                key: i.is_multiple_of(2).then(|| Bytes::from(format!("key-{i}"))),
                value: Bytes::from(format!("value-{i}-").repeat(i % 7 + 1)),
                // Not monotonic: the smallest timestamp is not the first record's.
                timestamp: 1_700_000_000_000 + 3 * i as i64 - if i == 10 { 500 } else { 0 },
                headers: if i.is_multiple_of(5) {
                    vec![("h".into(), Bytes::from_static(b"x")), ("h".into(), Bytes::new())]
                } else {
                    vec![]
                },
            })
            .collect()
    }

    /// The records of `b` back as [`NewRecord`]s with absolute timestamps.
    fn decoded(b: &RecordBatch) -> Vec<NewRecord> {
        records(b)
            .unwrap()
            .records
            .into_iter()
            .map(|r| NewRecord {
                key: r.key,
                value: r.value,
                timestamp: b.base_timestamp + r.timestamp_delta,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
            })
            .collect()
    }

    const ALL: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

    #[test]
    fn build_and_records_round_trip_for_every_compression() {
        let input = sample_records();
        for compression in ALL {
            for producer in [None, Some((7, 2, 100))] {
                let bytes = build(&input, producer, compression).encode_to_vec();
                let info = validate(&bytes, 1 << 20).unwrap();
                assert_eq!(info.record_count, 50);
                assert_eq!(info.max_timestamp, 1_700_000_000_147);
                let (id, epoch, seq) = producer.unwrap_or((-1, -1, -1));
                assert_eq!(
                    (info.producer_id, info.producer_epoch, info.base_sequence),
                    (id, epoch, seq)
                );
                let b = RecordBatch::decode(&bytes[..]).unwrap();
                assert_eq!(b.base_timestamp, 1_700_000_000_000 + 30 - 500);
                assert_eq!(b.compression, compression as i32);
                assert_eq!(decoded(&b), input, "{compression:?} {producer:?}");
            }
        }
    }

    #[test]
    fn compressed_blocks_are_smaller() {
        let plain = build(&sample_records(), None, Compression::None).records.len();
        for compression in [Compression::Lz4, Compression::Zstd] {
            let packed = build(&sample_records(), None, compression).records.len();
            assert!(packed < plain, "{compression:?}: {packed} bytes, uncompressed {plain}");
        }
    }

    #[test]
    fn empty_build_is_refused_by_validate() {
        let bytes = build(&[], None, Compression::None).encode_to_vec();
        assert_eq!(validate(&bytes, 1 << 20), Err(BatchError::NoRecords));
    }

    #[test]
    fn corrupt_compressed_blocks_are_errors_not_panics() {
        for compression in [Compression::Lz4, Compression::Zstd] {
            let good = build(&sample_records(), None, compression);
            for len in 0..good.records.len() {
                let mut b = good.clone();
                b.records = good.records.slice(..len);
                assert!(records(&b).is_err(), "{compression:?} truncated to {len} bytes");
            }
            // A flipped byte may land in a literal and decode to other values: only a panic
            // (or a huge allocation) is a failure here.
            for i in 0..good.records.len() {
                let mut bad = good.records.to_vec();
                bad[i] ^= 0xff;
                let mut b = good.clone();
                b.records = bad.into();
                let _ = records(&b);
            }
            let mut b = good.clone();
            b.records = Bytes::from_static(b"\x10\0\0\0definitely not compressed data");
            assert!(
                matches!(records(&b), Err(BatchError::Decompress(_))),
                "{compression:?}: {:?}",
                records(&b)
            );
            assert_eq!(BatchError::Decompress(String::new()).code(), ErrorCode::InvalidRecord);
        }
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let mut b = build(&sample_records(), None, Compression::Lz4);
        let mut block = b.records.to_vec();
        block[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        b.records = block.into();
        let err = records(&b).unwrap_err();
        assert_eq!(err, BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES });
        assert!(err.to_string().contains("decompression bomb"), "{err}");

        let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES + 1];
        let mut b = build(&sample_records(), None, Compression::Zstd);
        b.records = zstd::encode_all(&zeros[..], 1).unwrap().into();
        assert!(b.records.len() < 64 << 10, "bomb is {} bytes", b.records.len());
        assert_eq!(
            records(&b),
            Err(BatchError::DecompressedTooLarge { limit: MAX_DECOMPRESSED_BYTES })
        );
    }

    #[test]
    fn record_count_must_match_the_block() {
        for compression in ALL {
            let mut b = build(&sample_records(), None, compression);
            b.record_count = 49;
            seal(&mut b);
            assert!(validate(&b.encode_to_vec(), 1 << 20).is_ok(), "validate does not decompress");
            let err = records(&b).unwrap_err();
            assert_eq!(err, BatchError::RecordCount { expected: 49, actual: 50 });
            assert_eq!(err.code(), ErrorCode::InvalidRecord);
        }
    }

    #[test]
    fn unknown_compression_is_refused_by_records() {
        let mut b = build(&sample_records(), None, Compression::None);
        b.compression = 9;
        assert_eq!(records(&b), Err(BatchError::UnknownCompression(9)));
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
    fn validate_records_checks_count_and_timestamps() {
        let bytes = sample().encode_to_vec();
        assert_eq!(validate_records(&bytes, 1 << 20).unwrap().record_count, 2);
        let mut b = sample();
        b.max_timestamp = 1_004; // record 1 is at 1_005
        seal(&mut b);
        assert!(matches!(
            validate_records(&b.encode_to_vec(), 1 << 20),
            Err(BatchError::RecordTimestamp { index: 1, .. })
        ));
        let mut b = sample();
        b.record_count = 3;
        seal(&mut b);
        let e = validate_records(&b.encode_to_vec(), 1 << 20).unwrap_err();
        assert!(matches!(e, BatchError::RecordCount { .. }), "{e}");
        assert_eq!(e.code(), ErrorCode::InvalidRecord);
        let mut b = sample();
        b.records = b"\xff\xff garbage".to_vec().into();
        seal(&mut b);
        assert_eq!(
            validate_records(&b.encode_to_vec(), 1 << 20).unwrap_err().code(),
            ErrorCode::InvalidRecord
        );
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
