//! One partition's sender: fills batches, sends up to `max_in_flight` of them at once on the
//! leader's ordered stream, and completes their records in order.
//!
//! Records fill the open batch until it holds `batch_size` bytes (it is then sealed; a record
//! that would not fit starts the next batch) or its linger has passed while there is room in
//! the window (sealed and sent at once); while the window is full, batches keep filling.
//! Idempotent sequence numbers are given when a batch is first sent, and a batch is resent
//! with the same bytes.
//!
//! A failed answer stops new sends (recovery): once every batch in flight has its answer,
//! the unacknowledged ones are resent one at a time, oldest first, until acknowledged — the
//! broker deduplicates one already written — then pipelining resumes. OUT_OF_ORDER_SEQUENCE
//! for a batch behind an unacknowledged one means only that its predecessor did not arrive
//! first, and is retried like a retriable code; for the oldest batch it is fatal. A batch
//! that fails fatally, or is still unacknowledged when its delivery timeout passes, fails its
//! records and every record behind it not yet acknowledged (its outcome may be unknown: a
//! timed-out batch may still be written), and with idempotence the partition goes on under a
//! fresh producer id from sequence 0, so that no later batch can be deduplicated against it
//! (Kafka bumps the epoch for the same reason, KIP-360).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rafka_proto::ErrorCode;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::RecordMetadata;
use super::Shared;
use crate::client::check;
use crate::error::Error;
use crate::error::Result;

/// A record queued to its partition's sender.
pub(super) struct Pending {
    pub(super) record: NewRecord,
    pub(super) size: usize,
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) done: oneshot::Sender<Result<RecordMetadata>>,
}

/// How long past the request timeout an answer is awaited before its stream is given up.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// A batch sent at least once.
struct Sent {
    id: u64,
    records: Vec<Pending>,
    bytes: Bytes,
    deadline: Instant,
    state: State,
}

enum State {
    InFlight,
    Acked(i64),
    /// A retriable failure: resend during recovery.
    Retry(Error),
    /// A fatal failure, or the delivery timeout passed.
    Failed(Error),
}

/// What an attempt's future yields: the batch, the broker it went to, and the answer.
type Answer = (u64, String, Result<v1::ProduceResponse>);

pub(super) struct PartitionTask {
    shared: Arc<Shared>,
    topic: String,
    partition: u32,
    producer: Option<(i64, i32)>,
    next_sequence: i32,
    /// Batches sealed so far (the sticky partitioner moves on when it changes).
    sealed: Arc<AtomicU64>,
    /// Take a fresh producer id before the next new batch (see the module docs).
    renew: bool,
    /// The leader's address, until an error says it may have moved.
    leader: Option<String>,
    /// The batch being filled, its bytes, and when its linger ends.
    open: Vec<Pending>,
    open_bytes: usize,
    open_until: Option<Instant>,
    /// Sealed batches not sent yet.
    ready: VecDeque<Vec<Pending>>,
    /// Sent batches in sequence order, until their records are completed.
    window: VecDeque<Sent>,
    in_flight: FuturesUnordered<BoxFuture<'static, Answer>>,
    next_id: u64,
    recovering: bool,
}

impl PartitionTask {
    pub(super) fn new(
        shared: Arc<Shared>,
        topic: String,
        partition: u32,
        producer: Option<(i64, i32)>,
        sealed: Arc<AtomicU64>,
    ) -> PartitionTask {
        PartitionTask {
            shared,
            topic,
            partition,
            producer,
            next_sequence: 0,
            sealed,
            renew: false,
            leader: None,
            open: Vec::new(),
            open_bytes: 0,
            open_until: None,
            ready: VecDeque::new(),
            window: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            next_id: 0,
            recovering: false,
        }
    }

