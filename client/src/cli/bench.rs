//! `rafka bench produce|consume|e2e|protocols`: the load generator every performance figure
//! of the project is quoted from.
//!
//! A live progress bar is drawn on stderr when it is a terminal (never otherwise), then one
//! summary: records/s, MB/s (10^6 bytes of keys and values per second) and latency
//! percentiles from an HDR histogram in microseconds (3 significant digits).
//!
//! - `produce`: records through the `Producer` with a window of records in flight, one at a
//!   time, or at a fixed rate (see [`super::bench_produce`]).
//! - `consume`: replays every partition from its log start up to the high watermark taken at
//!   the start (or `--records`); latency is per fetch request.
//! - `e2e`: produces at `--rate` for `--seconds` while consuming from the end; latency is from
//!   just before `send` (a timestamp in the first 8 bytes of each value) to the record
//!   arriving in a fetch.
//! - `protocols`: the same batches produced and replayed over gRPC and over Kafka's
//!   protocol in one run (see [`super::bench_protocols`]).
//!
//! # Format
//!
//! `--output json` prints one object: `{"bench", "topic", "records", "bytes", "seconds",
//! "records_per_sec", "mb_per_sec", "errors", "latency_us": {"p50", "p99", "p999", "max",
//! "mean"}}` plus the parameters of the run.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use clap::Subcommand;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use indicatif::ProgressStyle;
use rafka_client::Client;
use rafka_client::OffsetSpec;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use serde_json::json;
use tokio::time::Instant;

use super::consume::partitions;
use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::mb_per_sec;
use super::output::print_json;
use super::produce::AcksArg;

/// Bytes asked for per fetch.
const FETCH_MAX_BYTES: u32 = 4 << 20;

/// `rafka bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce N records of a fixed size as fast as allowed.
    Produce(super::bench_produce::ProduceBench),
    /// Replay a topic from offset 0.
    Consume(ConsumeBench),
    /// End-to-end latency, produce → consume, at a fixed rate.
    E2e(E2eBench),
    /// The same batches produced and replayed over gRPC and over Kafka's protocol.
    Protocols(super::bench_protocols::ProtocolsBench),
}

/// `rafka bench consume`
#[derive(Debug, Args)]
pub struct ConsumeBench {
    /// The topic.
    topic: String,
    /// Stop after this many records (default: everything up to the high watermarks).
    #[arg(long)]
    records: Option<u64>,
}

/// `rafka bench e2e`
#[derive(Debug, Args)]
pub struct E2eBench {
    /// The topic (must exist).
    topic: String,
    /// Records per second, `R` or `R/s`.
    #[arg(long, value_name = "R", default_value = "1000", value_parser = parse_rate)]
    rate: f64,
    /// How long to produce.
    #[arg(long, value_name = "S", default_value_t = 10)]
    seconds: u64,
    /// Bytes of each record's value (at least 8: the send timestamp).
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    record_size: usize,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Producer linger (0: a record is sent at once when the partition has room in flight).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    linger_ms: u64,
}

/// Runs a `bench` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: BenchCommand) -> anyhow::Result<i32> {
    let client = connect(bootstrap).await?;
    match cmd {
        BenchCommand::Produce(b) => super::bench_produce::run(client, out, b).await,
        BenchCommand::Consume(b) => consume(client, out, b).await,
        BenchCommand::E2e(b) => e2e(client, out, b).await,
        BenchCommand::Protocols(b) => super::bench_protocols::run(client, out, b).await,
    }
}

