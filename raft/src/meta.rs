//! Per-group Raft metadata (vote, committed log id, purge point) in the broker's one RocksDB.
//!
//! # Format
//!
//! Key: `group_id` (u64, big-endian, so a group's keys are contiguous) followed by one tag byte.
//! Values are little-endian:
//!
//! ```text
//! tag 1 vote       term u64 | voted_for u64 | committed u8
//! tag 2 committed  term u64 | index u64
//! tag 3 purged     term u64 | index u64 | next_offset i64 (record offset after the purged entry)
//! ```

use std::io;
use std::path::Path;

use rocksdb::DB;
use rocksdb::Options;
use rocksdb::WriteOptions;

use crate::types::GroupId;
use crate::types::LeaderId;
use crate::types::LogId;
use crate::types::Vote;
use crate::types::log_id;

const TAG_VOTE: u8 = 1;
const TAG_COMMITTED: u8 = 2;
const TAG_PURGED: u8 = 3;
const TAG_REPLICA: u8 = 4;

/// The last purged entry of a group and the record offset that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgedState {
    pub log_id: LogId,
    pub next_offset: i64,
}

/// Raft metadata of every group hosted by one broker.
pub struct MetaStore {
    db: DB,
}

impl MetaStore {
    /// Opens (creating if missing) the metadata database at `path`.
    pub fn open(path: &Path) -> io::Result<MetaStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        lazy_io(&mut opts);
        let db = DB::open(&opts, path)
            .map_err(|e| io::Error::other(format!("open RocksDB at {}: {e}", path.display())))?;
        Ok(MetaStore { db })
    }

    /// Durably stores the vote: the write is synced before this returns.
    pub fn save_vote(&self, group: GroupId, vote: &Vote) -> io::Result<()> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&vote.leader_id.term.to_le_bytes());
        v.extend_from_slice(&vote.leader_id.voted_for.to_le_bytes());
        v.push(vote.committed as u8);
        self.put(group, TAG_VOTE, &v, true)
    }

    pub fn read_vote(&self, group: GroupId) -> io::Result<Option<Vote>> {
        let Some(v) = self.get(group, TAG_VOTE, 17)? else { return Ok(None) };
        let leader_id = LeaderId { term: u64_at(&v, 0), voted_for: u64_at(&v, 8) };
        Ok(Some(Vote { leader_id, committed: v[16] != 0 }))
    }

    /// Stores the committed log id. Not synced: it only speeds up restart and may lag.
    pub fn save_committed(&self, group: GroupId, committed: Option<LogId>) -> io::Result<()> {
        match committed {
            None => self.delete(group, TAG_COMMITTED),
            Some(id) => {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&id.leader_id.term.to_le_bytes());
                v.extend_from_slice(&id.index.to_le_bytes());
                self.put(group, TAG_COMMITTED, &v, false)
            }
        }
    }

    pub fn read_committed(&self, group: GroupId) -> io::Result<Option<LogId>> {
        Ok(self.get(group, TAG_COMMITTED, 16)?.map(|v| log_id(u64_at(&v, 0), u64_at(&v, 8))))
    }

    /// Durably stores the purge point; synced, because segment files are deleted after it.
    pub fn save_purged(&self, group: GroupId, purged: &PurgedState) -> io::Result<()> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&purged.log_id.leader_id.term.to_le_bytes());
        v.extend_from_slice(&purged.log_id.index.to_le_bytes());
        v.extend_from_slice(&purged.next_offset.to_le_bytes());
        self.put(group, TAG_PURGED, &v, true)
    }

    pub fn read_purged(&self, group: GroupId) -> io::Result<Option<PurgedState>> {
        Ok(self.get(group, TAG_PURGED, 24)?.map(|v| PurgedState {
            log_id: log_id(u64_at(&v, 0), u64_at(&v, 8)),
            next_offset: u64_at(&v, 16) as i64,
        }))
    }

    /// Durably records which replica of `group` this broker's copy is: a replica id names one
    /// incarnation and a copy must never be reopened under another id.
    pub fn save_replica(&self, group: GroupId, replica: u64) -> io::Result<()> {
        self.put(group, TAG_REPLICA, &replica.to_le_bytes(), true)
    }

    pub fn read_replica(&self, group: GroupId) -> io::Result<Option<u64>> {
        Ok(self.get(group, TAG_REPLICA, 8)?.map(|v| u64_at(&v, 0)))
    }

    /// Forgets every key of `group` (the group's replica was removed from this broker).
    pub fn remove_group(&self, group: GroupId) -> io::Result<()> {
        for tag in [TAG_VOTE, TAG_COMMITTED, TAG_PURGED, TAG_REPLICA] {
            self.delete(group, tag)?;
        }
        self.db.flush_wal(true).map_err(rocks)
    }

    fn put(&self, group: GroupId, tag: u8, value: &[u8], sync: bool) -> io::Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.put_opt(key(group, tag), value, &wo).map_err(rocks)
    }

    fn delete(&self, group: GroupId, tag: u8) -> io::Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.delete_opt(key(group, tag), &wo).map_err(rocks)
    }

    fn get(&self, group: GroupId, tag: u8, len: usize) -> io::Result<Option<Vec<u8>>> {
        match self.db.get(key(group, tag)).map_err(rocks)? {
            None => Ok(None),
            Some(v) if v.len() == len => Ok(Some(v)),
            Some(v) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("group {group}: metadata tag {tag} has {} bytes, want {len}", v.len()),
            )),
        }
    }
}

fn key(group: GroupId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = tag;
    k
}

fn u64_at(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().unwrap())
}

fn rocks(e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("RocksDB: {e}"))
}

/// With the `lazy-io` feature (simulated power loss, see `segfile.rs`): unsynced writes stay
/// in RocksDB's WAL buffer in process memory until a synced write or `flush_wal`, so a
/// SIGKILL loses them as a power cut would. Otherwise nothing.
pub fn lazy_io(opts: &mut rocksdb::Options) {
    if crate::durable::lazy_io() {
        opts.set_manual_wal_flush(true);
    }
}
