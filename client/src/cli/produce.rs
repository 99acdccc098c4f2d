//! `rafka produce TOPIC`: one record per line of stdin.
//!
//! # Format
//!
//! With `--key-separator SEP` the part of a line before the first `SEP` is the key and the
//! rest the value (a line without `SEP` has no key). Nothing is printed unless
//! `--print-offsets`; then stdout gets exactly one line per input line, in input order:
//! `PARTITION OFFSET` for a record written (offset `-1` with `--acks none`), or
//! `error CODE` (for example `error UNKNOWN_TOPIC`) for one that was not, and the exit status
//! is then 1. Retriable failures (a leader moving, a broker dying) are retried until
//! `--delivery-timeout-ms`, as Kafka's producer does; with `--acks all` the producer is
//! idempotent, so a retry never writes a record twice.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use clap::ValueEnum;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rafka_client::Acks;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_client::RecordMetadata;
use rafka_client::producer::Compression;
use tokio::io::AsyncBufReadExt;
use tokio::io::BufReader;

use super::output::Output;
use super::output::Target;
use super::output::client_config;
use super::output::code_name;
use super::output::connect_with;
use super::output::print_json;

/// Records sent and not yet reported; reading stdin pauses beyond this.
const MAX_PENDING: usize = 10_000;

/// Acknowledgement level on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Written once a quorum of replicas has it (idempotent producer).
    All,
    /// Fire and forget: no acknowledgement, no offsets.
    None,
}

impl AcksArg {
    /// The wire value.
    pub fn acks(self) -> Acks {
        match self {
            AcksArg::All => Acks::All,
            AcksArg::None => Acks::None,
        }
    }
}

/// Batch compression on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// No compression.
    None,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
}

impl CompressionArg {
    /// The wire value.
    pub fn compression(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
        }
    }
}

/// `rafka produce`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash, sticky without a key).
    #[arg(long)]
    partition: Option<u32>,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Print `PARTITION OFFSET` (or `error CODE`) for every input line, in input order.
    #[arg(long)]
    print_offsets: bool,
    /// Give up on a record after retrying retriable failures this long.
    #[arg(long, default_value_t = 120_000, value_name = "MS")]
    delivery_timeout_ms: u64,
    /// Wait up to this long for more records before sending a batch.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    linger_ms: u64,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
}

type Send = Pin<Box<dyn Future<Output = rafka_client::Result<RecordMetadata>> + std::marker::Send>>;

/// Runs `produce`; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, a: ProduceArgs) -> anyhow::Result<i32> {
    if a.key_separator.as_deref() == Some("") {
        anyhow::bail!("--key-separator must not be empty");
    }
    let delivery_timeout = Duration::from_millis(a.delivery_timeout_ms.max(1));
    let client = match connect_with(client_config(bootstrap, Some(delivery_timeout))?).await {
        Ok(c) => c,
        Err(e) if a.print_offsets => {
            // Still one line per input line: none of them was written.
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while lines.next_line().await?.is_some() {
                match out {
                    Output::Text => println!("error BROKER_NOT_AVAILABLE"),
                    Output::Json => print_json(&serde_json::json!({
                        "error": "BROKER_NOT_AVAILABLE", "message": format!("{e:#}"),
                    })),
                }
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let config = ProducerConfig {
        acks: a.acks.acks(),
        idempotence: a.acks == AcksArg::All,
        linger: Duration::from_millis(a.linger_ms),
        compression: a.compression.compression(),
        delivery_timeout,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config)?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: FuturesOrdered<Send> = FuturesOrdered::new();
    let mut eof = false;
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            biased;
            Some(r) = pending.next(), if !pending.is_empty() => tally.report(&a, out, r),
            line = lines.next_line(), if !eof && pending.len() < MAX_PENDING => {
                let Some(line) = line? else {
                    eof = true;
                    continue;
                };
                let (key, value) = split(&line, a.key_separator.as_deref());
                let record = ProducerRecord {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    key,
                    value: Some(value),
                    ..ProducerRecord::default()
                };
                // Queued in input order; the deliveries are awaited in that order too.
                match producer.send(record).await {
                    Ok(delivery) => pending.push_back(Box::pin(delivery)),
                    Err(e) => pending.push_back(Box::pin(std::future::ready(Err(e)))),
                }
            }
            else => break,
        }
    }
    if tally.failed > 0 {
        if !a.print_offsets {
            eprintln!(
                "rafka: error: {} of {} records not written to {}; first failure: {}",
                tally.failed,
                tally.written + tally.failed,
                a.topic,
                tally.first_error.unwrap_or_default()
            );
        }
        return Ok(1);
    }
    Ok(0)
}

/// What happened to the records so far.
#[derive(Default)]
struct Tally {
    written: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Counts one record's outcome and prints it when `--print-offsets` asks for that.
    fn report(&mut self, a: &ProduceArgs, out: Output, r: rafka_client::Result<RecordMetadata>) {
        match r {
            Ok(md) => {
                self.written += 1;
                if a.print_offsets {
                    match out {
                        Output::Text => println!("{} {}", md.partition, md.offset),
                        Output::Json => print_json(&serde_json::json!({
                            "partition": md.partition, "offset": md.offset,
                        })),
                    }
                }
            }
            Err(e) => {
                self.failed += 1;
                if a.print_offsets {
                    match out {
                        Output::Text => println!("error {}", code_name(&e)),
                        Output::Json => print_json(&serde_json::json!({
                            "error": code_name(&e), "message": e.to_string(),
                        })),
                    }
                }
                self.first_error.get_or_insert_with(|| format!("{}: {e}", code_name(&e)));
            }
        }
    }
}

/// Splits `line` into key and value at the first `sep`.
fn split(line: &str, sep: Option<&str>) -> (Option<Bytes>, Bytes) {
    match sep.and_then(|s| line.split_once(s)) {
        Some((k, v)) => {
            (Some(Bytes::copy_from_slice(k.as_bytes())), Bytes::copy_from_slice(v.as_bytes()))
        }
        None => (None, Bytes::copy_from_slice(line.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_separator() {
        assert_eq!(split("a:b:c", Some(":")), (Some(Bytes::from("a")), Bytes::from("b:c")));
        assert_eq!(split("abc", Some(":")), (None, Bytes::from("abc")));
        assert_eq!(split("a:b", None), (None, Bytes::from("a:b")));
        assert_eq!(split(":v", Some(":")), (Some(Bytes::new()), Bytes::from("v")));
    }
}
