//! [`Client`]: connections, the metadata cache, routing and the one retry policy.
//!
//! Every RPC goes through `Client::call_partition` (to the partition's leader) or
//! `Client::call_any` (to any broker). Both apply the per-request timeout and retry only
//! retriable errors ([`Error::is_retriable`]), with exponential backoff and jitter, until the
//! operation's total deadline. A `NOT_LEADER` answer moves the cached leader to the broker its
//! hint names; without a hint, `LEADER_NOT_AVAILABLE` and transport failures mark the
//! metadata stale so the next attempt refreshes it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::admin_client::AdminClient;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::error::Error;
use crate::error::Result;
use crate::metadata::ClusterMetadata;

/// A channel to one broker, every call on it carrying the client's credentials.
pub(crate) type Channel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Auth>;

/// Adds the `authorization` header (`Basic base64(user:password)`) to every call.
#[derive(Debug, Clone)]
pub(crate) struct Auth(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A user and password, sent with every call (best over TLS: the password travels as is).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    fn header(&self) -> Result<tonic::metadata::AsciiMetadataValue> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        format!("Basic {encoded}")
            .parse()
            .map_err(|_| Error::InvalidConfig("credentials do not fit a header".into()))
    }
}

/// The largest gRPC message the client accepts (a fetch may return many batches).
const MAX_MESSAGE_SIZE: usize = 256 << 20;

/// tonic's TLS settings for the broker at `addr`: its certificate must name the host.
fn tls_config(tls: &ClientTls, addr: &str) -> tonic::transport::ClientTlsConfig {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
        .domain_name(host);
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    config
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(&format!(": {s}"));
        source = s.source();
    }
    line
}

/// How a [`Client`] talks to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Brokers to ask first, `host:port` each; one live broker is enough.
    pub bootstrap: Vec<String>,
    /// Bound on one RPC to one broker (a fetch adds its `max_wait`).
    pub request_timeout: Duration,
    /// Bound on one operation, retries included.
    pub total_timeout: Duration,
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// First pause between retries; doubled after each failed attempt.
    pub retry_backoff_initial: Duration,
    /// Largest pause between retries.
    pub retry_backoff_max: Duration,
    /// Cached metadata older than this is refreshed before use.
    pub metadata_max_age: Duration,
    /// TLS to the brokers; `None`: plaintext.
    pub tls: Option<ClientTls>,
    /// A user and password for brokers with authentication on.
    pub credentials: Option<Credentials>,
}

/// TLS settings of a [`Client`]: the CA that signed the brokers' certificates and, for
/// brokers that ask for client certificates (mTLS), this client's own. PEM bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates the brokers' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// This client's certificate chain and private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Reads the PEM files: the CA, and the certificate and key when both are given.
    pub fn from_files(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<ClientTls> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| Error::InvalidConfig(format!("{what} {}: {e}", p.display())))
        };
        let ca_pem = read("TLS CA file", ca)?;
        let identity = match identity {
            Some((cert, key)) => {
                Some((read("TLS certificate file", cert)?, read("TLS key file", key)?))
            }
            None => None,
        };
        Ok(ClientTls { ca_pem, identity })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: Vec::new(),
            request_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            retry_backoff_initial: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            tls: None,
            credentials: None,
        }
    }
}

impl ClientConfig {
    /// The default config with brokers from `"host:port[,host:port...]"`.
    pub fn new(bootstrap: &str) -> Result<ClientConfig> {
        let bootstrap =
            bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let config = ClientConfig { bootstrap: bootstrap.collect(), ..ClientConfig::default() };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the config can work.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::NoBrokers);
        }
        for addr in &self.bootstrap {
            let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !ok {
                return Err(Error::InvalidConfig(format!("bootstrap address {addr:?}")));
            }
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("total_timeout", self.total_timeout),
            ("connect_timeout", self.connect_timeout),
            ("retry_backoff_initial", self.retry_backoff_initial),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be positive")));
            }
        }
        if self.retry_backoff_max < self.retry_backoff_initial {
            return Err(Error::InvalidConfig(
                "retry_backoff_max is below retry_backoff_initial".into(),
            ));
        }
        Ok(())
    }
}

