//! The replicated state of `__consumer_offsets` partitions: committed offsets and group
//! membership in the broker's groups RocksDB, and [`OffsetsSm`], the state machine that
//! applies [`GroupCommand`]s to it.
//!
//! Writes are not synced: the Raft log is durable, and a restart re-applies every entry
//! after the applied log id stored in the same write batch. The one point where the database
//! must be durable is before the log is purged, so [`OffsetsSm::build_snapshot`] syncs the
//! WAL first.
//!
//! # Format
//!
//! One RocksDB (`<data-dir>/consumer-groups`) for every offsets partition the broker hosts. Keys start
//! with the partition's Raft group id (u64, big-endian) and a tag byte:
//!
//! ```text
//! gid | 1                                   applied: term u64 LE | index u64 LE, then the
//!                                           membership's log id (u8 flag, term, index) and
//!                                           the membership (rafka_raft::codec)
//! gid | 2 | group                           GroupState (JSON)
//! gid | 3 | group | 0 | topic | 0 | p u32BE  StoredOffset (JSON)
//! ```
//!
//! Group ids never contain a NUL byte (refused on input), so `gid | 3 | group | 0` prefixes
//! exactly that group's offsets. Commands are JSON, one per Raft entry ([`GroupCommand`]).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::RwLock;

use bytes::Bytes;
use bytes::BytesMut;
use rafka_raft::Entry;
use rafka_raft::EntryPayload;
use rafka_raft::LogId;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;
use rocksdb::DB;
use rocksdb::Direction;
use rocksdb::IteratorMode;
use rocksdb::Options;
use rocksdb::WriteBatch;
use serde::Deserialize;
use serde::Serialize;

use super::OffsetsApp;
use super::state::GroupState;

const TAG_APPLIED: u8 = 1;
const TAG_GROUP: u8 = 2;
const TAG_OFFSET: u8 = 3;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOffset {
    pub offset: i64,
    pub metadata: String,
    /// Commit time, ms since the epoch (the coordinator's clock).
    pub commit_ms: i64,
}

/// One offset of a commit command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub topic: String,
    pub partition: u32,
    #[serde(flatten)]
    pub value: StoredOffset,
}

/// A replicated change to one group. The coordinator (the partition's leader) decides
/// everything non-deterministic (new membership state, commit time) before proposing, so
/// applying is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupCommand {
    /// Replaces a group's membership state.
    PutGroup { group: String, state: GroupState },
    /// Stores committed offsets, creating the group if it does not exist.
    Commit { group: String, offsets: Vec<OffsetRecord> },
    /// Removes a group and all its offsets.
    DeleteGroup { group: String },
}

/// The broker's groups database (every hosted offsets partition).
pub struct GroupsDb {
    db: DB,
}

fn key(gid: u64, tag: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(&gid.to_be_bytes());
    k.push(tag);
    k
}

fn group_key(gid: u64, group: &str) -> Vec<u8> {
    let mut k = key(gid, TAG_GROUP);
    k.extend_from_slice(group.as_bytes());
    k
}

fn offsets_prefix(gid: u64, group: &str) -> Vec<u8> {
    let mut k = key(gid, TAG_OFFSET);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k
}

fn offset_key(gid: u64, group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = offsets_prefix(gid, group);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The key after every key starting with `prefix` (prefixes here never end in 0xff runs
/// that matter: they end in a tag or a NUL byte).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// The key range of everything of partition group `gid`.
fn partition_range(gid: u64) -> (Vec<u8>, Vec<u8>) {
    let start = gid.to_be_bytes().to_vec();
    (start.clone(), prefix_end(&start))
}

fn db_err(what: &str, e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("groups db: {what}: {e}"))
}

fn bad_data(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("groups db: bad {what}: {e}"))
}

