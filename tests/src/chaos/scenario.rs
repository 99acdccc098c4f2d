//! One chaos run end to end: a proxied cluster, the workload, a fault schedule, healing, the
//! final reads and the checker's verdict.
//!
//! The run's history is written to `<cluster dir>/history.jsonl` and the checker's summary to
//! `<cluster dir>/checker.txt`; when the checker finds a violation (or the run fails) the
//! cluster directory — history, checker output, every broker's log and data dir — is kept
//! and its path printed. `CHAOS_SEED` (through [`seed_or`]) replays a run's victim
//! and fault choices.

use std::collections::BTreeSet;
use std::time::Duration;

use super::checker::CheckOptions;
use super::checker::Report;
use super::checker::check;
use super::history::Call;
use super::history::History;
use super::history::Op;
use super::history::OpType;
use super::nemesis::Nemesis;
use super::nemesis::Schedule;
use super::verify::final_reads;
use super::workload::Workload;
use super::workload::WorkloadOptions;
use crate::Cluster;
use crate::ClusterOptions;

/// Environment variable fixing the seed of a run.
pub const SEED_ENV: &str = "CHAOS_SEED";

/// The seed in [`SEED_ENV`], else `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A chaos run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name, in logs and the figures table.
    pub name: String,
    /// Number of brokers.
    pub brokers: usize,
    /// Extra broker TOML (see [`ClusterOptions::extra_toml`]).
    pub extra_toml: String,
    /// The client processes.
    pub workload: WorkloadOptions,
    /// The faults; an empty fault list is the no-fault baseline.
    pub schedule: Schedule,
    /// Workload before the first fault.
    pub warmup: Duration,
    /// Workload after the last heal (the checker requires writes to succeed again).
    pub settle: Duration,
    /// Seed of victim and fault choices (see [`seed_or`]).
    pub seed: u64,
    /// Checker bounds.
    pub check: CheckOptions,
    /// Keep the cluster directory when the checker finds violations (off for runs that
    /// expect them).
    pub keep_on_violation: bool,
}

impl Scenario {
    /// A 3-broker scenario with the default workload, 2 s of warm-up and 6 s of settling.
    pub fn new(name: &str, schedule: Schedule, seed: u64) -> Scenario {
        Scenario {
            name: name.to_string(),
            brokers: 3,
            extra_toml: String::new(),
            workload: WorkloadOptions::default(),
            schedule,
            warmup: Duration::from_secs(2),
            settle: Duration::from_secs(6),
            seed,
            check: CheckOptions::default(),
            keep_on_violation: true,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The checker's verdict and figures.
    pub report: Report,
    /// The seed used.
    pub seed: u64,
    /// What the nemesis did, one line per fault.
    pub faults: Vec<String>,
}

/// Runs `s` and returns the checker's report; an error when the run itself could not be
/// carried out (cluster did not start, a replica never caught up after healing, ...). In
/// either failing case the cluster directory is kept.
pub async fn run(s: &Scenario) -> anyhow::Result<Outcome> {
    let seed = s.seed;
    eprintln!("chaos {}: seed {seed} ({SEED_ENV}={seed} replays it)", s.name);
    let mut cluster = Cluster::start_with(ClusterOptions {
        brokers: s.brokers,
        extra_toml: s.extra_toml.clone(),
        proxied: true,
        client_tls: s.workload.tls.clone(),
        ..Default::default()
    })
    .await;
    let result = run_on(&mut cluster, s, seed).await;
    let dir = cluster.dir().to_path_buf();
    let keep = match &result {
        Ok(o) => s.keep_on_violation && !o.report.is_valid(),
        Err(_) => true,
    };
    if let Ok(o) = &result {
        let text = format!("seed {seed}\n{}\n{}\n", o.faults.join("\n"), o.report.summary());
        std::fs::write(dir.join("checker.txt"), text)?;
    }
    if keep {
        let kept = cluster.keep_dir();
        eprintln!(
            "chaos {}: kept history, checker output, logs and data in {}",
            s.name,
            kept.display()
        );
    }
    result
}

async fn run_on(cluster: &mut Cluster, s: &Scenario, seed: u64) -> anyhow::Result<Outcome> {
    let history = History::create(&cluster.dir().join("history.jsonl"))?;
    let client = cluster.client();
    let rf = u32::try_from(s.brokers.min(3))?;
    client.must_create_topic(&s.workload.topic, s.workload.partitions, rf).await;
    client
        .wait_for_leaders(&s.workload.topic, s.workload.partitions, Duration::from_secs(30))
        .await?;
    let opts = WorkloadOptions { seed, ..s.workload.clone() };
    let mut workload = Workload::start(history.clone(), &cluster.addrs(), opts).await?;
    tokio::time::sleep(s.warmup).await;
    let faults = {
        let mut nemesis =
            Nemesis::new(cluster, history.clone(), &s.workload.topic, s.workload.partitions, seed);
        let log = match s.schedule.faults.is_empty() {
            true => {
                tokio::time::sleep(s.schedule.duration).await;
                Vec::new()
            }
            false => nemesis.run(&s.schedule).await?,
        };
        nemesis.heal().await?;
        log
    };
    let healed = history.now();
    for line in &faults {
        eprintln!("chaos {}: {line}", s.name);
    }
    let bound = Duration::from_micros(s.check.liveness_bound_us);
    // Writes must succeed again; the checker judges how soon, this only bounds the wait.
    let _ = crate::poll("every partition acknowledging writes after healing", bound, || async {
        let live = writable_since(&history.ops(), healed);
        let missing: Vec<u32> = (0..s.workload.partitions).filter(|p| !live.contains(p)).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("partitions {missing:?}")) }
    })
    .await;
    tokio::time::sleep(s.settle).await;
    workload.stop(s.workload.delivery_timeout + Duration::from_secs(10)).await?;
    if s.workload.group.is_some() {
        let mut ends = Vec::new();
        for p in 0..s.workload.partitions {
            ends.push(client.fetch(&s.workload.topic, p, 0).await?.high_watermark);
        }
        workload.drain_group(&ends, Duration::from_secs(60)).await?;
    }
    final_reads(
        &history,
        &client,
        &s.workload.topic,
        s.workload.partitions,
        Duration::from_secs(60),
    )
    .await?;
    history.flush()?;
    let report = check(&history.ops(), &s.check);
    eprintln!("chaos {}:\n{}", s.name, report.summary());
    eprintln!("{}\n{}", Report::table_header(), report.table_row(&s.name));
    Ok(Outcome { report, seed, faults })
}

/// The partitions with a send invoked at or after `since` and acknowledged.
fn writable_since(ops: &[Op], since: u64) -> BTreeSet<u32> {
    let mut invoked: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut live = BTreeSet::new();
    for op in ops.iter().filter(|op| op.time >= since) {
        if let Call::Send { partition, value, .. } = &op.call {
            match op.kind {
                OpType::Invoke => {
                    invoked.insert((op.process.as_str(), value.as_str()));
                }
                OpType::Ok if invoked.contains(&(op.process.as_str(), value.as_str())) => {
                    live.insert(*partition);
                }
                _ => {}
            }
        }
    }
    live
}
