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
//!   leadership transfer, compaction at the retention point, and [`RaftStatus`], the
//!   replica's view of its group.
//! - [`model`]: the Raft facts in rafka's own types — [`LogId`], [`Membership`],
//!   [`StoredMembership`], [`SnapshotMeta`], [`Entry`], [`RaftStatus`]. The public API names
//!   no openraft type: an openraft upgrade changes this crate only.
//! - [`sm`]: [`StateMachine`], what the application supplies per group, and its adapter to
//!   openraft.
//! - `transport` (private): one HTTP/2 channel per peer broker, routing by group id,
//!   pipelined stream append, heartbeat coalescing. `wire`: its protobuf and conversions.
//! - [`timing`]: [`RaftTiming`], detector, heartbeat and election timing (LAN and loopback
//!   defaults).
//! - `types`: the openraft type config, [`App`] and [`LogPayload`].
//! - [`runtime`]: [`LogRuntime`], one per broker: RocksDB metadata, IO threads, flusher
//!   (group commit).
//! - `log`: [`SegmentLog`], one group's log: openraft `RaftLogStorage` and `RaftLogReader`,
//!   truncate, purge, crash recovery, offset and timestamp lookups.
//! - `segment` (private): segment and sparse-index files, scanning and recovery.
//! - `codec`: byte formats of entries and index records. `meta`: vote, committed and purge
//!   point per group in RocksDB.
//! - [`config`]: [`LogConfig`], [`FlushPolicy`].
//! - [`crash`]: crash points ([`crash_point!`]) for the fault suite, behind `failpoints`.
//! - [`durable`]: creations, renames and directory fsyncs (with `lazy-io`, a crash undoes
//!   those no directory fsync made durable), and state files in a checksummed envelope.
//! - [`error`]: [`Error`] with stable codes. [`metrics`]: metric names.
//!
//! `types`, `log`, `codec`, `meta` and `wire` speak openraft's types: they are private,
//! except to this crate's own tests and benches (feature `test-hooks`).
//!
//! The design and the decisions behind it (storage and replication): `docs/ARCHITECTURE.md`,
//! sections 4, 7 and 9.

pub mod config;
pub mod crash;
mod detector;
mod driver;
pub mod durable;
pub mod error;
pub mod group;
pub mod metrics;
pub mod model;
pub mod node;
pub mod runtime;
mod segfile;
mod segment;
pub mod sm;
pub mod timing;
mod transport;

// Modules whose items speak openraft's types: the crate's own, except to its tests and
// benches (feature `test-hooks`), which drive the storage through openraft's traits.
#[cfg(feature = "test-hooks")]
pub mod codec;
#[cfg(not(feature = "test-hooks"))]
mod codec;
#[cfg(feature = "test-hooks")]
pub mod log;
#[cfg(not(feature = "test-hooks"))]
mod log;
#[cfg(feature = "test-hooks")]
pub mod meta;
#[cfg(not(feature = "test-hooks"))]
mod meta;
#[cfg(feature = "test-hooks")]
pub mod types;
#[cfg(not(feature = "test-hooks"))]
mod types;
#[cfg(feature = "test-hooks")]
pub mod wire;
#[cfg(not(feature = "test-hooks"))]
mod wire;

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
pub use model::Entry;
pub use model::EntryPayload;
pub use model::LogId;
pub use model::Membership;
pub use model::RaftStatus;
pub use model::SnapshotMeta;
pub use model::StoredMembership;
pub use model::log_id;
pub use node::NodeConfig;
pub use node::RaftNode;
pub use node::TransportServer;
pub use runtime::FlushStats;
pub use runtime::LogRuntime;
pub use sm::SnapshotData;
pub use sm::StateMachine;
pub use timing::RaftTiming;
pub use transport::TransportStats;
pub use transport::dial::Dialer;
pub use transport::server::TransportService;
pub use types::App;
pub use types::GroupId;
pub use types::LogPayload;
pub use types::ReplicaId;
pub use types::ReplicaNode;