impl GroupsDb {
    /// Opens (creating if missing) the groups database at `path`.
    pub fn open(path: &Path) -> io::Result<Arc<GroupsDb>> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        rafka_raft::durable::lazy_io_rocksdb(&mut opts);
        let db = DB::open(&opts, path).map_err(|e| db_err(&path.display().to_string(), e))?;
        Ok(Arc::new(GroupsDb { db }))
    }

    /// Every committed offset of `group` in partition group `gid`, by (topic, partition).
    pub fn offsets(
        &self,
        gid: u64,
        group: &str,
    ) -> io::Result<BTreeMap<(String, u32), StoredOffset>> {
        let prefix = offsets_prefix(gid, group);
        let mut out = BTreeMap::new();
        for item in self.db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(|e| db_err("scan offsets", e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else { continue };
            let topic = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let Ok(p) = <[u8; 4]>::try_from(&rest[nul + 1..]) else { continue };
            let value: StoredOffset =
                serde_json::from_slice(&v).map_err(|e| bad_data("offset", e))?;
            out.insert((topic, u32::from_be_bytes(p)), value);
        }
        Ok(out)
    }

    /// One committed offset.
    pub fn offset(
        &self,
        gid: u64,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> io::Result<Option<StoredOffset>> {
        let v = self
            .db
            .get(offset_key(gid, group, topic, partition))
            .map_err(|e| db_err("read offset", e))?;
        v.map(|v| serde_json::from_slice(&v).map_err(|e| bad_data("offset", e))).transpose()
    }

    fn groups(&self, gid: u64) -> io::Result<HashMap<String, Arc<GroupState>>> {
        let prefix = key(gid, TAG_GROUP);
        let mut out = HashMap::new();
        for item in self.db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item.map_err(|e| db_err("scan groups", e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let state: GroupState = serde_json::from_slice(&v).map_err(|e| bad_data("group", e))?;
            out.insert(name, Arc::new(state));
        }
        Ok(out)
    }

    /// Removes everything of partition group `gid` (its topic was deleted, or a snapshot
    /// replaces it).
    pub fn remove_partition(&self, gid: u64) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        let (start, end) = partition_range(gid);
        batch.delete_range(start, end);
        self.db.write(batch).map_err(|e| db_err("remove partition", e))
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(|e| db_err("sync", e))
    }
}

/// What a snapshot holds: every group and offset of the partition.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    groups: BTreeMap<String, GroupState>,
    offsets: Vec<(String, OffsetRecord)>,
}

/// Group states of one offsets partition, as applied; read by the coordinator.
pub type GroupsView = Arc<RwLock<HashMap<String, Arc<GroupState>>>>;

/// The state machine of one `__consumer_offsets` partition replica.
pub struct OffsetsSm {
    db: Arc<GroupsDb>,
    gid: u64,
    groups: GroupsView,
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMeta, SnapshotData)>,
}

impl OffsetsSm {
    /// Opens the state of partition group `gid` from the database.
    pub fn open(db: Arc<GroupsDb>, gid: u64) -> io::Result<OffsetsSm> {
        let groups = Arc::new(RwLock::new(db.groups(gid)?));
        let (applied, membership) =
            match db.db.get(key(gid, TAG_APPLIED)).map_err(|e| db_err("read applied", e))? {
                Some(v) => decode_applied(&v)?,
                None => (None, StoredMembership::default()),
            };
        Ok(OffsetsSm { db, gid, groups, applied, membership, snapshot: None })
    }

    /// The applied group states, shared with the coordinator.
    pub fn view(&self) -> GroupsView {
        self.groups.clone()
    }

    fn write_applied(&self, batch: &mut WriteBatch) {
        batch.put(key(self.gid, TAG_APPLIED), encode_applied(self.applied, &self.membership));
    }

