//! `rafka group list|describe|reset-offsets|delete`, and `rafka consume --group`.
//!
//! The commands are thin over [`Admin`]'s group calls (which find each group's coordinator)
//! and `consume --group` over the [`Consumer`].
//!
//! # Format
//!
//! `group describe G --output json` prints `{"group", "state", "protocol", "assignor",
//! "group_epoch", "coordinator": {"id", "address"}, "members": [{"member_id", "client_id",
//! "member_epoch", "subscribed_topics", "subscribed_regex", "group_instance_id",
//! "assignment": [{"topic", "partition"}]}], "partitions": [{"topic",
//! "partition", "committed_offset", "high_watermark", "lag", "owner", "owner_client_id",
//! "commit_timestamp"}]}`; `owner` is the owning member's id or `null`, and a partition
//! owned without a commit has `null` offsets. `group list --output json` prints
//! `[{"group", "state", "members", "coordinator"}]` (`members` a count there).

use anyhow::Context;
use anyhow::bail;
use clap::Args;
use clap::Subcommand;
use rafka_client::Admin;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::OffsetReset;
use rafka_client::SeekTo;
use serde_json::json;

use super::consume::ConsumeArgs;
use super::consume::StartArg;
use super::consume::consume_loop;
use super::consume::partitions;
use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::print_json;
use super::output::print_table;
use super::topic::plural;

/// `rafka group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// Members and, per partition, committed offset, high watermark, lag and owner.
    Describe {
        /// The group.
        group: String,
    },
    /// Move a group's committed offsets (only while it has no members).
    ResetOffsets(ResetArgs),
    /// Delete a group and its offsets (only while it has no members).
    Delete {
        /// The group.
        group: String,
    },
}

/// `rafka group reset-offsets`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(false)))]
pub struct ResetArgs {
    /// The group.
    group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    topic: String,
    /// Only these partitions (repeat; default: all of the topic's).
    #[arg(long = "partition")]
    partitions: Vec<u32>,
    /// To the log start of each partition.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the high watermark of each partition.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To this offset in every partition.
    #[arg(long, group = "to", value_name = "N")]
    to_offset: Option<i64>,
    /// To the first offset with a timestamp at or after MS.
    #[arg(long, group = "to", value_name = "MS")]
    to_timestamp: Option<i64>,
    /// Show the offsets it would set without setting them.
    #[arg(long)]
    dry_run: bool,
}

/// Runs a `group` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: GroupCommand) -> anyhow::Result<i32> {
    let admin = Admin::new(connect(bootstrap).await?);
    match cmd {
        GroupCommand::List => list(&admin, out).await?,
        GroupCommand::Describe { group } => describe(&admin, out, &group).await?,
        GroupCommand::ResetOffsets(a) => reset(&admin, out, a).await?,
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await.with_context(|| format!("deleting group {group}"))?;
            match out {
                Output::Text => println!("deleted group {group}"),
                Output::Json => print_json(&json!({ "deleted": group })),
            }
        }
    }
    Ok(0)
}

async fn list(admin: &Admin, out: Output) -> anyhow::Result<()> {
    let mut list = admin.list_groups().await.context("listing groups")?;
    list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    match out {
        Output::Text => {
            for g in &list {
                println!("{}\t{}\t{}", g.group_id, g.state, plural(g.members as usize, "member"));
            }
        }
        Output::Json => print_json(&serde_json::Value::Array(
            list.iter()
                .map(|g| {
                    json!({
                        "group": g.group_id,
                        "state": g.state,
                        "members": g.members,
                        "coordinator": g.coordinator,
                    })
                })
                .collect(),
        )),
    }
    Ok(())
}

