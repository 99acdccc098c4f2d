//! rafka-raft: the multi-raft runtime under rafka's brokers.
//!
//! It replicates opaque entries for numbered Raft groups and stores them in segmented log
//! files; it knows nothing of topics or records beyond what an entry reports through
//! [`LogPayload`] (record count, max timestamp), which is enough to give every entry a
//! record offset and to index the log by offset and time. The Raft log *is* the data log.
//!
//! Map of the crate:
//! - [`node`]: [`RaftNode`], the multi-raft runtime of one broker: hosts groups, serves the
//!   transport, runs the failure detector (`detector`) and the driver (`driver`) that sends
//!   heartbeats and starts elections in place of openraft's per-group tick.
//! - [`group`]: [`Group`], the handle of one hosted group: write, membership changes,
//!   leadership transfer, compaction at the retention point.
//! - [`sm`]: [`StateMachine`], what the application supplies per group, and its adapter.
//! - `transport` (private): one HTTP/2 channel per peer broker, routing by group id,
//!   pipelined stream append, heartbeat coalescing. [`wire`]: its protobuf and conversions.
//! - [`timing`]: [`RaftTiming`], detector, heartbeat and election timing (LAN and loopback
//!   defaults).
//! - [`types`]: the openraft type config ([`TypeConfig`]), [`App`] and [`LogPayload`].
//! - [`runtime`]: [`LogRuntime`], one per broker: RocksDB metadata, IO threads, flusher
//!   (group commit).
//! - [`log`]: [`SegmentLog`], one group's log: openraft `RaftLogStorage` and `RaftLogReader`,
//!   truncate, purge, crash recovery, offset and timestamp lookups.
//! - [`segment`] (private): segment and sparse-index files, scanning and recovery.
//! - [`codec`]: byte formats of entries and index records.
//! - [`meta`]: vote, committed and purge point per group in RocksDB.
//! - [`config`]: [`LogConfig`], [`FlushPolicy`].
//! - [`crash`]: crash points ([`crash_point!`]) for the fault suite, behind `failpoints`.
//! - [`durable`]: creations, renames and directory fsyncs; with `lazy-io`, a crash undoes
//!   those no directory fsync made durable (simulated power loss).
//! - [`error`]: [`Error`] with stable codes. [`metrics`]: metric names.
//!
//! Storage decisions worth knowing before changing anything here:
//! - Sparse-index records are persisted only for entries already fdatasynced, so the last
//!   index record that verifies is a known-durable point: recovery scans only after it
//!   (O(segments)). Bytes before it are checked by CRC32C on every read instead: a damaged
//!   entry there is an error, never served. A damaged tail of a *sealed* segment would be a
//!   hole, so the group refuses to open (`CORRUPT_LOG`) rather than cut acknowledged data.
//! - On open the active segment is fdatasynced before its tail counts as durable (a killed
//!   process leaves written-but-unsynced bytes in the page cache).
//! - The purge point stores the record offset after the purged entry. Purging past the end
//!   of the local log (after a snapshot install) needs that offset from the state machine:
//!   [`SegmentLog::set_snapshot_offset`], unless the app has no offsets
//!   ([`App::RECORD_OFFSETS`]).
//! - Vote, truncate and purge run on the group's IO thread behind earlier appends, so all
//!   write IO is applied in order, as openraft requires.

//!
//! Replication decisions (DESIGN.md "Replication"; recorded here because the design notes
//! are shared read-only — see the closing note):
//! - openraft's tick is off (`enable_tick/heartbeat/elect = false`). The node's driver sends
//!   a group heartbeat only while the group has something to tell (uncommitted entries, an
//!   unseen commit index, a lagging follower); an idle group sends nothing at all. The
//!   leader lease is long (8 × the election timeout's upper bound, `RaftTiming::lease`) so
//!   an overloaded cluster keeps writing; the first write after a longer quiet period renews
//!   it with one heartbeat round (`Group::write`).
//! - Liveness comes from the broker-pair failure detector: probes every
//!   `detector-interval-ms`, and any traffic from a peer counts as a sign of life; probe
//!   answers also list groups whose Raft core stopped on a live broker. When a leader's
//!   broker is seen dead (or restarted, or its group stopped), the surviving voters campaign
//!   at once, ranked per group. A survivor first sounds the others (a pre-vote answered by
//!   the transport, by log and term), so one whose log is behind never bumps the term in the
//!   way of one that can win; voters whose own detector agrees the leader is gone grant the
//!   real vote without waiting out its lease.
//! - Leader restore is off: a restarted leader wins an election again, so a leader that lost
//!   unsynced entries (`flush = interval`) cannot reuse their log ids.
//! - A live leader (or a follower of one) refuses pre-votes: with no heartbeats, idle groups
//!   hold no fresh lease for openraft's own pre-vote check to go by.
//! - Snapshots describe the retention point chosen by the state machine, never the head
//!   (`StateMachine::build_snapshot`); `Group::compact` snapshots and purges up to it.
//! - Reads without a write (`Group::confirm_read_lease`) rest on a quorum having
//!   acknowledged the leader within half the detector's timeout, the soonest a voter may
//!   vote for another. A leadership transfer skips that wait (the target campaigns at once
//!   and voters grant it), so a leader that hands its term over confirms no read in that
//!   term any more, whatever its lease says (a fault-suite stale read during partition
//!   moves: the old leader, removed from the group, never heard of its successor).
//! - A transfer that stalls (`Group::transfer_leadership` timing out while this replica still
//!   leads that term) is sent again, to the same target and then to the other voters:
//!   openraft keeps a transferring leader from writing for the rest of its term, and
//!   followers that see its broker alive elect no one, so one lost request would strand the
//!   group.

pub mod codec;
pub mod config;
pub mod crash;
mod detector;
mod driver;
pub mod durable;
pub mod error;
pub mod group;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod runtime;
mod segfile;
mod segment;
pub mod sm;
pub mod timing;
mod transport;
pub mod types;
pub mod wire;

pub use config::FlushPolicy;
pub use config::LogConfig;
pub use error::Error;
#[doc(hidden)]
pub use fail;
pub use group::Group;
pub use log::EntryLocation;
pub use log::RecoveryStats;
pub use log::SegmentInfo;
pub use log::SegmentLog;
pub use node::NodeConfig;
pub use node::RaftNode;
pub use node::TransportServer;
pub use runtime::FlushStats;
pub use runtime::LogRuntime;
pub use sm::SnapshotData;
pub use sm::SnapshotMeta;
pub use sm::StateMachine;
pub use sm::StoredMembership;
pub use timing::RaftTiming;
pub use transport::TransportStats;
pub use transport::server::TransportService;
pub use types::App;
pub use types::Entry;
pub use types::EntryPayload;
pub use types::GroupId;
pub use types::LogId;
pub use types::LogPayload;
pub use types::ReplicaId;
pub use types::ReplicaNode;
pub use types::TypeConfig;
pub use types::Vote;
pub use types::log_id;
