//! `rafka cluster status`: brokers, liveness, controller leader and partition leader counts.
//! `rafka cluster health [--wait MS]`: whether the cluster is whole — a controller leader,
//! every broker alive, every partition led and fully in sync, no reassignment under way —
//! the condition a rolling restart waits for before it takes the next broker down.
//! `rafka cluster rebalance [--wait MS]`: spread replicas and preferred leaders evenly (after
//! adding a broker). `rafka cluster decommission B [--wait MS]`: move every replica off broker
//! B, then remove it from the cluster.
//!
//! # Format
//!
//! `--output json` prints `{"cluster_id", "controller", "brokers": [{"id", "address",
//! "rack", "alive", "controller", "leaders", "replicas"}], "topics", "partitions",
//! "leaderless_partitions"}`; `leaders` counts the partitions the broker leads, internal
//! topics included.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use rafka_client::Admin;
use serde_json::json;

use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::print_json;
use super::output::print_table;

/// `rafka cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, liveness, controller leader and partition leader counts.
    Status,
    /// Exit 0 when the cluster is whole (controller leader, every broker alive, every
    /// partition led and in sync, no reassignment), 1 otherwise, with the reasons.
    Health {
        /// Wait up to this many milliseconds for the cluster to become whole.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait: u64,
    },
    /// Move replicas and preferred leaders until they are spread evenly over the brokers.
    Rebalance {
        /// Keep going (a few partitions move at a time) until balanced, up to this many
        /// milliseconds; 0: only start the first moves.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait: u64,
    },
    /// Move every replica off a broker, then remove it from the cluster.
    Decommission {
        /// The broker's id.
        broker: u64,
        /// Wait up to this many milliseconds until it is removed, printing progress; 0: only
        /// start.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait: u64,
    },
}

/// Runs a `cluster` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: ClusterCommand) -> anyhow::Result<i32> {
    match cmd {
        ClusterCommand::Status => status(bootstrap, out).await,
        ClusterCommand::Health { wait } => health(bootstrap, out, wait).await,
        ClusterCommand::Rebalance { wait } => rebalance(bootstrap, wait).await,
        ClusterCommand::Decommission { broker, wait } => {
            decommission(bootstrap, broker, wait).await
        }
    }
}

