//! Consumer groups (DESIGN.md "Consumer groups"): offsets and membership replicated in the
//! partitions of the internal topic `__consumer_offsets`, one coordinator per partition.
//!
//! - [`state`]: a group's membership as a plain struct — KIP-848 heartbeats, member epochs,
//!   revoke-before-assign reconciliation, commit fencing. No I/O.
//! - [`assign`]: the server-side assignors, `range` and `uniform` (sticky).
//! - [`store`]: [`GroupCommand`]s, the groups RocksDB and [`OffsetsSm`], the state machine of
//!   an offsets partition (offsets and group states in RocksDB, snapshots of both).
//! - [`coordinator`]: [`Coordinator`], one hosted offsets partition replica: as leader it
//!   serializes each group's changes, replicates them, tracks member sessions.
//! - `route`: finding a group's coordinator (`Broker::coordinator_for`, `NOT_COORDINATOR`),
//!   and partition offsets from any broker (`Broker::list_offset_anywhere`).
//! - [`tasks`]: creating `__consumer_offsets` at bootstrap, session expiry, lag metrics,
//!   log compaction.
//! - [`config`]: [`GroupsConfig`], the `[groups]` config table.
//!
//! Decisions (recorded here because DESIGN.md is shared read-only; see issue 5's note):
//! - The coordinator computes each new group state (heartbeat, session expiry) and
//!   replicates the whole state of that group (`PutGroup`); applying it is then trivially
//!   deterministic. Heartbeats that change nothing write nothing. Member liveness (last
//!   heartbeat) is soft state on the leader: a new coordinator gives every member a fresh
//!   session timeout, as Kafka does.
//! - A coordinator serves nothing until it has applied an entry of its own term
//!   ([`rafka_raft::Group::is_leader_ready`]): every earlier commit and membership change is
//!   then in its state. Proposals are fenced to the term checked.
//! - A commit is one Raft entry for all its partitions: atomic, acknowledged after a quorum
//!   has it and the leader applied it.

pub mod assign;
pub mod config;
pub mod coordinator;
mod route;
pub mod state;
pub mod store;
pub mod tasks;

pub use config::GroupsConfig;
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