/// A connection to a rafka cluster. Cheap to clone: clones share connections and metadata.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// One channel per broker address, reused by every call to it.
    channels: Mutex<HashMap<String, Channel>>,
    metadata: Mutex<Cache>,
    /// Rotates `call_any` over the known brokers.
    next: AtomicUsize,
    /// The coordinator address of each group, learnt from `NOT_COORDINATOR` hints.
    coordinators: Mutex<HashMap<String, String>>,
}

#[derive(Debug, Default)]
struct Cache {
    metadata: ClusterMetadata,
    /// When `metadata` was fetched; `None` when it must be fetched before use.
    fresh_since: Option<Instant>,
}

/// Responses that carry an `Error` message.
pub(crate) trait HasError {
    /// The response's error, if any (absent means success).
    fn error(&self) -> Option<&v1::Error>;
}

macro_rules! has_error {
    ($($t:ty),* $(,)?) => {$(
        impl HasError for $t {
            fn error(&self) -> Option<&v1::Error> {
                self.error.as_ref()
            }
        }
    )*};
}

has_error!(
    v1::ProduceResponse,
    v1::FetchResponse,
    v1::ListOffsetsResponse,
    v1::InitProducerResponse,
    v1::CreateTopicResponse,
    v1::DeleteTopicResponse,
    v1::AlterTopicConfigResponse,
    v1::CreatePartitionsResponse,
    v1::ListTopicsResponse,
    v1::DescribeTopicResponse,
    v1::MetadataResponse,
    v1::DescribeClusterResponse,
    v1::GroupHeartbeatResponse,
    v1::CommitOffsetsResponse,
    v1::FetchOffsetsResponse,
    v1::DescribeGroupResponse,
    v1::ListGroupsResponse,
    v1::DeleteGroupResponse,
    v1::ResetOffsetsResponse,
    v1::ReassignPartitionResponse,
    v1::TransferLeadershipResponse,
    v1::DecommissionBrokerResponse,
    v1::RebalanceResponse,
    v1::AlterUsersResponse,
    v1::ListUsersResponse,
    v1::CreateAclsResponse,
    v1::ListAclsResponse,
    v1::DeleteAclsResponse,
);

/// The error of a response as a `Result`, keeping a `NOT_LEADER` hint apart.
pub(crate) fn check<T: HasError>(
    resp: T,
) -> std::result::Result<T, (Error, Option<v1::LeaderHint>)> {
    match resp.error() {
        Some(e) if !e.is_ok() => {
            Err((Error::broker(e.error_code(), e.message.clone()), e.leader.clone()))
        }
        _ => Ok(resp),
    }
}

/// The retry policy of one operation: its deadline and the next pause.
struct Retry {
    start: Instant,
    deadline: Instant,
    backoff: Duration,
    max: Duration,
}

impl Retry {
    fn new(config: &ClientConfig) -> Retry {
        let start = Instant::now();
        Retry {
            start,
            deadline: start + config.total_timeout,
            backoff: config.retry_backoff_initial,
            max: config.retry_backoff_max,
        }
    }

    /// Hands back `err` when it is fatal or the deadline has passed; otherwise sleeps the
    /// backoff (with up to 50% jitter, never past the deadline) so the caller can try again.
    async fn on_error(&mut self, err: Error) -> Result<()> {
        if !err.is_retriable() {
            return Err(err);
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::Timeout(format!(
                "gave up after {:?}; last error: {err}",
                now - self.start
            )));
        }
        let half = self.backoff.as_millis() as u64 / 2;
        let pause = self.backoff / 2 + Duration::from_millis(rand::random::<u64>() % (half + 1));
        tracing::debug!(error = %err, ?pause, "retrying");
        tokio::time::sleep_until((now + pause).min(self.deadline)).await;
        self.backoff = (self.backoff * 2).min(self.max);
        Ok(())
    }
}

