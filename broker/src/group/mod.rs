//! Consumer groups: offsets and membership replicated in the
//! partitions of the internal topic `__consumer_offsets`, one coordinator per partition.
//!
//! - [`state`]: a group's membership as a plain struct — KIP-848 heartbeats, member epochs,
//!   revoke-before-assign reconciliation, commit fencing. No I/O.
//! - [`assign`]: the server-side assignors, `range` and `uniform` (sticky).
//! - [`classic`]: Kafka's classic group protocol (JoinGroup/SyncGroup): the replicated
//!   generation and the coordinator's soft state around it.
//! - [`store`]: [`GroupCommand`]s, the groups RocksDB and [`OffsetsSm`], the state machine of
//!   an offsets partition (offsets and group states in RocksDB, snapshots of both).
//! - [`coordinator`]: [`Coordinator`], one hosted offsets partition replica: as leader it
//!   serializes each group's changes, replicates them, tracks member sessions.
//! - [`GroupsConfig`], the `[groups]` config table, lives with the rest of the config.
//!
//! Decisions behind this design: `docs/ARCHITECTURE.md`, sections 6 and 9.

pub mod assign;
pub mod classic;
pub mod classic_ops;
pub mod coordinator;
pub mod state;
pub mod store;

pub use crate::config::GroupsConfig;
pub use coordinator::Coordinator;
pub use store::GroupCommand;
pub use store::GroupsDb;
pub use store::OffsetsSm;

use rafka_raft::Group;

use crate::json_entry::JsonEntry;

/// The Raft application of `__consumer_offsets` partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OffsetsApp;

impl rafka_raft::App for OffsetsApp {
    type Data = JsonEntry;
    type Response = ();
    const RECORD_OFFSETS: bool = false;
}

/// An offsets partition group handle.
pub type OffsetsGroup = Group<OffsetsApp, OffsetsSm>;

/// A group as listed: its state and who coordinates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `empty`, `stable`, `reconciling`, ...: [`state::GroupState::state_name`].
    pub state: String,
    pub members: u32,
    /// Broker id of the coordinator.
    pub coordinator: u64,
}