async fn describe(admin: &Admin, out: Output, group: &str) -> anyhow::Result<()> {
    let g = admin.describe_group(group).await.with_context(|| format!("group {group}"))?;
    let mut parts = g.partitions.clone();
    parts.sort_by(|x, y| (&x.topic, x.partition).cmp(&(&y.topic, y.partition)));
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    match out {
        Output::Text => {
            // Kafka's classic groups are marked; groups of the consumer protocol are not.
            let classic = if g.protocol == "classic" { ", classic" } else { "" };
            println!(
                "group {} ({}{classic}), {}, assignor {}",
                g.group_id,
                g.state,
                plural(g.members.len(), "member"),
                if g.assignor.is_empty() { "-" } else { &g.assignor }
            );
            for m in &g.members {
                let owned: Vec<String> =
                    m.assignment.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                println!(
                    "  member {} ({}) epoch {}: {}",
                    m.member_id,
                    if m.client_id.is_empty() { "-" } else { &m.client_id },
                    m.member_epoch,
                    if owned.is_empty() { "-".to_string() } else { owned.join(" ") }
                );
            }
            let table: Vec<Vec<String>> = parts
                .iter()
                .map(|p| {
                    vec![
                        p.topic.clone(),
                        p.partition.to_string(),
                        opt(p.committed_offset),
                        opt(p.high_watermark),
                        opt(p.lag),
                        p.owner.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print_table(
                &["TOPIC", "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG", "OWNER"],
                &table,
            );
        }
        Output::Json => print_json(&json!({
            "group": g.group_id,
            "state": g.state,
            "protocol": g.protocol,
            "assignor": g.assignor,
            "group_epoch": g.group_epoch,
            "coordinator": g.coordinator.as_ref().map(|(id, addr)| json!({
                "id": id, "address": addr,
            })),
            "members": g.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "member_epoch": m.member_epoch,
                "subscribed_topics": m.subscribed_topics,
                "subscribed_regex": m.subscribed_regex,
                "group_instance_id": m.group_instance_id,
                "assignment": m.assignment.iter().map(|(t, p)| json!({
                    "topic": t, "partition": p,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "partitions": parts.iter().map(|p| json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed_offset": p.committed_offset,
                "high_watermark": p.high_watermark,
                "lag": p.lag,
                "owner": p.owner,
                "owner_client_id": p.owner_client_id,
                "commit_timestamp": p.commit_timestamp,
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

async fn reset(admin: &Admin, out: Output, a: ResetArgs) -> anyhow::Result<()> {
    let to = match (a.to_earliest, a.to_latest, a.to_offset, a.to_timestamp) {
        (true, ..) => SeekTo::Beginning,
        (_, true, ..) => SeekTo::End,
        (_, _, Some(n), _) => SeekTo::Offset(n),
        (.., Some(ts)) => SeekTo::Timestamp(ts),
        _ => bail!("one of --to-earliest, --to-latest, --to-offset, --to-timestamp is required"),
    };
    let mut offsets =
        admin
            .reset_offsets(&a.group, &a.topic, &a.partitions, to, a.dry_run)
            .await
            .with_context(|| format!("resetting offsets of group {} on {}", a.group, a.topic))?;
    offsets.sort();
    match out {
        Output::Text => {
            let verb = if a.dry_run { "would set" } else { "set" };
            for (t, p, o) in &offsets {
                println!("{} {t}/{p}: {verb} offset {o}", a.group);
            }
        }
        Output::Json => print_json(&json!({
            "group": a.group,
            "dry_run": a.dry_run,
            "offsets": offsets.iter().map(|(t, p, o)| json!({
                "topic": t, "partition": p, "offset": o,
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

/// `rafka consume --group`: consumes as a group member. Every record printed is committed
/// right after it is printed (before the next poll), and the member leaves the group before
/// the command exits, also when it stops with an error.
pub async fn consume_in_group(
    bootstrap: &Target,
    out: Output,
    a: ConsumeArgs,
) -> anyhow::Result<i32> {
    let group = a.group.clone().unwrap_or_default();
    let reset = match a.offset {
        StartArg::Earliest => OffsetReset::Earliest,
        StartArg::Latest => OffsetReset::Latest,
        StartArg::Offset(_) => bail!(
            "with --group, --offset is earliest or latest (where the group has no commit); \
             move a group's offsets with `rafka group reset-offsets`"
        ),
    };
    let client = connect(bootstrap).await?;
    partitions(&client, &a.topic, None).await?;
    let config = ConsumerConfig {
        group: Some(group.clone()),
        auto_offset_reset: reset,
        auto_commit_interval: None,
        client_id: "rafka-cli".to_string(),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config)?;
    consumer
        .subscribe(&[a.topic.as_str()])
        .await
        .with_context(|| format!("joining group {group}"))?;
    let consumed = consume_loop(&mut consumer, out, &a, true).await;
    let left = consumer.close().await.with_context(|| format!("leaving group {group}"));
    consumed?;
    left?;
    Ok(0)
}
