//! Produce, fetch, subscribe, offset lookups and producer ids.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::Outcome;
use crate::error::Error;
use crate::error::Result;
use crate::metrics as m;
use crate::partition::OffsetSpec;
use crate::partition::PartitionEntry;
use crate::partition::ReadResult;

/// Longest produce timeout a client may ask for.
const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest fetch long-poll.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Largest fetch response a client may ask for.
const MAX_FETCH_BYTES: usize = 64 << 20;
/// The long poll of each step of a subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

/// Which replicas must have a batch before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Answer once the leader accepted the batch for replication (offset unknown: -1).
    None,
    /// Answer once committed by a quorum and applied, with the batch's base offset.
    All,
    /// A value the protocol does not define (refused once the batch is checked).
    Unknown(i32),
}

/// A batch to append.
pub struct Produce {
    pub topic: String,
    pub partition: u32,
    /// The encoded record batch, as the client sent it.
    pub batch: Bytes,
    pub acks: Acks,
    /// `None`: the broker's `request-timeout-ms`.
    pub timeout: Option<Duration>,
}

/// An appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// -1 with [`Acks::None`].
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// Appends a batch on the partition's leader.
pub async fn produce(b: &Broker, req: Produce) -> Result<Produced> {
    admit(b, req).await?.finish().await
}

/// A batch proposed to its partition, its outcome still to come.
pub struct AdmittedProduce {
    admitted: crate::partition::Admitted,
    partition: std::sync::Arc<crate::partition::Partition>,
    wait: bool,
    bytes: u64,
    records: u64,
}

impl AdmittedProduce {
    /// Waits for the outcome (at once with [`Acks::None`]).
    pub async fn finish(self) -> Result<Produced> {
        let base_offset = self.admitted.finish(self.wait).await?;
        metrics::counter!(m::PRODUCE_BYTES).increment(self.bytes);
        metrics::counter!(m::PRODUCE_RECORDS).increment(self.records);
        Ok(Produced { base_offset, log_start_offset: self.partition.log_start_offset() })
    }
}

/// Validates a batch and proposes it on the partition's leader: batches admitted one after
/// another keep that order in the log, whatever order their outcomes arrive in.
pub async fn admit(b: &Broker, req: Produce) -> Result<AdmittedProduce> {
    // No refusal while the broker stops: the replica answers for itself — it still leads
    // (the hand-over waits for what it accepts), or it answers NOT_LEADER naming the replica
    // it handed over to, so clients move there at once rather than retry here blindly.
    let (t, p) = b.route(&req.topic, req.partition)?;
    let cfg = b.topic_config(&t);
    let max_bytes = cfg.max_message_bytes as usize;
    let entry = PartitionEntry::produced(req.batch, max_bytes, b.state().batch_format())?;
    let info = entry.info;
    if let Acks::Unknown(v) = req.acks {
        return Err(Error::InvalidRequest(format!("unknown acks value {v}")));
    }
    let timeout = match req.timeout {
        None => Duration::from_millis(b.config().request_timeout_ms),
        Some(t) => t.min(MAX_PRODUCE_TIMEOUT),
    };
    let bytes = entry.batch.len() as u64;
    b.disk().admit(b.id(), bytes)?;
    let admitted = p.admit(entry, timeout).await?;
    Ok(AdmittedProduce {
        admitted,
        partition: p,
        wait: req.acks == Acks::All,
        bytes,
        records: info.record_count as u64,
    })
}

/// A read from an offset.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    /// 0: the broker's `fetch-max-bytes`.
    pub max_bytes: u32,
    /// How long to wait for data (capped at 30 s).
    pub max_wait: Duration,
    /// Keep waiting (up to `max_wait`) until this many bytes can be returned.
    pub min_bytes: u32,
    /// Whether a follower may answer (its high watermark may trail the leader's).
    pub allow_follower: bool,
}

