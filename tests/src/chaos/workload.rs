//! The client processes of a chaos run. Each records every operation in the [`History`].
//!
//! - **Idempotent producers** (`i<N>p<P>`): the real `rafka-client` [`Producer`] with
//!   idempotence on, one task per partition sending one record at a time (so the order of a
//!   process's sends is the order they were invoked). Every failure after the producer's own
//!   retries is `info`: an earlier attempt may have been written.
//! - **Raw producers** (`r<N>`): one attempt per record straight to the believed leader, no
//!   producer id, no retry. Their `NOT_LEADER` / `LEADER_NOT_AVAILABLE` / fatal answers and
//!   refused connections are definite failures (`fail`), which the checker uses to look for
//!   aborted reads; a timeout or a lost connection is `info`.
//! - **Readers** (`reader<N>`): fetch each partition from the newest offset any producer has
//!   seen acknowledged, through the leader; the checker flags a read that does not see it.
//! - **Watcher**: polls `Metadata` and records leader changes (elections).
//!
//! Values are `"<process>:<seq>"`, unique across the run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rafka_client::Client;
use rafka_client::ClientConfig;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::ProduceRequest;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::group::GroupOptions;
use super::history::Call;
use super::history::History;
use super::history::OpType;
use crate::TestClient;
use crate::records::decode_batch;
use crate::records::now_ms;
use crate::records::values_batch;

/// What a [`Workload`] runs.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// The topic written and read.
    pub topic: String,
    /// Its partition count.
    pub partitions: u32,
    /// Idempotent `rafka-client` producers (each with one task per partition).
    pub producers: usize,
    /// Sends of one idempotent producer task awaiting their outcome at most (the producer
    /// pipelines them: several batches of a partition in flight at once).
    pub window: usize,
    /// Single-attempt raw producers.
    pub raw_producers: usize,
    /// Readers checking that acknowledged records are visible.
    pub readers: usize,
    /// Pause between two operations of one task.
    pub pace: Duration,
    /// The idempotent producers' delivery timeout: a send still unacknowledged after it is
    /// reported `info`.
    pub delivery_timeout: Duration,
    /// Bound on one request of the raw producers and readers.
    pub request_timeout: Duration,
    /// Consumer-group processes, if any (see [`super::group`]).
    pub group: Option<GroupOptions>,
    /// Seed of the consumers' crash times.
    pub seed: u64,
    /// TLS (with a client certificate, for a cluster with authentication on).
    pub tls: Option<rafka_client::ClientTls>,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            topic: "chaos".into(),
            partitions: 3,
            producers: 2,
            window: 4,
            raw_producers: 1,
            readers: 1,
            pace: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            group: None,
            seed: 0,
            tls: None,
        }
    }
}

/// The newest acknowledged offset of each partition (-1: none yet).
#[derive(Debug)]
pub struct Acked(Vec<AtomicI64>);

impl Acked {
    fn new(partitions: u32) -> Acked {
        Acked((0..partitions).map(|_| AtomicI64::new(-1)).collect())
    }

    fn note(&self, partition: u32, offset: i64) {
        self.0[partition as usize].fetch_max(offset, Ordering::SeqCst);
    }

    /// The newest acknowledged offset of `partition`, -1 when none is.
    pub fn get(&self, partition: u32) -> i64 {
        self.0[partition as usize].load(Ordering::SeqCst)
    }
}

/// Running client processes; [`Workload::stop`] ends them.
pub struct Workload {
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    drained: watch::Sender<bool>,
    consumers: JoinSet<anyhow::Result<()>>,
    history: Arc<History>,
    bootstrap: Vec<String>,
    opts: WorkloadOptions,
    /// Newest acknowledged offsets.
    pub acked: Arc<Acked>,
}

