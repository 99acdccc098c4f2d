//! [`SegFile`]: a segment file as the log writes, reads and fsyncs it.
//!
//! Normally a thin wrapper over [`File`]. With the `lazy-io` feature (fault-suite builds
//! only) it simulates a machine whose page cache dies with the process: written bytes stay in
//! this process's memory until [`SegFile::sync_data`], and reads see them through an overlay.
//! A SIGKILL then loses exactly what a power cut would lose — everything not yet fdatasynced —
//! so killing every broker of a cluster is a power failure, and a test can check that nothing
//! acknowledged was lost. (Segment creation is already made durable by a directory fsync, so
//! file creation needs no simulation; RocksDB is put into the same mode by
//! [`crate::meta`] with `manual_wal_flush`.)

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A segment file. See the module docs.
#[derive(Debug)]
pub(crate) struct SegFile {
    file: File,
    #[cfg(feature = "lazy-io")]
    pending: std::sync::Mutex<Pending>,
}

/// Bytes written but not yet synced: one contiguous run at the file's tail.
#[cfg(feature = "lazy-io")]
#[derive(Debug, Default)]
struct Pending {
    start: u64,
    bytes: Vec<u8>,
}

impl SegFile {
    pub(crate) fn new(file: File) -> SegFile {
        SegFile {
            file,
            #[cfg(feature = "lazy-io")]
            pending: std::sync::Mutex::default(),
        }
    }

    /// The file's metadata on disk.
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    #[cfg(not(feature = "lazy-io"))]
    pub(crate) fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    #[cfg(not(feature = "lazy-io"))]
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }

    #[cfg(not(feature = "lazy-io"))]
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    #[cfg(not(feature = "lazy-io"))]
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

#[cfg(feature = "lazy-io")]
impl SegFile {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `buf` in memory until the next sync. The log only appends at its end; a write
    /// anywhere else first moves what is pending to the file (unsynced), which makes that
    /// part survive a kill — never the other way round.
    pub(crate) fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if !crate::durable::lazy_io() {
            return self.file.write_all_at(buf, pos);
        }
        let mut p = self.pending();
        if p.bytes.is_empty() {
            p.start = pos;
        } else if pos != p.start + p.bytes.len() as u64 {
            self.file.write_all_at(&p.bytes, p.start)?;
            p.bytes.clear();
            p.start = pos;
        }
        p.bytes.extend_from_slice(buf);
        Ok(())
    }

    /// Reads the file with the pending bytes laid over it.
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let p = self.pending();
        let mut n = 0;
        // Disk part: up to where the pending run starts (bytes beyond it on disk are stale).
        let disk_end = if p.bytes.is_empty() { u64::MAX } else { p.start };
        if pos < disk_end {
            let want = buf.len().min(usize::try_from(disk_end - pos).unwrap_or(usize::MAX));
            while n < want {
                match self.file.read_at(&mut buf[n..want], pos + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n < want {
                return Ok(n);
            }
        }
        let at = pos + n as u64;
        if !p.bytes.is_empty() && at >= p.start && at < p.start + p.bytes.len() as u64 {
            let from = (at - p.start) as usize;
            let k = (buf.len() - n).min(p.bytes.len() - from);
            buf[n..n + k].copy_from_slice(&p.bytes[from..from + k]);
            n += k;
        }
        Ok(n)
    }

    /// Writes the pending bytes, then fdatasyncs.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        let mut p = self.pending();
        if !p.bytes.is_empty() {
            self.file.write_all_at(&p.bytes, p.start)?;
            p.bytes.clear();
        }
        self.file.sync_data()
    }

    /// Cuts the file (and the pending bytes) to `len`.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        let mut p = self.pending();
        if !p.bytes.is_empty() {
            if len <= p.start {
                p.bytes.clear();
            } else {
                let keep = usize::try_from(len - p.start).unwrap_or(usize::MAX);
                p.bytes.truncate(keep);
            }
        }
        // Never extend the file with zeros for bytes that are still only pending.
        let on_disk = self.file.metadata()?.len();
        let limit = if p.bytes.is_empty() { len } else { len.min(p.start) };
        if on_disk > limit || (p.bytes.is_empty() && on_disk != len) {
            self.file.set_len(limit)?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "lazy-io"))]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> (std::path::PathBuf, SegFile) {
        let path = dir.join("seg");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, SegFile::new(f))
    }

    #[test]
    fn unsynced_writes_are_read_back_but_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, f) = open(dir.path());
        f.write_all_at(b"hello ", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"world", 6).unwrap();
        let mut buf = [0u8; 16];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"hello world");
        let n = f.read_at(&mut buf, 8).unwrap();
        assert_eq!(&buf[..n], b"rld");
        // What a power cut leaves: the synced part only.
        assert_eq!(std::fs::read(&path).unwrap(), b"hello ");
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello ");
    }

    #[test]
    fn truncation_cuts_pending_bytes_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, f) = open(dir.path());
        f.write_all_at(b"abcdef", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"ghij", 6).unwrap();
        f.set_len(8).unwrap();
        let mut buf = [0u8; 16];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"abcdefgh");
        f.set_len(3).unwrap();
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"abc");
        f.write_all_at(b"XY", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcXY");
    }
}
