//! Low-level data calls on [`Client`]: produce one batch, fetch, list offsets, init a
//! producer. The Producer and Consumer build on these.

use std::time::Duration;

use bytes::Bytes;
use rafka_proto::v1;
use rafka_proto::v1::Acks;

use crate::client::Client;
use crate::client::data;
use crate::error::Result;

/// Which offset [`Client::list_offset`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still stored (log start).
    Earliest,
    /// The offset the next record will get (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the Unix epoch).
    Timestamp(i64),
}

/// What [`Client::fetch`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    /// Offset after the last committed record.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// Encoded `RecordBatch`es with their base offsets, in offset order.
    pub batches: Vec<(i64, Bytes)>,
}

fn millis(d: Duration) -> u32 {
    d.as_millis().try_into().unwrap_or(u32::MAX)
}

impl Client {
    /// Appends one encoded `RecordBatch` to `topic`/`partition` at its leader and returns the
    /// batch's base offset (`-1` with [`Acks::None`]). Retriable errors are retried, so a
    /// non-idempotent batch may be written twice if an attempt's outcome was unknown.
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<i64> {
        let timeout_ms = millis(self.config().request_timeout);
        let resp = self
            .call_partition(topic, partition, Duration::ZERO, |ch| {
                let req = v1::ProduceRequest {
                    topic: topic.to_string(),
                    partition,
                    acks: acks as i32,
                    batch: batch.clone(),
                    timeout_ms,
                };
                async move { data(ch).produce(req).await }
            })
            .await?;
        Ok(resp.base_offset)
    }

    /// Reads batches of `topic`/`partition` from `offset` at its leader: up to about
    /// `max_bytes`, waiting up to `max_wait` for data when there is none yet.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u32,
        max_wait: Duration,
    ) -> Result<FetchResult> {
        let resp = self
            .call_partition(topic, partition, max_wait, |ch| {
                let req = v1::FetchRequest {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    max_bytes,
                    max_wait_ms: millis(max_wait),
                    min_bytes: 1,
                    allow_follower: false,
                };
                async move { data(ch).fetch(req).await }
            })
            .await?;
        Ok(FetchResult {
            high_watermark: resp.high_watermark,
            log_start_offset: resp.log_start_offset,
            batches: resp.batches.into_iter().map(|b| (b.base_offset, b.batch)).collect(),
        })
    }

    /// The offset of `topic`/`partition` that `spec` names, from its leader.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<i64> {
        let spec = match spec {
            OffsetSpec::Earliest => v1::offset_spec::Spec::Earliest(true),
            OffsetSpec::Latest => v1::offset_spec::Spec::Latest(true),
            OffsetSpec::Timestamp(t) => v1::offset_spec::Spec::Timestamp(t),
        };
        let resp = self
            .call_partition(topic, partition, Duration::ZERO, |ch| {
                let req = v1::ListOffsetsRequest {
                    topic: topic.to_string(),
                    partition,
                    spec: Some(v1::OffsetSpec { spec: Some(spec) }),
                    allow_follower: false,
                };
                async move { data(ch).list_offsets(req).await }
            })
            .await?;
        Ok(resp.offset)
    }

    /// Registers (or re-registers, bumping the epoch) the idempotent producer `name`;
    /// returns its `(producer_id, producer_epoch)`.
    pub async fn init_producer(&self, name: &str) -> Result<(i64, i32)> {
        let resp = self
            .call_any(|ch| {
                let req = v1::InitProducerRequest { producer_name: name.to_string() };
                async move { data(ch).init_producer(req).await }
            })
            .await?;
        Ok((resp.producer_id, resp.producer_epoch))
    }
}
