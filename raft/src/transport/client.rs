//! The sending side: one channel per peer broker ([`Peers`]) and the openraft network of a
//! group ([`NetworkFactory`], [`Network`]).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use std::time::Instant;

use futures::FutureExt;
use futures::Stream;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RaftNetworkFactory;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::StreamAppendResult;
use openraft::raft::TransferLeaderError;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use super::Counters;
use super::dial::Dialer;
use super::heartbeat::Coalescer;
use crate::detector::Detector;
use crate::metrics as m;
use crate::sm::Snapshot;
use crate::sm::SnapshotData;
use crate::timing::RaftTiming;
use crate::types::App;
use crate::types::GroupId;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::wire;
use crate::wire::pb;
use crate::wire::pb::raft_transport_client::RaftTransportClient;

type C<A> = TypeConfig<A>;

/// One peer broker: its channel (one HTTP/2 connection, shared by every group), its
/// heartbeat coalescer and its failure-detector probe.
pub(crate) struct Peer {
    pub broker: u64,
    pub addr: String,
    pub client: RaftTransportClient<Channel>,
    pub heartbeats: Arc<Coalescer>,
    /// Fault injection: while set, nothing is sent to this peer ([`Peers::set_partitioned`]).
    pub cut: Arc<AtomicBool>,
    /// The node's RPC counters.
    pub counters: Arc<Counters>,
    probe: JoinHandle<()>,
}

impl Peer {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.heartbeats.close();
        self.probe.abort();
    }
}

/// The peer brokers of a node, created on first use from the addresses in group memberships.
pub(crate) struct Peers {
    me: u64,
    incarnation: u64,
    timing: RaftTiming,
    detector: Arc<Detector>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    partitioned: Mutex<HashSet<u64>>,
    dial_overrides: Mutex<BTreeMap<String, String>>,
    dialer: Option<Arc<dyn Dialer>>,
    pub counters: Arc<Counters>,
}

impl Peers {
    pub fn new(
        me: u64,
        incarnation: u64,
        timing: RaftTiming,
        detector: Arc<Detector>,
        dialer: Option<Arc<dyn Dialer>>,
    ) -> Peers {
        Peers {
            dialer,
            me,
            incarnation,
            timing,
            detector,
            peers: Mutex::new(HashMap::new()),
            partitioned: Mutex::new(HashSet::new()),
            dial_overrides: Mutex::default(),
            counters: Arc::default(),
        }
    }

    /// Dial `overrides[addr]` instead of a peer's advertised `addr` (see
    /// [`crate::RaftNode::set_dial_overrides`]). Applies to channels made afterwards.
    #[cfg(feature = "test-hooks")]
    pub fn set_dial_overrides(&self, overrides: BTreeMap<String, String>) {
        *self.dial_overrides.lock().unwrap_or_else(|p| p.into_inner()) = overrides;
    }

    /// Whether this node has a channel to (and probes) `broker`.
    pub fn contains(&self, broker: u64) -> bool {
        broker == self.me
            || self.peers.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&broker)
    }

    /// This node's broker id.
    pub fn me(&self) -> u64 {
        self.me
    }

    /// The peer `broker` at `addr`; a changed address replaces the old channel.
    pub fn get(&self, broker: u64, addr: &str) -> Result<Arc<Peer>, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&broker)
            && p.addr == addr
        {
            return Ok(p.clone());
        }
        let dial = self
            .dial_overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string());
        let endpoint = Endpoint::from_shared(format!("http://{dial}"))
            .map_err(|e| format!("broker {broker}: bad address {addr:?}: {e}"))?
            .connect_timeout(self.timing.detector_timeout())
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(32 << 20);
        let channel = super::dial::channel(self.dialer.as_deref(), endpoint, &dial, addr)
            .map_err(|e| format!("broker {broker} at {addr}: {e}"))?;
        let client = RaftTransportClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let cut = Arc::new(AtomicBool::new(
            self.partitioned.lock().unwrap_or_else(|p| p.into_inner()).contains(&broker),
        ));
        let heartbeats = Coalescer::start(
            broker,
            client.clone(),
            self.timing.heartbeat_timeout(),
            cut.clone(),
            self.detector.clone(),
            self.counters.clone(),
        );
        self.detector.watch(broker);
        let probe = tokio::spawn(probe_loop(Probe {
            broker,
            me: self.me,
            incarnation: self.incarnation,
            client: client.clone(),
            timing: self.timing.clone(),
            detector: self.detector.clone(),
            cut: cut.clone(),
            counters: self.counters.clone(),
        }));
        let peer = Arc::new(Peer {
            broker,
            addr: addr.to_string(),
            client,
            heartbeats,
            cut,
            counters: self.counters.clone(),
            probe,
        });
        peers.insert(broker, peer.clone());
        Ok(peer)
    }

    /// Fault injection for tests: drop all traffic to `brokers` (and restore it to every
    /// other peer). Open append streams to them end.
    #[cfg(feature = "test-hooks")]
    pub fn set_partitioned(&self, brokers: HashSet<u64>) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for (b, p) in peers.iter() {
            p.cut.store(brokers.contains(b), Ordering::Relaxed);
        }
        *self.partitioned.lock().unwrap_or_else(|p| p.into_inner()) = brokers;
    }

    /// Drops every channel (node shutdown).
    pub fn clear(&self) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What a peer's failure-detector probe loop needs.
