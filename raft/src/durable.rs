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
//! RocksDB's own files are not covered (RocksDB fsyncs its directories itself); its unsynced
//! WAL writes are (see `meta::lazy_io`).

use std::fs::File;
use std::io;
use std::path::Path;

/// Crash point right before a directory fsync: namespace operations since the last one of
/// that directory are then lost (with `lazy-io`).
pub const BEFORE_DIR_FSYNC: &str = "before-dir-fsync";

/// Starts journaling namespace operations under `data_dir` (with `lazy-io`), first rolling
/// back those a crash left unsettled. Without the feature it does nothing.
pub fn init(data_dir: &Path) -> io::Result<()> {
    #[cfg(feature = "lazy-io")]
    lazy::init(data_dir)?;
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
