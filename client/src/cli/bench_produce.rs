//! `rafka bench produce`: records of a fixed size through the `Producer`, as an application
//! sends them.
//!
//! - Closed loop (default): up to `--window` records in flight (sent, not yet acknowledged)
//!   in all; latency is `send` → acknowledgement of each record.
//! - `--sync`: one record at a time (window 1, linger 0 unless given): the latency of a
//!   single acknowledged write.
//! - `--rate R`: open loop, records scheduled at R per second whatever the acknowledgements
//!   do (the window still bounds what is in flight); latency is measured from each record's
//!   scheduled send time, so a stall counts against every record it delays (no coordinated
//!   omission). A thread paces the sends (tokio's timer is only millisecond-precise).
//!
//! With `--broker-metrics` (the brokers' HTTP side ports) the brokers' CPU-seconds during the
//! run are read from their `process_cpu_seconds_total` and reported per MB produced. With
//! `--disk-baseline DIR` the disk's rate for the replicas' write pattern is measured first —
//! one writer per replica appending `--batch-size` chunks to its own file with an fdatasync
//! after each — and the run is also reported as the fraction of it used (each produced byte
//! is written once per replica).

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use futures::FutureExt;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::ErrorCode;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::bench::Summary;
use super::bench::histogram;
use super::bench::progress;
use super::consume::partitions;
use super::output::Output;
use super::produce::AcksArg;
use super::produce::CompressionArg;

/// `rafka bench produce`
#[derive(Debug, Args)]
pub struct ProduceBench {
    /// The topic (must exist, unless `--create`).
    topic: String,
    /// Records to send in all.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    record_size: usize,
    /// Records in flight (sent and not yet acknowledged) at most, in all.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    window: usize,
    /// One record at a time: window 1, linger 0 (unless `--linger-ms` is given).
    #[arg(long, conflicts_with = "window")]
    sync: bool,
    /// Open loop: records per second in all, `R` or `R/s`; latency from each record's
    /// scheduled time.
    #[arg(long, value_name = "R", value_parser = super::bench::parse_rate)]
    rate: Option<f64>,
    /// Producers sending in parallel (each with its own batches and streams).
    #[arg(long, default_value_t = 1, value_name = "P")]
    producers: usize,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Producer linger [default: 5, 0 with --sync].
    #[arg(long, value_name = "MS")]
    linger_ms: Option<u64>,
    /// Producer batch size [default: the producer's (256 KiB), capped so that the window
    /// holds two full batches: a closed loop whose window is smaller than a batch would
    /// wait out the linger on every batch].
    #[arg(long, value_name = "BYTES")]
    batch_size: Option<usize>,
    /// Batches in flight per partition (at most 5 with acks=all, which is idempotent).
    #[arg(long, default_value_t = 5, value_name = "N")]
    max_in_flight: usize,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Create the topic first when it does not exist.
    #[arg(long)]
    create: bool,
    /// Partitions of a topic made by `--create`.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "create")]
    partitions: u32,
    /// Replication factor of a topic made by `--create`.
    #[arg(long, default_value_t = 3, value_name = "N", requires = "create")]
    replication_factor: u32,
    /// The brokers' HTTP side ports, `host:port,...`: their CPU-seconds per MB are reported.
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    broker_metrics: Vec<String>,
    /// Measure the disk first with the replicas' write pattern in this directory (on the
    /// brokers' disk), and report the run as a fraction of it.
    #[arg(long, value_name = "DIR")]
    disk_baseline: Option<std::path::PathBuf>,
}