/// Reads committed batches: at least one if any exists at or after the offset, up to
/// `max_bytes`, waiting as the request allows.
pub async fn fetch(b: &Broker, req: &Fetch) -> Result<ReadResult> {
    // While the broker stops, the replica answers for itself (see `admit`).
    let (_, p) = b.route(&req.topic, req.partition)?;
    if req.offset < 0 {
        let message = format!("{}: negative offset {}", p.name, req.offset);
        return Err(Error::OffsetOutOfRange { message, watermarks: None });
    }
    let max_bytes = match req.max_bytes {
        0 => b.config().fetch_max_bytes as usize,
        n => (n as usize).min(MAX_FETCH_BYTES),
    };
    let wait = req.max_wait.min(MAX_FETCH_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut r = p.read(req.offset, max_bytes, wait, req.allow_follower).await?;
    loop {
        let bytes: usize = r.batches.iter().map(|b| b.batch.len()).sum();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if bytes >= req.min_bytes as usize || bytes >= max_bytes || left.is_zero() {
            break;
        }
        if !p.wait_high_watermark_above(r.high_watermark, left).await {
            break;
        }
        r = p.read(req.offset, max_bytes, Duration::ZERO, req.allow_follower).await?;
    }
    let bytes: usize = r.batches.iter().map(|b| b.batch.len()).sum();
    metrics::counter!(m::FETCH_BYTES).increment(bytes as u64);
    Ok(r)
}

/// Several partitions read together, as Kafka's Fetch reads them: each at once; then, while
/// they returned fewer than `min_bytes` (at least 1) and no refusal, waits up to `max_wait`
/// (capped at 30 s) for any of them to grow and reads again. Results in request order.
pub async fn fetch_many(
    b: &Broker,
    reqs: &[Fetch],
    max_wait: Duration,
    min_bytes: usize,
) -> Vec<Result<ReadResult>> {
    let deadline = tokio::time::Instant::now() + max_wait.min(MAX_FETCH_WAIT);
    loop {
        let now = reqs.iter().map(|r| async move {
            let r = Fetch { max_wait: Duration::ZERO, min_bytes: 0, ..r.clone() };
            fetch(b, &r).await
        });
        let results = futures::future::join_all(now).await;
        let bytes: usize = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|r| r.batches.iter().map(|b| b.batch.len()))
            .sum();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if bytes >= min_bytes.max(1) || results.iter().any(|r| r.is_err()) || left.is_zero() {
            return results;
        }
        let mut grown: futures::stream::FuturesUnordered<_> = results
            .iter()
            .zip(reqs)
            .filter_map(|(r, q)| {
                let hw = r.as_ref().ok()?.high_watermark;
                let (_, p) = b.route(&q.topic, q.partition).ok()?;
                Some(async move { p.wait_high_watermark_above(hw, left).await })
            })
            .collect();
        let any_grew = async {
            while let Some(moved) = futures::StreamExt::next(&mut grown).await {
                if moved {
                    return true;
                }
            }
            false
        };
        let grew = tokio::time::timeout(left, any_grew).await.unwrap_or(false);
        drop(grown);
        if !grew {
            // Nothing moved before the deadline: what was read is the answer.
            return results;
        }
    }
}

/// Every batch from `offset` on, as it is committed: a stream of non-empty reads that ends
/// after the first refusal (yielded as its last item) or when the broker shuts down.
pub fn subscribe(
    b: std::sync::Arc<Broker>,
    topic: String,
    partition: u32,
    offset: i64,
    max_bytes: u32,
) -> impl Stream<Item = Result<ReadResult>> + Send + 'static {
    let start = Fetch {
        topic,
        partition,
        offset,
        max_bytes,
        max_wait: SUBSCRIBE_WAIT,
        min_bytes: 0,
        allow_follower: false,
    };
    futures::stream::unfold(Some(start), move |next| {
        let b = b.clone();
        async move {
            let mut req = next?;
            loop {
                match fetch(&b, &req).await {
                    Ok(r) if r.batches.is_empty() => continue,
                    Ok(r) => {
                        req.offset = r.next_offset.max(req.offset);
                        return Some((Ok(r), Some(req)));
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        }
    })
}

/// The offset `spec` names in a partition, and the timestamp found with a lookup by time
/// (-1 otherwise).
/// `spec` `None`: the request named none (refused once it is routed).
pub async fn list_offsets(
    b: &Broker,
    topic: &str,
    partition: u32,
    spec: Option<OffsetSpec>,
    allow_follower: bool,
) -> Result<(i64, i64)> {
    // While the broker stops, the replica answers for itself (see `admit`).
    let (_, p) = b.route(topic, partition)?;
    let spec = spec.ok_or_else(|| Error::InvalidRequest("ListOffsets without a spec".into()))?;
    p.list_offset(spec, allow_follower).await
}

/// A producer id and epoch for an idempotent producer (named: the same id with a bumped
/// epoch, fencing the previous instance). Only on the controller leader.
pub async fn init_producer(b: &Broker, name: String) -> Result<(i64, i32)> {
    match b.controller().propose(Command::InitProducer { name }).await? {
        Outcome::Producer { id, epoch } => Ok((id, epoch)),
        other => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}
