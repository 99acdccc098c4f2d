//! `rafka bench protocols`: the same batches produced and the same log replayed over
//! rafka's gRPC API and over Kafka's protocol, against the same cluster in one run, so the
//! two protocols' costs compare as a ratio on the same machine state.
//!
//! Every batch is built once (`--batch-records` records of `--record-size` bytes,
//! uncompressed, no producer id) and sent once per protocol to its partition's leader, with
//! up to `--in-flight` requests outstanding in all: over gRPC one batch per request (HTTP/2
//! streams on the client's channels); over Kafka, as Kafka clients send them, one request
//! per leader holding the next batch of each partition it leads, pipelined on one
//! connection per leader (the broker admits them in order and replicates them together). The replay then reads every partition from offset 0 to the
//! end, one fetch of up to 4 MiB per partition at a time, all partitions at once: over gRPC
//! Fetch, and over Kafka Fetch v12. Latency is per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use bytes::BytesMut;
use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::StrBytes;
use rafka_client::Acks;
use rafka_client::Client;
use rafka_proto::batch;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::bench::Summary;
use super::bench::histogram;
use super::consume::partitions;
use super::output::Output;
use super::output::mb_per_sec;
use super::output::print_json;

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const FETCH_MAX_BYTES: i32 = 4 << 20;

/// `rafka bench protocols`
#[derive(Debug, Args)]
pub struct ProtocolsBench {
    /// The topic (must exist; both runs append to it).
    topic: String,
    /// Records to send per protocol.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    record_size: usize,
    /// Records per batch (one batch per request).
    #[arg(long, default_value_t = 16, value_name = "N")]
    batch_records: usize,
    /// Produce requests outstanding at once, in all.
    #[arg(long, default_value_t = 32, value_name = "N")]
    in_flight: usize,
}

/// A Kafka connection: requests written in order, answers matched to them in order.
#[derive(Clone)]
struct KafkaConn {
    send: mpsc::Sender<(Vec<u8>, oneshot::Sender<anyhow::Result<Bytes>>)>,
}

impl KafkaConn {
    async fn open(addr: &str) -> anyhow::Result<KafkaConn> {
        let sock =
            TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        sock.set_nodelay(true)?;
        let (mut read, mut write) = sock.into_split();
        let (send, mut requests) =
            mpsc::channel::<(Vec<u8>, oneshot::Sender<anyhow::Result<Bytes>>)>(1024);
        let (pending_tx, mut pending) = mpsc::unbounded_channel::<oneshot::Sender<_>>();
        tokio::spawn(async move {
            while let Some((frame, reply)) = requests.recv().await {
                if let Err(e) = write.write_all(&frame).await {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                if pending_tx.send(reply).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(reply) = pending.recv().await {
                let mut size = [0u8; 4];
                let r = async {
                    read.read_exact(&mut size).await?;
                    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
                    read.read_exact(&mut body).await?;
                    Ok(Bytes::from(body))
                }
                .await;
                let failed = r.is_err();
                let _ = reply.send(r);
                if failed {
                    return;
                }
            }
        });
        Ok(KafkaConn { send })
    }

    /// Sends `req` (of `key`, `version`) and decodes the answer as `Resp`.
    async fn call<Resp: Decodable>(
        &self,
        key: ApiKey,
        version: i16,
        req: &impl Encodable,
    ) -> anyhow::Result<Resp> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("rafka-bench")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header.encode(&mut buf, key.request_header_version(version))?;
        req.encode(&mut buf, version)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let (tx, rx) = oneshot::channel();
        self.send.send((buf.to_vec(), tx)).await.context("the Kafka connection closed")?;
        let mut body = rx.await.context("the Kafka connection closed")??;
        ResponseHeader::decode(&mut body, key.response_header_version(version))?;
        Resp::decode(&mut body, version)
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Which protocol a phase uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Kafka,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Kafka => "kafka",
        }
    }
}

/// The partitions' leaders: partition → address, and one Kafka connection per address.
struct Leaders {
    of: BTreeMap<u32, String>,
    kafka: BTreeMap<String, KafkaConn>,
}

async fn leaders(client: &Client, topic: &str, parts: &[u32]) -> anyhow::Result<Leaders> {
    let mut l = Leaders { of: BTreeMap::new(), kafka: BTreeMap::new() };
    for &p in parts {
        // A topic just created may not have elected its leaders yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match client.leader_for(topic, p).await {
                Ok((_, addr)) => break addr,
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    client.refresh_metadata().await.ok();
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !l.kafka.contains_key(&addr) {
            l.kafka.insert(addr.clone(), KafkaConn::open(&addr).await?);
        }
        l.of.insert(p, addr);
    }
    Ok(l)
}

/// A unit of produce work: one request's batches, as `(partition, batch)`.
type Request = Vec<(u32, Bytes)>;

