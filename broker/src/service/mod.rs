//! The protocol-neutral service layer: what a client request means, as plain Rust functions
//! over domain types. Each wire protocol (gRPC in [`crate::server`]) only translates its
//! requests into these calls and their results back; none holds produce, fetch, admin or
//! group logic of its own. Nothing here knows tonic or protobuf.
//!
//! - [`data`]: produce (validation, routing to the local replica or a leader hint, waiting
//!   for commit), fetch (long poll, `min_bytes`), subscribe, list offsets, producer ids.
//! - [`admin`]: topics, partitions, configs, metadata, cluster, reassignment — answered on
//!   the controller leader (others answer `NOT_CONTROLLER` with its address).
//! - [`groups`]: consumer-group heartbeats, commits, offset fetches, describe, list,
//!   delete, reset — on the group's coordinator.
//! - [`users`]: SCRAM users, listed and changed on the controller leader.
//! - [`acl`]: whether a caller may do what it asks (every handler asks first), and the
//!   ACLs themselves.
//!
//! Results are the broker's [`crate::error::Error`] on refusal.

pub mod acl;
pub mod admin;
pub mod data;
pub mod groups;
pub mod users;
