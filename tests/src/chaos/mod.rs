//! The fault suite's machinery: Jepsen-style histories, a network of fault-injecting
//! proxies between brokers, a nemesis, workloads and a checker.
//!
//! - [`proxy`]: [`proxy::Proxy`], one TCP proxy with a switchable [`proxy::Mode`] (pass,
//!   blackhole, reset, delay ± jitter, stall, drop responses).
//! - [`net`]: [`net::Net`], one proxy per direction per broker pair, and partition shapes
//!   (isolate, majority/minority, bridge, one-way) built from them.
//! - [`history`]: [`history::History`], every client operation as a JSON line
//!   `{process, type, f, value, time}`.
//! - [`workload`]: [`workload::Workload`], the client processes (idempotent and raw
//!   producers, readers, a leader watcher) recording into a history.
//! - [`group`]: consumer-group processes (crashing and rejoining members) for a workload.
//! - [`nemesis`]: [`nemesis::Nemesis`], faults (kill, kill all, pause, partitions of every
//!   shape, delays, resets, stalls) and a seeded [`nemesis::Schedule`] of them.
//! - [`verify`]: [`verify::final_reads`], every replica's log after healing.
//! - [`checker`]: [`checker::check`], which turns a history into violations and figures.
//! - [`scenario`]: [`scenario::run`], one run end to end, keeping the evidence when it fails.

pub mod checker;
pub mod group;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod proxy;
pub mod scenario;
pub mod verify;
pub mod workload;
