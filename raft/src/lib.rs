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
//! The design and the decisions behind it (storage and replication): `docs/ARCHITECTURE.md`,
//! sections 4, 7 and 9.

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
