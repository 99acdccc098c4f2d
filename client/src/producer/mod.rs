//! [`Producer`]: batches records per partition and pipelines each partition's batches in
//! order.
//!
//! [`Producer::send`] picks the partition (explicit, else [`partition_for_key`], else a
//! sticky partition for keyless records), reserves buffer memory, queues the record to that
//! partition's sender task and returns a [`Delivery`] — the caller decides whether to await
//! it now or keep sending. Nothing is spawned per record, and the partition count comes from
//! the producer's own per-topic table (one lookup by `&str`, no metadata copy).
//!
//! Each partition's sender (see `partition.rs`) keeps up to `max_in_flight` batches in flight
//! on one ordered `ProduceStream` per broker (see `stream.rs`), so the broker admits them in
//! sequence order; batches keep filling while others are in flight.

mod partition;
mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use rafka_proto::ErrorCode;
pub use rafka_proto::batch::Compression;
use rafka_proto::batch::Header;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use tokio::sync::Notify;
use tokio::sync::OnceCell;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use self::partition::PartitionTask;
use self::partition::Pending;
use self::stream::Streams;

use crate::client::Client;
use crate::error::Error;
use crate::error::Result;
use crate::partitioner::partition_for_key;

/// Bytes counted per record on top of key, value and headers (against `batch_size` and
/// `buffer_memory`).
pub const RECORD_OVERHEAD: usize = 32;

/// How a [`Producer`] batches and delivers.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgement level; idempotence requires [`Acks::All`].
    pub acks: Acks,
    /// How long a partition waits for more records before sending a batch.
    pub linger: Duration,
    /// A batch is sent once it holds about this many bytes.
    pub batch_size: usize,
    /// Compression of each batch.
    pub compression: Compression,
    /// Register a producer id and number batches so that retries are never written twice.
    pub idempotence: bool,
    /// Batches per partition in flight at once (1 to 5 with idempotence: the broker
    /// deduplicates within its last 5 batches of a producer).
    pub max_in_flight: usize,
    /// `send` waits while this many bytes of records are buffered and unacknowledged.
    pub buffer_memory: usize,
    /// How long after sealing a batch may be retried before its records fail.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            compression: Compression::None,
            idempotence: true,
            max_in_flight: 5,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

impl ProducerConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.idempotence && self.acks != Acks::All {
            return bad("idempotence requires acks=all");
        }
        if self.batch_size == 0 || self.max_in_flight == 0 {
            return bad("batch_size and max_in_flight must be positive");
        }
        if self.idempotence && self.max_in_flight > 5 {
            return bad("idempotence allows at most 5 batches in flight per partition");
        }
        if self.buffer_memory < self.batch_size || self.buffer_memory > Semaphore::MAX_PERMITS {
            return bad("buffer_memory must be at least batch_size");
        }
        if self.delivery_timeout.is_zero() {
            return bad("delivery_timeout must be positive");
        }
        Ok(())
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// An explicit partition; otherwise chosen from the key, or sticky for keyless records.
    pub partition: Option<u32>,
    /// The key, which chooses the partition when `partition` is `None`.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone, in Kafka's terms).
    pub value: Option<Bytes>,
    /// Headers, in order; a header value may be null (`None`).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch; now when `None`.
    pub timestamp: Option<i64>,
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The record's offset (`-1` with [`Acks::None`]).
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp: i64,
}

/// The outcome of one sent record: resolves once its batch is acknowledged (with the
/// record's offset) or fails. Dropping it does not cancel the send.
#[must_use = "a Delivery says whether the record was written"]
pub struct Delivery(oneshot::Receiver<Result<RecordMetadata>>);

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(Error::Protocol("partition sender stopped".into()))))
    }
}

/// State shared by every partition task.
struct Shared {
    client: Client,
    config: ProducerConfig,
    streams: Streams,
    /// Records queued and not yet acknowledged or failed; `flush` waits for zero.
    outstanding: AtomicU64,
    all_delivered: Notify,
}

impl Shared {
    /// `n` records are acknowledged or failed.
    fn delivered(&self, n: u64) {
        if self.outstanding.fetch_sub(n, Ordering::SeqCst) == n {
            self.all_delivered.notify_waiters();
        }
    }
}

/// One topic as the producer sees it: its partition count (refreshed with the metadata),
/// each partition's queue, and the sticky partition for keyless records.
struct TopicState {
    partitions: u32,
    checked: Instant,
    queues: Vec<Option<PartitionQueue>>,
    /// The sticky partition and its `sealed` count when chosen.
    sticky: Option<(u32, u64)>,
}

/// The queue of one partition's sender task, and how many batches it has sealed (the sticky
/// partitioner moves on when that changes).
struct PartitionQueue {
    tx: mpsc::UnboundedSender<Pending>,
    sealed: Arc<AtomicU64>,
}

/// A batching, pipelining, optionally idempotent producer. Cheap to share behind an `Arc`;
/// dropping it lets queued batches finish in the background.
pub struct Producer {
    shared: Arc<Shared>,
    memory: Arc<Semaphore>,
    producer_id: OnceCell<Option<(i64, i32)>>,
    topics: Mutex<HashMap<String, TopicState>>,
}

