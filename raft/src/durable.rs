//! Namespace operations — creating files and directories, renaming — and the directory fsync
//! that makes them durable.
//!
//! Normally these are the plain `std::fs` calls. With the test-only `lazy-io` feature they
//! simulate a power cut the way [`crate::segfile`] does for file contents: an operation stays
//! undone by a crash until the fsync of the directory holding it. Because a SIGKILLed process
//! cannot undo anything, each operation is first written to a journal in the data directory
//! (`lazy-io.journal`, itself fsynced); [`sync_dir`] settles the entries of that directory,
//! and [`init`] — the next start on the same data directory — rolls back every entry still
//! there: new files and directories disappear, renames are reversed (the overwritten target
//! comes back from a hard link kept for the purpose). The crash point `before-dir-fsync`
//! (feature `failpoints`) dies right before a directory fsync, where this matters most.
//!
//! On top of them, the one API for files with durable content:
//! - [`open_file`] / [`create_dir`]: a file or directory whose creation the caller makes
//!   durable with [`sync_dir`] (segments, indexes, group directories);
//! - [`write_state_file`] / [`read_state_file`]: small state files replaced atomically
//!   (unique temp file, fsync, rename, directory fsync) inside a versioned, checksummed
//!   envelope; a damaged file is refused, never used.
//!
//! RocksDB's own files are not covered (RocksDB fsyncs its directories itself); its unsynced
//! WAL writes are (see `meta::lazy_io`).

use std::fs::File;
use std::io;
use std::path::Path;

/// Crash point right before a directory fsync: namespace operations since the last one of
/// that directory are then lost (with `lazy-io`).
pub const BEFORE_DIR_FSYNC: &str = "before-dir-fsync";

/// Whether the simulated power loss is on: built with `lazy-io`, unless the process was
/// started with `RAFKA_TEST_LAZY_IO=off` (a test that needs writes to reach the filesystem at
/// once, such as running out of space, in a build that has the feature).
pub fn lazy_io() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    cfg!(feature = "lazy-io")
        && *ON.get_or_init(|| std::env::var("RAFKA_TEST_LAZY_IO").as_deref() != Ok("off"))
}

/// Starts journaling namespace operations under `data_dir` (with `lazy-io`), first rolling
/// back those a crash left unsettled. Without the feature it does nothing.
pub fn init(data_dir: &Path) -> io::Result<()> {
    #[cfg(feature = "lazy-io")]
    if lazy_io() {
        lazy::init(data_dir)?;
    }
    let _ = data_dir;
    Ok(())
}

/// Notes that `path` (a file or directory) is about to be created if it does not exist.
pub fn creating(path: &Path) -> io::Result<()> {
    #[cfg(feature = "lazy-io")]
    if !path.exists() {
        lazy::record(&lazy::Op::Create(path.to_path_buf()))?;
    }
    let _ = path;
    Ok(())
}

/// `std::fs::rename`, undone by a crash before the next [`sync_dir`] of `to`'s directory
/// (with `lazy-io`).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(feature = "lazy-io")]
    lazy::before_rename(from, to)?;
    std::fs::rename(from, to)
}

/// Opens `path` with `options`, first noting its creation if it does not exist yet: the
/// caller makes the creation durable with [`sync_dir`] of its directory.
pub fn open_file(path: &Path, options: &std::fs::OpenOptions) -> io::Result<File> {
    creating(path)?;
    options.open(path)
}

/// Creates directory `path` (and missing parents), noting its creation: the caller makes it
/// durable with [`sync_dir`] of the parent.
pub fn create_dir(path: &Path) -> io::Result<()> {
    creating(path)?;
    std::fs::create_dir_all(path)
}

/// Applies the simulated power loss (`lazy-io`) to a RocksDB database of the application:
/// unsynced writes are lost with the process. Otherwise nothing.
pub fn lazy_io_rocksdb(opts: &mut rocksdb::Options) {
    crate::meta::lazy_io(opts);
}

/// Magic of the state-file envelope.
pub const STATE_MAGIC: [u8; 4] = *b"RFKS";
/// Version of the state-file envelope this code writes.
pub const STATE_VERSION: u16 = 1;
/// Bytes of the envelope before the payload.
pub const STATE_HEADER_LEN: usize = 14;

