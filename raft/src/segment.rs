//! One segment of a group's log: a `.log` file of entry records and a `.index` file of
//! sparse-index records beside it, both named by the segment's first Raft index.
//!
//! Index records are written only for entries already durable (see `log.rs`), so on
//! recovery the last index record whose entry verifies marks a known-good position: only
//! the bytes after it are scanned. That keeps recovery O(segments), not O(bytes).

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytes::BytesMut;

use crate::codec::EntryHeader;
use crate::codec::INDEX_RECORD_LEN;
use crate::codec::IndexRecord;
use crate::codec::Parsed;
use crate::codec::parse_entry;
use crate::segfile::SegFile;

/// Read granularity when scanning a segment.
const READ_CHUNK: usize = 256 << 10;

/// In-memory description of one segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_index: u64,
    pub file: Arc<SegFile>,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    /// Bytes of valid entries written to the file.
    pub size: u64,
    /// Bytes known durable (fdatasynced).
    pub durable_size: u64,
    /// Index and term of the last entry, if any.
    pub last: Option<(u64, u64)>,
    /// Record offset of the first entry (equals `next_offset` while empty).
    pub base_offset: i64,
    /// Record offset after the last entry.
    pub next_offset: i64,
    /// Max timestamp within this segment.
    pub max_timestamp: i64,
    /// Max timestamp over this and every earlier retained segment (monotonic across segments).
    pub prefix_max_timestamp: i64,
    /// Sparse index, in index order. Always starts with the segment's first entry.
    pub index: Vec<IndexRecord>,
    /// Index records already persisted to `index_path`.
    pub index_persisted: usize,
    pub created: Instant,
}

/// A segment's file names: `{first_index:020}.log` and `.index`.
pub(crate) fn paths(dir: &Path, first_index: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("{first_index:020}.log")), dir.join(format!("{first_index:020}.index")))
}

