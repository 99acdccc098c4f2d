//! Byte formats of the segmented log: entry records and sparse-index records.
//!
//! # Format: entry record (little-endian)
//!
//! ```text
//! offset size field
//!      0    4 len            bytes after this field (crc .. end of payload)
//!      4    4 crc            CRC32C of `len` followed by bytes [8 .. 4 + len)
//!      8    8 index          Raft log index
//!     16    8 term           Raft term of the entry's leader
//!     24    1 kind           0 blank, 1 normal, 2 membership
//!     25    8 base_offset    record offset of the entry's first record
//!     33    4 record_count   records in the entry (0 for blank and membership)
//!     37    8 max_timestamp  largest record timestamp, i64::MIN if none
//!     45    n payload        application bytes, or the encoded membership
//! ```
//!
//! # Format: sparse-index record (little-endian, 32 bytes)
//!
//! ```text
//!      0    8 index          Raft index of the indexed entry
//!      8    4 position       byte position of the entry in its segment
//!     12    8 base_offset    record offset of the indexed entry
//!     20    8 max_timestamp  running max timestamp in the segment, up to and including it
//!     28    4 crc            CRC32C of bytes [0 .. 28)
//! ```

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use openraft::EntryPayload;

use crate::types::App;
use crate::types::Entry;
use crate::types::LogPayload;
use crate::types::Membership;
use crate::types::ReplicaNode;
use crate::types::log_id;

/// Bytes of an entry record before its payload.
pub const ENTRY_HEADER_LEN: usize = 45;
/// Bytes of one sparse-index record.
pub const INDEX_RECORD_LEN: usize = 32;
/// Upper bound of one stored entry; a larger length field is corruption.
pub const MAX_ENTRY_LEN: usize = 64 << 20;

pub(crate) const KIND_BLANK: u8 = 0;
pub(crate) const KIND_NORMAL: u8 = 1;
pub(crate) const KIND_MEMBERSHIP: u8 = 2;

/// The fixed fields of an entry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    pub base_offset: i64,
    pub record_count: u32,
    pub max_timestamp: i64,
}

impl EntryHeader {
    /// Record offset after this entry.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.record_count)
    }
}

/// Appends the record of `entry` at record offset `base_offset`; returns its header.
pub fn encode_entry<A: App>(entry: &Entry<A>, base_offset: i64, buf: &mut BytesMut) -> EntryHeader {
    let (kind, record_count, max_timestamp) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, 0, i64::MIN),
        EntryPayload::Normal(d) => (KIND_NORMAL, d.record_count(), d.max_timestamp()),
        EntryPayload::Membership(_) => (KIND_MEMBERSHIP, 0, i64::MIN),
    };
    let header = EntryHeader {
        index: entry.log_id.index,
        term: entry.log_id.leader_id.term,
        kind,
        base_offset,
        record_count,
        max_timestamp,
    };
    let start = buf.len();
    buf.put_u32_le(0); // len, patched below
    buf.put_u32_le(0); // crc, patched below
    buf.put_u64_le(header.index);
    buf.put_u64_le(header.term);
    buf.put_u8(header.kind);
    buf.put_i64_le(header.base_offset);
    buf.put_u32_le(header.record_count);
    buf.put_i64_le(header.max_timestamp);
    match &entry.payload {
        EntryPayload::Blank => {}
        EntryPayload::Normal(d) => {
            buf.reserve(d.encoded_len());
            d.encode(buf);
        }
        EntryPayload::Membership(m) => encode_membership(m, buf),
    }
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = entry_crc(&buf[start..start + 4], &buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    header
}

fn entry_crc(len: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), body)
}

/// Outcome of trying to parse one entry record at the front of a buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A whole, checksum-valid record of `len` bytes.
    Entry { header: EntryHeader, len: usize },
    /// The buffer ends inside the record; `need` bytes would hold it whole.
    Incomplete { need: usize },
    /// The bytes are not a valid record (bad length, kind or checksum).
    Corrupt(&'static str),
}