impl Producer {
    /// A producer over `client`; the producer id is registered on the first send.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let memory = Arc::new(Semaphore::new(config.buffer_memory));
        let streams = Streams::new(client.clone());
        Ok(Producer {
            shared: Arc::new(Shared {
                client,
                config,
                streams,
                outstanding: AtomicU64::new(0),
                all_delivered: Notify::new(),
            }),
            memory,
            producer_id: OnceCell::new(),
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// Queues `record` for its partition and returns its [`Delivery`]. Waits only while
    /// `buffer_memory` is used up, or for metadata the first time a topic is seen (or when
    /// its partition count is older than `metadata_max_age`), and for the producer id on the
    /// first send. Records sent one after another to a partition are written in that order.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery> {
        let producer = self.producer().await?;
        let size = RECORD_OVERHEAD
            + record.key.as_ref().map_or(0, |k| k.len())
            + record.value.as_ref().map_or(0, |v| v.len())
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>();
        if size > self.shared.config.buffer_memory {
            return Err(Error::InvalidConfig(format!(
                "record of {size} bytes is larger than buffer_memory"
            )));
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        if timestamp < 0 {
            // As Kafka: a negative time is a bug in the caller, and would let one record's
            // timestamp spread wreck the batch it shares with others.
            return Err(Error::InvalidConfig(format!("negative record timestamp {timestamp}")));
        }
        let permits = u32::try_from(size).expect("size bounded by buffer_memory");
        let permit = match Arc::clone(&self.memory).try_acquire_many_owned(permits) {
            Ok(p) => p,
            Err(_) => Arc::clone(&self.memory)
                .acquire_many_owned(permits)
                .await
                .expect("the semaphore is never closed"),
        };
        self.refresh_topic(&record.topic).await?;
        let (done, rx) = oneshot::channel();
        let pending = Pending {
            record: NewRecord {
                key: record.key.clone(),
                value: record.value,
                timestamp,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(key, value)| Header { key, value })
                    .collect(),
            },
            size,
            _permit: permit,
            done,
        };
        let mut topics = self.topics.lock().unwrap();
        let topic = topics.get_mut(&record.topic).expect("refreshed above");
        let partition = self.choose(topic, &record.topic, record.partition, record.key.as_ref())?;
        let queue = topic.queues[partition as usize].get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let sealed = Arc::new(AtomicU64::new(0));
            let task = PartitionTask::new(
                Arc::clone(&self.shared),
                record.topic.clone(),
                partition,
                producer,
                Arc::clone(&sealed),
            );
            tokio::spawn(task.run(rx));
            PartitionQueue { tx, sealed }
        });
        self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        if queue.tx.send(pending).is_err() {
            self.shared.delivered(1);
            return Err(Error::Protocol("partition sender stopped".into()));
        }
        Ok(Delivery(rx))
    }

    /// Waits until every record sent so far is acknowledged or failed. It waits for nothing to
    /// be outstanding, so records sent while it waits are waited for too.
    pub async fn flush(&self) {
        loop {
            let notified = self.shared.all_delivered.notified();
            if self.shared.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The registered `(producer id, epoch)` with idempotence, else `None`.
    async fn producer(&self) -> Result<Option<(i64, i32)>> {
        let shared = &self.shared;
        self.producer_id
            .get_or_try_init(|| async {
                if !shared.config.idempotence {
                    return Ok(None);
                }
                // Anonymous: a fresh id each time (a retried call just wastes one id), and the
                // controller keeps no per-name state for it.
                shared.client.init_producer("").await.map(Some)
            })
            .await
            .copied()
    }

    /// Makes sure the producer knows `topic` and a partition count no older than the
    /// client's `metadata_max_age` (fetching metadata when not).
    async fn refresh_topic(&self, topic: &str) -> Result<()> {
        let max_age = self.shared.client.config().metadata_max_age;
        let known = {
            let topics = self.topics.lock().unwrap();
            topics.get(topic).is_some_and(|t| t.checked.elapsed() < max_age)
        };
        if known {
            return Ok(());
        }
        let client = &self.shared.client;
        let mut count = client.cached_partition_count(topic);
        if count.is_none() || self.topics.lock().unwrap().contains_key(topic) {
            client.refresh_metadata().await?;
            count = client.cached_partition_count(topic);
        }
        let Some(count) = count else {
            return Err(Error::broker(ErrorCode::UnknownTopic, format!("unknown topic {topic}")));
        };
        let mut topics = self.topics.lock().unwrap();
        let t = topics.entry(topic.to_string()).or_insert_with(|| TopicState {
            partitions: 0,
            checked: Instant::now(),
            queues: Vec::new(),
            sticky: None,
        });
        // Partitions are only ever added.
        t.partitions = t.partitions.max(count);
        t.checked = Instant::now();
        t.queues.resize_with(t.partitions as usize, || None);
        Ok(())
    }

    /// The partition of a record: explicit, by key, or sticky for keyless records (moving on
    /// once the sticky partition has sealed a batch).
    fn choose(
        &self,
        t: &mut TopicState,
        topic: &str,
        explicit: Option<u32>,
        key: Option<&Bytes>,
    ) -> Result<u32> {
        let count = t.partitions;
        if let Some(p) = explicit {
            return match p < count {
                true => Ok(p),
                false => Err(Error::broker(
                    ErrorCode::UnknownPartition,
                    format!("{topic}/{p} does not exist ({count} partitions)"),
                )),
            };
        }
        if let Some(key) = key {
            return Ok(partition_for_key(key, count));
        }
        let sealed_now = |t: &TopicState, p: u32| {
            t.queues[p as usize].as_ref().map_or(0, |q| q.sealed.load(Ordering::SeqCst))
        };
        if let Some((p, sealed)) = t.sticky
            && p < count
            && sealed_now(t, p) == sealed
        {
            return Ok(p);
        }
        let previous = t.sticky.map(|(p, _)| p);
        let mut p = rand::random::<u32>() % count;
        if count > 1 && Some(p) == previous {
            p = (p + 1) % count;
        }
        t.sticky = Some((p, sealed_now(t, p)));
        Ok(p)
    }
}

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