    fn apply_command(&mut self, cmd: GroupCommand, batch: &mut WriteBatch) -> io::Result<()> {
        let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
        match cmd {
            GroupCommand::PutGroup { group, state } => {
                batch.put(
                    group_key(self.gid, &group),
                    serde_json::to_vec(&state).map_err(io::Error::other)?,
                );
                groups.insert(group, Arc::new(state));
            }
            GroupCommand::Commit { group, offsets } => {
                rafka_raft::crash_point!("offset-commit");
                if !groups.contains_key(&group) {
                    let state = GroupState::default();
                    batch.put(
                        group_key(self.gid, &group),
                        serde_json::to_vec(&state).map_err(io::Error::other)?,
                    );
                    groups.insert(group.clone(), Arc::new(state));
                }
                for o in offsets {
                    batch.put(
                        offset_key(self.gid, &group, &o.topic, o.partition),
                        serde_json::to_vec(&o.value).map_err(io::Error::other)?,
                    );
                }
            }
            GroupCommand::DeleteGroup { group } => {
                batch.delete(group_key(self.gid, &group));
                let prefix = offsets_prefix(self.gid, &group);
                batch.delete_range(prefix.clone(), prefix_end(&prefix));
                groups.remove(&group);
            }
        }
        Ok(())
    }

    fn dump(&self) -> io::Result<SnapshotBody> {
        let groups: BTreeMap<String, GroupState> = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        let mut offsets = Vec::new();
        for g in groups.keys() {
            for ((topic, partition), value) in self.db.offsets(self.gid, g)? {
                offsets.push((g.clone(), OffsetRecord { topic, partition, value }));
            }
        }
        Ok(SnapshotBody { groups, offsets })
    }
}

fn encode_applied(applied: Option<LogId>, membership: &StoredMembership) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    let (t, i) = applied.map_or((0, 0), |l| (l.term, l.index));
    v.push(applied.is_some() as u8);
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(&i.to_le_bytes());
    let ml = *membership.log_id();
    let (t, i) = ml.map_or((0, 0), |l| (l.term, l.index));
    v.push(ml.is_some() as u8);
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(&i.to_le_bytes());
    let mut m = BytesMut::new();
    membership.membership().encode(&mut m);
    v.extend_from_slice(&m);
    v
}

fn decode_applied(v: &[u8]) -> io::Result<(Option<LogId>, StoredMembership)> {
    if v.len() < 34 {
        return Err(bad_data("applied state", format!("{} bytes", v.len())));
    }
    let u = |at: usize| u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"));
    let applied = (v[0] != 0).then(|| rafka_raft::log_id(u(1), u(9)));
    let mlog = (v[17] != 0).then(|| rafka_raft::log_id(u(18), u(26)));
    let membership = rafka_raft::Membership::decode(Bytes::copy_from_slice(&v[34..]))?;
    Ok((applied, StoredMembership::new(mlog, membership)))
}