/// The requests each protocol sends for `work`: over gRPC one batch per request; over
/// Kafka, as Kafka clients do, one request per leader carrying the next batch of each of
/// its partitions.
fn requests(leaders: &Leaders, work: &[(u32, Bytes)], protocol: Protocol) -> Vec<Request> {
    if protocol == Protocol::Grpc {
        return work.iter().map(|w| vec![w.clone()]).collect();
    }
    let mut queues: BTreeMap<&str, BTreeMap<u32, std::collections::VecDeque<Bytes>>> =
        BTreeMap::new();
    for (p, b) in work {
        queues
            .entry(leaders.of[p].as_str())
            .or_default()
            .entry(*p)
            .or_default()
            .push_back(b.clone());
    }
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for parts in queues.values_mut() {
            let req: Request =
                parts.iter_mut().filter_map(|(p, q)| q.pop_front().map(|b| (*p, b))).collect();
            if !req.is_empty() {
                any = true;
                out.push(req);
            }
        }
        if !any {
            return out;
        }
    }
}

/// Sends every batch once over `protocol`; returns the per-request latencies and time.
async fn produce(
    client: &Client,
    leaders: &Leaders,
    topic: &str,
    work: &[(u32, Bytes)],
    in_flight: usize,
    protocol: Protocol,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let mut hist = histogram();
    let requests = requests(leaders, work, protocol);
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for req in requests {
        while inflight.len() >= in_flight {
            let r: anyhow::Result<Duration> = inflight.next().await.expect("in flight");
            hist.saturating_record(r?.as_micros() as u64);
        }
        let kafka = leaders.kafka[&leaders.of[&req[0].0]].clone();
        inflight.push(async move {
            let t = Instant::now();
            match protocol {
                Protocol::Grpc => {
                    let (p, b) = &req[0];
                    client.produce_batch(topic, *p, b.clone(), Acks::All).await?;
                }
                Protocol::Kafka => {
                    let parts = req
                        .iter()
                        .map(|(p, b)| {
                            PartitionProduceData::default()
                                .with_index(*p as i32)
                                .with_records(Some(b.clone()))
                        })
                        .collect();
                    let req = ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(30_000)
                        .with_topic_data(vec![
                            TopicProduceData::default()
                                .with_name(topic_name(topic))
                                .with_partition_data(parts),
                        ]);
                    let resp: ProduceResponse =
                        kafka.call(ApiKey::Produce, PRODUCE_VERSION, &req).await?;
                    for p in resp.responses.iter().flat_map(|t| &t.partition_responses) {
                        if p.error_code != 0 {
                            bail!(
                                "Kafka produce to {topic}-{}: error code {}",
                                p.index,
                                p.error_code
                            );
                        }
                    }
                }
            }
            Ok(t.elapsed())
        });
    }
    while let Some(r) = inflight.next().await {
        hist.saturating_record(r?.as_micros() as u64);
    }
    Ok((hist, start.elapsed()))
}

/// Reads every partition from 0 to `ends` over `protocol`; returns records and bytes read
/// (values), per-request latencies and time.
async fn replay(
    client: &Client,
    leaders: &Leaders,
    topic: &str,
    ends: &BTreeMap<u32, i64>,
    protocol: Protocol,
) -> anyhow::Result<(u64, u64, Histogram<u64>, Duration)> {
    let hist = Arc::new(Mutex::new(histogram()));
    let start = Instant::now();
    let mut tasks = FuturesUnordered::new();
    for (&p, &end) in ends {
        let kafka = leaders.kafka[&leaders.of[&p]].clone();
        let hist = hist.clone();
        tasks.push(async move {
            let (mut offset, mut records, mut bytes) = (0i64, 0u64, 0u64);
            while offset < end {
                let t = Instant::now();
                let batches: Vec<Bytes> = match protocol {
                    Protocol::Grpc => client
                        .fetch(topic, p, offset, FETCH_MAX_BYTES as u32, Duration::ZERO)
                        .await?
                        .batches
                        .into_iter()
                        .map(|(_, b)| b)
                        .collect(),
                    Protocol::Kafka => {
                        let req = FetchRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_max_wait_ms(0)
                            .with_max_bytes(FETCH_MAX_BYTES)
                            .with_topics(vec![
                                FetchTopic::default()
                                    .with_topic(topic_name(topic))
                                    .with_partitions(vec![
                                        FetchPartition::default()
                                            .with_partition(p as i32)
                                            .with_fetch_offset(offset)
                                            .with_partition_max_bytes(FETCH_MAX_BYTES),
                                    ]),
                            ]);
                        let resp: FetchResponse =
                            kafka.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
                        let data = &resp.responses[0].partitions[0];
                        if data.error_code != 0 {
                            bail!("Kafka fetch of {topic}-{p}: error code {}", data.error_code);
                        }
                        split(data.records.clone().unwrap_or_default())?
                    }
                };
                hist.lock().await.saturating_record(t.elapsed().as_micros() as u64);
                if batches.is_empty() {
                    bail!("{topic}-{p}: nothing at offset {offset} below the end {end}");
                }
                for b in batches {
                    let h = batch::validate(&b, usize::MAX)?;
                    let n = batch::records(&b)?;
                    records += n.len() as u64;
                    bytes += n
                        .iter()
                        .map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64)
                        .sum::<u64>();
                    offset = h.base_offset + i64::from(h.last_offset_delta) + 1;
                }
            }
            anyhow::Ok((records, bytes))
        });
    }
    let (mut records, mut bytes) = (0, 0);
    while let Some(r) = tasks.next().await {
        let (n, b) = r?;
        records += n;
        bytes += b;
    }
    let elapsed = start.elapsed();
    let hist =
        Arc::try_unwrap(hist).map_err(|_| anyhow::anyhow!("histogram still shared"))?.into_inner();
    Ok((records, bytes, hist, elapsed))
}

