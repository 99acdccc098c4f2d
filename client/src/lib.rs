//! rafka-client: the Rust client of rafka (Client, Producer, Consumer, Admin) over the gRPC
//! contract of `rafka-proto`, and the `rafka` command-line tool.
//!
//! This crate is being built up issue by issue; today it holds only the CLI's entry point.
