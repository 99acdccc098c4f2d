//! Consumer-group processes of a chaos run: `rafka-client` [`Consumer`]s subscribed to the
//! topic in one group, committing after every poll, some crashing (dropped without leaving)
//! and coming back as new members.
//!
//! Recorded per incarnation (process `c<N>g<K>`): a `Seek` when a partition is first seen
//! assigned (its start: the group's committed offset, or 0), every `Poll`, a `Release` when a
//! partition is revoked, and each `Commit` (invoke / ok / info). At the end, after the
//! consumers have drained the topic and closed, `final` records each partition's committed
//! offset (`Committed`), against which the checker looks for skipped records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::RebalanceListener;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use super::history::Call;
use super::history::History;

/// What the group processes do.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The group id.
    pub group: String,
    /// Consumers running at once.
    pub consumers: usize,
    /// A consumer crashes (is dropped without leaving) after a random time up to this, then
    /// comes back as a new member; `None`: never.
    pub crash_within: Option<Duration>,
    /// Bound on one client operation.
    pub request_timeout: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            group: "chaos-group".into(),
            consumers: 2,
            crash_within: Some(Duration::from_secs(8)),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Records revocations as `Release` ops, from inside `poll`.
struct Releases {
    history: Arc<History>,
    process: String,
    group: String,
    seen: Arc<Mutex<BTreeSet<u32>>>,
}

impl RebalanceListener for Releases {
    fn on_revoked(&self, partitions: &[(String, u32)]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (_, p) in partitions {
            seen.remove(p);
            let call = Call::Release { group: Some(self.group.clone()), partition: *p };
            self.history.ok(&self.process, call);
        }
    }
}

/// One consumer slot of a workload.
pub struct Slot {
    /// Where ops are recorded.
    pub history: Arc<History>,
    /// Brokers to bootstrap from.
    pub bootstrap: Vec<String>,
    /// The topic subscribed to.
    pub topic: String,
    /// The group's settings.
    pub opts: GroupOptions,
    /// The slot's number (in process names).
    pub slot: usize,
    /// Seed of crash times (mixed with the slot number).
    pub seed: u64,
    /// Turns true when the producers stop (no more crashes from then on).
    pub stopped: watch::Receiver<bool>,
    /// Turns true once the group has committed everything: close and end.
    pub drained: watch::Receiver<bool>,
    /// TLS to the brokers.
    pub tls: Option<rafka_client::ClientTls>,
}

/// Runs one consumer slot: incarnations one after another until `drained`.
pub async fn consumer_slot(s: Slot) -> anyhow::Result<()> {
    let Slot { history, bootstrap, topic, opts, slot, seed, stopped, drained, tls } = s;
    let mut rng = StdRng::seed_from_u64(seed ^ slot as u64);
    let mut incarnation = 0;
    loop {
        incarnation += 1;
        let process = format!("c{slot}g{incarnation}");
        let crash_at = match opts.crash_within {
            Some(d) if !*stopped.borrow() => {
                let ms = rng.random_range(d.as_millis() as u64 / 4..=d.as_millis() as u64);
                Some(Instant::now() + Duration::from_millis(ms))
            }
            _ => None,
        };
        let config = ClientConfig {
            bootstrap: bootstrap.clone(),
            request_timeout: opts.request_timeout,
            total_timeout: opts.request_timeout * 3,
            tls: tls.clone(),
            ..ClientConfig::default()
        };
        let Ok(client) = Client::with_config(config).await else {
            // No broker answered: a fault is on; try again as the next incarnation.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let consumer_config = ConsumerConfig {
            group: Some(opts.group.clone()),
            auto_commit_interval: None,
            fetch_max_wait: Duration::from_millis(200),
            client_id: process.clone(),
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client, consumer_config)?;
        let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
        consumer.set_rebalance_listener(Arc::new(Releases {
            history: history.clone(),
            process: process.clone(),
            group: opts.group.clone(),
            seen: seen.clone(),
        }));
        if consumer.subscribe(&[topic.as_str()]).await.is_err() {
            continue;
        }
        let end = run_incarnation(
            &history,
            &mut consumer,
            &process,
            &topic,
            &opts,
            &seen,
            crash_at,
            &drained,
        )
        .await;
        match end {
            // Crash: drop without leaving; the coordinator expires the member.
            Incarnation::Crashed => drop(consumer),
            Incarnation::Done => {
                let _ = consumer.close().await;
                return Ok(());
            }
        }
    }
}