pub async fn run(client: Client, out: Output, b: ProduceBench) -> anyhow::Result<i32> {
    if b.producers == 0 || b.window == 0 {
        bail!("--producers and --window must be at least 1");
    }
    if b.create {
        create_topic(&client, &b).await?;
    }
    let parts = partitions(&client, &b.topic, None).await?;
    let replicas = {
        let md = client.metadata().await?;
        let t = md.topic(&b.topic).context("topic vanished")?;
        t.partitions.first().map_or(1, |p| p.replicas.len().max(1))
    };
    let window = if b.sync { 1 } else { b.window };
    let batch_size = b.batch_size.unwrap_or_else(|| {
        let record = b.record_size + rafka_client::RECORD_OVERHEAD;
        let share = window.div_ceil(b.producers);
        ProducerConfig::default().batch_size.min((share * record / 2).max(record))
    });
    let disk = match &b.disk_baseline {
        Some(dir) => Some(disk_baseline(dir, replicas, batch_size).await?),
        None => None,
    };
    let linger = b.linger_ms.unwrap_or(if b.sync { 0 } else { 5 });
    let config = ProducerConfig {
        acks: b.acks.acks(),
        idempotence: b.acks == AcksArg::All,
        linger: Duration::from_millis(linger),
        batch_size,
        max_in_flight: b.max_in_flight,
        compression: b.compression.compression(),
        ..ProducerConfig::default()
    };
    config.validate()?;
    let cpu_before = broker_cpu(&b.broker_metrics).await?;
    let value = Bytes::from(vec![b'x'; b.record_size]);
    let bar = progress(Some(b.records), "produce");
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..b.producers {
        let share =
            |n: u64| n / b.producers as u64 + u64::from((i as u64) < n % b.producers as u64);
        let n = share(b.records);
        let window = (share(window as u64) as usize).max(1);
        let producer = Producer::new(client.clone(), config.clone())?;
        let rate = b.rate.map(|r| r / b.producers as f64);
        let (topic, value, done, bar) = (b.topic.clone(), value.clone(), done.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut inflight = FuturesUnordered::new();
            let mut record = |(r, t): (rafka_client::Result<_>, Instant)| {
                match r {
                    Ok(_) => hist.saturating_record(t.elapsed().as_micros().max(1) as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            };
            let mut ticks = rate.map(|r| pace(start, r, n));
            for _ in 0..n {
                let mut scheduled = None;
                if let Some(ticks) = &mut ticks {
                    // Deliveries are timed as they come while the next send waits.
                    scheduled = loop {
                        tokio::select! {
                            biased;
                            at = ticks.recv() => break at,
                            Some(r) = inflight.next(), if !inflight.is_empty() => record(r),
                        }
                    };
                }
                while inflight.len() >= window {
                    if let Some(r) = inflight.next().await {
                        record(r);
                    }
                }
                let t = scheduled.unwrap_or_else(Instant::now);
                let rec = ProducerRecord {
                    topic: topic.clone(),
                    value: Some(value.clone()),
                    ..Default::default()
                };
                match producer.send(rec).await {
                    Ok(delivery) => inflight.push(delivery.map(move |r| (r, t))),
                    Err(e) => record((Err(e), t)),
                }
                while let Some(Some(r)) = inflight.next().now_or_never() {
                    record(r);
                }
            }
            while let Some(r) = inflight.next().await {
                record(r);
            }
            (hist, errors, first_error)
        }));
    }
    let mut hist = histogram();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (h, e, f) = t.await.context("a producer task panicked")?;
        hist.add(h).expect("same histogram bounds");
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let cpu_after = broker_cpu(&b.broker_metrics).await?;
    let ok = b.records - errors;
    let bytes = ok * b.record_size as u64;
    let mb = bytes as f64 / 1e6;
    let mb_per_sec = mb / elapsed.as_secs_f64().max(1e-9);
    let mut lines = Vec::new();
    let mut extra = serde_json::Map::new();
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu = (after - before).max(0.0);
        let per_mb = cpu * 1000.0 / mb.max(1e-9);
        lines.push(format!(
            "brokers: {cpu:.2} CPU-seconds, {per_mb:.1} CPU-ms per MB ({} brokers)",
            b.broker_metrics.len()
        ));
        extra.insert("broker_cpu_seconds".into(), json!(cpu));
        extra.insert("broker_cpu_ms_per_mb".into(), json!(per_mb));
    }
    if let Some(d) = disk {
        let fraction = mb_per_sec * replicas as f64 / d.mb_per_sec.max(1e-9);
        lines.push(format!(
            "disk baseline: {:.1} MB/s ({replicas} writers of {} B with fdatasync, {:.3} ms per write); \
             this run wrote {:.1} MB/s to it ({:.0}%)",
            d.mb_per_sec,
            batch_size,
            d.ms_per_write,
            mb_per_sec * replicas as f64,
            fraction * 100.0
        ));
        extra.insert(
            "disk_baseline".into(),
            json!({
                "mb_per_sec": d.mb_per_sec,
                "ms_per_write": d.ms_per_write,
                "writers": replicas,
                "write_bytes": batch_size,
                "fraction_used": fraction,
            }),
        );
    }
    Summary {
        bench: "produce",
        topic: b.topic.clone(),
        records: ok,
        bytes,
        errors,
        elapsed,
        latency: hist,
        params: json!({
            "record_size": b.record_size,
            "partitions": parts.len(),
            "replicas": replicas,
            "window": window,
            "sync": b.sync,
            "rate": b.rate,
            "producers": b.producers,
            "acks": format!("{:?}", b.acks).to_lowercase(),
            "linger_ms": linger,
            "batch_size": batch_size,
            "max_in_flight": b.max_in_flight,
        }),
        lines,
        extra,
    }
    .print(out);
    if let Some(e) = first_error {
        eprintln!("rafka: error: {errors} of {} records failed; first: {e}", b.records);
        return Ok(1);
    }
    Ok(0)
}