impl Workload {
    /// Starts every process against the brokers at `addrs` (the topic must exist).
    pub async fn start(
        history: Arc<History>,
        addrs: &[SocketAddr],
        opts: WorkloadOptions,
    ) -> anyhow::Result<Workload> {
        let (stop, stopped) = watch::channel(false);
        let acked = Arc::new(Acked::new(opts.partitions));
        let mut tasks = JoinSet::new();
        let bootstrap: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
        let ctx = Ctx {
            history,
            opts: Arc::new(opts.clone()),
            stopped,
            acked: acked.clone(),
            test: TestClient::with_tls(addrs.iter().copied(), opts.tls.clone())
                .with_timeout(opts.request_timeout * 2)
                .with_attempt_timeout(opts.request_timeout),
        };
        for n in 1..=opts.producers {
            let config = ClientConfig {
                bootstrap: bootstrap.clone(),
                request_timeout: opts.request_timeout,
                total_timeout: opts.delivery_timeout,
                tls: opts.tls.clone(),
                ..ClientConfig::default()
            };
            let client = Client::with_config(config).await?;
            let producer = Arc::new(Producer::new(
                client,
                ProducerConfig {
                    linger: Duration::from_millis(1),
                    delivery_timeout: opts.delivery_timeout,
                    ..ProducerConfig::default()
                },
            )?);
            for partition in 0..opts.partitions {
                let process = format!("i{n}p{partition}");
                tasks.spawn(idempotent(ctx.clone(), producer.clone(), process, partition));
            }
        }
        for n in 1..=opts.raw_producers {
            tasks.spawn(raw(ctx.clone(), format!("r{n}")));
        }
        for n in 1..=opts.readers {
            tasks.spawn(reader(ctx.clone(), format!("reader{n}")));
        }
        tasks.spawn(watcher(ctx.clone()));
        let (drained, drained_rx) = watch::channel(false);
        let mut consumers = JoinSet::new();
        if let Some(g) = &opts.group {
            for slot in 1..=g.consumers {
                consumers.spawn(super::group::consumer_slot(super::group::Slot {
                    history: ctx.history.clone(),
                    bootstrap: bootstrap.clone(),
                    topic: opts.topic.clone(),
                    opts: g.clone(),
                    slot,
                    seed: opts.seed,
                    stopped: ctx.stopped.clone(),
                    drained: drained_rx.clone(),
                    tls: opts.tls.clone(),
                }));
            }
        }
        let history = ctx.history.clone();
        Ok(Workload { stop, tasks, drained, consumers, history, bootstrap, opts, acked })
    }

    /// With a consumer group: waits until the group has committed every partition up to
    /// its end (the producers are stopped by then), lets the consumers close, and records
    /// the final committed offsets. Fails when they do not catch up within `timeout`.
    pub async fn drain_group(&mut self, ends: &[i64], timeout: Duration) -> anyhow::Result<()> {
        let Some(g) = self.opts.group.clone() else { return Ok(()) };
        let config = ClientConfig {
            bootstrap: self.bootstrap.clone(),
            request_timeout: self.opts.request_timeout,
            tls: self.opts.tls.clone(),
            ..ClientConfig::default()
        };
        let client = Client::with_config(config).await?;
        let (topic, group) = (self.opts.topic.clone(), g.group.clone());
        let caught_up =
            crate::poll("the group committing every partition's end", timeout, || async {
                match super::group::caught_up(&client, &group, &topic, ends).await {
                    true => Ok(()),
                    false => Err("not yet"),
                }
            })
            .await;
        let _ = self.drained.send(true);
        let joined = async {
            while let Some(r) = self.consumers.join_next().await {
                r??;
            }
            Ok::<_, anyhow::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(30), joined)
            .await
            .map_err(|_| anyhow::anyhow!("consumers did not close within 30 s"))??;
        super::group::record_final_commits(
            &self.history,
            &client,
            &group,
            &topic,
            ends.len() as u32,
        )
        .await?;
        caught_up
    }

    /// Stops the producers, readers and watcher and waits for them (up to `bound`); an
    /// error names the first process that failed outside its recorded ops. Consumers go on
    /// until [`Workload::drain_group`].
    pub async fn stop(&mut self, bound: Duration) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let all = async {
            let mut first = Ok(());
            while let Some(r) = self.tasks.join_next().await {
                let r = r.map_err(anyhow::Error::from).and_then(|r| r);
                if first.is_ok() {
                    first = r;
                }
            }
            first
        };
        match tokio::time::timeout(bound, all).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("workload processes still running {bound:?} after stop"),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    history: Arc<History>,
    opts: Arc<WorkloadOptions>,
    stopped: watch::Receiver<bool>,
    acked: Arc<Acked>,
    test: TestClient,
}