/// The batches of a Kafka fetch's records block (a partial batch at the end is dropped, as
/// Kafka clients drop it).
fn split(mut records: Bytes) -> anyhow::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(len).context("negative batch length")?;
        if total > records.len() {
            break;
        }
        out.push(records.split_to(total));
    }
    Ok(out)
}

/// Runs the benchmark; returns the exit status.
pub async fn run(client: Client, out: Output, b: ProtocolsBench) -> anyhow::Result<i32> {
    if b.batch_records == 0 || b.in_flight == 0 || b.records == 0 {
        bail!("--records, --batch-records and --in-flight must be at least 1");
    }
    let parts = partitions(&client, &b.topic, None).await?;
    let leaders = leaders(&client, &b.topic, &parts).await?;
    let value = Bytes::from(vec![b'x'; b.record_size]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut work = Vec::new();
    let mut left = b.records;
    let mut i = 0usize;
    while left > 0 {
        let n = (b.batch_records as u64).min(left) as usize;
        let recs: Vec<NewRecord> = (0..n)
            .map(|_| NewRecord {
                key: None,
                value: Some(value.clone()),
                timestamp: now,
                headers: vec![],
            })
            .collect();
        work.push((parts[i % parts.len()], batch::build(&recs, None, Compression::None)));
        left -= n as u64;
        i += 1;
    }
    let mut summaries = Vec::new();
    for protocol in [Protocol::Grpc, Protocol::Kafka] {
        let (hist, elapsed) =
            produce(&client, &leaders, &b.topic, &work, b.in_flight, protocol).await?;
        summaries.push((
            "produce",
            protocol,
            b.records,
            b.records * b.record_size as u64,
            hist,
            elapsed,
        ));
    }
    let mut ends = BTreeMap::new();
    for &p in &parts {
        ends.insert(p, client.list_offset(&b.topic, p, rafka_client::OffsetSpec::Latest).await?);
    }
    for protocol in [Protocol::Grpc, Protocol::Kafka] {
        let (records, bytes, hist, elapsed) =
            replay(&client, &leaders, &b.topic, &ends, protocol).await?;
        summaries.push(("replay", protocol, records, bytes, hist, elapsed));
    }
    let rate = |bytes: u64, d: Duration| mb_per_sec(bytes, d);
    let ratio = |phase: &str| {
        let of = |p: Protocol| {
            summaries.iter().find(|s| s.0 == phase && s.1 == p).map_or(0.0, |s| rate(s.3, s.5))
        };
        of(Protocol::Kafka) / of(Protocol::Grpc).max(1e-9)
    };
    let params = json!({
        "record_size": b.record_size,
        "batch_records": b.batch_records,
        "in_flight": b.in_flight,
        "partitions": parts.len(),
    });
    let (produce_ratio, replay_ratio) = (ratio("produce"), ratio("replay"));
    match out {
        Output::Text => {
            for (phase, protocol, records, bytes, hist, elapsed) in summaries {
                Summary {
                    bench: if phase == "produce" { "produce" } else { "replay" },
                    topic: format!("{} over {}", b.topic, protocol.name()),
                    records,
                    bytes,
                    errors: 0,
                    elapsed,
                    latency: hist,
                    params: params.clone(),
                    lines: Vec::new(),
                    extra: Default::default(),
                }
                .print(out);
            }
            println!(
                "kafka / grpc throughput: produce {produce_ratio:.2}, replay {replay_ratio:.2}"
            );
        }
        Output::Json => print_json(&json!({
            "bench": "protocols",
            "topic": b.topic,
            "params": params,
            "kafka_over_grpc": {"produce": produce_ratio, "replay": replay_ratio},
            "runs": summaries.iter().map(|(phase, protocol, records, bytes, hist, elapsed)| json!({
                "phase": phase,
                "protocol": protocol.name(),
                "records": records,
                "bytes": bytes,
                "seconds": elapsed.as_secs_f64(),
                "mb_per_sec": rate(*bytes, *elapsed),
                "latency_us": {"p50": hist.value_at_quantile(0.5), "p99": hist.value_at_quantile(0.99)},
            })).collect::<Vec<_>>(),
        })),
    }
    Ok(0)
}