    /// Runs until the producer is dropped and everything queued is delivered or failed.
    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let max_in_flight = self.shared.config.max_in_flight;
        let mut closed = false;
        loop {
            while !closed {
                match rx.try_recv() {
                    Ok(p) => self.add(p),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            let room = !self.recovering && self.window.len() < max_in_flight;
            if !self.open.is_empty()
                && room
                && self.ready.is_empty()
                && (closed || self.open_until.is_some_and(|t| t <= Instant::now()))
            {
                self.seal();
            }
            if self.recovering {
                if self.in_flight.is_empty() && self.recover(&mut rx).await {
                    continue;
                }
            } else {
                while !self.recovering
                    && self.window.len() < max_in_flight
                    && let Some(records) = self.ready.pop_front()
                {
                    self.send_new(records, &mut rx).await;
                }
                if self.recovering && self.in_flight.is_empty() {
                    // A batch found no leader to go to: recover at once, nothing to await.
                    continue;
                }
            }
            if closed && self.open.is_empty() && self.ready.is_empty() && self.window.is_empty() {
                return;
            }
            // Only while the batch could be sent when its linger ends (else it keeps filling).
            let room = !self.recovering && self.window.len() < max_in_flight;
            let linger = match self.open_until {
                Some(t) if room && self.ready.is_empty() && !self.open.is_empty() => Some(t),
                _ => None,
            };
            tokio::select! {
                biased;
                Some((id, addr, r)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.answered(id, &addr, r);
                }
                p = rx.recv(), if !closed => match p {
                    Some(p) => self.add(p),
                    None => closed = true,
                },
                () = tokio::time::sleep_until(linger.unwrap_or_else(Instant::now)),
                    if linger.is_some() => {}
            }
        }
    }

    fn add(&mut self, p: Pending) {
        // A record that would take the batch past its size starts the next one, so that only
        // a record larger than the batch size makes a larger batch.
        if !self.open.is_empty() && self.open_bytes + p.size > self.shared.config.batch_size {
            self.seal();
        }
        if self.open.is_empty() {
            self.open_until = Some(Instant::now() + self.shared.config.linger);
        }
        self.open_bytes += p.size;
        self.open.push(p);
        if self.open_bytes >= self.shared.config.batch_size {
            self.seal();
        }
    }

    fn seal(&mut self) {
        self.sealed.fetch_add(1, Ordering::SeqCst);
        self.ready.push_back(std::mem::take(&mut self.open));
        self.open_bytes = 0;
        self.open_until = None;
    }

    /// Numbers and encodes a batch and sends it.
    async fn send_new(&mut self, records: Vec<Pending>, rx: &mut mpsc::UnboundedReceiver<Pending>) {
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
                    self.fail_behind(records, e, rx);
                    return;
                }
            }
        }
        let count = i32::try_from(records.len()).expect("batch fits i32");
        let producer = self.producer.map(|(id, epoch)| {
            let seq = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(count);
            // The controller keeps epochs within int16, as Kafka's batches carry them.
            (id, i16::try_from(epoch).unwrap_or(i16::MAX), seq)
        });
        let config = &self.shared.config;
        let bytes = rafka_proto::batch::build_from(
            records.iter().map(|p| &p.record),
            producer,
            config.compression,
        );
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Instant::now() + config.delivery_timeout;
        self.window.push_back(Sent { id, records, bytes, deadline, state: State::InFlight });
        // Unsent, it is left to recovery.
        let _ = self.transmit(id).await;
    }

    /// Sends the window's batch `id` to the partition's leader; `false` when it could not
    /// be sent (no leader known: the batch is left to recovery, nothing is awaited).
    async fn transmit(&mut self, id: u64) -> bool {
        let client = &self.shared.client;
        let addr = match &self.leader {
            Some(a) => Ok(a.clone()),
            None => client.partition_address(&self.topic, self.partition).await,
        };
        let Some(sent) = self.window.iter_mut().find(|s| s.id == id) else { return false };
        let addr = match addr {
            Ok(a) => a,
            Err(e) => {
                // A leader missing from fresh metadata (mid-election): ask again next time.
                if e.is_retriable() {
                    client.invalidate_metadata();
                }
                sent.state = failure(e, false);
                self.recovering = true;
                return false;
            }
        };
        self.leader = Some(addr.clone());
        sent.state = State::InFlight;
        let config = client.config();
        let req = v1::ProduceRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            acks: self.shared.config.acks as i32,
            batch: sent.bytes.clone(),
            timeout_ms: config.request_timeout.as_millis().try_into().unwrap_or(u32::MAX),
        };
        let answer = self.shared.streams.send(&addr, req);
        let wait = config.request_timeout + ANSWER_GRACE;
        self.in_flight.push(
            async move {
                let r = match tokio::time::timeout(wait, answer).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(Error::Transport(tonic::Status::unavailable(
                        "produce stream closed before the request was written",
                    ))),
                    Err(_) => Err(Error::Timeout(format!("no answer within {wait:?}"))),
                };
                (id, addr, r)
            }
            .boxed(),
        );
        true
    }

    /// Records an attempt's answer.
    fn answered(&mut self, id: u64, addr: &str, r: Result<v1::ProduceResponse>) {
        let (topic, partition) = (&self.topic, self.partition);
        let client = &self.shared.client;
        // A NOT_LEADER answer naming the new leader is fresher than any metadata (whose
        // leaders the controller learns from heartbeats): go there at once.
        let mut hinted = None;
        let r = r.and_then(|resp| {
            check(resp).map_err(|(e, hint)| {
                if let Some(h) = hint.as_ref().filter(|h| !h.address.is_empty())
                    && e.code() == Some(ErrorCode::NotLeader)
                {
                    hinted = Some(client.broker_address(h.broker_id).unwrap_or(h.address.clone()));
                }
                client.on_partition_error(topic, partition, e, hint)
            })
        });
        let Some(pos) = self.window.iter().position(|s| s.id == id) else { return };
        match r {
            Ok(resp) => self.window[pos].state = State::Acked(resp.base_offset),
            Err(e) => {
                if matches!(e, Error::Timeout(_)) {
                    self.shared.streams.reset(addr);
                }
                if hinted.is_none() && (e.is_retriable() || matches!(e, Error::Timeout(_))) {
                    client.invalidate_metadata();
                }
                self.leader = hinted;
                let behind =
                    self.window.iter().take(pos).any(|s| !matches!(s.state, State::Acked(_)));
                let out_of_order = e.code() == Some(ErrorCode::OutOfOrderSequence) && behind;
                self.window[pos].state = failure(e, out_of_order);
                self.recovering = true;
            }
        }
        self.complete_acked();
    }

    /// Completes the acknowledged batches at the front of the window.
    fn complete_acked(&mut self) {
        while let Some(State::Acked(base)) = self.window.front().map(|s| &s.state) {
            let base = *base;
            let sent = self.window.pop_front().expect("front exists");
            self.complete(sent.records, Ok(base));
        }
    }

    /// With every answer in: resends the oldest unacknowledged batch (then returns `false`
    /// to await its answer), or fails the window from a fatal failure on; `true` when there
    /// is nothing to await (recovery is over, or there is more to do at once).
    async fn recover(&mut self, rx: &mut mpsc::UnboundedReceiver<Pending>) -> bool {
        self.complete_acked();
        let Some(front) = self.window.front_mut() else {
            self.recovering = false;
            return true;
        };
        if let State::Retry(e) = &front.state
            && Instant::now() >= front.deadline
        {
            let e = Error::Timeout(format!(
                "batch for {}/{} not delivered within {:?}; last error: {e}",
                self.topic, self.partition, self.shared.config.delivery_timeout
            ));
            front.state = State::Failed(e);
        }
        match std::mem::replace(&mut front.state, State::InFlight) {
            State::Failed(e) => {
                let failed = self.window.pop_front().expect("front exists");
                self.fail_behind(failed.records, e, rx);
                true
            }
            State::Retry(e) => {
                let id = front.id;
                tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "resending batch");
                // Straight to a leader a NOT_LEADER answer named; otherwise a pause first.
                let backoff = match self.leader {
                    Some(_) => Duration::ZERO,
                    None => self.shared.client.config().retry_backoff_initial,
                };
                tokio::time::sleep(backoff.min(front.deadline - Instant::now())).await;
                // Not sent (no leader known yet): the next round tries again.
                !self.transmit(id).await
            }
            state @ (State::InFlight | State::Acked(_)) => {
                // Unreachable: no answer is awaited and acknowledged batches were completed.
                front.state = state;
                self.recovering = false;
                true
            }
        }
    }

    /// Fails `records` with `e`, and every record behind them that is not acknowledged:
    /// the rest of the window, sealed and open batches, and what is queued now.
    fn fail_behind(
        &mut self,
        records: Vec<Pending>,
        e: Error,
        rx: &mut mpsc::UnboundedReceiver<Pending>,
    ) {
        if self.producer.is_some() {
            self.renew = true;
        }
        self.complete(records, Err(copy_error(&e)));
        for sent in std::mem::take(&mut self.window) {
            match sent.state {
                State::Acked(base) => self.complete(sent.records, Ok(base)),
                _ => self.complete(sent.records, Err(copy_error(&e))),
            }
        }
        let mut behind: Vec<Pending> = self.ready.drain(..).flatten().collect();
        behind.append(&mut self.open);
        while let Ok(p) = rx.try_recv() {
            behind.push(p);
        }
        self.open_bytes = 0;
        self.open_until = None;
        self.complete(behind, Err(e));
        self.recovering = false;
    }

    fn complete(&self, records: Vec<Pending>, result: Result<i64>) {
        let n = records.len() as u64;
        for (i, p) in records.into_iter().enumerate() {
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
        self.shared.delivered(n);
    }
}

/// The state of a batch after a failed attempt: retried when the error is retriable, a
/// timeout of the attempt, or `also_retry`.
fn failure(e: Error, also_retry: bool) -> State {
    if also_retry || e.is_retriable() || matches!(e, Error::Timeout(_)) {
        State::Retry(e)
    } else {
        State::Failed(e)
    }
}

/// A copy of `e` for each record of a failed batch, keeping its code and retriability.
pub(super) fn copy_error(e: &Error) -> Error {
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
