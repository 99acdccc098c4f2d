//! `rafka cluster status`: brokers, liveness, controller leader and partition leader counts.
//! `rafka cluster health [--wait MS]`: whether the cluster is whole — a controller leader,
//! every broker alive, every partition led and fully in sync, no reassignment under way —
//! the condition a rolling restart waits for before it takes the next broker down.
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
}

/// Runs a `cluster` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: ClusterCommand) -> anyhow::Result<i32> {
    match cmd {
        ClusterCommand::Status => status(bootstrap, out).await,
        ClusterCommand::Health { wait } => health(bootstrap, out, wait).await,
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
                    vec![
                        format!("{}{mark}", b.broker_id),
                        b.address.clone(),
                        if b.alive { "alive" } else { "dead" }.to_string(),
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
                "controller": Some(b.broker_id) == cluster.controller_id,
                "leaders": leaders.get(&b.broker_id).copied().unwrap_or(0),
                "replicas": replicas.get(&b.broker_id).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "topics": topics,
            "partitions": partitions,
            "leaderless_partitions": leaderless,
        })),
    }
    Ok(0)
}
