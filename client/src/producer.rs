//! [`Producer`]: batches records per partition and sends each partition's batches in order.
//!
//! `send` picks the partition (explicit, else [`partition_for_key`], else a sticky partition
//! for keyless records), reserves buffer memory, and queues the record to that partition's
//! sender task. The task accumulates records until `batch_size` bytes or `linger` has passed,
//! seals the batch (assigning idempotent sequence numbers then), and keeps exactly one batch
//! in flight, resending the same bytes until it is acknowledged, fails fatally, or its
//! delivery timeout passes. One batch in flight keeps order without relying on broker-side
//! reordering. A failed batch fails its records and every record queued behind it (its
//! outcome may be unknown: a timed-out batch may still be written). With idempotence the
//! partition then continues under a fresh producer id from sequence 0, so that no later
//! batch can be deduplicated against the failed one; Kafka bumps the epoch for the same
//! reason (KIP-360).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use rafka_proto::ErrorCode;
pub use rafka_proto::batch::Compression;
use rafka_proto::batch::Header;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use tokio::sync::OnceCell;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::error::Result;
use crate::partitioner::partition_for_key;

/// Bytes counted per record on top of key, value and headers.
const RECORD_OVERHEAD: usize = 32;

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
    /// Batches per partition in flight at once; this producer sends one at a time (the
    /// always-correct choice) and only checks the value is at least 1.
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
            batch_size: 16 * 1024,
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

/// A record queued to a partition's sender task.
struct Pending {
    record: NewRecord,
    size: usize,
    _permit: OwnedSemaphorePermit,
    done: oneshot::Sender<Result<RecordMetadata>>,
}

/// The queue of one partition's sender task, and how many batches it has sealed (the sticky
/// partitioner moves on when that changes).
struct PartitionQueue {
    tx: mpsc::UnboundedSender<Pending>,
    sealed: Arc<AtomicU64>,
}

/// State shared by every partition task.
struct Shared {
    client: Client,
    config: ProducerConfig,
    /// Records queued and not yet acknowledged or failed; `flush` waits for zero.
    outstanding: watch::Sender<u64>,
}

/// A batching, optionally idempotent producer. Cheap to share behind an `Arc`; dropping it
/// lets queued batches finish in the background.
pub struct Producer {
    shared: Arc<Shared>,
    memory: Arc<Semaphore>,
    producer_id: OnceCell<Option<(i64, i32)>>,
    queues: Mutex<HashMap<(String, u32), PartitionQueue>>,
    /// Per topic: the sticky partition for keyless records and its `sealed` count when chosen.
    sticky: Mutex<HashMap<String, (u32, u64)>>,
}

