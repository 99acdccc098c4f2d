//! Consumer groups through the public `Groups` service.
//!
//! - [`GroupsClient`]: sends each group request to the group's coordinator (cached per
//!   group), follows `NOT_COORDINATOR` hints, retries retriable codes and transport errors
//!   until a deadline and hands back the first success or fatal answer, so tests can assert
//!   on error codes; `must_*` variants panic unless the answer is a success.
//! - [`SimMember`]: one consumer simulated in a tokio task, following KIP-848 as a real
//!   client would: heartbeats, owns what the coordinator assigns, confirms revocations by no
//!   longer listing revoked partitions, rejoins when fenced. Optionally it consumes: fetches
//!   its partitions, logs every delivered record and commits after each batch
//!   ([`ConsumeLog`]). [`SimMember::kill`] aborts it without leaving (kill -9).
//! - [`Owners`]: what every member owns at one instant (members publish under one lock), and
//!   [`OwnershipWatch`], which samples it continuously looking for a partition owned twice.
//! - [`groups_toml`] for fast group timing, [`metric_value`] to read `/metrics`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
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
use rafka_proto::ErrorExt;
use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_proto::groups::offsets_partition;
use rafka_proto::v1::CommitOffsetsRequest;
use rafka_proto::v1::CommitOffsetsResponse;
use rafka_proto::v1::CommittedOffset;
use rafka_proto::v1::DeleteGroupRequest;
use rafka_proto::v1::DeleteGroupResponse;
use rafka_proto::v1::DescribeGroupRequest;
use rafka_proto::v1::DescribeGroupResponse;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchOffsetsRequest;
use rafka_proto::v1::FetchOffsetsResponse;
use rafka_proto::v1::GroupHeartbeatRequest;
use rafka_proto::v1::GroupHeartbeatResponse;
use rafka_proto::v1::ListGroupsRequest;
use rafka_proto::v1::ListGroupsResponse;
use rafka_proto::v1::OffsetCommit;
use rafka_proto::v1::ResetOffsetsRequest;
use rafka_proto::v1::ResetOffsetsResponse;
use rafka_proto::v1::TopicPartitions;
use rafka_proto::v1::groups_client::GroupsClient as GroupsRpc;
use tonic::Code;
use tonic::Status;
use tonic::transport::Channel;

use crate::TestClient;
use crate::broker::MAX_GRPC_MESSAGE;
use crate::broker::channel_to;
use crate::client::HasError;
use crate::client::is_retriable_status;
use crate::wait::Backoff;

/// A topic partition.
pub type Tp = (String, u32);

/// Broker TOML for fast groups: `offsets_partitions` partitions of `__consumer_offsets` with
/// `replication_factor` replicas, members expire after `session_timeout_ms`, heartbeats
/// every 300 ms, revocations must be confirmed within 10 s, lag metrics are exported twice a
/// second.
pub fn groups_toml(
    offsets_partitions: u32,
    replication_factor: u32,
    session_timeout_ms: u64,
) -> String {
    format!(
        "[groups]\noffsets-topic-partitions = {offsets_partitions}\n\
         offsets-topic-replication-factor = {replication_factor}\n\
         session-timeout-ms = {session_timeout_ms}\nheartbeat-interval-ms = 300\n\
         rebalance-timeout-ms = 10000\nlag-metrics-interval-ms = 500\n"
    )
}

/// The set of partitions in a wire list.
pub fn flatten(tps: &[TopicPartitions]) -> BTreeSet<Tp> {
    tps.iter().flat_map(|t| t.partitions.iter().map(|&p| (t.topic.clone(), p))).collect()
}

/// The wire list of a set of partitions (topics and partitions ascending).
pub fn to_wire(set: &BTreeSet<Tp>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in set {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| TopicPartitions { topic: topic.to_string(), partitions })
        .collect()
}

/// Every partition of `topic`, `0..partitions`.
pub fn all_partitions(topic: &str, partitions: u32) -> BTreeSet<Tp> {
    (0..partitions).map(|p| (topic.to_string(), p)).collect()
}

/// One offset to commit, for [`GroupsClient::commit_request`].
pub fn offset(topic: &str, partition: u32, offset: i64, metadata: &str) -> OffsetCommit {
    OffsetCommit { topic: topic.to_string(), partition, offset, metadata: metadata.to_string() }
}

/// Committed offsets by partition.
pub fn by_partition(offsets: &[CommittedOffset]) -> BTreeMap<Tp, CommittedOffset> {
    offsets.iter().map(|o| ((o.topic.clone(), o.partition), o.clone())).collect()
}

