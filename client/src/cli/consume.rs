//! `rafka consume TOPIC`: print records, from an offset, a timestamp, or a group's commits.
//!
//! # Format
//!
//! `--format FMT` prints one line per record; placeholders `%t` topic, `%p` partition, `%o`
//! offset, `%k` key (empty when absent), `%v` value, `%T` timestamp (ms since the Unix epoch),
//! `%%` a percent sign; `\n` and `\t` are a newline and a tab. The default is `%v`.
//! `--output json` prints one object per line instead: `{"topic", "partition", "offset",
//! "timestamp", "key", "value"}` (`key` `null` when absent; key and value as UTF-8, invalid
//! bytes replaced).
//!
//! It exits after `--max-messages` records, or once `--timeout-ms` passes without a new
//! record; without either it runs until interrupted. Without `--group` each partition
//! starts at `--offset` (`earliest` by default) or `--from-timestamp`. With `--group` the
//! group's committed offsets decide where to start (`--offset earliest|latest` when there
//! are none), every record printed is committed, and the member leaves the group before the
//! command exits.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use clap::Args;
use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::ConsumerRecord;
use rafka_client::SeekTo;
use tokio::time::Instant;

use super::output::Output;
use super::output::Target;
use super::output::connect;

/// Bytes asked for per fetch.
const FETCH_MAX_BYTES: u32 = 1 << 20;

/// `rafka consume`
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    pub topic: String,
    /// Consume as a member of this group: start from its commits, commit what is printed.
    #[arg(long)]
    pub group: Option<String>,
    /// Read only this partition (not with --group).
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Where to start: `earliest`, `latest` or an offset (with --group: only where the group
    /// has no commit, and only earliest|latest).
    #[arg(long, default_value = "earliest")]
    pub offset: StartArg,
    /// Start at the first record with a timestamp at or after MS (ms since the Unix epoch).
    #[arg(long, value_name = "MS", conflicts_with_all = ["group"])]
    pub from_timestamp: Option<i64>,
    /// Exit after printing N records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit once MS pass without a new record.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Line format; placeholders %t %p %o %k %v %T.
    #[arg(long, default_value = "%v", value_name = "FMT")]
    pub format: String,
}

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartArg {
    /// The log start.
    Earliest,
    /// The high watermark: only new records.
    Latest,
    /// An exact offset.
    Offset(i64),
}

impl std::str::FromStr for StartArg {
    type Err = String;

    fn from_str(s: &str) -> Result<StartArg, String> {
        match s {
            "earliest" | "beginning" => Ok(StartArg::Earliest),
            "latest" | "end" => Ok(StartArg::Latest),
            n => match n.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(StartArg::Offset(n)),
                _ => Err(format!("expected earliest, latest or an offset >= 0, got {s:?}")),
            },
        }
    }
}

/// Runs `consume`; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, a: ConsumeArgs) -> anyhow::Result<i32> {
    if a.max_messages == Some(0) {
        return Ok(0);
    }
    if a.group.is_some() {
        return super::group::consume_in_group(bootstrap, out, a).await;
    }
    let client = connect(bootstrap).await?;
    let partitions = partitions(&client, &a.topic, a.partition).await?;
    let config = ConsumerConfig {
        fetch_max_bytes: FETCH_MAX_BYTES,
        client_id: "rafka-cli".to_string(),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config)?;
    let assignment: Vec<(String, u32)> = partitions.iter().map(|p| (a.topic.clone(), *p)).collect();
    consumer.assign(&assignment)?;
    let to = match (a.from_timestamp, a.offset) {
        (Some(ts), _) => SeekTo::Timestamp(ts),
        (None, StartArg::Earliest) => SeekTo::Beginning,
        (None, StartArg::Latest) => SeekTo::End,
        (None, StartArg::Offset(n)) => SeekTo::Offset(n),
    };
    for p in partitions {
        consumer
            .seek(&a.topic, p, to)
            .await
            .with_context(|| format!("finding the start offset of {}/{p}", a.topic))?;
    }
    let consumed = consume_loop(&mut consumer, out, &a, false).await;
    consumer.close().await?;
    consumed.map(|()| 0)
}

