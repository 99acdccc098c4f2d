//! rafka-broker: the Kafka-style broker on top of rafka-raft (work in progress).

pub mod config;
pub mod http;
pub mod telemetry;
