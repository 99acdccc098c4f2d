//! rafka-client: the Rust client of rafka over the gRPC contract of `rafka-proto`, and the
//! `rafka` command-line tool.
//!
//! - [`client`]: [`Client`] and [`ClientConfig`] — one channel per broker, the metadata cache,
//!   routing to partition leaders (following `NOT_LEADER` hints) and the single retry policy
//!   (per-request timeout, exponential backoff with jitter, total deadline, retriable errors
//!   only).
//! - [`data`]: the low-level data calls on [`Client`] — [`Client::produce_batch`],
//!   [`Client::fetch`], [`Client::list_offset`], [`Client::init_producer`].
//! - [`admin`]: [`Admin`] — create, delete, list, describe and alter topics; describe the
//!   cluster; metadata; list, describe (lag and owner per partition), delete consumer
//!   groups and reset their offsets. Returns plain structs such as [`TopicDescription`] and
//!   [`GroupDescription`].
//! - [`acls`]: ACLs on [`Admin`] — [`Admin::create_acls`], [`Admin::list_acls`],
//!   [`Admin::delete_acls`], with Kafka's model ([`AclBinding`], [`AclFilter`]).
//! - [`consumer`]: [`Consumer`] — `subscribe` (server-side group protocol, heartbeats in a
//!   background task, [`RebalanceListener`]) or `assign`; `poll` / `stream` with CRC checks;
//!   auto or manual commits; `seek` to an offset, the beginning, the end or a timestamp.
//! - [`groups`]: group calls on [`Client`] routed to each group's coordinator (following
//!   `NOT_COORDINATOR` hints, cached per group): [`Client::group_heartbeat`],
//!   [`Client::commit_group_offsets`], [`Client::fetch_group_offsets`].
//! - [`metadata`]: plain views of brokers, topics and partitions ([`ClusterMetadata`]).
//! - [`producer`]: [`Producer`] — per-partition batching by size and linger, up to
//!   `max_in_flight` batches in flight per partition on one ordered stream per broker,
//!   in-order delivery with idempotent retries, backpressure and `flush`; `send` queues a
//!   record and returns its [`Delivery`].
//! - [`partitioner`]: Kafka's murmur2 and [`partition_for_key`].
//! - [`error`]: [`Error`] with a stable [`Error::code`] and [`Error::is_retriable`].
//!
//! Runnable examples: `client/examples/{producer,consumer_group,replay}.rs`.

#![warn(missing_docs)]

pub mod acls;
pub mod admin;
pub mod client;
pub mod consumer;
pub mod data;
pub mod error;
pub mod groups;
pub mod metadata;
pub mod partitioner;
pub mod producer;

pub use acls::AclBinding;
pub use acls::AclFilter;
pub use admin::Admin;
pub use admin::ClusterDescription;
pub use admin::GroupDescription;
pub use admin::GroupListing;
pub use admin::GroupMemberDescription;
pub use admin::GroupPartitionDescription;
pub use admin::TopicDescription;
pub use admin::TopicListing;
pub use admin::UserListing;
pub use client::Client;
pub use client::ClientConfig;
pub use client::ClientTls;
pub use client::Credentials;
pub use consumer::Consumer;
pub use consumer::ConsumerConfig;
pub use consumer::ConsumerRecord;
pub use consumer::OffsetReset;
pub use consumer::RebalanceListener;
pub use consumer::SeekTo;
pub use data::FetchResult;
pub use data::OffsetSpec;
pub use error::Error;
pub use error::Result;
pub use metadata::BrokerDescription;
pub use metadata::ClusterMetadata;
pub use metadata::PartitionDescription;
pub use metadata::TopicMetadata;
pub use partitioner::partition_for_key;
pub use producer::Delivery;
pub use producer::Producer;
pub use producer::ProducerConfig;
pub use producer::ProducerRecord;
pub use producer::RECORD_OVERHEAD;
pub use producer::RecordMetadata;
pub use rafka_proto::ErrorCode;
pub use rafka_proto::v1::Acks;