/// Parses a segment file name back into its first index.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl Segment {
    /// Creates an empty segment whose first entry will be `first_index` at record offset
    /// `base_offset`, and makes its directory entry durable.
    pub fn create(dir: &Path, first_index: u64, base_offset: i64) -> io::Result<Segment> {
        let (log_path, index_path) = paths(dir, first_index);
        let file = crate::durable::open_file(
            &log_path,
            OpenOptions::new().read(true).write(true).create(true).truncate(true),
        )?;
        crate::durable::open_file(
            &index_path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        crate::durable::sync_dir(dir)?;
        Ok(Segment {
            first_index,
            file: Arc::new(SegFile::new(file)),
            log_path,
            index_path,
            size: 0,
            durable_size: 0,
            last: None,
            base_offset,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            prefix_max_timestamp: i64::MIN,
            index: Vec::new(),
            index_persisted: 0,
            created: Instant::now(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.last.map(|(i, _)| i)
    }

    /// Where to start scanning for entry `index`: the position of the last index record at or
    /// before it, with that record's running max timestamp *before* the record's entry
    /// unknown, so callers recompute maxima from the scan.
    pub fn seek_index(&self, index: u64) -> u64 {
        let i = self.index.partition_point(|r| r.index <= index);
        if i == 0 { 0 } else { u64::from(self.index[i - 1].position) }
    }

    /// Position to start scanning for the entry holding record `offset`.
    pub fn seek_offset(&self, offset: i64) -> u64 {
        let i = self.index.partition_point(|r| r.base_offset <= offset);
        if i == 0 { 0 } else { u64::from(self.index[i - 1].position) }
    }

    /// Position to start scanning for the first entry with max timestamp >= `ts`.
    pub fn seek_timestamp(&self, ts: i64) -> u64 {
        // Running maxima are monotonic; the first record reaching `ts` holds the target or
        // follows it, so start from the record before that one.
        let i = self.index.partition_point(|r| r.max_timestamp < ts);
        if i == 0 { 0 } else { u64::from(self.index[i - 1].position) }
    }
}

/// How a scan ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte up to `end` is whole, valid entries.
    Clean,
    /// At `pos` the bytes are not a whole valid entry.
    Invalid { pos: u64, reason: &'static str },
}

/// Reads entries from `pos` up to `end`, calling `f(header, position, record_bytes)` for
/// each; `f` returns false to stop early. Stops at the first invalid record.
pub(crate) fn scan(
    file: &SegFile,
    mut pos: u64,
    end: u64,
    mut f: impl FnMut(&EntryHeader, u64, &Bytes) -> bool,
) -> io::Result<ScanEnd> {
    let mut buf = Bytes::new();
    let mut buf_pos = pos; // file position of buf[0]
    while pos < end {
        let have = (buf_pos + buf.len() as u64).saturating_sub(pos) as usize;
        let rel = (pos - buf_pos) as usize;
        match parse_entry(&buf[rel..rel + have]) {
            Parsed::Entry { header, len } => {
                let rec = buf.slice(rel..rel + len);
                if !f(&header, pos, &rec) {
                    return Ok(ScanEnd::Clean);
                }
                pos += len as u64;
            }
            Parsed::Incomplete { need } => {
                if pos + need as u64 > end {
                    return Ok(ScanEnd::Invalid {
                        pos,
                        reason: "entry runs past the end of the file",
                    });
                }
                let want = need.max(READ_CHUNK).min((end - pos) as usize);
                let mut next = BytesMut::zeroed(want);
                // The file may have been cut (truncation racing a reader): read what is
                // there and treat a short file as the end of the data.
                let got = read_up_to(file, &mut next, pos)?;
                if got < need {
                    return Ok(ScanEnd::Invalid {
                        pos,
                        reason: "entry runs past the end of the file",
                    });
                }
                next.truncate(got);
                buf = next.freeze();
                buf_pos = pos;
            }
            Parsed::Corrupt(reason) => return Ok(ScanEnd::Invalid { pos, reason }),
        }
    }
    Ok(ScanEnd::Clean)
}

/// Fills `buf` from `pos` as far as the file goes; returns the bytes read.
fn read_up_to(file: &SegFile, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads the header of the entry at `pos`, verifying the whole record.
pub(crate) fn read_header_at(
    file: &SegFile,
    pos: u64,
    end: u64,
) -> io::Result<Option<EntryHeader>> {
    let mut out = None;
    scan(file, pos, end, |h, _, _| {
        out = Some(*h);
        false
    })?;
    Ok(out)
}

/// Loads the persisted sparse index, dropping a torn or corrupt tail.
pub(crate) fn load_index(path: &Path) -> io::Result<Vec<IndexRecord>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(bytes.len() / INDEX_RECORD_LEN);
    for chunk in bytes.chunks_exact(INDEX_RECORD_LEN) {
        match IndexRecord::decode(chunk) {
            Some(r)
                if out
                    .last()
                    .is_none_or(|p: &IndexRecord| p.index < r.index && p.position < r.position) =>
            {
                out.push(r)
            }
            _ => break,
        }
    }
    Ok(out)
}

/// Result of recovering one segment from disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segment: Segment,
    /// Set when the file had bytes after the last valid entry.
    pub invalid_tail: Option<(u64, &'static str, u64)>,
    /// Bytes scanned (for the O(segments) claim in tests and logs).
    pub scanned_bytes: u64,
}

/// Opens the segment starting at `first_index` and finds its valid extent.
/// Offsets of a segment without entries are left at `i64::MIN` for the caller to fill in.
/// Index records for the scanned part are rebuilt (every `interval` bytes, as the writer
/// would), so the in-memory index always starts at the segment's first entry.
pub(crate) fn recover(dir: &Path, first_index: u64, interval: u32) -> io::Result<Recovered> {
    let (log_path, index_path) = paths(dir, first_index);
    let file = SegFile::new(OpenOptions::new().read(true).write(true).open(&log_path)?);
    let meta = file.metadata()?;
    let file_len = meta.len();
    // Age for time-based rolling survives restarts: birth time where the filesystem keeps
    // it, else the last modification.
    let born = meta.created().or_else(|_| meta.modified()).ok();
    let created = born
        .and_then(|t| t.elapsed().ok())
        .and_then(|age| Instant::now().checked_sub(age))
        .unwrap_or_else(Instant::now);
    let mut index = load_index(&index_path)?;

    // Find the last index record that points at a valid entry matching it.
    let mut start = None;
    while let Some(r) = index.last() {
        let ok = match read_header_at(&file, u64::from(r.position), file_len)? {
            Some(h) => h.index == r.index && h.base_offset == r.base_offset,
            None => false,
        };
        if ok && r.index >= first_index {
            start = Some(*r);
            break;
        }
        index.pop();
    }
    let index_persisted = index.len();

    let (scan_from, mut expect_index, mut next_offset, mut max_ts, mut base_offset) =
        match (start, index.first()) {
            (Some(r), Some(first)) => {
                (u64::from(r.position), r.index, r.base_offset, r.max_timestamp, first.base_offset)
            }
            _ => (0, first_index, i64::MIN, i64::MIN, i64::MIN),
        };
    let mut last = None;
    let mut valid_end = scan_from;
    let mut last_indexed = start.map(|r| u64::from(r.position));
    let mut broken = None;
    let end = scan(&file, scan_from, file_len, |h, p, rec| {
        if h.index != expect_index || (next_offset != i64::MIN && h.base_offset != next_offset) {
            broken = Some((p, "entry does not continue the log"));
            return false;
        }
        if base_offset == i64::MIN {
            base_offset = h.base_offset;
        }
        expect_index += 1;
        next_offset = h.next_offset();
        max_ts = max_ts.max(h.max_timestamp);
        if last_indexed.is_none_or(|lp| p >= lp + u64::from(interval)) {
            index.push(IndexRecord {
                index: h.index,
                position: p as u32,
                base_offset: h.base_offset,
                max_timestamp: max_ts,
            });
            last_indexed = Some(p);
        }
        last = Some((h.index, h.term));
        valid_end = p + rec.len() as u64;
        true
    })?;
    let invalid_tail = match (end, broken) {
        (_, Some((pos, reason))) | (ScanEnd::Invalid { pos, reason }, None) => {
            Some((pos, reason, file_len))
        }
        (ScanEnd::Clean, None) => None,
    };
    Ok(Recovered {
        segment: Segment {
            first_index,
            file: Arc::new(file),
            log_path,
            index_path,
            size: valid_end,
            durable_size: valid_end,
            last,
            base_offset,
            next_offset,
            max_timestamp: max_ts,
            prefix_max_timestamp: max_ts,
            index,
            index_persisted,
            created,
        },
        invalid_tail,
        scanned_bytes: file_len - scan_from,
    })
}