/// Polls and prints until `--max-messages`, `--timeout-ms` without records, or stdout
/// closing. With `commit`, the offsets after the records printed from each poll are
/// committed before the next poll, so a rebalance cannot hand them to another member
/// uncommitted.
pub async fn consume_loop(
    consumer: &mut Consumer,
    out: Output,
    a: &ConsumeArgs,
    commit: bool,
) -> anyhow::Result<()> {
    let idle = a.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut count = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        let wait = match idle {
            Some(idle) => match (last_record + idle).checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(()),
            },
            None => Duration::from_secs(1),
        };
        let records = consumer.poll(wait).await.context("polling")?;
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let mut next: BTreeMap<(String, u32), i64> = BTreeMap::new();
        let mut done = false;
        for r in records {
            if !print_record(&mut stdout, out, &a.format, &r)? {
                done = true;
                break;
            }
            next.insert((r.topic, r.partition), r.offset + 1);
            count += 1;
            if a.max_messages.is_some_and(|m| count >= m) {
                done = true;
                break;
            }
        }
        if commit {
            let owned = consumer.assignment();
            let offsets: Vec<(String, u32, i64)> = next
                .into_iter()
                .filter(|(tp, _)| owned.contains(tp))
                .map(|((t, p), o)| (t, p, o))
                .collect();
            if !offsets.is_empty() {
                consumer.commit_offsets(&offsets).await.context("committing printed offsets")?;
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// The partitions to read: `only` (checked to exist) or all of `topic`'s.
pub async fn partitions(
    client: &Client,
    topic: &str,
    only: Option<u32>,
) -> anyhow::Result<Vec<u32>> {
    let mut md = client.metadata().await?;
    if md.topic(topic).is_none() {
        md = client.refresh_metadata().await?;
    }
    let Some(t) = md.topic(topic) else {
        bail!("topic {topic} does not exist (UNKNOWN_TOPIC)");
    };
    let mut all: Vec<u32> = t.partitions.iter().map(|p| p.partition).collect();
    all.sort_unstable();
    match only {
        Some(p) if all.contains(&p) => Ok(vec![p]),
        Some(p) => bail!("topic {topic} has no partition {p} ({} partitions)", all.len()),
        None => Ok(all),
    }
}

/// Prints one record as `out` and `fmt` say; `false` when stdout is closed.
pub fn print_record(
    w: &mut impl std::io::Write,
    out: Output,
    fmt: &str,
    r: &ConsumerRecord,
) -> anyhow::Result<bool> {
    let line = match out {
        Output::Text => format_record(fmt, r),
        Output::Json => {
            let mut doc = serde_json::json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k)),
                "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v)),
            });
            // Headers as `[name, value]` pairs in order (names may repeat; null values
            // stay null); left out when there are none.
            if !r.headers.is_empty() {
                doc["headers"] = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        serde_json::json!([k, v.as_ref().map(|v| String::from_utf8_lossy(v))])
                    })
                    .collect();
            }
            doc.to_string()
        }
    };
    match writeln!(w, "{line}").and_then(|()| w.flush()) {
        Ok(()) => Ok(true),
        // The reader went away (`| head`): stop like --max-messages would.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// `fmt` with the placeholders of `r` filled in.
pub fn format_record(fmt: &str, r: &ConsumerRecord) -> String {
    let mut s = String::with_capacity(fmt.len() + r.value.as_ref().map_or(0, |v| v.len()));
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => s.push_str(&r.topic),
                Some('p') => s.push_str(&r.partition.to_string()),
                Some('o') => s.push_str(&r.offset.to_string()),
                Some('k') => s.push_str(&String::from_utf8_lossy(r.key.as_deref().unwrap_or(b""))),
                Some('v') => {
                    s.push_str(&String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")))
                }
                Some('T') => s.push_str(&r.timestamp.to_string()),
                Some('%') => s.push('%'),
                Some(other) => {
                    s.push('%');
                    s.push(other);
                }
                None => s.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('\\') => s.push('\\'),
                Some(other) => {
                    s.push('\\');
                    s.push(other);
                }
                None => s.push('\\'),
            },
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn formats_every_placeholder() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            timestamp: 1000,
            key: Some(Bytes::from("k")),
            value: Some(Bytes::from("v")),
            headers: Vec::new(),
        };
        assert_eq!(format_record("%t %p %o %k %v %T 100%%", &r), "t 2 7 k v 1000 100%");
        assert_eq!(format_record("%k\\t%v", &r), "k\tv");
        let keyless = ConsumerRecord { key: None, ..r };
        assert_eq!(format_record("[%k]", &keyless), "[]");
    }

    #[test]
    fn parses_start_offsets() {
        assert_eq!("earliest".parse(), Ok(StartArg::Earliest));
        assert_eq!("latest".parse(), Ok(StartArg::Latest));
        assert_eq!("42".parse(), Ok(StartArg::Offset(42)));
        assert!("-1".parse::<StartArg>().is_err());
    }
}
