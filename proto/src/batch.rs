//! Kafka's RecordBatch v2 (magic 2): parsing with bounds, validation, building, and the two
//! fields a broker sets. The parser trusts nothing in the input: every count and length is
//! checked against the bytes actually present before anything is allocated from it, and
//! decompression stops at [`MAX_DECOMPRESSED_BYTES`].
//!
//! # Format
//!
//! Big-endian fixed header (61 bytes), then the records (one compressed blob when the
//! compression bits are set):
//!
//! ```text
//! offset size field
//!  0     8   baseOffset            set by the broker; not covered by the CRC
//!  8     4   batchLength           bytes after this field
//! 12     4   partitionLeaderEpoch  set by the broker; not covered by the CRC
//! 16     1   magic = 2
//! 17     4   crc                   CRC-32C of bytes [21, end)
//! 21     2   attributes            bits 0-2 compression (none, gzip, snappy, lz4, zstd),
//!                                  3 timestamp type (log append), 4 transactional, 5 control
//! 23     4   lastOffsetDelta       records - 1
//! 27     8   baseTimestamp         the first record's timestamp
//! 35     8   maxTimestamp
//! 43     8   producerId            -1: not idempotent
//! 51     2   producerEpoch
//! 53     4   baseSequence          -1: none
//! 57     4   recordsCount
//! 61         records
//! ```
//!
//! A record (lengths are zigzag varints, `timestampDelta` a zigzag varlong):
//! `length | attributes i8 | timestampDelta | offsetDelta | keyLength (-1: null) | key |
//! valueLength (-1: null) | value | headerCount | (keyLength | key | valueLength | value)*`.
//!
//! Compression as Kafka's clients write it: gzip (RFC 1952, several members allowed), snappy
//! (xerial framing as the Java client writes it, or one raw block as librdkafka writes it),
//! lz4 (the LZ4 frame format, independent blocks) and zstd (one frame).

use std::io::Read;
use std::io::Write;

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;

use crate::v1::ErrorCode;

/// The batch format version.
pub const MAGIC: i8 = 2;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts (baseOffset and batchLength themselves).
pub const LOG_OVERHEAD: usize = 12;
/// The most bytes one batch's records may decompress into: a few KiB of zstd can claim
/// gigabytes, and a decompression bomb must be refused, not allocated.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// The fewest bytes one record takes (seven one-byte fields), which bounds how many records
/// a batch of a given size can hold.
const MIN_RECORD_BYTES: usize = 7;
/// Where the CRC-covered part starts.
const CRC_START: usize = 21;
/// Kafka's snappy-java stream header: magic, then version and compatible version (1, 1).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Uncompressed bytes per xerial snappy block, as the Java client writes them.
const XERIAL_BLOCK: usize = 32 << 10;
/// gzip and zstd levels [`build`] compresses with (each codec's default).
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// How a batch's records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec of attribute bits 0-2.
    pub fn from_bits(bits: u8) -> Option<Compression> {
        Some(match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordBatchError {
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0} bytes is shorter than a record batch header ({HEADER_LEN} bytes)")]
    TooShort(usize),
    #[error("batchLength says {declared} bytes follow it, {actual} do")]
    Length { declared: i64, actual: usize },
    #[error(
        "{total} bytes hold more than one record batch (the first is {first} bytes): send one \
         batch per partition and request"
    )]
    SeveralBatches { first: usize, total: usize },
    #[error("unsupported batch magic {0} (this broker stores magic {MAGIC})")]
    Magic(i8),
    #[error("batch checksum mismatch: header says {expected:#010x}, content gives {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("unknown compression codec {0}")]
    Compression(u8),
    #[error(
        "recordsCount {count} with lastOffsetDelta {last_offset_delta}: a batch holds 1 or more records numbered 0..count"
    )]
    Count { count: i32, last_offset_delta: i32 },
    #[error("inconsistent producer fields: id {id}, epoch {epoch}, base sequence {seq}")]
    Producer { id: i64, epoch: i16, seq: i32 },
    #[error("maxTimestamp {max} is below baseTimestamp {base}")]
    Timestamps { base: i64, max: i64 },
    #[error("control batches are written by brokers, not produced")]
    Control,
    #[error("records block does not decompress: {0}")]
    Decompress(String),
    #[error("records decompress to more than {limit} bytes (refused as a decompression bomb)")]
    DecompressedTooLarge { limit: usize },
    #[error("record {index}: {why}")]
    Record { index: usize, why: String },
    #[error("recordsCount says {expected} records but the records block holds {actual}")]
    RecordCount { expected: i32, actual: usize },
}