impl Client {
    /// Connects to the cluster through `bootstrap` (`"host:port[,host:port...]"`) with the
    /// default config; succeeds once any bootstrap broker answers `Metadata`.
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        Client::with_config(ClientConfig::new(bootstrap)?).await
    }

    /// Connects with `config`; succeeds once any bootstrap broker answers `Metadata`.
    pub async fn with_config(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                channels: Mutex::default(),
                metadata: Mutex::default(),
                next: AtomicUsize::new(0),
                coordinators: Mutex::default(),
            }),
        };
        client.refresh_metadata().await?;
        Ok(client)
    }

    /// The config this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The cached cluster metadata, refreshed first when older than `metadata_max_age` or
    /// marked stale.
    pub async fn metadata(&self) -> Result<ClusterMetadata> {
        match self.fresh_metadata() {
            Some(md) => Ok(md),
            None => self.refresh_metadata().await,
        }
    }

    /// Fetches all metadata now (with retries) and caches it.
    pub async fn refresh_metadata(&self) -> Result<ClusterMetadata> {
        let resp = self
            .call_any(|ch| async move {
                admin(ch).metadata(v1::MetadataRequest { topics: Vec::new() }).await
            })
            .await?;
        Ok(self.store_metadata(resp))
    }

    /// The leader of `topic`/`partition` as `(broker id, address)`, from the cache (refreshed
    /// when old). `UNKNOWN_TOPIC`, `UNKNOWN_PARTITION` or `LEADER_NOT_AVAILABLE` otherwise.
    pub async fn leader_for(&self, topic: &str, partition: u32) -> Result<(u64, String)> {
        let md = self.metadata().await?;
        leader_in(&md, topic, partition)
    }

    /// The address of broker `id` as the cached metadata gives it.
    pub(crate) fn broker_address(&self, id: u64) -> Option<String> {
        self.inner.metadata.lock().unwrap().metadata.address_of(id).map(str::to_string)
    }

    /// Marks the cached metadata stale: the next routed call fetches it again.
    pub fn invalidate_metadata(&self) {
        self.inner.metadata.lock().unwrap().fresh_since = None;
    }

    fn fresh_metadata(&self) -> Option<ClusterMetadata> {
        let cache = self.inner.metadata.lock().unwrap();
        let fresh = cache.fresh_since?.elapsed() < self.inner.config.metadata_max_age;
        fresh.then(|| cache.metadata.clone())
    }

    fn store_metadata(&self, resp: v1::MetadataResponse) -> ClusterMetadata {
        let md = ClusterMetadata::from(resp);
        let mut cache = self.inner.metadata.lock().unwrap();
        cache.metadata = md.clone();
        cache.fresh_since = Some(Instant::now());
        md
    }

    /// The cached channel to `addr`, created (lazily connecting) on first use.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.inner.channels.lock().unwrap();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.inner.config.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Error::InvalidConfig(format!("broker address {addr:?}: {e}")))?;
        if let Some(tls) = &self.inner.config.tls {
            endpoint = endpoint
                .tls_config(tls_config(tls, addr))
                .map_err(|e| Error::InvalidConfig(format!("TLS to {addr}: {}", error_chain(&e))))?;
        }
        let c = endpoint
            .connect_timeout(self.inner.config.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        let auth =
            Auth(self.inner.config.credentials.as_ref().map(Credentials::header).transpose()?);
        let c = Channel::new(c, auth);
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Known brokers first, then bootstrap addresses, taken in turn so retries spread out.
    fn any_addr(&self) -> Result<String> {
        let mut addrs: Vec<String> = {
            let cache = self.inner.metadata.lock().unwrap();
            cache.metadata.brokers.iter().map(|b| b.address.clone()).collect()
        };
        for b in &self.inner.config.bootstrap {
            if !addrs.contains(b) {
                addrs.push(b.clone());
            }
        }
        if addrs.is_empty() {
            return Err(Error::NoBrokers);
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        Ok(addrs[i % addrs.len()].clone())
    }

    /// Runs one RPC to `addr` within the per-request timeout (plus `extra`) and the deadline.
    async fn attempt<T, Fut>(
        &self,
        addr: &str,
        retry: &Retry,
        extra: Duration,
        fut: Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let left = retry.deadline.saturating_duration_since(Instant::now());
        let limit = (self.inner.config.request_timeout + extra).min(left);
        let r = match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!("no answer within {limit:?}"))),
        };
        r.map_err(|s| {
            if Error::Transport(s.clone()).is_retriable() {
                // Reconnect afresh next time; the broker may have restarted elsewhere.
                self.inner.channels.lock().unwrap().remove(addr);
            }
            Error::Transport(s)
        })
    }

    /// Sends a request any broker can answer, moving to the next broker after a retriable
    /// failure, until success, a fatal error or the deadline.
    pub(crate) async fn call_any<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        T: HasError,
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut retry = Retry::new(&self.inner.config);
        loop {
            let r = async {
                let addr = self.any_addr()?;
                let resp = self.attempt(&addr, &retry, Duration::ZERO, call(self.channel(&addr)?));
                check(resp.await?).map_err(|(e, _)| e)
            };
            match r.await {
                Ok(resp) => return Ok(resp),
                Err(e) => retry.on_error(e).await?,
            }
        }
    }

    /// Sends a request to the address `route` picks (any broker when it picks none) until
    /// success, a fatal error or the deadline (`total` from now, else the config's).
    /// `on_error` sees every failed attempt's error and `Error.leader` hint, so the router
    /// can follow hints (group coordinators use this).
    pub(crate) async fn call_routed<T, F, Fut>(
        &self,
        total: Option<Duration>,
        route: impl Fn() -> Option<String>,
        on_error: impl Fn(&Error, Option<v1::LeaderHint>),
        mut call: F,
    ) -> Result<T>
    where
        T: HasError,
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut retry = Retry::new(&self.inner.config);
        if let Some(total) = total {
            retry.deadline = retry.start + total;
        }
        loop {
            let r = async {
                let addr = match route() {
                    Some(addr) => addr,
                    None => self.any_addr()?,
                };
                let fut = call(self.channel(&addr)?);
                let resp = self
                    .attempt(&addr, &retry, Duration::ZERO, fut)
                    .await
                    .inspect_err(|e| on_error(e, None))?;
                check(resp).map_err(|(e, hint)| {
                    on_error(&e, hint);
                    e
                })
            };
            match r.await {
                Ok(resp) => return Ok(resp),
                Err(e) => retry.on_error(e).await?,
            }
        }
    }

    /// The coordinator addresses cached per group (see `crate::groups`).
    pub(crate) fn coordinator_cache(&self) -> &Mutex<HashMap<String, String>> {
        &self.inner.coordinators
    }

    /// Sends a request to the leader of `topic`/`partition` until success, a fatal error or
    /// the deadline, following `NOT_LEADER` hints and refreshing metadata when it is stale.
    /// `extra` lengthens each attempt (a fetch's long poll).
    pub(crate) async fn call_partition<T, F, Fut>(
        &self,
        topic: &str,
        partition: u32,
        extra: Duration,
        mut call: F,
    ) -> Result<T>
    where
        T: HasError,
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut retry = Retry::new(&self.inner.config);
        loop {
            let r = async {
                let stale = |e: &Error| {
                    if e.is_retriable() {
                        self.invalidate_metadata();
                    }
                };
                let addr = self.route(topic, partition, &retry).await.inspect_err(stale)?;
                let fut = call(self.channel(&addr)?);
                let resp = self.attempt(&addr, &retry, extra, fut).await.inspect_err(stale)?;
                check(resp).map_err(|(e, hint)| self.on_partition_error(topic, partition, e, hint))
            };
            match r.await {
                Ok(resp) => return Ok(resp),
                Err(e) => retry.on_error(e).await?,
            }
        }
    }

    /// Updates the cache after a partition request failed with a broker error.
    pub(crate) fn on_partition_error(
        &self,
        topic: &str,
        partition: u32,
        err: Error,
        hint: Option<v1::LeaderHint>,
    ) -> Error {
        match (err.code(), hint) {
            (Some(ErrorCode::NotLeader), Some(h)) if !h.address.is_empty() => {
                let mut cache = self.inner.metadata.lock().unwrap();
                cache.metadata.set_leader(topic, partition, h.broker_id, &h.address);
            }
            (Some(ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable), _) => {
                self.invalidate_metadata()
            }
            _ => {}
        }
        err
    }

    /// The address to send a partition request to: its leader per the (refreshed when stale)
    /// cache; any broker when the topic or partition is unknown, so the broker's answer
    /// (`UNKNOWN_TOPIC`, `INVALID_TOPIC`, ...) decides.
    async fn route(&self, topic: &str, partition: u32, retry: &Retry) -> Result<String> {
        if let Some(route) = self.cached_route(topic, partition) {
            return route;
        }
        // Unknown or stale: one fetch from one broker; the caller's loop retries it.
        let addr = self.any_addr()?;
        let req = v1::MetadataRequest { topics: Vec::new() };
        let mut admin = admin(self.channel(&addr)?);
        let fut = admin.metadata(req);
        let resp = self.attempt(&addr, retry, Duration::ZERO, fut).await?;
        let md = self.store_metadata(check(resp).map_err(|(e, _)| e)?);
        if md.partition(topic, partition).is_none() {
            return self.any_addr();
        }
        leader_in(&md, topic, partition).map(|(_, addr)| addr)
    }
}

