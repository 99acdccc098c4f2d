//! [`TestClient`]: a small routing client over the public gRPC contract.
//!
//! Partition requests go to the partition's leader, found with `Metadata` and cached; a
//! `NOT_LEADER` answer moves the cache to the leader it names (`Error.leader.address`).
//! Retriable error codes ([`ErrorCode::is_retriable`]) and transport failures are retried
//! with backoff until the client's deadline; a success or a fatal code is returned to the
//! caller, who asserts on it. The `must_*` methods panic unless the answer is a success.
//!
//! Retrying a produce whose outcome is unknown (timeout, connection lost) can write it twice
//! unless the batch is idempotent; tests that count records use [`crate::records::Sequencer`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::CreateTopicRequest;
use rafka_proto::v1::CreateTopicResponse;
use rafka_proto::v1::DescribeClusterRequest;
use rafka_proto::v1::DescribeClusterResponse;
use rafka_proto::v1::DescribeTopicRequest;
use rafka_proto::v1::DescribeTopicResponse;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::FetchResponse;
use rafka_proto::v1::FetchedBatch;
use rafka_proto::v1::InitProducerRequest;
use rafka_proto::v1::InitProducerResponse;
use rafka_proto::v1::ListOffsetsRequest;
use rafka_proto::v1::ListOffsetsResponse;
use rafka_proto::v1::ListTopicsRequest;
use rafka_proto::v1::ListTopicsResponse;
use rafka_proto::v1::MetadataRequest;
use rafka_proto::v1::MetadataResponse;
use rafka_proto::v1::OffsetSpec;
use rafka_proto::v1::ProduceRequest;
use rafka_proto::v1::ProduceResponse;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::data_client::DataClient;
use rafka_proto::v1::offset_spec::Spec;
use tonic::Code;
use tonic::Status;
use tonic::transport::Channel;

use crate::broker::MAX_GRPC_MESSAGE;
use crate::broker::channel_with;
use crate::records::FetchedRecord;
use crate::records::decode_batch;
use crate::wait::Backoff;

/// Default bound on one routed operation, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on one attempt (one RPC to one broker).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::response::HasError;
pub use crate::response::code_of;

/// Transport outcomes worth retrying: the broker may be down, restarting or slow. A status
/// a broker chose to send about the request itself (invalid argument, unimplemented, ...)
/// is not.
pub fn is_retriable_status(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
    ) || s.code() == Code::Internal && s.message().contains("h2")
}

/// A routing client over every broker of a cluster. Cheap to clone; clones share the
/// connection and leader caches.
#[derive(Debug, Clone)]
pub struct TestClient {
    inner: Arc<Inner>,
    timeout: Duration,
    attempt_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    bootstrap: Vec<String>,
    next_bootstrap: AtomicUsize,
    channels: Mutex<HashMap<String, Channel>>,
    leaders: Mutex<HashMap<(String, u32), String>>,
    /// TLS to the brokers (`None`: plaintext).
    tls: Option<rafka_client::ClientTls>,
}

/// What one attempt produced, for the retry loops.
enum Outcome<T> {
    /// A success or a fatal code: hand it to the caller.
    Done(T),
    /// Try again after a pause; the string says why. `stale` when the broker asked may not
    /// be the leader any more (it said so without a hint, or could not be reached).
    Retry { why: String, stale: bool },
    /// The answer named the leader: try it at once.
    Redirect(String, String),
}