/// The value of the Prometheus sample `name` whose labels include `labels`, from a
/// `/metrics` body (`name{k="v",...} value` lines).
pub fn metric_value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.trim().rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let have: BTreeMap<&str, &str> = rest
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                Some((k, v.trim_end_matches('"')))
            })
            .collect();
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) { value.parse().ok() } else { None }
    })
}

/// What one attempt produced, for the retry loops.
enum Step<T> {
    Done(T),
    /// Pause and try again; `forget` drops the cached coordinator.
    Retry {
        why: String,
        forget: bool,
    },
    /// The answer named the coordinator: try it at once.
    Redirect(String, String),
}

/// A client of the `Groups` service over every broker of a cluster. Cheap to clone; clones
/// share connections and the coordinator cache.
#[derive(Debug, Clone)]
pub struct GroupsClient {
    inner: Arc<Inner>,
    data: TestClient,
    timeout: Duration,
    attempt_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    bootstrap: Vec<String>,
    next_bootstrap: AtomicUsize,
    channels: Mutex<HashMap<String, Channel>>,
    coordinators: Mutex<HashMap<String, String>>,
}

impl GroupsClient {
    /// A client that bootstraps from `addrs` (usually every broker).
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> GroupsClient {
        let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
        let bootstrap: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        assert!(!bootstrap.is_empty(), "a client needs at least one broker address");
        GroupsClient {
            inner: Arc::new(Inner {
                bootstrap,
                next_bootstrap: AtomicUsize::new(0),
                channels: Mutex::default(),
                coordinators: Mutex::default(),
            }),
            data: TestClient::new(addrs),
            timeout: crate::client::DEFAULT_TIMEOUT,
            attempt_timeout: crate::client::DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    /// The same client with another bound on each operation (retries included).
    pub fn with_timeout(mut self, timeout: Duration) -> GroupsClient {
        self.timeout = timeout;
        self.data = self.data.with_timeout(timeout);
        self
    }

    /// The same client with another bound on each single RPC.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> GroupsClient {
        self.attempt_timeout = timeout;
        self.data = self.data.with_attempt_timeout(timeout);
        self
    }

    /// A raw `Groups` client for the broker at `addr` (no routing, no retries).
    pub fn groups_at(&self, addr: &str) -> anyhow::Result<GroupsRpc<Channel>> {
        let mut channels = self.inner.channels.lock().unwrap();
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = channel_to(addr)?;
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(GroupsRpc::new(channel).max_decoding_message_size(MAX_GRPC_MESSAGE))
    }

    fn forget_channel(&self, addr: &str) {
        self.inner.channels.lock().unwrap().remove(addr);
    }

    fn any_addr(&self) -> String {
        let i = self.inner.next_bootstrap.fetch_add(1, Ordering::Relaxed);
        self.inner.bootstrap[i % self.inner.bootstrap.len()].clone()
    }

    fn cached_coordinator(&self, group: &str) -> Option<String> {
        self.inner.coordinators.lock().unwrap().get(group).cloned()
    }

    fn set_coordinator(&self, group: &str, addr: Option<&str>) {
        let mut c = self.inner.coordinators.lock().unwrap();
        match addr {
            Some(a) => c.insert(group.to_string(), a.to_string()),
            None => c.remove(group),
        };
    }

    async fn attempt<T>(
        &self,
        deadline: Instant,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self.attempt_timeout.min(left.max(Duration::from_millis(1)));
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!("no answer within {limit:?}"))),
        }
    }

    fn judge<T: HasError>(&self, addr: &str, r: Result<T, Status>) -> anyhow::Result<Step<T>> {
        match r {
            Err(s) if is_retriable_status(&s) => {
                self.forget_channel(addr);
                Ok(Step::Retry { why: format!("{addr}: transport: {s}"), forget: true })
            }
            Err(s) if s.code() == Code::Unimplemented => {
                bail!("{addr} does not implement the Groups service yet: {s}")
            }
            Err(s) => bail!("{addr} answered with gRPC status {s}"),
            Ok(resp) => {
                let e = resp.error();
                let code = e.error_code();
                let why = format!("{addr}: {code:?}: {}", e.message);
                match (code, e.leader) {
                    (ErrorCode::NotCoordinator, Some(l))
                        if !l.address.is_empty() && l.address != addr =>
                    {
                        Ok(Step::Redirect(l.address, why))
                    }
                    (c, _) if c.is_retriable() => Ok(Step::Retry {
                        why,
                        forget: matches!(c, ErrorCode::NotCoordinator | ErrorCode::NotLeader),
                    }),
                    _ => Ok(Step::Done(resp)),
                }
            }
        }
    }

    /// Sends a request about `group` to its coordinator until it is answered with success
    /// or a fatal code.
    async fn routed<T, F, Fut>(&self, what: &str, group: &str, mut call: F) -> anyhow::Result<T>
    where
        T: HasError,
        F: FnMut(GroupsRpc<Channel>) -> Fut,
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
            let addr = self.cached_coordinator(group).unwrap_or_else(|| self.any_addr());
            let r = self.attempt(deadline, call(self.groups_at(&addr)?)).await;
            match self.judge(&addr, r).with_context(|| what.to_string())? {
                Step::Done(resp) => {
                    self.set_coordinator(group, Some(&addr));
                    return Ok(resp);
                }
                Step::Redirect(coordinator, why) => {
                    last = why;
                    self.set_coordinator(group, Some(&coordinator));
                    redirects += 1;
                    if redirects > 3 {
                        // Brokers pointing at each other: let the election settle.
                        backoff.pause(deadline).await;
                    }
                }
                Step::Retry { why, forget } => {
                    last = why;
                    if forget {
                        self.set_coordinator(group, None);
                    }
                    backoff.pause(deadline).await;
                }
            }
        }
    }

    /// Sends a request any broker answers, moving on to the next broker on failure.
    async fn any_broker<T, F, Fut>(&self, what: &str, mut call: F) -> anyhow::Result<T>
    where
        T: HasError,
        F: FnMut(GroupsRpc<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut backoff = Backoff::new();
        let mut last = String::from("no attempt made");
        loop {
            if Instant::now() >= deadline {
                bail!("{what}: gave up after {:?}; last: {last}", start.elapsed());
            }
            let addr = self.any_addr();
            let r = self.attempt(deadline, call(self.groups_at(&addr)?)).await;
            match self.judge(&addr, r).with_context(|| what.to_string())? {
                Step::Done(resp) => return Ok(resp),
                Step::Redirect(_, why) | Step::Retry { why, .. } => {
                    last = why;
                    backoff.pause(deadline).await;
                }
            }
        }
    }

    /// `GroupHeartbeat` at the coordinator.
    pub async fn heartbeat(
        &self,
        req: GroupHeartbeatRequest,
    ) -> anyhow::Result<GroupHeartbeatResponse> {
        let what = format!("heartbeat of {:?} in group {:?}", req.member_id, req.group_id);
        let group = req.group_id.clone();
        self.routed(&what, &group, |mut c| {
            let req = req.clone();
            async move { c.group_heartbeat(req).await }
        })
        .await
    }

    /// `CommitOffsets` at the coordinator.
    pub async fn commit(&self, req: CommitOffsetsRequest) -> anyhow::Result<CommitOffsetsResponse> {
        let what = format!("commit offsets of group {:?}", req.group_id);
        let group = req.group_id.clone();
        self.routed(&what, &group, |mut c| {
            let req = req.clone();
            async move { c.commit_offsets(req).await }
        })
        .await
    }

    /// A commit request: `member` is `(member id, member epoch)`, `None` for a commit
    /// without membership (empty id, epoch -1).
    pub fn commit_request(
        group: &str,
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
    ) -> CommitOffsetsRequest {
        let (member_id, member_epoch) = member.unwrap_or(("", -1));
        CommitOffsetsRequest {
            group_id: group.to_string(),
            member_id: member_id.to_string(),
            member_epoch,
            offsets,
        }
    }

    /// [`GroupsClient::commit`] that must succeed.
    pub async fn must_commit(
        &self,
        group: &str,
        member: Option<(&str, i32)>,
        offsets: Vec<OffsetCommit>,
    ) {
        let req = GroupsClient::commit_request(group, member, offsets);
        let resp = self.commit(req.clone()).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(e.is_ok(), "commit {req:?}: {:?}: {}", e.error_code(), e.message);
    }

    /// `FetchOffsets` of `partitions` (empty: every committed one) at the coordinator.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: &BTreeSet<Tp>,
    ) -> anyhow::Result<FetchOffsetsResponse> {
        let req =
            FetchOffsetsRequest { group_id: group.to_string(), partitions: to_wire(partitions) };
        self.routed(&format!("fetch offsets of group {group:?}"), group, |mut c| {
            let req = req.clone();
            async move { c.fetch_offsets(req).await }
        })
        .await
    }

    /// Every committed offset of `group`, by partition; panics unless the answer is a
    /// success.
    pub async fn must_fetch_offsets(&self, group: &str) -> BTreeMap<Tp, CommittedOffset> {
        let resp =
            self.fetch_offsets(group, &BTreeSet::new()).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(e.is_ok(), "fetch offsets of {group:?}: {:?}: {}", e.error_code(), e.message);
        by_partition(&resp.offsets)
    }

    /// `DescribeGroup` at the coordinator.
    pub async fn describe(&self, group: &str) -> anyhow::Result<DescribeGroupResponse> {
        let req = DescribeGroupRequest { group_id: group.to_string() };
        self.routed(&format!("describe group {group:?}"), group, |mut c| {
            let req = req.clone();
            async move { c.describe_group(req).await }
        })
        .await
    }

    /// [`GroupsClient::describe`] that must succeed.
    pub async fn must_describe(&self, group: &str) -> DescribeGroupResponse {
        let resp = self.describe(group).await.unwrap_or_else(|e| panic!("{e:#}"));
        let e = resp.error();
        assert!(e.is_ok(), "describe group {group:?}: {:?}: {}", e.error_code(), e.message);
        resp
    }

    /// `ListGroups` at any broker.
    pub async fn list_groups(&self) -> anyhow::Result<ListGroupsResponse> {
        self.any_broker(
            "list groups",
            |mut c| async move { c.list_groups(ListGroupsRequest {}).await },
        )
        .await
    }

    /// `DeleteGroup` at the coordinator.
    pub async fn delete_group(&self, group: &str) -> anyhow::Result<DeleteGroupResponse> {
        let req = DeleteGroupRequest { group_id: group.to_string() };
        self.routed(&format!("delete group {group:?}"), group, |mut c| {
            let req = req.clone();
            async move { c.delete_group(req).await }
        })
        .await
    }

    /// `ResetOffsets` at the coordinator.
    pub async fn reset_offsets(
        &self,
        req: ResetOffsetsRequest,
    ) -> anyhow::Result<ResetOffsetsResponse> {
        let what = format!("reset offsets of group {:?} on {:?}", req.group_id, req.topic);
        let group = req.group_id.clone();
        self.routed(&what, &group, |mut c| {
            let req = req.clone();
            async move { c.reset_offsets(req).await }
        })
        .await
    }

    /// The coordinator of `group` as `(broker id, address)`: the leader of its partition of
    /// `__consumer_offsets` per fresh metadata.
    pub async fn coordinator_of(&self, group: &str) -> anyhow::Result<(u64, String)> {
        let md = self.data.metadata(&[OFFSETS_TOPIC]).await?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name == OFFSETS_TOPIC)
            .with_context(|| format!("{OFFSETS_TOPIC} is not in the metadata"))?;
        let n = u32::try_from(t.partitions.len())?;
        anyhow::ensure!(n > 0, "{OFFSETS_TOPIC} has no partitions in the metadata");
        self.data.leader(OFFSETS_TOPIC, offsets_partition(group, n)).await
    }

    /// [`GroupsClient::coordinator_of`], waiting (up to the client's timeout) for a leader.
    pub async fn must_coordinator_of(&self, group: &str) -> (u64, String) {
        crate::poll(&format!("the coordinator of {group:?}"), self.timeout, || {
            self.coordinator_of(group)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

mod member;

pub use member::Commit;
pub use member::ConsumeLog;
pub use member::ConsumeOptions;
pub use member::Delivery;
pub use member::MemberOptions;
pub use member::MemberState;
pub use member::Owners;
pub use member::OwnershipWatch;
pub use member::SimMember;
pub use member::double_owned;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lists_round_trip_and_doubles_are_found() {
        let set: BTreeSet<Tp> =
            [("b".to_string(), 1), ("a".to_string(), 2), ("a".to_string(), 0)].into();
        let wire = to_wire(&set);
        assert_eq!(wire.len(), 2);
        assert_eq!((wire[0].topic.as_str(), wire[0].partitions.clone()), ("a", vec![0, 2]));
        assert_eq!(flatten(&wire), set);

        let mut snap = BTreeMap::new();
        snap.insert("m1".to_string(), all_partitions("a", 2));
        snap.insert("m2".to_string(), BTreeSet::from([("a".to_string(), 1)]));
        let d = double_owned(&snap);
        assert_eq!(d.len(), 1);
        assert_eq!(d[&("a".to_string(), 1)], vec!["m1".to_string(), "m2".to_string()]);
    }

    #[test]
    fn metric_values_are_found_by_labels() {
        let body = "# HELP x\nrafka_group_lag_records{group=\"g\",topic=\"t\",partition=\"0\"} 18\n\
                    rafka_group_lag_records{group=\"g\",topic=\"t\",partition=\"1\"} 3\n";
        let lag =
            |p| metric_value(body, "rafka_group_lag_records", &[("group", "g"), ("partition", p)]);
        assert_eq!(lag("0"), Some(18.0));
        assert_eq!(lag("1"), Some(3.0));
        assert_eq!(lag("2"), None);
    }

    #[test]
    fn groups_toml_parses() {
        let t: toml::Table = groups_toml(4, 3, 3000).parse().unwrap();
        assert_eq!(t["groups"]["offsets-topic-partitions"].as_integer(), Some(4));
        assert_eq!(t["groups"]["session-timeout-ms"].as_integer(), Some(3000));
    }
}