struct Probe {
    broker: u64,
    me: u64,
    incarnation: u64,
    client: RaftTransportClient<Channel>,
    timing: RaftTiming,
    detector: Arc<Detector>,
    cut: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

async fn probe_loop(p: Probe) {
    let Probe { broker, me, incarnation, mut client, timing, detector, cut, counters } = p;
    let mut tick = tokio::time::interval(timing.detector_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cut.load(Ordering::Relaxed) {
            continue;
        }
        counters.probes.fetch_add(1, Relaxed);
        counters.rpcs.fetch_add(1, Relaxed);
        let mut req = tonic::Request::new(pb::ProbeRequest { broker_id: me, incarnation });
        req.set_timeout(timing.detector_timeout());
        let probe = tokio::time::timeout(timing.detector_timeout(), client.probe(req));
        if let Ok(Ok(resp)) = probe.await {
            let resp = resp.into_inner();
            if resp.broker_id == broker {
                detector.heard_from(broker, resp.incarnation);
                detector.record_stopped(broker, resp.stopped_groups);
            } else {
                tracing::warn!(
                    broker,
                    answered = resp.broker_id,
                    "peer address answers as another broker"
                );
            }
        }
    }
}

fn unreachable<A: App>(msg: impl ToString) -> RPCError<C<A>> {
    RPCError::Unreachable(Unreachable::from_string(msg))
}

/// Creates the network clients of one group's replica.
pub(crate) struct NetworkFactory<A: App> {
    pub group: GroupId,
    pub replica: ReplicaId,
    pub peers: Arc<Peers>,
    pub _app: PhantomData<A>,
}

impl<A: App> NetworkFactory<A> {
    fn client(&self, target: ReplicaId, node: &ReplicaNode, heartbeat: bool) -> Network<A> {
        let peer = self.peers.get(node.broker_id, &node.addr);
        Network {
            peer,
            address: pb::Address {
                group: self.group,
                target,
                from: self.replica,
                from_broker: self.peers.me,
            },
            detector: self.peers.detector.clone(),
            heartbeat,
            _app: PhantomData,
        }
    }
}

impl<A: App> RaftNetworkFactory<C<A>> for NetworkFactory<A> {
    type Network = Network<A>;

    async fn new_client(&mut self, target: ReplicaId, node: &ReplicaNode) -> Network<A> {
        self.client(target, node, false)
    }

    async fn new_heartbeat_client(&mut self, target: ReplicaId, node: &ReplicaNode) -> Network<A> {
        self.client(target, node, true)
    }
}

/// The network of one group's replica towards one target replica.
pub(crate) struct Network<A: App> {
    peer: Result<Arc<Peer>, String>,
    address: pb::Address,
    detector: Arc<Detector>,
    heartbeat: bool,
    _app: PhantomData<A>,
}

impl<A: App> Network<A> {
    fn peer(&self) -> Result<&Arc<Peer>, RPCError<C<A>>> {
        let peer = self.peer.as_ref().map_err(unreachable::<A>)?;
        if peer.is_cut() {
            return Err(unreachable::<A>(format!("broker {} is partitioned away", peer.broker)));
        }
        Ok(peer)
    }

