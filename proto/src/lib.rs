//! rafka-proto: rafka's public wire contract.
//!
//! - [`v1`]: the `rafka.v1` protobuf package (`proto/rafka/v1/rafka.proto`) as generated
//!   Rust types, with the tonic clients and servers of the `Data`, `Admin` and `Groups`
//!   services (`groups.proto`).
//! - [`error`]: helpers on [`v1::ErrorCode`] (retriable or fatal) and building [`v1::Error`].
//! - [`batch`]: rafka's one batch format, Kafka's RecordBatch v2 — bounded parsing,
//!   validation (what a broker runs before it stores a batch), building, reading.
//! - [`legacy`]: the protobuf `RecordBatch` (magic 1) of rafka before it stored Kafka's
//!   format, kept to accept old clients' batches and read old data, and its conversions.
//! - [`groups`]: which `__consumer_offsets` partition owns a consumer group.
//!
//! This crate is a pure codec: no I/O and no async beyond the generated tonic stubs.

pub mod batch;
pub mod error;
pub mod groups;
pub mod legacy;

/// Generated code of the `rafka.v1` package.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rafka.v1");
}

pub use error::ErrorExt;
pub use v1::ErrorCode;
