//! rafka-proto: rafka's public wire contract.
//!
//! - [`v1`]: the `rafka.v1` protobuf package (`proto/rafka/v1/rafka.proto`) as generated
//!   Rust types, with the tonic clients and servers of the `Data`, `Admin` and `Groups`
//!   services (`groups.proto`).
//! - [`error`]: helpers on [`v1::ErrorCode`] (retriable or fatal) and building [`v1::Error`].
//! - [`batch`]: the `RecordBatch` checksum and the structural validation the broker runs
//!   before storing a batch.
//! - [`groups`]: which `__consumer_offsets` partition owns a consumer group.
//! - [`record_batch`]: Kafka's RecordBatch v2 — bounded parsing, validation, building.
//!
//! This crate is a pure codec: no I/O and no async beyond the generated tonic stubs.

pub mod batch;
pub mod error;
pub mod groups;
pub mod record_batch;

/// Generated code of the `rafka.v1` package.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rafka.v1");
}

pub use error::ErrorExt;
pub use v1::ErrorCode;