impl Producer {
    /// A producer over `client`; the producer id is registered on the first send.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let memory = Arc::new(Semaphore::new(config.buffer_memory));
        let (outstanding, _) = watch::channel(0);
        Ok(Producer {
            shared: Arc::new(Shared { client, config, outstanding }),
            memory,
            producer_id: OnceCell::new(),
            queues: Mutex::new(HashMap::new()),
            sticky: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `record` and resolves once its batch is acknowledged, with the record's own
    /// offset; waits first while `buffer_memory` is used up.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
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
        let partition = self.partition_for(&record).await?;
        let permits = u32::try_from(size).expect("size bounded by buffer_memory");
        let permit = Arc::clone(&self.memory)
            .acquire_many_owned(permits)
            .await
            .expect("the semaphore is never closed");
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        if timestamp < 0 {
            // As Kafka: a negative time is a bug in the caller, and would let one record's
            // timestamp spread wreck the batch it shares with others.
            return Err(Error::InvalidConfig(format!("negative record timestamp {timestamp}")));
        }
        let (done, rx) = oneshot::channel();
        let pending = Pending {
            record: NewRecord {
                key: record.key,
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
        self.shared.outstanding.send_modify(|n| *n += 1);
        self.queue(&record.topic, partition, producer).send(pending).map_err(|_| {
            self.shared.outstanding.send_modify(|n| *n -= 1);
            Error::Protocol("partition sender stopped".into())
        })?;
        rx.await.map_err(|_| Error::Protocol("partition sender stopped".into()))?
    }

    /// Waits until every record sent so far is acknowledged or failed. It waits for nothing to
    /// be outstanding, so records sent while it waits are waited for too.
    pub async fn flush(&self) {
        let mut rx = self.shared.outstanding.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
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

    async fn partition_for(&self, record: &ProducerRecord) -> Result<u32> {
        let count = self.partition_count(&record.topic).await?;
        if let Some(p) = record.partition {
            return match p < count {
                true => Ok(p),
                false => Err(Error::broker(
                    ErrorCode::UnknownPartition,
                    format!("{}/{p} does not exist ({count} partitions)", record.topic),
                )),
            };
        }
        if let Some(key) = &record.key {
            return Ok(partition_for_key(key, count));
        }
        let mut sticky = self.sticky.lock().unwrap();
        let sealed_now = |p: u32| {
            let queues = self.queues.lock().unwrap();
            queues.get(&(record.topic.clone(), p)).map_or(0, |q| q.sealed.load(Ordering::SeqCst))
        };
        if let Some(&(p, sealed)) = sticky.get(&record.topic)
            && p < count
            && sealed_now(p) == sealed
        {
            return Ok(p);
        }
        let previous = sticky.get(&record.topic).map(|&(p, _)| p);
        let mut p = rand::random::<u32>() % count;
        if count > 1 && Some(p) == previous {
            p = (p + 1) % count;
        }
        sticky.insert(record.topic.clone(), (p, sealed_now(p)));
        Ok(p)
    }

    /// The partition count of `topic`, refreshing metadata once when the topic is unknown.
    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let client = &self.shared.client;
        let mut md = client.metadata().await?;
        if md.topic(topic).is_none_or(|t| t.partitions.is_empty()) {
            md = client.refresh_metadata().await?;
        }
        match md.topic(topic).map(|t| t.partitions.len()) {
            Some(n) if n > 0 => Ok(u32::try_from(n).expect("partition count fits u32")),
            _ => Err(Error::broker(ErrorCode::UnknownTopic, format!("unknown topic {topic}"))),
        }
    }

    fn queue(
        &self,
        topic: &str,
        partition: u32,
        producer: Option<(i64, i32)>,
    ) -> mpsc::UnboundedSender<Pending> {
        let mut queues = self.queues.lock().unwrap();
        let q = queues.entry((topic.to_string(), partition)).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let sealed = Arc::new(AtomicU64::new(0));
            let task = PartitionTask {
                shared: Arc::clone(&self.shared),
                topic: topic.to_string(),
                partition,
                producer,
                next_sequence: 0,
                sealed: Arc::clone(&sealed),
                renew: false,
            };
            tokio::spawn(task.run(rx));
            PartitionQueue { tx, sealed }
        });
        q.tx.clone()
    }
}

/// One partition's sender: accumulates, seals and delivers batches in order.
struct PartitionTask {
    shared: Arc<Shared>,
    topic: String,
    partition: u32,
    producer: Option<(i64, i32)>,
    next_sequence: i32,
    sealed: Arc<AtomicU64>,
    /// Set once an idempotent batch failed (fatal answer or delivery timeout, so it may still
    /// be written): the next batch first takes a fresh producer id and starts at sequence 0.
    /// Reusing the failed batch's sequence numbers could have the broker deduplicate new
    /// records against it and acknowledge them without writing them; a new id never collides.
    /// (Kafka's idempotent producer bumps its epoch for the same reason, KIP-360.)
    renew: bool,
}

impl PartitionTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let config = self.shared.config.clone();
        while let Some(first) = rx.recv().await {
            let mut bytes = first.size;
            let mut batch = vec![first];
            let deadline = Instant::now() + config.linger;
            while bytes < config.batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(p)) => {
                        bytes += p.size;
                        batch.push(p);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.sealed.fetch_add(1, Ordering::SeqCst);
            if self.renew {
                match self.shared.client.init_producer("").await {
                    Ok(id) => {
                        tracing::info!(
                            topic = %self.topic,
                            partition = self.partition,
                            producer = ?id,
                            "continuing under a new producer id after a failed batch"
                        );
                        self.producer = Some(id);
                        self.next_sequence = 0;
                        self.renew = false;
                    }
                    Err(e) => {
                        self.complete(batch, Err(e));
                        continue;
                    }
                }
            }
            let result = self.deliver(&batch).await;
            if let Err(e) = &result {
                if self.producer.is_some() {
                    self.renew = true;
                }
                // Fail everything queued behind the failed batch too.
                let mut later = Vec::new();
                while let Ok(p) = rx.try_recv() {
                    later.push(p);
                }
                self.complete(later, Err(copy_error(e)));
            }
            self.complete(batch, result);
        }
    }

    /// Seals `batch` and sends it until acknowledged, a fatal error, or the delivery timeout.
    async fn deliver(&mut self, batch: &[Pending]) -> Result<i64> {
        let records: Vec<NewRecord> = batch.iter().map(|p| p.record.clone()).collect();
        let count = i32::try_from(records.len()).expect("batch fits i32");
        let producer = self.producer.map(|(id, epoch)| {
            let seq = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(count);
            // The controller keeps epochs within int16, as Kafka's batches carry them.
            (id, i16::try_from(epoch).unwrap_or(i16::MAX), seq)
        });
        let config = &self.shared.config;
        let bytes: Bytes = rafka_proto::batch::build(&records, producer, config.compression);
        let deadline = Instant::now() + config.delivery_timeout;
        let client = &self.shared.client;
        let attempt = async {
            loop {
                match client
                    .produce_batch(&self.topic, self.partition, bytes.clone(), config.acks)
                    .await
                {
                    Ok(base) => return Ok(base),
                    // The client gave up on its own deadline; ours may still have time.
                    Err(e) if e.is_retriable() || matches!(e, Error::Timeout(_)) => {
                        tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "retrying batch");
                        client.invalidate_metadata();
                        tokio::time::sleep(config.linger.max(Duration::from_millis(50))).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "batch for {}/{} not delivered within {:?}",
                self.topic, self.partition, config.delivery_timeout
            ))),
        }
    }

    fn complete(&self, batch: Vec<Pending>, result: Result<i64>) {
        let n = batch.len() as u64;
        for (i, p) in batch.into_iter().enumerate() {
            let r = match &result {
                Ok(base) => Ok(RecordMetadata {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: if *base < 0 { -1 } else { base + i as i64 },
                    timestamp: p.record.timestamp,
                }),
                Err(e) => Err(copy_error(e)),
            };
            let _ = p.done.send(r);
        }
        self.shared.outstanding.send_modify(|o| *o -= n);
    }
}

/// A copy of `e` for each record of a failed batch, keeping its code and retriability.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Broker { code, message } => Error::Broker { code: *code, message: message.clone() },
        Error::Transport(s) => Error::Transport(tonic::Status::new(s.code(), s.message())),
        Error::Timeout(m) => Error::Timeout(m.clone()),
        Error::InvalidConfig(m) => Error::InvalidConfig(m.clone()),
        Error::Usage(m) => Error::Usage(m.clone()),
        Error::NoBrokers => Error::NoBrokers,
        Error::Protocol(m) => Error::Protocol(m.clone()),
    }
}

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