impl Ctx {
    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Waits `d` (the workload's pacing, not a wait for state) or until stopped; whether to
    /// go on.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = stopped.wait_for(|s| *s) => false,
        }
    }
}

fn send(partition: u32, value: &str) -> Call {
    Call::Send { partition, value: value.to_string(), offset: None, error: None }
}

fn sent(partition: u32, value: &str, offset: Option<i64>, error: Option<String>) -> Call {
    Call::Send { partition, value: value.to_string(), offset, error }
}

async fn idempotent(
    mut ctx: Ctx,
    producer: Arc<Producer>,
    process: String,
    partition: u32,
) -> anyhow::Result<()> {
    let mut seq = 0u64;
    let mut inflight = FuturesOrdered::new();
    while !ctx.stopping() {
        seq += 1;
        let value = format!("{process}:{seq}");
        ctx.history.invoke(&process, send(partition, &value));
        let record = ProducerRecord {
            topic: ctx.opts.topic.clone(),
            partition: Some(partition),
            value: Some(Bytes::from(value.clone())),
            ..Default::default()
        };
        match producer.send(record).await {
            Ok(delivery) => inflight.push_back(async move { (value, delivery.await) }),
            Err(e) => idempotent_outcome(&ctx, &process, partition, &value, Err(e)),
        }
        while inflight.len() >= ctx.opts.window.max(1) {
            if let Some((value, r)) = inflight.next().await {
                idempotent_outcome(&ctx, &process, partition, &value, r);
            }
        }
        if !ctx.pause(ctx.opts.pace).await {
            break;
        }
    }
    // Bounded by the producer's delivery timeout.
    while let Some((value, r)) = inflight.next().await {
        idempotent_outcome(&ctx, &process, partition, &value, r);
    }
    Ok(())
}

fn idempotent_outcome(
    ctx: &Ctx,
    process: &str,
    partition: u32,
    value: &str,
    r: rafka_client::Result<rafka_client::RecordMetadata>,
) {
    match r {
        Ok(md) => {
            ctx.history.ok(process, sent(partition, value, Some(md.offset), None));
            ctx.acked.note(partition, md.offset);
        }
        Err(e) => {
            // Nothing was sent for a usage or configuration error; anything else may
            // have been written by an attempt before the last.
            let kind = match e {
                rafka_client::Error::InvalidConfig(_) | rafka_client::Error::Usage(_) => {
                    OpType::Fail
                }
                _ => OpType::Info,
            };
            ctx.history.record(process, kind, sent(partition, value, None, Some(e.to_string())));
        }
    }
}

/// The outcome class of one raw produce attempt.
fn raw_outcome(code: ErrorCode) -> OpType {
    match code {
        ErrorCode::None => OpType::Ok,
        // Answered before anything was proposed.
        ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable => OpType::Fail,
        // Proposed, outcome unknown (or a code we cannot vouch for).
        ErrorCode::RequestTimedOut | ErrorCode::Unknown => OpType::Info,
        c if c.is_retriable() => OpType::Info,
        _ => OpType::Fail,
    }
}