enum Incarnation {
    Crashed,
    Done,
}

#[allow(clippy::too_many_arguments)]
async fn run_incarnation(
    history: &Arc<History>,
    consumer: &mut Consumer,
    process: &str,
    topic: &str,
    opts: &GroupOptions,
    seen: &Arc<Mutex<BTreeSet<u32>>>,
    crash_at: Option<Instant>,
    drained: &watch::Receiver<bool>,
) -> Incarnation {
    let group = Some(opts.group.clone());
    loop {
        if crash_at.is_some_and(|t| Instant::now() >= t) {
            return Incarnation::Crashed;
        }
        if *drained.borrow() {
            return Incarnation::Done;
        }
        let Ok(records) = consumer.poll(Duration::from_millis(300)).await else {
            // Fenced, coordinator away, ...: the consumer rejoins by itself on later polls.
            continue;
        };
        // Partitions seen assigned for the first time this incarnation start at the
        // group's committed offset (or 0: auto_offset_reset is earliest on a fresh topic).
        let fresh: Vec<u32> = {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            consumer
                .assignment()
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| !seen.contains(p))
                .collect()
        };
        for p in fresh {
            let tp = (topic.to_string(), p);
            let Ok(committed) = consumer.committed(std::slice::from_ref(&tp)).await else {
                continue;
            };
            let start = committed.first().copied().flatten().unwrap_or(0);
            history.ok(process, Call::Seek { group: group.clone(), partition: p, offset: start });
            seen.lock().unwrap_or_else(|p| p.into_inner()).insert(p);
        }
        let mut by_partition: std::collections::BTreeMap<u32, Vec<(i64, String)>> =
            Default::default();
        for r in records {
            let value = r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            by_partition.entry(r.partition).or_default().push((r.offset, value.into()));
        }
        for (partition, records) in by_partition {
            let next = records.last().map_or(0, |(o, _)| o + 1);
            history.ok(process, Call::Poll { group: group.clone(), partition, records });
            let call = Call::Commit { group: opts.group.clone(), partition, offset: next };
            history.invoke(process, call.clone());
            match consumer.commit_offsets(&[(topic.to_string(), partition, next)]).await {
                Ok(()) => history.ok(process, call),
                Err(_) => history.info(process, call),
            };
        }
    }
}

/// Whether every partition's committed offset has reached `ends` (the high watermarks).
pub async fn caught_up(client: &Client, group: &str, topic: &str, ends: &[i64]) -> bool {
    let tps: Vec<(String, u32)> = (0..ends.len() as u32).map(|p| (topic.to_string(), p)).collect();
    match client.fetch_group_offsets(group, &tps).await {
        Ok(committed) => committed.iter().zip(ends).all(|(c, e)| c.unwrap_or(0) >= *e),
        Err(_) => false,
    }
}

/// Records the group's committed offset of every partition as `final` `Committed` ops.
pub async fn record_final_commits(
    history: &Arc<History>,
    client: &Client,
    group: &str,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<()> {
    let tps: Vec<(String, u32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let committed = client.fetch_group_offsets(group, &tps).await?;
    for (p, c) in committed.into_iter().enumerate() {
        let call = Call::Committed {
            group: group.to_string(),
            partition: p as u32,
            offset: c.unwrap_or(-1),
        };
        history.ok("final", call);
    }
    Ok(())
}