/// Parses the record at the start of `buf`, verifying its checksum.
pub fn parse_entry(buf: &[u8]) -> Parsed {
    if buf.len() < 8 {
        return Parsed::Incomplete { need: 8 };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if !(ENTRY_HEADER_LEN - 4..=MAX_ENTRY_LEN).contains(&len) {
        return Parsed::Corrupt("entry length out of range");
    }
    let total = 4 + len;
    if buf.len() < total {
        return Parsed::Incomplete { need: total };
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    if entry_crc(&buf[0..4], &buf[8..total]) != crc {
        return Parsed::Corrupt("entry checksum mismatch");
    }
    let mut h = &buf[8..ENTRY_HEADER_LEN];
    let header = EntryHeader {
        index: h.get_u64_le(),
        term: h.get_u64_le(),
        kind: h.get_u8(),
        base_offset: h.get_i64_le(),
        record_count: h.get_u32_le(),
        max_timestamp: h.get_i64_le(),
    };
    if header.kind > KIND_MEMBERSHIP {
        return Parsed::Corrupt("unknown entry kind");
    }
    Parsed::Entry { header, len: total }
}

/// Decodes a whole, already verified record (`rec` = the `len` bytes `parse_entry` reported).
pub fn decode_entry<A: App>(header: &EntryHeader, rec: Bytes) -> io::Result<Entry<A>> {
    let payload = rec.slice(ENTRY_HEADER_LEN..);
    let payload = match header.kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(A::Data::decode(payload)?),
        KIND_MEMBERSHIP => EntryPayload::Membership(decode_membership(payload)?),
        _ => return Err(invalid("unknown entry kind")),
    };
    Ok(Entry::<A> { log_id: log_id(header.term, header.index), payload })
}

/// Appends the stored form of a membership config to `buf`.
pub fn encode_membership(m: &Membership, buf: &mut BytesMut) {
    let configs = m.get_joint_config();
    buf.put_u32_le(configs.len() as u32);
    for config in configs {
        buf.put_u32_le(config.len() as u32);
        for id in config {
            buf.put_u64_le(*id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    buf.put_u32_le(nodes.len() as u32);
    for (id, node) in nodes {
        buf.put_u64_le(*id);
        buf.put_u64_le(node.broker_id);
        buf.put_u32_le(node.addr.len() as u32);
        buf.put_slice(node.addr.as_bytes());
    }
}

/// Decodes a membership config written by [`encode_membership`].
pub fn decode_membership(mut b: Bytes) -> io::Result<Membership> {
    fn need(b: &Bytes, n: usize) -> io::Result<()> {
        if b.remaining() < n { Err(invalid("membership truncated")) } else { Ok(()) }
    }
    need(&b, 4)?;
    let n_configs = b.get_u32_le() as usize;
    let mut configs = Vec::new();
    for _ in 0..n_configs {
        need(&b, 4)?;
        let n = b.get_u32_le() as usize;
        need(&b, n.saturating_mul(8))?;
        configs.push((0..n).map(|_| b.get_u64_le()).collect::<BTreeSet<u64>>());
    }
    need(&b, 4)?;
    let n_nodes = b.get_u32_le() as usize;
    let mut nodes = BTreeMap::new();
    for _ in 0..n_nodes {
        need(&b, 20)?;
        let id = b.get_u64_le();
        let broker_id = b.get_u64_le();
        let len = b.get_u32_le() as usize;
        need(&b, len)?;
        let addr = String::from_utf8(b.split_to(len).to_vec())
            .map_err(|_| invalid("membership address is not UTF-8"))?;
        nodes.insert(id, ReplicaNode { broker_id, addr });
    }
    Membership::new(configs, nodes).map_err(|e| invalid_owned(format!("bad membership: {e}")))
}

/// One sparse-index record: where an entry sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    pub index: u64,
    pub position: u32,
    pub base_offset: i64,
    /// Running max timestamp of the segment up to and including this entry.
    pub max_timestamp: i64,
}

impl IndexRecord {
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.put_u64_le(self.index);
        buf.put_u32_le(self.position);
        buf.put_i64_le(self.base_offset);
        buf.put_i64_le(self.max_timestamp);
        let crc = crc32c::crc32c(&buf[start..]);
        buf.put_u32_le(crc);
    }

    /// Decodes one record; `None` if its checksum fails.
    pub fn decode(mut b: &[u8]) -> Option<IndexRecord> {
        if b.len() < INDEX_RECORD_LEN
            || crc32c::crc32c(&b[..28]) != u32::from_le_bytes(b[28..32].try_into().unwrap())
        {
            return None;
        }
        Some(IndexRecord {
            index: b.get_u64_le(),
            position: b.get_u32_le(),
            base_offset: b.get_i64_le(),
            max_timestamp: b.get_i64_le(),
        })
    }
}

pub(crate) fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub(crate) fn invalid_owned(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