impl TestClient {
    /// A client that bootstraps from `addrs` (usually every broker).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> TestClient {
        TestClient::with_tls(addrs, None)
    }

    /// [`TestClient::new`] over TLS (a client certificate in `tls` authenticates it too).
    pub fn with_tls(
        addrs: impl IntoIterator<Item = SocketAddr>,
        tls: Option<rafka_client::ClientTls>,
    ) -> TestClient {
        let bootstrap: Vec<String> = addrs.into_iter().map(|a| a.to_string()).collect();
        assert!(!bootstrap.is_empty(), "a client needs at least one broker address");
        TestClient {
            inner: Arc::new(Inner {
                bootstrap,
                next_bootstrap: AtomicUsize::new(0),
                channels: Mutex::default(),
                leaders: Mutex::default(),
                tls,
            }),
            timeout: DEFAULT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    /// The same client with another bound on each operation (retries included).
    pub fn with_timeout(mut self, timeout: Duration) -> TestClient {
        self.timeout = timeout;
        self
    }

    /// The same client with another bound on each single RPC.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> TestClient {
        self.attempt_timeout = timeout;
        self
    }

    /// A `Data` client for the broker at `addr` (`host:port`), over a cached channel.
    pub fn data_at(&self, addr: &str) -> anyhow::Result<DataClient<Channel>> {
        Ok(DataClient::new(self.channel(addr)?).max_decoding_message_size(MAX_GRPC_MESSAGE))
    }

    /// An `Admin` client for the broker at `addr`, over a cached channel.
    pub fn admin_at(&self, addr: &str) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(addr)?).max_decoding_message_size(MAX_GRPC_MESSAGE))
    }

    fn channel(&self, addr: &str) -> anyhow::Result<Channel> {
        let mut channels = self.inner.channels.lock().unwrap();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = channel_with(addr, self.inner.tls.as_ref())?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Drops the cached channel to `addr`, so the next call connects afresh.
    fn forget_channel(&self, addr: &str) {
        self.inner.channels.lock().unwrap().remove(addr);
    }

    fn forget_leader(&self, topic: &str, partition: u32) {
        self.inner.leaders.lock().unwrap().remove(&(topic.to_string(), partition));
    }

    fn set_leader(&self, topic: &str, partition: u32, addr: &str) {
        self.inner.leaders.lock().unwrap().insert((topic.to_string(), partition), addr.to_string());
    }

    /// Bootstrap addresses in turn, so that retries spread over the brokers.
    fn any_addr(&self) -> String {
        let i = self.inner.next_bootstrap.fetch_add(1, Ordering::Relaxed);
        self.inner.bootstrap[i % self.inner.bootstrap.len()].clone()
    }

    /// Runs one RPC future within the attempt timeout and the operation deadline.
    async fn attempt<T>(
        &self,
        deadline: Instant,
        extra: Duration,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = (self.attempt_timeout + extra).min(left.max(Duration::from_millis(1)));
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!("no answer within {limit:?}"))),
        }
    }

    /// Classifies the answer of one attempt at `addr`.
    fn judge<T: HasError>(&self, addr: &str, r: Result<T, Status>) -> anyhow::Result<Outcome<T>> {
        match r {
            Err(s) if is_retriable_status(&s) => {
                self.forget_channel(addr);
                Ok(Outcome::Retry { why: format!("{addr}: transport: {s}"), stale: true })
            }
            Err(s) => bail!("{addr} answered with gRPC status {s}"),
            Ok(resp) => {
                let e = resp.error();
                let code = e.error_code();
                let why = format!("{addr}: {code:?}: {}", e.message);
                match (code, e.leader) {
                    (ErrorCode::NotLeader, Some(l))
                        if !l.address.is_empty() && l.address != addr =>
                    {
                        Ok(Outcome::Redirect(l.address, why))
                    }
                    (c, _) if c.is_retriable() => {
                        Ok(Outcome::Retry { why, stale: c == ErrorCode::NotLeader })
                    }
                    _ => Ok(Outcome::Done(resp)),
                }
            }
        }
    }

    /// Sends a partition request to the partition's leader until it is answered with success
    /// or a fatal code. `extra` lengthens each attempt (a fetch's long poll).
    async fn routed<T, F, Fut>(
        &self,
        what: &str,
        topic: &str,
        partition: u32,
        extra: Duration,
        mut call: F,
    ) -> anyhow::Result<T>
    where
        T: HasError,
        F: FnMut(DataClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut backoff = Backoff::new();
        let mut last = String::from("no attempt made");
        let mut redirects = 0;
        loop {
            if Instant::now() >= deadline {
                bail!("{what}: gave up after {:?}; last: {last}", start.elapsed());
            }
            let addr = match self.leader_addr(topic, partition).await {
                Ok(a) => a,
                Err(e) => {
                    last = format!("{e:#}");
                    backoff.pause(deadline).await;
                    continue;
                }
            };
            let r = self.attempt(deadline, extra, call(self.data_at(&addr)?)).await;
            match self.judge(&addr, r).with_context(|| what.to_string())? {
                Outcome::Done(resp) => return Ok(resp),
                Outcome::Redirect(leader, why) => {
                    last = why;
                    self.set_leader(topic, partition, &leader);
                    redirects += 1;
                    if redirects > 3 {
                        // Brokers pointing at each other: let the election settle.
                        backoff.pause(deadline).await;
                    }
                }
                Outcome::Retry { why, stale } => {
                    last = why;
                    if stale {
                        self.forget_leader(topic, partition);
                    }
                    backoff.pause(deadline).await;
                }
            }
        }
    }

    /// Sends a request any broker can answer, moving to the next broker on failure, until
    /// it is answered with success or a fatal code. Also says whether an earlier attempt
    /// ended with its effect unknown (a timeout), which may explain a later "already exists".
    async fn any_broker<T, F, Fut>(&self, what: &str, mut call: F) -> anyhow::Result<(T, bool)>
    where
        T: HasError,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut backoff = Backoff::new();
        let mut last = String::from("no attempt made");
        let mut uncertain = false;
        loop {
            if Instant::now() >= deadline {
                bail!("{what}: gave up after {:?}; last: {last}", start.elapsed());
            }
            let addr = self.any_addr();
            let r = self.attempt(deadline, Duration::ZERO, call(addr.clone())).await;
            uncertain |= match &r {
                Err(s) => s.code() == Code::DeadlineExceeded,
                Ok(resp) => code_of(resp) == ErrorCode::RequestTimedOut,
            };
            match self.judge(&addr, r).with_context(|| what.to_string())? {
                Outcome::Done(resp) => return Ok((resp, uncertain)),
                Outcome::Redirect(_, why) | Outcome::Retry { why, .. } => {
                    last = why;
                    backoff.pause(deadline).await;
                }
            }
        }
    }

    /// The address of the leader of `topic`/`partition`: cached, or from `Metadata`. A topic
    /// or partition the metadata does not know gives any broker (its answer decides).
    async fn leader_addr(&self, topic: &str, partition: u32) -> anyhow::Result<String> {
        let key = (topic.to_string(), partition);
        if let Some(a) = self.inner.leaders.lock().unwrap().get(&key) {
            return Ok(a.clone());
        }
        let (md, _) = self
            .any_broker("metadata", |addr| {
                let req = MetadataRequest { topics: vec![topic.to_string()] };
                let client = self.admin_at(&addr);
                async move {
                    client.map_err(|e| Status::unavailable(e.to_string()))?.metadata(req).await
                }
            })
            .await?;
        let Some(t) = md.topics.iter().find(|t| t.name == topic) else {
            return Ok(self.any_addr());
        };
        let Some(p) = t.partitions.iter().find(|p| p.partition == partition) else {
            return Ok(self.any_addr());
        };
        let Some(leader) = p.leader else {
            bail!("metadata: {topic}/{partition} has no leader (replicas {:?})", p.replicas);
        };
        let Some(b) = md.brokers.iter().find(|b| b.broker_id == leader) else {
            bail!("metadata: leader {leader} of {topic}/{partition} is not among the brokers");
        };
        self.set_leader(topic, partition, &b.address);
        Ok(b.address.clone())
    }

    /// `Metadata` for `topics` (empty: all), from any broker.
    pub async fn metadata(&self, topics: &[&str]) -> anyhow::Result<MetadataResponse> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let (md, _) = self
            .any_broker("metadata", |addr| {
                let req = MetadataRequest { topics: topics.clone() };
                let client = self.admin_at(&addr);
                async move {
                    client.map_err(|e| Status::unavailable(e.to_string()))?.metadata(req).await
                }
            })
            .await?;
        Ok(md)
    }

    /// The current leader of a partition per fresh `Metadata`: `(broker id, address)`.
    pub async fn leader(&self, topic: &str, partition: u32) -> anyhow::Result<(u64, String)> {
        let md = self.metadata(&[topic]).await?;
        let t = md.topics.iter().find(|t| t.name == topic).context("topic not in metadata")?;
        if !t.error().is_ok() {
            bail!("metadata for {topic}: {:?}", t.error().error_code());
        }
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .with_context(|| format!("no partition {partition} in the metadata of {topic}"))?;
        let id = p.leader.with_context(|| format!("{topic}/{partition} has no leader"))?;
        let b =
            md.brokers.iter().find(|b| b.broker_id == id).with_context(|| {
                format!("leader {id} of {topic}/{partition} is not a known broker")
            })?;
        Ok((id, b.address.clone()))
    }

    /// Waits until `Metadata` shows a leader satisfying `ok` for `topic`/`partition`.
    pub async fn wait_for_leader(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
        ok: impl Fn(u64) -> bool,
    ) -> anyhow::Result<(u64, String)> {
        crate::poll(&format!("a suitable leader of {topic}/{partition}"), timeout, || async {
            let (id, addr) = self.leader(topic, partition).await?;
            if ok(id) { Ok((id, addr)) } else { Err(anyhow::anyhow!("leader is broker {id}")) }
        })
        .await
    }

    /// `CreateTopic` at any broker, retried on retriable outcomes; returns the answer.
    pub async fn create_topic(
        &self,
        req: CreateTopicRequest,
    ) -> anyhow::Result<CreateTopicResponse> {
        Ok(self.create_topic_inner(req).await?.0)
    }

    async fn create_topic_inner(
        &self,
        req: CreateTopicRequest,
    ) -> anyhow::Result<(CreateTopicResponse, bool)> {
        let what = format!("create topic {:?}", req.name);
        self.any_broker(&what, |addr| {
            let req = req.clone();
            let client = self.admin_at(&addr);
            async move {
                client.map_err(|e| Status::unavailable(e.to_string()))?.create_topic(req).await
            }
        })
        .await
    }

    /// Creates a topic (replication factor 0 = the cluster default) and waits until every
    /// partition has a leader.
    pub async fn must_create_topic(&self, name: &str, partitions: u32, replication_factor: u32) {
        self.must_create_topic_with(name, partitions, replication_factor, &[]).await;
    }

    /// [`TestClient::must_create_topic`] with topic configs.
    pub async fn must_create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: &[(&str, &str)],
    ) {
        let req = CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let (resp, uncertain) =
            self.create_topic_inner(req).await.unwrap_or_else(|e| panic!("{e:#}"));
        let code = code_of(&resp);
        // After a timed-out attempt, "already exists" is our own earlier attempt.
        let created = code == ErrorCode::None || uncertain && code == ErrorCode::TopicAlreadyExists;
        assert!(created, "create topic {name}: {code:?}: {}", resp.error().message);
        self.wait_for_leaders(name, partitions, self.timeout)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Waits until `Metadata` shows `partitions` partitions of `topic`, each with a leader
    /// that is a known broker.
    pub async fn wait_for_leaders(
        &self,
        topic: &str,
        partitions: u32,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        crate::poll(
            &format!("leaders for all {partitions} partitions of {topic}"),
            timeout,
            || async {
                let md = self.metadata(&[topic]).await?;
                let t =
                    md.topics.iter().find(|t| t.name == topic).context("topic not in metadata")?;
                if !t.error().is_ok() {
                    bail!("{:?}: {}", t.error().error_code(), t.error().message);
                }
                for p in 0..partitions {
                    let info = t.partitions.iter().find(|i| i.partition == p);
                    let leader = info.and_then(|i| i.leader);
                    if !leader.is_some_and(|l| md.brokers.iter().any(|b| b.broker_id == l)) {
                        bail!("partition {p}: leader {leader:?}");
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// `ListTopics` at any broker.
    pub async fn list_topics(&self, include_internal: bool) -> anyhow::Result<ListTopicsResponse> {
        let (r, _) = self
            .any_broker("list topics", |addr| {
                let client = self.admin_at(&addr);
                let req = ListTopicsRequest { include_internal };
                async move {
                    client.map_err(|e| Status::unavailable(e.to_string()))?.list_topics(req).await
                }
            })
            .await?;
        Ok(r)
    }

    /// `CreatePartitions` at any broker, retried on retriable outcomes; returns the answer.
    pub async fn create_partitions(
        &self,
        name: &str,
        total_count: u32,
    ) -> anyhow::Result<rafka_proto::v1::CreatePartitionsResponse> {
        let (r, _) = self
            .any_broker("create partitions", |addr| {
                let client = self.admin_at(&addr);
                let req = rafka_proto::v1::CreatePartitionsRequest {
                    name: name.to_string(),
                    total_count,
                };
                async move {
                    client
                        .map_err(|e| Status::unavailable(e.to_string()))?
                        .create_partitions(req)
                        .await
                }
            })
            .await?;
        Ok(r)
    }

    /// `DescribeTopic` at any broker.
    pub async fn describe_topic(&self, name: &str) -> anyhow::Result<DescribeTopicResponse> {
        let (r, _) = self
            .any_broker("describe topic", |addr| {
                let client = self.admin_at(&addr);
                let req = DescribeTopicRequest { name: name.to_string() };
                async move {
                    client
                        .map_err(|e| Status::unavailable(e.to_string()))?
                        .describe_topic(req)
                        .await
                }
            })
            .await?;
        Ok(r)
    }

    /// `DescribeCluster` at any broker (forwarded to the controller leader).
    pub async fn describe_cluster(&self) -> anyhow::Result<DescribeClusterResponse> {
        let (r, _) = self
            .any_broker("describe cluster", |addr| {
                let client = self.admin_at(&addr);
                async move {
                    client
                        .map_err(|e| Status::unavailable(e.to_string()))?
                        .describe_cluster(DescribeClusterRequest {})
                        .await
                }
            })
            .await?;
        Ok(r)
    }

    /// One `Produce` attempt at the broker at `addr`, no retries, no routing.
    pub async fn produce_at(
        &self,
        addr: &str,
        req: ProduceRequest,
    ) -> Result<ProduceResponse, Status> {
        let mut client = self.data_at(addr).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let deadline = Instant::now() + self.attempt_timeout;
        self.attempt(deadline, Duration::ZERO, client.produce(req)).await
    }

    /// `Produce` routed to the leader and retried on retriable outcomes (with the same
    /// bytes); returns the first success or fatal answer.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> anyhow::Result<ProduceResponse> {
        let req = ProduceRequest {
            topic: topic.to_string(),
            partition,
            acks: acks as i32,
            batch,
            ..Default::default()
        };
        let what = format!("produce to {topic}/{partition}");
        self.routed(&what, topic, partition, Duration::ZERO, |mut c| {
            let req = req.clone();
            async move { c.produce(req).await }
        })
        .await
    }

    /// [`TestClient::produce`] that must succeed; returns the batch's base offset.
    pub async fn must_produce(&self, topic: &str, partition: u32, batch: Bytes, acks: Acks) -> i64 {
        let resp =
            self.produce(topic, partition, batch, acks).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(e.is_ok(), "produce to {topic}/{partition}: {:?}: {}", e.error_code(), e.message);
        resp.base_offset
    }

    /// `Fetch` routed to the leader; returns the first success or fatal answer. Unset fields
    /// of `req` keep their protobuf defaults (broker default size, no long poll).
    pub async fn fetch_with(&self, req: FetchRequest) -> anyhow::Result<FetchResponse> {
        let what = format!("fetch {}/{} at {}", req.topic, req.partition, req.offset);
        let (topic, partition) = (req.topic.clone(), req.partition);
        let long_poll = Duration::from_millis(req.max_wait_ms.into());
        self.routed(&what, &topic, partition, long_poll, |mut c| {
            let req = req.clone();
            async move { c.fetch(req).await }
        })
        .await
    }

    /// `Fetch` from `offset` without long polling.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> anyhow::Result<FetchResponse> {
        self.fetch_with(FetchRequest {
            topic: topic.to_string(),
            partition,
            offset,
            ..Default::default()
        })
        .await
    }

    /// Feeds `f` every batch from the one holding `from` up to the high watermark seen by
    /// the first fetch, checking that batches are contiguous. The first batch may start
    /// below `from`. Offsets beyond a new leader's (still catching up) high watermark are
    /// retried until the deadline.
    pub async fn scan_batches(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        mut f: impl FnMut(&FetchedBatch) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut backoff = Backoff::new();
        let mut next = from;
        let mut target = None;
        loop {
            let resp = self.fetch(topic, partition, next).await?;
            let e = resp.error();
            let code = e.error_code();
            let lagging = code == ErrorCode::OffsetOutOfRange
                && target.is_some_and(|t| next <= t && resp.high_watermark < next);
            if code != ErrorCode::None && !lagging {
                bail!("fetch {topic}/{partition} at {next}: {code:?}: {}", e.message);
            }
            let target = *target.get_or_insert(resp.high_watermark);
            if next >= target {
                return Ok(());
            }
            if resp.batches.is_empty() {
                if Instant::now() >= deadline {
                    bail!(
                        "fetch {topic}/{partition} at {next}: no batches below high watermark \
                         {target} for {:?} (answer: {code:?}, hw {})",
                        start.elapsed(),
                        resp.high_watermark
                    );
                }
                backoff.pause(deadline).await;
                continue;
            }
            for b in &resp.batches {
                let info =
                    rafka_proto::batch::validate(&b.batch, usize::MAX).with_context(|| {
                        format!(
                            "fetched batch at {topic}/{partition} offset {} is invalid",
                            b.base_offset
                        )
                    })?;
                let end = b.base_offset + i64::from(info.records_count);
                if b.base_offset > next || end <= next {
                    bail!(
                        "fetch {topic}/{partition}: expected the batch holding offset {next}, got \
                         offsets {}..{end}",
                        b.base_offset
                    );
                }
                f(b)?;
                next = end;
            }
            if next >= target {
                return Ok(());
            }
        }
    }

    /// Every batch from the one holding `from` up to the high watermark (see
    /// [`TestClient::scan_batches`]).
    pub async fn fetch_batches(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
    ) -> anyhow::Result<Vec<FetchedBatch>> {
        let mut out = Vec::new();
        self.scan_batches(topic, partition, from, |b| {
            out.push(b.clone());
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every record from offset `from` up to the high watermark, decoded and CRC-checked;
    /// records below `from` in the first batch are skipped.
    pub async fn fetch_all(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
    ) -> anyhow::Result<Vec<FetchedRecord>> {
        let mut out = Vec::new();
        self.scan_batches(topic, partition, from, |b| {
            out.extend(
                decode_batch(b.base_offset, &b.batch)?.into_iter().filter(|r| r.offset >= from),
            );
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `ListOffsets` routed to the leader; returns the first success or fatal answer.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        spec: Spec,
    ) -> anyhow::Result<ListOffsetsResponse> {
        let req = ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: Some(OffsetSpec { spec: Some(spec) }),
            ..Default::default()
        };
        let what = format!("list offsets {topic}/{partition} {spec:?}");
        self.routed(&what, topic, partition, Duration::ZERO, |mut c| {
            let req = req.clone();
            async move { c.list_offsets(req).await }
        })
        .await
    }

    /// [`TestClient::list_offsets`] that must succeed; returns the offset.
    pub async fn must_list_offset(&self, topic: &str, partition: u32, spec: Spec) -> i64 {
        let resp =
            self.list_offsets(topic, partition, spec).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(
            e.is_ok(),
            "list offsets {topic}/{partition} {spec:?}: {:?}: {}",
            e.error_code(),
            e.message
        );
        resp.offset
    }

    /// `InitProducer` at any broker; returns the first success or fatal answer.
    pub async fn init_producer(&self, producer_name: &str) -> anyhow::Result<InitProducerResponse> {
        let (r, _) = self
            .any_broker("init producer", |addr| {
                let req = InitProducerRequest { producer_name: producer_name.to_string() };
                let client = self.data_at(&addr);
                async move {
                    client.map_err(|e| Status::unavailable(e.to_string()))?.init_producer(req).await
                }
            })
            .await?;
        Ok(r)
    }

    /// [`TestClient::init_producer`] that must succeed; returns `(producer id, epoch)`.
    pub async fn must_init_producer(&self, producer_name: &str) -> (i64, i32) {
        let resp = self.init_producer(producer_name).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(e.is_ok(), "init producer {producer_name:?}: {:?}: {}", e.error_code(), e.message);
        assert!(resp.producer_id >= 0 && resp.producer_epoch >= 0, "init producer: {resp:?}");
        (resp.producer_id, resp.producer_epoch)
    }
}