/// A rate `R` or `R/s`, positive.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim_end_matches("/s").parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("expected records per second such as 1000 or 1000/s, got {s:?}")),
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A progress bar on a terminal, a hidden one otherwise.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// One summary of a run.
pub struct Summary {
    pub bench: &'static str,
    pub topic: String,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub params: serde_json::Value,
    /// More lines of the text summary.
    pub lines: Vec<String>,
    /// More fields of the JSON summary.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Summary {
    pub fn print(&self, out: Output) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rps = self.records as f64 / secs;
        let mbps = mb_per_sec(self.bytes, self.elapsed);
        let h = &self.latency;
        let q = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        match out {
            Output::Text => {
                println!(
                    "{} {}: {} records in {:.2} s: {:.0} records/s, {:.2} MB/s{}",
                    self.bench,
                    self.topic,
                    self.records,
                    secs,
                    rps,
                    mbps,
                    if self.errors > 0 {
                        format!(", {} errors", self.errors)
                    } else {
                        String::new()
                    }
                );
                let ms = |us: u64| us as f64 / 1000.0;
                println!(
                    "latency ms: p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ({} samples)",
                    ms(q(0.5)),
                    ms(q(0.99)),
                    ms(q(0.999)),
                    ms(h.max()),
                    h.len()
                );
                for line in &self.lines {
                    println!("{line}");
                }
            }
            Output::Json => {
                let mut summary = json!({
                "bench": self.bench,
                "topic": self.topic,
                "records": self.records,
                "bytes": self.bytes,
                "seconds": secs,
                "records_per_sec": rps,
                "mb_per_sec": mbps,
                "errors": self.errors,
                "latency_us": {
                    "p50": q(0.5),
                    "p99": q(0.99),
                    "p999": q(0.999),
                    "max": h.max(),
                    "mean": h.mean(),
                    "samples": h.len(),
                },
                "params": self.params,
                });
                let object = summary.as_object_mut().expect("an object");
                object.extend(self.extra.clone());
                print_json(&summary);
            }
        }
    }
}

/// Records and key+value bytes of fetched batches at or after `from`; the timestamps in
/// the first 8 bytes of each value when `stamps` is given.
fn count_batches(
    batches: &[(i64, Bytes)],
    from: i64,
    mut stamps: Option<&mut Vec<i64>>,
) -> anyhow::Result<(u64, u64, i64)> {
    let (mut n, mut bytes, mut next) = (0u64, 0u64, from);
    for (base, raw) in batches {
        rafka_proto::batch::validate(raw, usize::MAX)
            .map_err(|e| anyhow::anyhow!("batch at {base}: {e}"))?;
        let records = rafka_proto::batch::records(raw)
            .map_err(|e| anyhow::anyhow!("batch at {base}: {e}"))?;
        for r in &records {
            let offset = base + i64::from(r.offset_delta);
            if offset < from {
                continue;
            }
            n += 1;
            let value = r.value.as_deref().unwrap_or_default();
            bytes += (value.len() + r.key.as_ref().map_or(0, |k| k.len())) as u64;
            next = offset + 1;
            if let Some(s) = stamps.as_deref_mut()
                && let Some(ts) = value.get(..8)
            {
                s.push(i64::from_le_bytes(ts.try_into().expect("8 bytes")));
            }
        }
    }
    Ok((n, bytes, next))
}

async fn consume(client: Client, out: Output, b: ConsumeBench) -> anyhow::Result<i32> {
    let parts = partitions(&client, &b.topic, None).await?;
    let mut ranges = Vec::new();
    let mut available = 0u64;
    for &p in &parts {
        let start = client.list_offset(&b.topic, p, OffsetSpec::Earliest).await?;
        let end = client.list_offset(&b.topic, p, OffsetSpec::Latest).await?;
        available += (end - start).max(0) as u64;
        ranges.push((p, start, end));
    }
    let target = b.records.map_or(available, |n| n.min(available));
    let bar = progress(Some(target), "consume");
    let seen = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, from, end) in ranges {
        let (client, topic, seen, bar) =
            (client.clone(), b.topic.clone(), seen.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut offset, mut bytes, mut n) = (from, 0u64, 0u64);
            while offset < end && seen.load(Ordering::Relaxed) < target {
                let t = Instant::now();
                let f = client
                    .fetch(&topic, p, offset, FETCH_MAX_BYTES, Duration::from_millis(100))
                    .await?;
                hist.saturating_record(t.elapsed().as_micros() as u64);
                let (k, kb, next) = count_batches(&f.batches, offset, None)?;
                offset = next.max(offset);
                n += k;
                bytes += kb;
                seen.fetch_add(k, Ordering::Relaxed);
                bar.inc(k);
            }
            anyhow::Ok((hist, n, bytes))
        }));
    }
    let (mut hist, mut n, mut bytes) = (histogram(), 0, 0);
    for t in tasks {
        let (h, k, kb) = t.await.context("a consumer task panicked")??;
        hist.add(h).expect("same histogram bounds");
        n += k;
        bytes += kb;
    }
    bar.finish_and_clear();
    Summary {
        bench: "consume",
        topic: b.topic,
        records: n,
        bytes,
        errors: 0,
        elapsed: start.elapsed(),
        latency: hist,
        params: json!({ "partitions": parts.len(), "target_records": target }),
        lines: Vec::new(),
        extra: Default::default(),
    }
    .print(out);
    Ok(0)
}

