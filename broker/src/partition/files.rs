//! Where a partition replica's state files live, in one place. The segmented log itself
//! belongs to rafka-raft's log runtime; a broker keeps beside it, per partition group:
//!
//! ```text
//! <data-dir>/partitions/<group>.json           checkpoint: next offset, producer table,
//!                                              membership history at an applied index
//! <data-dir>/partitions/<group>.snapshot.json  snapshot at the retention point (the log
//!                                              before it may be purged)
//! <data-dir>/partitions/<group>.*.tmp          a write in progress (removed with the group)
//! ```

use std::path::Path;
use std::path::PathBuf;

/// The state files of one partition replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFiles {
    /// The checkpoint (`<group>.json`).
    pub checkpoint: PathBuf,
    /// The snapshot at the retention point (`<group>.snapshot.json`).
    pub snapshot: PathBuf,
}

impl StateFiles {
    /// The files of `group` under `data_dir`.
    pub fn of(data_dir: &Path, group: u64) -> StateFiles {
        let dir = dir(data_dir);
        StateFiles {
            checkpoint: dir.join(format!("{group}.json")),
            snapshot: dir.join(format!("{group}.snapshot.json")),
        }
    }
}

/// The directory of every partition's state files.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("partitions")
}

/// Removes every state file of `group`, temp files a crash left behind included.
pub fn remove(data_dir: &Path, group: u64) {
    let prefix = format!("{group}.");
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else { return };
    for ent in entries.flatten() {
        if ent.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_file(ent.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_takes_only_the_groups_files() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir(data.path())).unwrap();
        let mine = StateFiles::of(data.path(), 12);
        let other = StateFiles::of(data.path(), 123);
        let tmp = dir(data.path()).join("12.00000000deadbeef.tmp");
        for p in [&mine.checkpoint, &mine.snapshot, &other.checkpoint, &tmp] {
            std::fs::write(p, b"{}").unwrap();
        }
        remove(data.path(), 12);
        assert!(!mine.checkpoint.exists() && !mine.snapshot.exists() && !tmp.exists());
        assert!(other.checkpoint.exists(), "group 123 is not group 12");
    }
}