async fn raw(mut ctx: Ctx, process: String) -> anyhow::Result<()> {
    let opts = ctx.opts.clone();
    let mut leaders: BTreeMap<u32, String> = BTreeMap::new();
    let mut seq = 0u64;
    while !ctx.stopping() {
        seq += 1;
        let partition = (seq % u64::from(opts.partitions)) as u32;
        let value = format!("{process}:{seq}");
        let leader = match leaders.get(&partition) {
            Some(l) => Some(l.clone()),
            None => ctx.test.leader(&opts.topic, partition).await.ok().map(|(_, a)| a),
        };
        let Some(leader) = leader else {
            // No leader known: nothing sent, nothing recorded; try again after a pause.
            if !ctx.pause(Duration::from_millis(100)).await {
                break;
            }
            continue;
        };
        ctx.history.invoke(&process, send(partition, &value));
        let req = ProduceRequest {
            topic: opts.topic.clone(),
            partition,
            acks: Acks::All as i32,
            batch: values_batch(&[value.as_bytes()], now_ms()),
            timeout_ms: u32::try_from(opts.request_timeout.as_millis()).unwrap_or(u32::MAX),
        };
        let attempt = async {
            let mut c = ctx.test.data_at(&leader)?;
            Ok::<_, anyhow::Error>(c.produce(req).await)
        };
        let answer = tokio::time::timeout(opts.request_timeout + Duration::from_secs(1), attempt);
        let (kind, offset, error) = match answer.await {
            Err(_) => (OpType::Info, None, Some("timed out".to_string())),
            Ok(Err(e)) => (OpType::Fail, None, Some(format!("{e:#}"))),
            Ok(Ok(Err(status))) => {
                // A refused connection sent nothing; any other status may follow a send.
                let m = status.message().to_string();
                let refused = m.contains("onnection refused") || m.contains("tcp connect");
                (if refused { OpType::Fail } else { OpType::Info }, None, Some(m))
            }
            Ok(Ok(Ok(resp))) => {
                let resp = resp.into_inner();
                let code = resp.error.as_ref().map_or(ErrorCode::None, |e| e.error_code());
                let kind = raw_outcome(code);
                let offset = (kind == OpType::Ok).then_some(resp.base_offset);
                let error = (kind != OpType::Ok).then(|| format!("{code:?}"));
                (kind, offset, error)
            }
        };
        ctx.history.record(&process, kind, sent(partition, &value, offset, error));
        match offset {
            Some(o) => {
                ctx.acked.note(partition, o);
                leaders.insert(partition, leader);
            }
            None => {
                leaders.remove(&partition);
            }
        }
        if !ctx.pause(opts.pace).await {
            break;
        }
    }
    Ok(())
}

async fn reader(mut ctx: Ctx, process: String) -> anyhow::Result<()> {
    let opts = ctx.opts.clone();
    let mut n = 0u32;
    while !ctx.stopping() {
        let partition = n % opts.partitions;
        n += 1;
        let from = ctx.acked.get(partition).max(0);
        ctx.history.invoke(
            &process,
            Call::Read {
                partition,
                from,
                records: Vec::new(),
                high_watermark: None,
                refusal: None,
            },
        );
        match ctx.test.fetch(&opts.topic, partition, from).await {
            // Out of range is an answer too: the leader says its high watermark is below
            // `from`, which the checker judges.
            Ok(resp)
                if matches!(
                    resp.error.as_ref().map_or(ErrorCode::None, |e| e.error_code()),
                    ErrorCode::None | ErrorCode::OffsetOutOfRange
                ) =>
            {
                let mut records = Vec::new();
                for b in &resp.batches {
                    for r in decode_batch(b.base_offset, &b.batch)? {
                        if r.offset >= from {
                            records
                                .push((r.offset, String::from_utf8_lossy(r.value_bytes()).into()));
                        }
                    }
                }
                let refusal = resp
                    .error
                    .as_ref()
                    .filter(|e| e.error_code() != ErrorCode::None)
                    .map(|e| e.message.clone());
                let call = Call::Read {
                    partition,
                    from,
                    records,
                    high_watermark: Some(resp.high_watermark),
                    refusal,
                };
                ctx.history.ok(&process, call);
            }
            // Not an answer about the data (no leader, timed out): nothing to check.
            _ => {
                let call = Call::Read {
                    partition,
                    from,
                    records: Vec::new(),
                    high_watermark: None,
                    refusal: None,
                };
                ctx.history.info(&process, call);
            }
        }
        if !ctx.pause(opts.pace * 4).await {
            break;
        }
    }
    Ok(())
}

async fn watcher(mut ctx: Ctx) -> anyhow::Result<()> {
    let topic = ctx.opts.topic.clone();
    let mut leaders: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        if let Ok(md) = ctx.test.metadata(&[topic.as_str()]).await
            && let Some(t) = md.topics.iter().find(|t| t.name == topic)
        {
            for p in &t.partitions {
                if let Some(l) = p.leader
                    && leaders.insert(p.partition, l) != Some(l)
                {
                    ctx.history.ok("watcher", Call::Leader { partition: p.partition, broker: l });
                }
            }
        }
        if !ctx.pause(Duration::from_millis(200)).await {
            return Ok(());
        }
    }
}
