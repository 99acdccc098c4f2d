//! A producer load for tests that change the cluster under it ([`Load`]): numbered records
//! (`<prefix><n>`, keyed) sent through rafka's `Producer` until stopped, each acknowledged
//! send's wait recorded; and the check that every acknowledged record is stored exactly once
//! ([`stored_values`], [`assert_stored_once`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_client::Producer;
use rafka_client::ProducerRecord;

use crate::client::TestClient;
use crate::wait::poll;

/// What a load saw.
#[derive(Debug, Default)]
pub struct Sent {
    /// Values acknowledged.
    pub acked: BTreeSet<String>,
    /// Every acknowledged send: when it started (since the load began), how long it waited
    /// for its acknowledgement, and its partition.
    pub waits: Vec<(Duration, Duration, u32)>,
    /// Sends that failed, with the error.
    pub failed: Vec<String>,
}

/// A running load; [`Load::finish`] stops it and returns what it saw.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Sent>,
}

impl Load {
    /// Starts sending `rate` records a second to `topic`, whatever the acknowledgements do.
    pub fn start(producer: Producer, topic: &str, prefix: &str, rate: u64) -> Load {
        let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn(run(
            producer,
            topic.to_string(),
            prefix.to_string(),
            rate,
            stop.clone(),
            count.clone(),
        ));
        Load { stop, count, task }
    }

    /// Sends acknowledged so far.
    pub fn acked(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `n` sends are acknowledged in all.
    pub async fn wait_acked(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        poll("acknowledged sends", timeout, || async {
            let done = self.acked();
            if done >= n { Ok(()) } else { Err(anyhow::anyhow!("{done} of {n}")) }
        })
        .await
    }

    /// Stops sending, waits for the sends under way, and returns what it saw.
    pub async fn finish(self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task")
    }
}

async fn run(
    producer: Producer,
    topic: String,
    prefix: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> Sent {
    let mut sent = Sent::default();
    let mut pending = FuturesUnordered::new();
    let t0 = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut i = 0u64;
    let note = |sent: &mut Sent, value: String, started: Instant, r| match r {
        Ok(md) => {
            let md: rafka_client::RecordMetadata = md;
            sent.waits.push((started - t0, started.elapsed(), md.partition));
            sent.acked.insert(value);
            count.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => sent.failed.push(format!("{value}: {e}")),
    };
    let tick = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    while !stop.load(Ordering::Relaxed) {
        if tokio::time::Instant::now() >= next {
            next += tick;
            let value = format!("{prefix}{i:07}");
            let record = ProducerRecord {
                topic: topic.clone(),
                partition: None,
                key: Some(Bytes::from(format!("k{}", i % 97))),
                value: Some(Bytes::from(value.clone())),
                headers: Vec::new(),
                timestamp: None,
            };
            i += 1;
            let started = Instant::now();
            match producer.send(record).await {
                Ok(d) => pending.push(async move { (value, started, d.await) }),
                Err(e) => sent.failed.push(format!("{value}: {e}")),
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            Some((value, started, r)) = pending.next(), if !pending.is_empty() => {
                note(&mut sent, value, started, r);
            }
        }
    }
    while let Some((value, started, r)) = pending.next().await {
        note(&mut sent, value, started, r);
    }
    sent
}

/// Every value stored in partitions `0..partitions` of `topic`, read from the start.
pub async fn stored_values(client: &TestClient, topic: &str, partitions: u32) -> Vec<String> {
    let mut stored = Vec::new();
    for p in 0..partitions {
        let records = client.fetch_all(topic, p, 0).await.unwrap_or_else(|e| panic!("{e:#}"));
        stored
            .extend(records.iter().map(|r| String::from_utf8_lossy(r.value_bytes()).into_owned()));
    }
    stored
}

/// Panics unless `stored` holds each value once and every `acked` value.
pub fn assert_stored_once(acked: &BTreeSet<String>, stored: &[String]) {
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a record was stored twice");
    let missing: Vec<&String> = acked.iter().filter(|v| !unique.contains(v)).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
}