impl RecordBatchError {
    /// The wire error code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            RecordBatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            RecordBatchError::Magic(_) => ErrorCode::UnsupportedVersion,
            RecordBatchError::TooShort(_)
            | RecordBatchError::Length { .. }
            | RecordBatchError::Checksum { .. }
            | RecordBatchError::Compression(_)
            | RecordBatchError::Count { .. }
            | RecordBatchError::Producer { .. }
            | RecordBatchError::Timestamps { .. }
            | RecordBatchError::Control
            | RecordBatchError::Decompress(_)
            | RecordBatchError::DecompressedTooLarge { .. }
            | RecordBatchError::Record { .. }
            | RecordBatchError::SeveralBatches { .. }
            | RecordBatchError::RecordCount { .. } => ErrorCode::InvalidRecord,
        }
    }
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("checked length")
}

impl BatchHeader {
    /// Reads the fixed header; `bytes` must hold at least [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, RecordBatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordBatchError::TooShort(bytes.len()));
        }
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(be(bytes, 0)),
            batch_length: i32::from_be_bytes(be(bytes, 8)),
            partition_leader_epoch: i32::from_be_bytes(be(bytes, 12)),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(be(bytes, 17)),
            attributes: i16::from_be_bytes(be(bytes, 21)),
            last_offset_delta: i32::from_be_bytes(be(bytes, 23)),
            base_timestamp: i64::from_be_bytes(be(bytes, 27)),
            max_timestamp: i64::from_be_bytes(be(bytes, 35)),
            producer_id: i64::from_be_bytes(be(bytes, 43)),
            producer_epoch: i16::from_be_bytes(be(bytes, 51)),
            base_sequence: i32::from_be_bytes(be(bytes, 53)),
            records_count: i32::from_be_bytes(be(bytes, 57)),
        })
    }

    /// The records' compression codec.
    pub fn compression(&self) -> Result<Compression, RecordBatchError> {
        let bits = (self.attributes & 0b111) as u8;
        Compression::from_bits(bits).ok_or(RecordBatchError::Compression(bits))
    }

    /// Whether the broker's time replaces record timestamps (LogAppendTime).
    pub fn log_append_time(&self) -> bool {
        self.attributes & (1 << 3) != 0
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & (1 << 4) != 0
    }

    /// Whether the batch is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }
}

