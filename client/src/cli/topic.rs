//! `rafka topic create|list|describe|delete|reassign|transfer-leadership`.
//!
//! # Format
//!
//! `topic describe NAME --output json` prints one object:
//! `{"name", "topic_id", "configs": {..}, "partitions": [{"partition", "leader", "replicas",
//! "in_sync", "moving_to", "high_watermark", "log_start_offset"}]}` with `leader` `null`
//! while none is elected and `moving_to` empty unless a reassignment is under way. `topic list --output json` prints `[{"name", "topic_id", "partitions",
//! "internal"}]`.

use std::collections::BTreeMap;
use std::collections::HashMap;

use anyhow::Context;
use anyhow::bail;
use clap::Args;
use clap::Subcommand;
use rafka_client::Admin;
use serde_json::json;

use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::print_json;
use super::output::print_table;

/// `rafka topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics.
    List {
        /// Include internal topics such as `__consumer_offsets`.
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, replicas and configs of a topic.
    Describe {
        /// The topic.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic.
        name: String,
    },
    /// Move a partition's replicas to other brokers (learners first, then one membership
    /// change); returns once the move is recorded: `topic describe` shows it under way.
    Reassign {
        /// The topic.
        name: String,
        /// The partition.
        partition: u32,
        /// The new replica brokers, preferred leader first, e.g. `4,1,3`.
        #[arg(long, value_delimiter = ',', required = true)]
        brokers: Vec<u64>,
    },
    /// Make a replica the partition's leader (its preferred leader from now on).
    TransferLeadership {
        /// The topic.
        name: String,
        /// The partition.
        partition: u32,
        /// The broker id of the replica to lead.
        #[arg(long)]
        to: u64,
    },
}

/// `rafka topic create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The topic name (`[a-zA-Z0-9._-]{1,249}`).
    name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replicas per partition (at most the number of live brokers).
    #[arg(long, default_value_t = 1)]
    replication_factor: u32,
    /// A topic config `key=value` (`retention.ms`, `retention.bytes`, `max.message.bytes`);
    /// repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
}

/// Runs a `topic` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: TopicCommand) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    match cmd {
        TopicCommand::Create(a) => create(&admin, out, a).await?,
        TopicCommand::List { internal } => list(&admin, out, internal).await?,
        TopicCommand::Describe { name } => describe(&admin, out, &name).await?,
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await.with_context(|| format!("deleting topic {name}"))?;
            match out {
                Output::Text => println!("deleted topic {name}"),
                Output::Json => print_json(&json!({ "deleted": name })),
            }
        }
        TopicCommand::Reassign { name, partition, brokers } => {
            admin
                .reassign_partition(&name, partition, &brokers)
                .await
                .with_context(|| format!("reassigning {name}/{partition}"))?;
            match out {
                Output::Text => println!("moving {name}/{partition} to brokers {}", ids(&brokers)),
                Output::Json => print_json(
                    &json!({ "topic": name, "partition": partition, "moving_to": brokers }),
                ),
            }
        }
        TopicCommand::TransferLeadership { name, partition, to } => {
            admin
                .transfer_leadership(&name, partition, to)
                .await
                .with_context(|| format!("moving the leadership of {name}/{partition}"))?;
            match out {
                Output::Text => {
                    println!("broker {to} is now the preferred leader of {name}/{partition}")
                }
                Output::Json => print_json(
                    &json!({ "topic": name, "partition": partition, "preferred_leader": to }),
                ),
            }
        }
    }
    Ok(0)
}

async fn create(admin: &Admin, out: Output, a: CreateArgs) -> anyhow::Result<()> {
    let mut configs = HashMap::new();
    for c in &a.configs {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--config {c:?}: expected KEY=VALUE");
        };
        configs.insert(k.trim().to_string(), v.trim().to_string());
    }
    let id = admin
        .create_topic(&a.name, a.partitions, a.replication_factor, configs)
        .await
        .with_context(|| format!("creating topic {}", a.name))?;
    match out {
        Output::Text => println!(
            "created topic {} ({}, replication factor {})",
            a.name,
            plural(a.partitions as usize, "partition"),
            a.replication_factor
        ),
        Output::Json => print_json(&json!({
            "name": a.name,
            "topic_id": id,
            "partitions": a.partitions,
            "replication_factor": a.replication_factor,
        })),
    }
    Ok(())
}

async fn list(admin: &Admin, out: Output, internal: bool) -> anyhow::Result<()> {
    let mut topics = admin.list_topics(internal).await.context("listing topics")?;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    match out {
        Output::Text => {
            for t in &topics {
                let internal = if t.internal { " (internal)" } else { "" };
                println!("{}\t{}{internal}", t.name, plural(t.partitions as usize, "partition"));
            }
        }
        Output::Json => print_json(&serde_json::Value::Array(
            topics
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "topic_id": t.topic_id,
                        "partitions": t.partitions,
                        "internal": t.internal,
                    })
                })
                .collect(),
        )),
    }
    Ok(())
}

async fn describe(admin: &Admin, out: Output, name: &str) -> anyhow::Result<()> {
    let mut t = admin.describe_topic(name).await.with_context(|| format!("topic {name}"))?;
    t.partitions.sort_by_key(|p| p.partition);
    let configs: BTreeMap<_, _> = t.configs.iter().collect();
    match out {
        Output::Text => {
            println!(
                "topic {} (id {}), {}",
                t.name,
                t.topic_id,
                plural(t.partitions.len(), "partition")
            );
            for (k, v) in &configs {
                println!("  config {k}={v}");
            }
            let rows: Vec<Vec<String>> = t
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        p.leader.map_or("-".to_string(), |l| l.to_string()),
                        ids(&p.replicas),
                        ids(&p.in_sync),
                        ids(&p.target_replicas),
                        p.high_watermark.to_string(),
                        p.log_start_offset.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "IN_SYNC",
                    "MOVING_TO",
                    "HIGH_WATERMARK",
                    "LOG_START",
                ],
                &rows,
            );
        }
        Output::Json => print_json(&json!({
            "name": t.name,
            "topic_id": t.topic_id,
            "configs": configs,
            "partitions": t.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "replicas": p.replicas,
                "in_sync": p.in_sync,
                "moving_to": p.target_replicas,
                "high_watermark": p.high_watermark,
                "log_start_offset": p.log_start_offset,
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

/// Broker ids as `1,2,3`.
pub fn ids(v: &[u64]) -> String {
    let s: Vec<String> = v.iter().map(u64::to_string).collect();
    if s.is_empty() { "-".into() } else { s.join(",") }
}

/// `n thing` or `n things`.
pub fn plural(n: usize, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}