/// Replaces `path` with `payload` atomically and durably, in the state-file envelope.
///
/// # Format
///
/// ```text
/// magic "RFKS" | version u16 LE (1) | payload length u32 LE | CRC32C of the payload u32 LE
/// | payload
/// ```
///
/// Written as a temp file beside `path` (unique name: two writers of one file never share
/// one), fsynced, renamed over `path`, then the directory is fsynced.
pub fn write_state_file(path: &Path, payload: &[u8]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(STATE_HEADER_LEN + payload.len());
    bytes.extend_from_slice(&STATE_MAGIC);
    bytes.extend_from_slice(&STATE_VERSION.to_le_bytes());
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "state file over 4 GiB"))?;
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = path.with_file_name(format!("{name}.{:016x}.tmp", rand::random::<u64>()));
    {
        use std::io::Write;
        let mut f = open_file(&tmp, std::fs::OpenOptions::new().write(true).create_new(true))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads a state file written by [`write_state_file`]: `None` if it does not exist. A file
/// without the envelope (written before it existed) is returned whole; a file with the
/// envelope whose version is unknown, whose length disagrees or whose checksum fails is an
/// `InvalidData` error naming the file.
pub fn read_state_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    open_envelope(bytes).map(Some).map_err(|why| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
    })
}