impl Client {
    /// The leader of a known partition from fresh cached metadata (looked up in place, not
    /// copied); `None` when the partition is unknown or the cache stale.
    fn cached_route(&self, topic: &str, partition: u32) -> Option<Result<String>> {
        let cache = self.inner.metadata.lock().unwrap();
        let fresh = cache.fresh_since?.elapsed() < self.inner.config.metadata_max_age;
        let md = &cache.metadata;
        (fresh && md.partition(topic, partition).is_some())
            .then(|| leader_in(md, topic, partition).map(|(_, addr)| addr))
    }

    /// The address of the leader of `topic`/`partition`, from the cache or (when the
    /// partition is unknown or the cache stale) fresh metadata; any broker when the cluster
    /// does not know the partition either, so that its answer decides. One attempt.
    pub(crate) async fn partition_address(&self, topic: &str, partition: u32) -> Result<String> {
        self.route(topic, partition, &Retry::new(&self.inner.config)).await
    }

    /// The partition count of `topic` in the cache, fresh or not; `None` when unknown.
    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<u32> {
        let cache = self.inner.metadata.lock().unwrap();
        let n = cache.metadata.topic(topic)?.partitions.len();
        u32::try_from(n).ok().filter(|&n| n > 0)
    }
}

/// The leader of `topic`/`partition` in `md`.
fn leader_in(md: &ClusterMetadata, topic: &str, partition: u32) -> Result<(u64, String)> {
    if md.topic(topic).is_none() {
        return Err(Error::broker(ErrorCode::UnknownTopic, format!("topic {topic:?}")));
    }
    let Some(p) = md.partition(topic, partition) else {
        let what = format!("{topic}/{partition}");
        return Err(Error::broker(ErrorCode::UnknownPartition, what));
    };
    let Some(leader) = p.leader else {
        let what = format!("{topic}/{partition} has no leader");
        return Err(Error::broker(ErrorCode::LeaderNotAvailable, what));
    };
    match md.address_of(leader) {
        Some(addr) => Ok((leader, addr.to_string())),
        None => Err(Error::Protocol(format!("leader {leader} of {topic}/{partition} is unknown"))),
    }
}