async fn rebalance(bootstrap: &Target, wait_ms: u64) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let mut total = 0;
    loop {
        let (started, moving) = admin.rebalance().await.context("rebalancing")?;
        total += started;
        if started > 0 {
            println!("started moving {started} partition(s); {moving} moving");
        }
        if started == 0 && moving == 0 {
            println!("balanced ({total} partition(s) moved)");
            return Ok(0);
        }
        if std::time::Instant::now() >= deadline {
            if wait_ms > 0 {
                println!("still moving {moving} partition(s) after {wait_ms} ms");
                return Ok(1);
            }
            return Ok(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn decommission(bootstrap: &Target, broker: u64, wait_ms: u64) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    admin.decommission_broker(broker).await.context("decommissioning")?;
    println!("decommissioning broker {broker}: its replicas are moving to the other brokers");
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let mut last = None;
    if wait_ms == 0 {
        return Ok(0);
    }
    loop {
        let cluster = admin.describe_cluster().await.context("describing the cluster")?;
        if cluster.decommissioned.contains(&broker) {
            println!("broker {broker} is decommissioned: it may be stopped");
            return Ok(0);
        }
        let left = cluster.brokers.iter().find(|b| b.broker_id == broker).map(|b| b.replicas);
        if left != last {
            let voter = if cluster.controller_voters.contains(&broker) {
                " (and a controller voter)"
            } else {
                ""
            };
            println!("broker {broker}: {} replica(s) left{voter}", left.unwrap_or(0));
            last = left;
        }
        if std::time::Instant::now() >= deadline {
            println!("broker {broker} still holds replicas after {wait_ms} ms");
            return Ok(1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// What keeps the cluster from being whole; empty when it is.
async fn problems(admin: &Admin) -> anyhow::Result<Vec<String>> {
    let cluster = admin.describe_cluster().await.context("describing the cluster")?;
    let md = admin.metadata(&[]).await.context("fetching metadata")?;
    let mut out = Vec::new();
    if cluster.controller_id.is_none() {
        out.push("no controller leader".to_string());
    }
    let down: Vec<String> =
        cluster.brokers.iter().filter(|b| !b.alive).map(|b| b.broker_id.to_string()).collect();
    if !down.is_empty() {
        out.push(format!("broker(s) {} down", down.join(", ")));
    }
    let (mut leaderless, mut under, mut moving) = (Vec::new(), Vec::new(), Vec::new());
    for t in md.topics.iter().filter(|t| t.error.is_none()) {
        for p in &t.partitions {
            let name = format!("{}-{}", t.name, p.partition);
            if p.leader.is_none() {
                leaderless.push(name.clone());
            }
            if p.replicas.iter().any(|r| !p.in_sync.contains(r)) {
                under.push(name.clone());
            }
            if !p.target_replicas.is_empty() {
                moving.push(name);
            }
        }
    }
    for (what, list) in
        [("without a leader", leaderless), ("under-replicated", under), ("being moved", moving)]
    {
        if !list.is_empty() {
            let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
            let more = if list.len() > 5 { ", ..." } else { "" };
            out.push(format!("{} partition(s) {what} ({}{more})", list.len(), shown.join(", ")));
        }
    }
    Ok(out)
}

async fn health(bootstrap: &Target, out: Output, wait_ms: u64) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let found = loop {
        let found = match problems(&admin).await {
            Ok(p) => p,
            Err(e) => vec![format!("{e:#}")],
        };
        if found.is_empty() || std::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    match out {
        Output::Text if found.is_empty() => println!("healthy"),
        Output::Text => println!("not healthy: {}", found.join("; ")),
        Output::Json => print_json(&json!({ "healthy": found.is_empty(), "problems": found })),
    }
    Ok(if found.is_empty() { 0 } else { 1 })
}

async fn status(bootstrap: &Target, out: Output) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    let cluster = admin.describe_cluster().await.context("describing the cluster")?;
    let md = admin.metadata(&[]).await.context("fetching metadata")?;
    let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<u64, usize> = BTreeMap::new();
    let (mut partitions, mut leaderless) = (0usize, 0usize);
    for t in md.topics.iter().filter(|t| t.error.is_none()) {
        for p in &t.partitions {
            partitions += 1;
            match p.leader {
                Some(l) => *leaders.entry(l).or_default() += 1,
                None => leaderless += 1,
            }
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
        }
    }
    let mut brokers = cluster.brokers.clone();
    brokers.sort_by_key(|b| b.broker_id);
    let topics = md.topics.iter().filter(|t| t.error.is_none()).count();
    match out {
        Output::Text => {
            let controller = cluster.controller_id.map_or("none".to_string(), |c| c.to_string());
            println!(
                "cluster {}: controller leader broker {controller}, batch format {}",
                cluster.cluster_id, cluster.batch_format
            );
            let rows: Vec<Vec<String>> = brokers
                .iter()
                .map(|b| {
                    let mark = if Some(b.broker_id) == cluster.controller_id { "*" } else { "" };
                    let status = match (b.alive, b.draining) {
                        (true, false) => "alive",
                        (true, true) => "alive, draining",
                        (false, false) => "dead",
                        (false, true) => "dead, draining",
                    };
                    vec![
                        format!("{}{mark}", b.broker_id),
                        b.address.clone(),
                        status.to_string(),
                        leaders.get(&b.broker_id).copied().unwrap_or(0).to_string(),
                        replicas.get(&b.broker_id).copied().unwrap_or(0).to_string(),
                    ]
                })
                .collect();
            print_table(&["BROKER", "ADDRESS", "STATUS", "LEADERS", "REPLICAS"], &rows);
            println!(
                "  {topics} topics, {partitions} partitions, {leaderless} without a leader \
                 (* = controller leader)"
            );
            let voters: Vec<String> =
                cluster.controller_voters.iter().map(|b| b.to_string()).collect();
            println!("  controller voters: {}", voters.join(", "));
            if !cluster.decommissioned.is_empty() {
                let gone: Vec<String> =
                    cluster.decommissioned.iter().map(|b| b.to_string()).collect();
                println!("  decommissioned: {}", gone.join(", "));
            }
        }
        Output::Json => print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller": cluster.controller_id,
            "batch_format": cluster.batch_format,
            "brokers": brokers.iter().map(|b| json!({
                "id": b.broker_id,
                "address": b.address,
                "rack": b.rack,
                "alive": b.alive,
                "draining": b.draining,
                "controller": Some(b.broker_id) == cluster.controller_id,
                "controller_voter": cluster.controller_voters.contains(&b.broker_id),
                "leaders": leaders.get(&b.broker_id).copied().unwrap_or(0),
                "replicas": replicas.get(&b.broker_id).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "topics": topics,
            "partitions": partitions,
            "leaderless_partitions": leaderless,
            "decommissioned": cluster.decommissioned,
        })),
    }
    Ok(0)
}
