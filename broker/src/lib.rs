//! rafka-broker: the broker process — controller (Raft group 0), partition replicas (one
//! Raft group each, on `rafka-raft`), consumer groups, and the gRPC services of
//! `rafka-proto`.
//!
//! This crate is being built up issue by issue; today it holds only the binary's entry
//! point. See `DESIGN.md` for where each piece will live.