/// An `Admin` gRPC client over `ch`.
pub(crate) fn admin(ch: Channel) -> AdminClient<Channel> {
    AdminClient::new(ch).max_decoding_message_size(MAX_MESSAGE_SIZE)
}

/// A `Data` gRPC client over `ch`.
pub(crate) fn data(ch: Channel) -> v1::data_client::DataClient<Channel> {
    v1::data_client::DataClient::new(ch).max_decoding_message_size(MAX_MESSAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerDescription;
    use crate::metadata::PartitionDescription;
    use crate::metadata::TopicMetadata;

    fn config() -> ClientConfig {
        ClientConfig {
            total_timeout: Duration::from_millis(200),
            retry_backoff_initial: Duration::from_millis(5),
            retry_backoff_max: Duration::from_millis(40),
            ..ClientConfig::new("127.0.0.1:1").unwrap()
        }
    }

    #[test]
    fn bootstrap_strings_parse_and_validate() {
        let c = ClientConfig::new(" a:1, b:2 ,").unwrap();
        assert_eq!(c.bootstrap, vec!["a:1", "b:2"]);
        assert!(matches!(ClientConfig::new(""), Err(Error::NoBrokers)));
        for bad in ["a", "a:x", ":1", "a:0"] {
            assert!(matches!(ClientConfig::new(bad), Err(Error::InvalidConfig(_))), "{bad}");
        }
        let backwards = ClientConfig { retry_backoff_max: Duration::from_millis(1), ..config() };
        assert!(matches!(backwards.validate(), Err(Error::InvalidConfig(_))));
    }

    #[tokio::test]
    async fn retry_returns_fatal_errors_at_once() {
        let mut retry = Retry::new(&config());
        let err = retry.on_error(Error::broker(ErrorCode::InvalidTopic, "bad")).await;
        assert_eq!(err.unwrap_err().code(), Some(ErrorCode::InvalidTopic));
        assert!(retry.start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn retry_backs_off_until_the_deadline() {
        let mut retry = Retry::new(&config());
        let mut attempts = 0;
        let err = loop {
            attempts += 1;
            if let Err(e) = retry.on_error(Error::broker(ErrorCode::NotLeader, "moved")).await {
                break e;
            }
        };
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        // Pauses grow to 40 ms: about 200 / 40 plus the short first ones, not hundreds.
        assert!((3..=30).contains(&attempts), "{attempts} attempts");
        assert!(retry.start.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn leader_lookup_names_what_is_missing() {
        let md = ClusterMetadata {
            brokers: vec![BrokerDescription {
                broker_id: 1,
                address: "h:1".into(),
                rack: None,
                alive: true,
                draining: false,
                replicas: 0,
            }],
            controller_id: Some(1),
            topics: vec![TopicMetadata {
                name: "t".into(),
                topic_id: 7,
                error: None,
                partitions: vec![
                    PartitionDescription {
                        partition: 0,
                        leader: Some(1),
                        replicas: vec![1],
                        in_sync: vec![1],
                        target_replicas: vec![],
                        high_watermark: 0,
                        log_start_offset: 0,
                    },
                    PartitionDescription {
                        partition: 1,
                        leader: None,
                        replicas: vec![1],
                        in_sync: vec![],
                        target_replicas: vec![],
                        high_watermark: 0,
                        log_start_offset: 0,
                    },
                ],
            }],
        };
        assert_eq!(leader_in(&md, "t", 0).unwrap(), (1, "h:1".to_string()));
        let code = |t, p| leader_in(&md, t, p).unwrap_err().code();
        assert_eq!(code("t", 1), Some(ErrorCode::LeaderNotAvailable));
        assert_eq!(code("t", 2), Some(ErrorCode::UnknownPartition));
        assert_eq!(code("u", 0), Some(ErrorCode::UnknownTopic));

        let mut moved = md.clone();
        moved.set_leader("t", 1, 2, "h:2");
        assert_eq!(leader_in(&moved, "t", 1).unwrap(), (2, "h:2".to_string()));
    }
}