impl StateMachine<OffsetsApp> for OffsetsSm {
    fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied, self.membership.clone()))
    }

    fn apply(&mut self, entry: Entry<OffsetsApp>) -> io::Result<()> {
        let id = entry.log_id;
        let mut batch = WriteBatch::default();
        match entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(e) => {
                let cmd: GroupCommand = e.decode("group command")?;
                self.apply_command(cmd, &mut batch)?;
            }
            EntryPayload::Membership(m) => self.membership = StoredMembership::new(Some(id), m),
        }
        self.applied = Some(id);
        self.write_applied(&mut batch);
        self.db.db.write(batch).map_err(|e| db_err("apply", e))
    }

    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)> {
        // The log is purged up to this snapshot next: what it covers must be durable here.
        self.db.sync()?;
        let meta =
            SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone() };
        let body = serde_json::to_vec(&self.dump()?).map_err(io::Error::other)?;
        let data = SnapshotData { next_offset: 0, data: Bytes::from(body) };
        self.snapshot = Some((meta.clone(), data.clone()));
        Ok((meta, data))
    }

    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        if self.snapshot.is_none() && self.applied.is_some() {
            // After a restart: the state at the applied entry is as good a snapshot as the
            // one built before (and covers at least as much).
            self.build_snapshot()?;
        }
        Ok(self.snapshot.clone())
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> io::Result<()> {
        rafka_raft::crash_point!("snapshot-install");
        let body: SnapshotBody =
            serde_json::from_slice(&data.data).map_err(|e| bad_data("snapshot", e))?;
        let mut batch = WriteBatch::default();
        let (start, end) = partition_range(self.gid);
        batch.delete_range(start, end);
        let mut groups = HashMap::new();
        for (name, state) in body.groups {
            batch.put(
                group_key(self.gid, &name),
                serde_json::to_vec(&state).map_err(io::Error::other)?,
            );
            groups.insert(name, Arc::new(state));
        }
        for (group, o) in body.offsets {
            batch.put(
                offset_key(self.gid, &group, &o.topic, o.partition),
                serde_json::to_vec(&o.value).map_err(io::Error::other)?,
            );
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.write_applied(&mut batch);
        self.db.db.write(batch).map_err(|e| db_err("install snapshot", e))?;
        self.db.sync()?;
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = groups;
        self.snapshot = Some((meta.clone(), data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_entry::JsonEntry;

    fn entry(index: u64, cmd: &GroupCommand) -> Entry<OffsetsApp> {
        Entry::<OffsetsApp> {
            log_id: rafka_raft::log_id(1, index),
            payload: EntryPayload::Normal(JsonEntry::new(cmd)),
        }
    }

    fn commit(group: &str, topic: &str, partition: u32, offset: i64) -> GroupCommand {
        GroupCommand::Commit {
            group: group.into(),
            offsets: vec![OffsetRecord {
                topic: topic.into(),
                partition,
                value: StoredOffset { offset, metadata: "m".into(), commit_ms: 7 },
            }],
        }
    }

    #[test]
    fn commits_survive_reopen_and_delete_removes_only_that_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = GroupsDb::open(dir.path()).unwrap();
        let mut sm = OffsetsSm::open(db.clone(), 5).unwrap();
        sm.apply(entry(1, &commit("g", "t", 0, 10))).unwrap();
        sm.apply(entry(2, &commit("g", "t", 1, 20))).unwrap();
        // A group whose id extends "g" must not be caught by "g"'s prefix.
        sm.apply(entry(3, &commit("g2", "t", 0, 30))).unwrap();
        // Another partition group's keys stay apart.
        let mut other = OffsetsSm::open(db.clone(), 6).unwrap();
        other.apply(entry(1, &commit("g", "t", 0, 99))).unwrap();
        drop(sm);
        let mut sm = OffsetsSm::open(db.clone(), 5).unwrap();
        assert_eq!(sm.applied_state().unwrap().0, Some(rafka_raft::log_id(1, 3)));
        let offsets = db.offsets(5, "g").unwrap();
        assert_eq!(offsets.len(), 2);
        assert_eq!(offsets[&("t".to_string(), 1)].offset, 20);
        assert!(sm.view().read().unwrap().contains_key("g2"));
        sm.apply(entry(4, &GroupCommand::DeleteGroup { group: "g".into() })).unwrap();
        assert!(db.offsets(5, "g").unwrap().is_empty());
        assert_eq!(db.offset(5, "g2", "t", 0).unwrap().unwrap().offset, 30);
        assert_eq!(db.offset(6, "g", "t", 0).unwrap().unwrap().offset, 99);
        assert!(!sm.view().read().unwrap().contains_key("g"));
    }

    #[test]
    fn snapshot_round_trips_into_another_replica() {
        let dir = tempfile::tempdir().unwrap();
        let db = GroupsDb::open(dir.path()).unwrap();
        let mut sm = OffsetsSm::open(db.clone(), 1).unwrap();
        sm.apply(entry(1, &commit("a", "t", 3, 42))).unwrap();
        let (meta, data) = sm.build_snapshot().unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let db2 = GroupsDb::open(dir2.path()).unwrap();
        let mut replica = OffsetsSm::open(db2.clone(), 1).unwrap();
        replica.apply(entry(1, &commit("stale", "t", 0, 1))).unwrap();
        replica.install_snapshot(&meta, data).unwrap();
        assert_eq!(db2.offset(1, "a", "t", 3).unwrap().unwrap().offset, 42);
        assert!(db2.offsets(1, "stale").unwrap().is_empty());
        assert_eq!(replica.applied_state().unwrap().0, Some(rafka_raft::log_id(1, 1)));
    }
}