/// A record header: the key is never null, the value may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record as read from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the batch: the record's offset is the batch's base offset plus this.
    pub offset_delta: i32,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None`: a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A record to put into a batch with [`build`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub headers: Vec<Header>,
}

/// Checks one whole batch without decompressing it: length, magic, CRC, codec, record
/// count, producer fields, timestamps, not a control batch, at most `max_bytes`.
pub fn validate(bytes: &[u8], max_bytes: usize) -> Result<BatchHeader, RecordBatchError> {
    if bytes.len() > max_bytes {
        return Err(RecordBatchError::TooLarge { size: bytes.len(), max: max_bytes });
    }
    let h = BatchHeader::parse(bytes)?;
    // More bytes than the first batch claims, starting with what parses as another batch:
    // several batches (Kafka accepts one per partition in a produce request).
    let first = usize::try_from(h.batch_length).map_or(0, |n| n.saturating_add(LOG_OVERHEAD));
    let next = bytes.get(first..).map(BatchHeader::parse);
    if first >= HEADER_LEN && matches!(next, Some(Ok(n)) if n.magic == MAGIC) {
        return Err(RecordBatchError::SeveralBatches { first, total: bytes.len() });
    }
    if i64::from(h.batch_length) != (bytes.len() - LOG_OVERHEAD) as i64 {
        return Err(RecordBatchError::Length {
            declared: h.batch_length.into(),
            actual: bytes.len() - LOG_OVERHEAD,
        });
    }
    if h.magic != MAGIC {
        return Err(RecordBatchError::Magic(h.magic));
    }
    let actual = crc32c::crc32c(&bytes[CRC_START..]);
    if actual != h.crc {
        return Err(RecordBatchError::Checksum { expected: h.crc, actual });
    }
    h.compression()?;
    if h.records_count < 1 || h.last_offset_delta != h.records_count - 1 {
        return Err(RecordBatchError::Count {
            count: h.records_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    let producer_ok = if h.producer_id >= 0 {
        h.producer_epoch >= 0 && h.base_sequence >= 0
    } else {
        h.producer_id == -1 && h.base_sequence == -1
    };
    if !producer_ok {
        return Err(RecordBatchError::Producer {
            id: h.producer_id,
            epoch: h.producer_epoch,
            seq: h.base_sequence,
        });
    }
    if h.max_timestamp < h.base_timestamp {
        return Err(RecordBatchError::Timestamps { base: h.base_timestamp, max: h.max_timestamp });
    }
    if h.is_control() {
        return Err(RecordBatchError::Control);
    }
    Ok(h)
}

/// [`validate`], then decompresses and parses every record: what a broker runs before it
/// stores a batch, so no consumer ever meets a batch it cannot read.
pub fn validate_records(bytes: &[u8], max_bytes: usize) -> Result<BatchHeader, RecordBatchError> {
    let h = validate(bytes, max_bytes)?;
    parse_records(&h, bytes)?;
    Ok(h)
}

/// The records of a valid batch (call [`validate`] first on untrusted bytes: this checks
/// structure, not the checksum).
pub fn records(bytes: &[u8]) -> Result<Vec<Record>, RecordBatchError> {
    let h = BatchHeader::parse(bytes)?;
    parse_records(&h, bytes)
}

fn parse_records(h: &BatchHeader, bytes: &[u8]) -> Result<Vec<Record>, RecordBatchError> {
    let body = Bytes::copy_from_slice(&bytes[HEADER_LEN..]);
    let body = decompress(h.compression()?, body)?;
    let expected = h.records_count;
    // A count the bytes cannot hold is refused before anything is reserved from it.
    if expected as usize > body.len() / MIN_RECORD_BYTES {
        return Err(RecordBatchError::RecordCount {
            expected,
            actual: body.len() / MIN_RECORD_BYTES,
        });
    }
    let mut out = Vec::with_capacity(expected as usize);
    let mut r = Reader { b: &body, at: 0 };
    while r.at < body.len() {
        let index = out.len();
        let fail = |why: String| RecordBatchError::Record { index, why };
        if index >= expected as usize {
            return Err(RecordBatchError::RecordCount { expected, actual: index + 1 });
        }
        let record = read_record(&mut r, &body, h).map_err(fail)?;
        if record.offset_delta != index as i32 {
            return Err(fail(format!("offset delta {} out of sequence", record.offset_delta)));
        }
        // maxTimestamp feeds the time index: no record may be later than it says.
        if !h.log_append_time() && record.timestamp > h.max_timestamp {
            return Err(fail(format!(
                "timestamp {} is after the batch's maxTimestamp {}",
                record.timestamp, h.max_timestamp
            )));
        }
        out.push(record);
    }
    if out.len() != expected as usize {
        return Err(RecordBatchError::RecordCount { expected, actual: out.len() });
    }
    Ok(out)
}

/// A cursor over a records block; every read checks the bytes left.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(v)
    }

    /// A zigzag varint of at most `max_bytes` bytes.
    fn zigzag(&mut self, max_bytes: u32) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(format!("varint longer than {max_bytes} bytes"))
    }

    fn varint(&mut self) -> Result<i32, String> {
        let v = self.zigzag(5)?;
        i32::try_from(v).map_err(|_| format!("varint {v} out of range"))
    }

    fn varlong(&mut self) -> Result<i64, String> {
        self.zigzag(10)
    }

    /// `len` bytes (a zero-copy slice of `whole`), or `None` for length -1.
    fn bytes(&mut self, whole: &Bytes, what: &str) -> Result<Option<Bytes>, String> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| format!("{what} length {len}"))?;
        if len > self.b.len() - self.at {
            return Err(format!("{what} of {len} bytes runs past the record"));
        }
        let v = whole.slice(self.at..self.at + len);
        self.at += len;
        Ok(Some(v))
    }
}

fn read_record(r: &mut Reader, whole: &Bytes, h: &BatchHeader) -> Result<Record, String> {
    let len = r.varint()?;
    let len = usize::try_from(len).map_err(|_| format!("record length {len}"))?;
    let start = r.at;
    if len > r.b.len() - start {
        return Err(format!("record length {len} runs past the batch"));
    }
    let mut rec = Reader { b: &r.b[..start + len], at: start };
    rec.byte()?; // attributes: unused
    let timestamp_delta = rec.varlong()?;
    let offset_delta = rec.varint()?;
    let key = rec.bytes(whole, "key")?;
    let value = rec.bytes(whole, "value")?;
    let count = rec.varint()?;
    let count = usize::try_from(count).map_err(|_| format!("header count {count}"))?;
    // Each header takes at least two bytes: the count cannot exceed what is left.
    if count > (rec.b.len() - rec.at) / 2 {
        return Err(format!("{count} headers cannot fit in the record"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let key = rec.bytes(whole, "header key")?.ok_or("null header key")?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| "header key is not UTF-8")?;
        let value = rec.bytes(whole, "header value")?;
        headers.push(Header { key, value });
    }
    if rec.at != start + len {
        return Err(format!("record length {len} disagrees with its content"));
    }
    r.at = rec.at;
    Ok(Record {
        offset_delta,
        timestamp: h.base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

/// Decompresses a records block, refusing more than [`MAX_DECOMPRESSED_BYTES`].
fn decompress(codec: Compression, body: Bytes) -> Result<Bytes, RecordBatchError> {
    decompress_at_most(codec, body, MAX_DECOMPRESSED_BYTES)
}

fn decompress_at_most(
    codec: Compression,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, RecordBatchError> {
    let bad = |e: &dyn std::fmt::Display| RecordBatchError::Decompress(e.to_string());
    let bounded = |reader: &mut dyn Read| -> Result<Bytes, RecordBatchError> {
        let mut out = Vec::new();
        reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| bad(&e))?;
        if out.len() > limit {
            return Err(RecordBatchError::DecompressedTooLarge { limit });
        }
        Ok(out.into())
    };
    match codec {
        Compression::None => Ok(body),
        Compression::Gzip => bounded(&mut flate2::read::MultiGzDecoder::new(&body[..])),
        Compression::Lz4 => bounded(&mut lz4_flex::frame::FrameDecoder::new(&body[..])),
        Compression::Zstd => {
            bounded(&mut zstd::stream::read::Decoder::new(&body[..]).map_err(|e| bad(&e))?)
        }
        Compression::Snappy => snappy_decompress(&body, limit),
    }
}

/// Snappy as Kafka's clients write it: xerial-framed blocks (the Java client), or one raw
/// block (librdkafka).
fn snappy_decompress(body: &[u8], limit: usize) -> Result<Bytes, RecordBatchError> {
    let bad = |e: &dyn std::fmt::Display| RecordBatchError::Decompress(e.to_string());
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), RecordBatchError> {
        let len = snap::raw::decompress_len(block).map_err(|e| bad(&e))?;
        if out.len() + len > limit {
            return Err(RecordBatchError::DecompressedTooLarge { limit });
        }
        let at = out.len();
        out.resize(at + len, 0);
        snap::raw::Decoder::new().decompress(block, &mut out[at..]).map_err(|e| bad(&e))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !body.starts_with(&XERIAL_MAGIC) {
        raw_block(body, &mut out)?;
        return Ok(out.into());
    }
    let mut at = 16; // magic, version, compatible version
    if body.len() < at {
        return Err(bad(&"truncated snappy stream header"));
    }
    while at < body.len() {
        let Some(len) = body.get(at..at + 4) else {
            return Err(bad(&"truncated snappy block length"));
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        at += 4;
        let Some(block) = body.get(at..at.saturating_add(len)) else {
            return Err(bad(&format!("snappy block of {len} bytes runs past the batch")));
        };
        raw_block(block, &mut out)?;
        at += len;
    }
    Ok(out.into())
}

fn compress(codec: Compression, raw: &[u8]) -> Vec<u8> {
    // Compressing an in-memory buffer has no I/O to fail: an error here is a codec bug.
    match codec {
        Compression::None => raw.to_vec(),
        Compression::Gzip => {
            let mut e =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            e.write_all(raw).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Compression::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in raw.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).expect("snappy into memory");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(raw).expect("lz4 into memory");
            e.finish().expect("lz4 into memory")
        }
        Compression::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd into memory"),
    }
}

fn put_zigzag(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_zigzag(buf, -1),
        Some(b) => {
            put_zigzag(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Builds a batch of `records` (at least one) with base offset 0. `producer` is
/// `(producer id, epoch, base sequence)` for an idempotent producer; `None` writes -1s. The
/// base timestamp is the first record's, as Kafka's clients write it.
pub fn build(
    records: &[NewRecord],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Bytes {
    build_from(records.iter(), producer, compression)
}

/// [`build`] from records held elsewhere (the iterator is walked twice). Uncompressed
/// records are written straight into the batch; compressed ones are encoded, then
/// compressed into it.
pub fn build_from<'a, I>(
    records: I,
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Bytes
where
    I: Iterator<Item = &'a NewRecord> + Clone,
{
    let mut count = 0usize;
    let mut first = None;
    let mut max_timestamp = -1;
    let mut size = 0;
    for r in records.clone() {
        count += 1;
        first.get_or_insert(r.timestamp);
        max_timestamp = max_timestamp.max(r.timestamp);
        size += 10 + r.key.as_ref().map_or(0, |k| k.len() + 5);
        size += r.value.as_ref().map_or(0, |v| v.len() + 5) + 5;
        size += r
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10)
            .sum::<usize>();
    }
    let base_timestamp = first.unwrap_or(-1);
    let count = i32::try_from(count).expect("more than i32::MAX records");
    let mut b = BytesMut::with_capacity(HEADER_LEN + size);
    b.put_i64(0);
    b.put_i32(0); // the length, set below
    b.put_i32(-1);
    b.put_i8(MAGIC);
    b.put_u32(0); // the CRC, set below
    b.put_i16(compression as i16);
    b.put_i32(count - 1);
    b.put_i64(base_timestamp);
    b.put_i64(max_timestamp);
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    b.put_i64(producer_id);
    b.put_i16(producer_epoch);
    b.put_i32(base_sequence);
    b.put_i32(count);
    match compression {
        Compression::None => put_records(&mut b, records, base_timestamp),
        codec => {
            let mut raw = BytesMut::with_capacity(size);
            put_records(&mut raw, records, base_timestamp);
            b.put_slice(&compress(codec, &raw));
        }
    }
    let length = i32::try_from(b.len() - LOG_OVERHEAD).expect("batch fits i32");
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Appends each record, length-prefixed, as a v2 batch holds them.
fn put_records<'a>(
    buf: &mut BytesMut,
    records: impl Iterator<Item = &'a NewRecord>,
    base_timestamp: i64,
) {
    for (i, r) in records.enumerate() {
        let delta = r.timestamp.wrapping_sub(base_timestamp);
        let mut len = 1 + zigzag_len(delta) + zigzag_len(i as i64);
        len += bytes_len(r.key.as_deref()) + bytes_len(r.value.as_deref());
        len += zigzag_len(r.headers.len() as i64);
        for h in &r.headers {
            len += bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref());
        }
        put_zigzag(buf, len as i64);
        let start = buf.len();
        buf.put_i8(0);
        put_zigzag(buf, delta);
        put_zigzag(buf, i as i64);
        put_bytes(buf, r.key.as_deref());
        put_bytes(buf, r.value.as_deref());
        put_zigzag(buf, r.headers.len() as i64);
        for h in &r.headers {
            put_bytes(buf, Some(h.key.as_bytes()));
            put_bytes(buf, h.value.as_deref());
        }
        debug_assert_eq!(buf.len() - start, len, "record length computed as written");
    }
}

/// Bytes of `v` as a zigzag varint.
fn zigzag_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of a length-prefixed (or null, -1) byte string.
fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => zigzag_len(-1),
        Some(b) => zigzag_len(b.len() as i64) + b.len(),
    }
}

/// Sets the base offset (outside the CRC: the batch stays valid).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch (outside the CRC: the batch stays valid).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

#[cfg(test)]
mod tests;