/// The payload of an enveloped state file (or the whole of a legacy one).
fn open_envelope(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&STATE_MAGIC) {
        return Ok(bytes);
    }
    if bytes.len() < STATE_HEADER_LEN {
        return Err(format!("damaged state file: {} bytes, shorter than its header", bytes.len()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != STATE_VERSION {
        return Err(format!("state file version {version}; this broker reads {STATE_VERSION}"));
    }
    let len = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes"));
    let payload = &bytes[STATE_HEADER_LEN..];
    if payload.len() != len {
        return Err(format!(
            "damaged state file: header says {len} bytes of content, {} follow",
            payload.len()
        ));
    }
    let actual = crc32c::crc32c(payload);
    if actual != crc {
        return Err(format!(
            "damaged state file: checksum {actual:#010x}, header says {crc:#010x}"
        ));
    }
    Ok(payload.to_vec())
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::crash_point!(BEFORE_DIR_FSYNC);
    File::open(dir)?.sync_all()?;
    #[cfg(feature = "lazy-io")]
    lazy::settle(dir)?;
    Ok(())
}

#[cfg(feature = "lazy-io")]
mod lazy {
    use std::io::Write;
    use std::path::Path;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;

    /// Data directories [`init`] ran on; operations outside them are not journaled (unit
    /// tests of other modules). Each has its own journal.
    static ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    fn journal_of(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
        roots.iter().find(|r| path.starts_with(r)).map(|r| r.join("lazy-io.journal"))
    }

    /// One unsettled namespace operation.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Op {
        Create(PathBuf),
        /// `from`, `to`, and a hard link to what `to` was before, if anything.
        Rename(PathBuf, PathBuf, Option<PathBuf>),
    }

    impl Op {
        fn dir(&self) -> Option<&Path> {
            match self {
                Op::Create(p) | Op::Rename(_, p, _) => p.parent(),
            }
        }

        fn encode(&self) -> String {
            let s = |p: &Path| p.to_string_lossy().into_owned();
            match self {
                Op::Create(p) => format!("create\t{}\n", s(p)),
                Op::Rename(f, t, b) => {
                    format!(
                        "rename\t{}\t{}\t{}\n",
                        s(f),
                        s(t),
                        b.as_deref().map_or(String::new(), s)
                    )
                }
            }
        }

        fn decode(line: &str) -> Option<Op> {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["create", p] => Some(Op::Create(p.into())),
                ["rename", from, to, b] => Some(Op::Rename(
                    from.into(),
                    to.into(),
                    (!b.is_empty()).then(|| PathBuf::from(b)),
                )),
                _ => None,
            }
        }
    }

    fn read(journal: &Path) -> io::Result<Vec<Op>> {
        match std::fs::read_to_string(journal) {
            // A torn last line (crash mid-append) was never acted on: skip it.
            Ok(s) => Ok(s.lines().filter_map(Op::decode).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn init(data_dir: &Path) -> io::Result<()> {
        let journal = data_dir.join("lazy-io.journal");
        let ops = read(&journal)?;
        for op in ops.iter().rev() {
            tracing::warn!(?op, "lazy-io: rolling back a namespace operation never made durable");
            match op {
                Op::Create(p) if p.is_dir() => std::fs::remove_dir_all(p)?,
                Op::Create(p) => ignore_missing(std::fs::remove_file(p))?,
                // A backup already moved back means a crash interrupted an earlier rollback
                // after this entry: `to` holds the restored file then.
                Op::Rename(_, _, Some(b)) if !b.exists() => {}
                Op::Rename(from, to, backup) => {
                    if to.exists() {
                        std::fs::rename(to, from)?;
                    }
                    if let Some(b) = backup {
                        std::fs::rename(b, to)?;
                    }
                }
            }
            if let Some(dir) = op.dir() {
                File::open(dir)?.sync_all()?;
            }
        }
        ignore_missing(std::fs::remove_file(&journal))?;
        let mut roots = ROOTS.lock().unwrap_or_else(|p| p.into_inner());
        if !roots.iter().any(|r| r == data_dir) {
            roots.push(data_dir.to_path_buf());
        }
        Ok(())
    }

    pub(super) fn record(op: &Op) -> io::Result<()> {
        let roots = ROOTS.lock().unwrap_or_else(|p| p.into_inner());
        let target = match op {
            Op::Create(p) | Op::Rename(_, p, _) => p,
        };
        let Some(journal) = journal_of(target, &roots) else { return Ok(()) };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(journal)?;
        f.write_all(op.encode().as_bytes())?;
        f.sync_all()
    }

    pub(super) fn before_rename(from: &Path, to: &Path) -> io::Result<()> {
        if journal_of(to, &ROOTS.lock().unwrap_or_else(|p| p.into_inner())).is_none() {
            return Ok(());
        }
        let backup = if to.exists() {
            let b = to.with_extension(format!("lazy-io-{:016x}", rand::random::<u64>()));
            std::fs::hard_link(to, &b)?;
            Some(b)
        } else {
            None
        };
        record(&Op::Rename(from.to_path_buf(), to.to_path_buf(), backup))
    }

    /// Drops the journal entries `dir`'s fsync made durable.
    pub(super) fn settle(dir: &Path) -> io::Result<()> {
        let roots = ROOTS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(journal) = journal_of(dir, &roots) else { return Ok(()) };
        let journal = &journal;
        let ops = read(journal)?;
        let (done, left): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| o.dir() == Some(dir));
        if done.is_empty() {
            return Ok(());
        }
        let tmp = journal.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            for op in &left {
                f.write_all(op.encode().as_bytes())?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, journal)?;
        File::open(journal.parent().expect("data dir"))?.sync_all()?;
        for op in done {
            if let Op::Rename(_, _, Some(b)) = op {
                ignore_missing(std::fs::remove_file(b))?;
            }
        }
        Ok(())
    }

    fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn unsettled_creations_and_renames_are_rolled_back_on_the_next_start() {
            let d = tempfile::tempdir().unwrap();
            let root = d.path();
            init(root).unwrap();
            let sub = root.join("sub");
            creating(&sub).unwrap();
            std::fs::create_dir(&sub).unwrap();
            sync_dir(root).unwrap();
            // Settled: a file whose directory entry was fsynced, and an old target.
            let kept = sub.join("kept");
            creating(&kept).unwrap();
            std::fs::write(&kept, b"old").unwrap();
            sync_dir(&sub).unwrap();
            // Unsettled: a new file, and a rename over `kept`.
            let fresh = sub.join("fresh");
            creating(&fresh).unwrap();
            std::fs::write(&fresh, b"new").unwrap();
            let tmp = sub.join("kept.tmp");
            creating(&tmp).unwrap();
            std::fs::write(&tmp, b"replacement").unwrap();
            rename(&tmp, &kept).unwrap();
            assert_eq!(std::fs::read(&kept).unwrap(), b"replacement");
            // The crash: the next start rolls back what no directory fsync settled.
            init(root).unwrap();
            assert!(!fresh.exists(), "an unsynced creation survived");
            assert!(!tmp.exists(), "the renamed temp file came back too, then was removed");
            assert_eq!(std::fs::read(&kept).unwrap(), b"old", "the rename was not undone");
            let names: Vec<_> = std::fs::read_dir(&sub).unwrap().flatten().collect();
            assert_eq!(names.len(), 1, "leftover files: {names:?}");
            // Settled operations stay.
            let again = sub.join("again");
            creating(&again).unwrap();
            std::fs::write(&again, b"x").unwrap();
            rename(&again, &kept).unwrap();
            sync_dir(&sub).unwrap();
            init(root).unwrap();
            assert_eq!(std::fs::read(&kept).unwrap(), b"x");
            assert!(!root.join("lazy-io.journal").exists());
        }
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn state_files_round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.json");
        assert_eq!(read_state_file(&path).unwrap(), None);
        write_state_file(&path, b"{\"a\":1}").unwrap();
        assert_eq!(read_state_file(&path).unwrap().unwrap(), b"{\"a\":1}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");

        // A file from before the envelope is read as it is.
        std::fs::write(&path, b"{\"legacy\":true}").unwrap();
        assert_eq!(read_state_file(&path).unwrap().unwrap(), b"{\"legacy\":true}");

        write_state_file(&path, b"{\"a\":1}").unwrap();
        let good = std::fs::read(&path).unwrap();
        let refused = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let e = read_state_file(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("1.json"), "{e}");
            e.to_string()
        };
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(refused(&flipped).contains("checksum"));
        assert!(refused(&good[..good.len() - 1]).contains("bytes of content"));
        assert!(refused(&good[..8]).contains("shorter than its header"));
        let mut future = good.clone();
        future[4] = 9;
        assert!(refused(&future).contains("version 9"));
    }
}