    fn label(&self) -> String {
        self.peer.as_ref().map_or_else(|_| "unknown".to_string(), |p| p.broker.to_string())
    }
}

fn record_rpc(counters: &Counters, peer: &str, rpc: &'static str, started: Instant, ok: bool) {
    counters.rpcs.fetch_add(1, Relaxed);
    metrics::counter!(m::TRANSPORT_RPCS, "peer" => peer.to_string(), "rpc" => rpc).increment(1);
    metrics::histogram!(m::TRANSPORT_RPC_SECONDS, "peer" => peer.to_string(), "rpc" => rpc)
        .record(started.elapsed().as_secs_f64());
    if !ok {
        metrics::counter!(m::TRANSPORT_ERRORS, "peer" => peer.to_string(), "rpc" => rpc)
            .increment(1);
    }
}

impl<A: App> Network<A> {
    /// One heartbeat through the peer's coalescer.
    async fn send_heartbeat(
        &self,
        req: AppendEntriesRequest<C<A>>,
    ) -> Result<StreamAppendResult<C<A>>, RPCError<C<A>>> {
        let peer = self.peer()?;
        let (_, last) = wire::append_range::<A>(&req);
        let pb_req = wire::append_to_pb::<A>(self.address, &req);
        let resp = peer.heartbeats.send(pb_req).await.map_err(unreachable::<A>)?;
        let res = wire::append_result_from_pb::<A>(resp).map_err(unreachable::<A>)?;
        // A heartbeat carries no entries: success matches up to its prev_log_id.
        Ok(res.map(|m| m.or(last)))
    }
}

impl<A: App> RaftNetworkV2<C<A>> for Network<A> {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C<A>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C<A>>, RPCError<C<A>>> {
        let (_, last) = wire::append_range::<A>(&rpc);
        let mut out = self.stream_append(futures::stream::iter([rpc]), option).await?;
        let res = out.next().await.ok_or_else(|| unreachable::<A>("append stream ended"))??;
        Ok(match res {
            Ok(matched) if matched == last => AppendEntriesResponse::Success,
            Ok(matched) => AppendEntriesResponse::PartialSuccess(matched),
            Err(openraft::raft::StreamAppendError::Conflict(_)) => AppendEntriesResponse::Conflict,
            Err(openraft::raft::StreamAppendError::HigherVote(v)) => {
                AppendEntriesResponse::HigherVote(v)
            }
        })
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<C<A>>, RPCError<C<A>>>>, RPCError<C<A>>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<C<A>>> + Send + Unpin + 'static,
    {
        if self.heartbeat {
            return async move {
                let mut input = input;
                let Some(req) = input.next().await else {
                    return Ok(futures::stream::empty().boxed());
                };
                let res = self.send_heartbeat(req).await;
                Ok(futures::stream::once(async move { res }).boxed())
            }
            .boxed();
        }
        async move {
            let peer = self.peer()?.clone();
            let label = self.label();
            let address = self.address;
            let sent_label = label.clone();
            let cut_in = peer.cut.clone();
            let cut_out = peer.cut.clone();
            let out = input
                .take_while(move |_| futures::future::ready(!cut_in.load(Ordering::Relaxed)))
                .map(move |req| {
                    let bytes: usize = req
                        .entries
                        .iter()
                        .map(|e| match &e.payload {
                            openraft::EntryPayload::Normal(d) => {
                                crate::types::LogPayload::encoded_len(d)
                            }
                            _ => 0,
                        })
                        .sum();
                    metrics::counter!(m::TRANSPORT_BYTES_SENT, "peer" => sent_label.clone())
                        .increment(bytes as u64);
                    metrics::histogram!(m::TRANSPORT_APPEND_ENTRIES, "peer" => sent_label.clone())
                        .record(req.entries.len() as f64);
                    wire::append_to_pb::<A>(address, &req)
                });
            let started = Instant::now();
            let mut client = peer.client.clone();
            let resp = client.append(out).await;
            record_rpc(&peer.counters, &label, "append_stream", started, resp.is_ok());
            let resp =
                resp.map_err(|s| unreachable::<A>(format!("append stream: {}", s.message())))?;
            let detector = self.detector.clone();
            let broker = peer.broker;
            let stream = resp.into_inner().map(move |r| match r {
                _ if cut_out.load(Ordering::Relaxed) => {
                    Err(unreachable::<A>("peer is partitioned away"))
                }
                Ok(r) => {
                    detector.touch(broker);
                    wire::append_result_from_pb::<A>(r).map_err(unreachable::<A>)
                }
                Err(s) => Err(unreachable::<A>(format!("append stream: {}", s.message()))),
            });
            Ok(stream.boxed())
        }
        .boxed()
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C<A>>,
        option: RPCOption,
    ) -> Result<VoteResponse<C<A>>, RPCError<C<A>>> {
        self.send_vote(rpc, option, false).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C<A>>,
        option: RPCOption,
    ) -> Result<VoteResponse<C<A>>, RPCError<C<A>>> {
        self.send_vote(rpc, option, true).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C<A>>, StreamingError<C<A>>> {
        let peer = self
            .peer
            .clone()
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        let meta = &snapshot.meta;
        let req = pb::SnapshotRequest {
            address: Some(self.address),
            vote: Some(wire::vote_to_pb(&vote)),
            last_log_id: wire::opt_log_id_to_pb(meta.last_log_id.as_ref()),
            membership_log_id: wire::opt_log_id_to_pb(meta.last_membership.log_id().as_ref()),
            membership: wire::membership_to_pb(meta.last_membership.membership()),
            data: snapshot.snapshot.data.clone(),
            next_offset: snapshot.snapshot.next_offset,
        };
        let mut request = tonic::Request::new(req);
        request.set_timeout(option.hard_ttl().max(Duration::from_secs(30)));
        let mut client = peer.client.clone();
        let started = Instant::now();
        let label = self.label();
        let res = tokio::select! {
            r = client.install_snapshot(request) => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        record_rpc(&peer.counters, &label, "install_snapshot", started, res.is_ok());
        let resp = res.map_err(|s| {
            StreamingError::Unreachable(Unreachable::from_string(format!(
                "install snapshot: {}",
                s.message()
            )))
        })?;
        let vote = wire::vote_from_pb(resp.into_inner().vote.as_ref())
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C<A>>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C<A>>, RPCError<C<A>>> {
        let peer = self.peer()?.clone();
        let mut request = tonic::Request::new(pb::TransferLeaderRequest {
            address: Some(self.address),
            from_leader: Some(wire::vote_to_pb(req.from_leader())),
            to_node_id: *req.to_node_id(),
            last_log_id: wire::opt_log_id_to_pb(req.last_log_id()),
        });
        request.set_timeout(option.hard_ttl());
        let started = Instant::now();
        let res = peer.client.clone().transfer_leader(request).await;
        record_rpc(&peer.counters, &self.label(), "transfer_leader", started, res.is_ok());
        let resp =
            res.map_err(|s| unreachable::<A>(format!("transfer leader: {}", s.message())))?;
        use pb::transfer_leader_response::Result as R;
        match resp.into_inner().result {
            Some(R::Accepted(_)) => Ok(Ok(())),
            Some(R::VoteChanged(v)) => Ok(Err(TransferLeaderError::VoteChanged {
                expected: wire::vote_from_pb(v.expected.as_ref()).map_err(unreachable::<A>)?,
                actual: wire::vote_from_pb(v.actual.as_ref()).map_err(unreachable::<A>)?,
            })),
            Some(R::LogNotFlushed(l)) => Ok(Err(TransferLeaderError::LogNotFlushed {
                expected: wire::opt_log_id_from_pb(l.expected.as_ref()),
                actual: wire::opt_log_id_from_pb(l.actual.as_ref()),
            })),
            None => Err(unreachable::<A>("empty transfer-leader response")),
        }
    }
}

impl<A: App> Network<A> {
    async fn send_vote(
        &mut self,
        rpc: VoteRequest<C<A>>,
        option: RPCOption,
        pre_vote: bool,
    ) -> Result<VoteResponse<C<A>>, RPCError<C<A>>> {
        let peer = self.peer()?.clone();
        let mut request =
            tonic::Request::new(wire::vote_req_to_pb::<A>(self.address, &rpc, pre_vote));
        request.set_timeout(option.hard_ttl());
        let started = Instant::now();
        let res = peer.client.clone().vote(request).await;
        let rpc = if pre_vote { "pre_vote" } else { "vote" };
        record_rpc(&peer.counters, &self.label(), rpc, started, res.is_ok());
        let resp = res.map_err(|s| unreachable::<A>(format!("vote: {}", s.message())))?;
        wire::vote_resp_from_pb::<A>(&resp.into_inner()).map_err(unreachable::<A>)
    }
}