/// Wakes the open loop at each record's scheduled time: `tokio`'s timer rounds a deadline up
/// to its next millisecond, which would make records late by up to a millisecond before
/// they are sent and count that against the system (the latency is measured from the
/// scheduled time). A thread's sleep is precise to tens of microseconds. Yields each
/// record's scheduled time when it comes.
fn pace(start: Instant, rate: f64, n: u64) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for k in 0..n {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(at).is_err() {
                return;
            }
        }
    });
    rx
}

async fn create_topic(client: &Client, b: &ProduceBench) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    let r =
        admin.create_topic(&b.topic, b.partitions, b.replication_factor, Default::default()).await;
    match r {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => {}
        Err(e) => return Err(e).context(format!("creating {}", b.topic)),
    }
    // Wait (bounded) until every partition has a leader, so the run does not start with
    // elections.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.refresh_metadata().await?;
        let led = md.topic(&b.topic).is_some_and(|t| {
            !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader.is_some())
        });
        if led {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: partitions without a leader 30 s after creation", b.topic);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The summed `process_cpu_seconds_total` of the brokers at `addrs`; `None` without any.
async fn broker_cpu(addrs: &[String]) -> anyhow::Result<Option<f64>> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for addr in addrs {
        let body = http_get(addr, "/metrics").await?;
        let cpu = body
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .with_context(|| format!("{addr}/metrics has no process_cpu_seconds_total"))?;
        total += cpu.trim().parse::<f64>().with_context(|| format!("{addr}: {cpu:?}"))?;
    }
    Ok(Some(total))
}

/// The body of `GET path` from `addr` (HTTP/1.1, connection closed by the server).
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .with_context(|| format!("{addr}{path}: no answer in 10 s"))?
        .with_context(|| format!("{addr}{path}"))?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("{addr}{path}: not an HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}{path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}

/// What the disk did with the replicas' pattern.
struct Disk {
    mb_per_sec: f64,
    ms_per_write: f64,
}

/// `writers` threads, each appending `chunk`-byte writes to its own file in `dir` with an
/// fdatasync after each, for about two seconds.
async fn disk_baseline(
    dir: &std::path::Path,
    writers: usize,
    chunk: usize,
) -> anyhow::Result<Disk> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let run = Duration::from_secs(2);
        let results: Vec<anyhow::Result<(u64, Duration)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..writers)
                .map(|i| {
                    let path = dir.join(format!("rafka-disk-baseline-{}-{i}", std::process::id()));
                    s.spawn(move || {
                        let file = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(true)
                            .write(true)
                            .open(&path)
                            .with_context(|| format!("{}", path.display()))?;
                        let buf = vec![0x5au8; chunk];
                        let started = std::time::Instant::now();
                        let (mut writes, mut at) = (0u64, 0u64);
                        while started.elapsed() < run {
                            file.write_all_at(&buf, at)?;
                            file.sync_data()?;
                            at += chunk as u64;
                            writes += 1;
                        }
                        let took = started.elapsed();
                        drop(file);
                        std::fs::remove_file(&path)?;
                        Ok((writes, took))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("disk writer panicked")).collect()
        });
        let mut writes = 0;
        let mut secs: f64 = 0.0;
        for r in results {
            let (w, took) = r?;
            writes += w;
            secs = secs.max(took.as_secs_f64());
        }
        Ok(Disk {
            mb_per_sec: (writes * chunk as u64) as f64 / 1e6 / secs.max(1e-9),
            ms_per_write: secs * 1000.0 * writers as f64 / writes.max(1) as f64,
        })
    })
    .await
    .context("the disk baseline panicked")?
}