fn now_micros() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

async fn e2e(client: Client, out: Output, b: E2eBench) -> anyhow::Result<i32> {
    if b.rate <= 0.0 || b.seconds == 0 {
        bail!("--rate and --seconds must be positive");
    }
    if b.record_size < 8 {
        bail!("--record-size must be at least 8 (the send timestamp)");
    }
    let parts = partitions(&client, &b.topic, None).await?;
    let received = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64, Vec<u64>)>();
    let mut consumers = Vec::new();
    for &p in &parts {
        let mut offset = client.list_offset(&b.topic, p, OffsetSpec::Latest).await?;
        let (client, topic, tx) = (client.clone(), b.topic.clone(), tx.clone());
        consumers.push(tokio::spawn(async move {
            loop {
                let f = match client
                    .fetch(&topic, p, offset, FETCH_MAX_BYTES, Duration::from_millis(200))
                    .await
                {
                    Ok(f) => f,
                    Err(e) if e.is_retriable() => continue,
                    Err(e) => return Err(anyhow::anyhow!("fetching {topic}/{p}: {e}")),
                };
                let now = now_micros();
                let mut stamps = Vec::new();
                let (n, bytes, next) = count_batches(&f.batches, offset, Some(&mut stamps))?;
                offset = next.max(offset);
                let lat = stamps.iter().map(|s| (now - s).max(0) as u64).collect();
                if n > 0 && tx.send((n, bytes, lat)).is_err() {
                    return Ok(());
                }
            }
        }));
    }
    drop(tx);
    let config = ProducerConfig {
        acks: b.acks.acks(),
        idempotence: b.acks == AcksArg::All,
        linger: Duration::from_millis(b.linger_ms),
        ..ProducerConfig::default()
    };
    let producer = Arc::new(Producer::new(client.clone(), config)?);
    let total = (b.rate * b.seconds as f64).round() as u64;
    let bar = progress(Some(total), "e2e");
    let start = Instant::now();
    let sender = {
        let (producer, topic, size) = (producer.clone(), b.topic.clone(), b.record_size);
        tokio::spawn(async move {
            let mut inflight = FuturesUnordered::new();
            let mut errors = 0u64;
            for k in 0..total {
                tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / b.rate)).await;
                while let Some(Some(r)) = futures::FutureExt::now_or_never(inflight.next()) {
                    let r: rafka_client::Result<_> = r;
                    errors += u64::from(r.is_err());
                }
                let mut v = vec![b'x'; size];
                v[..8].copy_from_slice(&now_micros().to_le_bytes());
                let rec = ProducerRecord {
                    topic: topic.clone(),
                    value: Some(v.into()),
                    ..Default::default()
                };
                match producer.send(rec).await {
                    Ok(delivery) => inflight.push(delivery),
                    Err(_) => errors += 1,
                }
            }
            while let Some(r) = inflight.next().await {
                errors += u64::from(r.is_err());
            }
            errors
        })
    };
    let mut hist = histogram();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut sender = Some(sender);
    let mut errors = 0u64;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if let Some(s) = sender.as_mut().filter(|s| s.is_finished()) {
            errors = s.await.context("the producer task panicked")?;
            sender = None;
            drain_deadline = Some(Instant::now() + Duration::from_secs(30));
        }
        if n + errors >= total && sender.is_none() {
            break;
        }
        if drain_deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some((k, kb, lat))) => {
                n += k;
                bytes += kb;
                for l in lat {
                    hist.saturating_record(l.max(1));
                }
                received.fetch_add(k, Ordering::Relaxed);
                bar.inc(k);
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    for c in &consumers {
        c.abort();
    }
    let lost = total.saturating_sub(n + errors);
    Summary {
        bench: "e2e",
        topic: b.topic,
        records: n,
        bytes,
        errors,
        elapsed,
        latency: hist,
        params: json!({
            "rate": b.rate,
            "seconds": b.seconds,
            "record_size": b.record_size,
            "sent": total,
            "not_received": lost,
            "linger_ms": b.linger_ms,
        }),
        lines: Vec::new(),
        extra: Default::default(),
    }
    .print(out);
    if errors > 0 || lost > 0 {
        eprintln!(
            "rafka: error: {errors} sends failed, {lost} acknowledged records not received in time"
        );
        return Ok(1);
    }
    Ok(0)
}
