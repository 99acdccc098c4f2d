//! rafka-tests: the black-box cluster harness and the broker acceptance suites.
//!
//! The harness runs the real `rafka-broker` binary as child processes, each with its own data
//! directory and pre-reserved loopback ports, and talks to them only through the public gRPC
//! contract (`rafka_proto::v1`) and the HTTP side port. Nothing here links the broker.
//!
//! - [`cluster`]: [`Cluster`] — N brokers in one temp dir, started, waited for and torn down
//!   (SIGKILL on drop, broker logs printed when the test panics); [`ClusterOptions`].
//! - [`broker`]: [`Broker`] — one broker process: kill -9, SIGTERM, SIGSTOP/SIGCONT, restart
//!   on the same ports and data, readiness, gRPC clients, log tail; locating the binary;
//!   [`Broker::start_no_flags`] for the one test that uses the fixed default ports.
//! - [`client`]: [`TestClient`] — routes partition requests to the leader via `Metadata`,
//!   follows `NOT_LEADER` hints, retries retriable codes and transport errors until a
//!   deadline; `must_*` helpers panic with a clear message instead of returning errors.
//! - [`records`]: building batches ([`records::batch`], [`records::Sequencer`] for idempotent
//!   producers) and decoding fetched ones ([`FetchedRecord`]), CRC-checked.
//! - [`raw`]: a pass-through bytes codec, to send arbitrary bytes as a gRPC request body.
//! - [`response`]: [`response::HasError`], the `Error` of any response, and its code.
//! - [`groups`]: consumer groups: a coordinator-routing `Groups` client and simulated members
//!   (heartbeating, optionally consuming and committing) for the group suites.
//! - [`load`]: a producer load for tests that change the cluster under it, and the check
//!   that every acknowledged record is stored exactly once.
//! - [`http`]: a minimal HTTP/1.1 GET for `/readyz` and `/healthz`.
//! - [`ports`]: [`ports::ReservedPort`], a loopback port held until a broker is spawned.
//! - `fake` (unit tests only): in-process fake brokers that test [`TestClient`]'s routing
//!   without the real broker.
//! - [`docker`]: a Docker daemon of the test's own, the locally built base image, and image
//!   builds from `deploy/docker/Dockerfile`.
//! - [`certs`]: a CA made in the test, issuing broker and client certificates as PEM files.
//! - [`chaos`]: the fault suite — proxies between brokers, histories, nemesis, checker.
//! - [`wait`]: waiting on conditions with deadlines ([`wait::poll`], [`wait::bounded`]) and
//!   the `RAFKA_TEST_*` environment knobs.
//!
//! # Running
//!
//! `cargo test --workspace` builds `target/<profile>/rafka-broker` and runs every suite. A
//! single suite, `cargo test --workspace --test NAME`, does not rebuild the broker binary: run
//! `cargo build --workspace` first. `RAFKA_BROKER_BIN=/path/to/rafka-broker` picks another
//! binary. The harness prints the binary it uses and its age once per test process.
//!
//! Cluster tests run one at a time per test process (the machine may have two cores, and
//! timings should mean something); every wait has a deadline, and `RAFKA_TEST_TIMEOUT_SECS`
//! raises the per-test bound when the `RAFKA_TEST_*` size knobs make a suite heavier.

#![warn(missing_docs)]

pub mod broker;
pub mod certs;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod docker;
#[cfg(test)]
mod fake;
pub mod groups;
pub mod http;
pub mod kafka;
pub mod load;
pub mod ports;
pub mod produced;
pub mod raw;
pub mod records;
pub mod response;
pub mod wait;

pub use broker::Broker;
pub use client::TestClient;
pub use cluster::Cluster;
pub use cluster::ClusterOptions;
pub use records::FetchedRecord;
pub use wait::bounded;
pub use wait::poll;
