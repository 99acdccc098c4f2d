//! One hosted Raft group: the handle the application uses ([`Group`]) and what the node's
//! transport and driver need of it (the [`GroupRpc`] impl).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use openraft::ChangeMembers;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::errors::ForwardReason;
use openraft::errors::RaftError;
use openraft::metrics::RaftMetrics;
use openraft::raft::TransferLeaderError;
use openraft::raft::TransferLeaderRequest;
use tonic::Status;
use tracing::Instrument;

use crate::detector::Detector;
use crate::error::Error;
use crate::log::SegmentLog;
use crate::sm::RaftSnapshotMeta;
use crate::sm::SmAdapter;
use crate::sm::Snapshot;
use crate::sm::SnapshotData;
use crate::sm::StateMachine;
use crate::transport::Brief;
use crate::transport::GroupRpc;
use crate::transport::GroupStatus;
use crate::types::App;
use crate::types::GroupId;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::TypeConfig;
use crate::wire;
use crate::wire::pb;

mod status;
mod transfer;
mod write;

/// The openraft instance of a group.
pub(crate) type GroupRaft<A, S> = openraft::Raft<TypeConfig<A>, SmAdapter<A, S>>;

/// A group hosted by a [`crate::RaftNode`]. Cheap to clone.
pub struct Group<A: App, S: StateMachine<A>> {
    pub(crate) inner: Arc<GroupInner<A, S>>,
}

impl<A: App, S: StateMachine<A>> Clone for Group<A, S> {
    fn clone(&self) -> Self {
        Group { inner: self.inner.clone() }
    }
}

pub(crate) struct GroupInner<A: App, S: StateMachine<A>> {
    pub id: GroupId,
    pub replica: ReplicaId,
    pub raft: GroupRaft<A, S>,
    pub sm: Arc<Mutex<S>>,
    pub log: SegmentLog<A>,
    pub detector: Arc<Detector>,
    /// The node's peers, to ask the other voters before a forced campaign.
    pub peers: Arc<crate::transport::Peers>,
    /// Whether a leader has reached this replica since it started: a replica that never
    /// heard one campaigns after the election timeout even if it believes in a leader.
    pub heard_leader: Arc<AtomicBool>,
    /// Replica ids seen in this group's membership since it opened: never added again.
    pub seen_replicas: Mutex<BTreeSet<ReplicaId>>,
    /// openraft's leader lease (the election timeout's upper bound).
    pub lease: Duration,
    /// How long one heartbeat round may take.
    pub heartbeat_timeout: Duration,
    /// Held while a lease renewal runs.
    pub renewing: tokio::sync::Mutex<()>,
    /// The term in which this replica, as leader, handed its leadership to another replica,
    /// and to which one. The target campaigns at once and voters grant it without waiting
    /// out this leader's lease, so from then on this term's lease proves nothing: reads are
    /// refused until a newer term (see [`Group::confirm_leadership`]).
    pub handed_off: Mutex<Option<(u64, ReplicaId)>>,
    pub span: tracing::Span,
}

fn raft_err<E: std::error::Error>(group: GroupId, e: RaftError<TypeConfig<impl App>, E>) -> Error {
    match e {
        RaftError::Fatal(f) => crate::error::fatal(group, f),
        RaftError::APIError(e) => Error::Membership { group, detail: e.to_string() },
    }
}

impl<A: App, S: StateMachine<A>> Group<A, S> {
    /// The group id.
    pub fn id(&self) -> GroupId {
        self.inner.id
    }

    /// This replica's id.
    pub fn replica_id(&self) -> ReplicaId {
        self.inner.replica
    }

    /// Tests only: stops this replica's Raft core as a storage failure would (the group
    /// stays hosted, its core answers nothing).
    #[cfg(feature = "test-hooks")]
    pub async fn stop_raft_core(&self) -> Result<(), Error> {
        self.inner.raft.shutdown().await.map_err(|e| Error::Failed {
            group: self.inner.id,
            detail: format!("stopping the core: {e}"),
        })
    }

    /// Tests only: openraft's metrics of this replica.
    #[cfg(feature = "test-hooks")]
    pub fn raft_metrics(&self) -> RaftMetrics<TypeConfig<A>> {
        self.metrics()
    }

    /// The current term (cheaper than [`Group::status`]).
    pub fn current_term(&self) -> u64 {
        self.inner.raft.metrics().borrow_watched().current_term
    }

    /// The application state machine.
    pub fn state_machine(&self) -> &Arc<Mutex<S>> {
        &self.inner.sm
    }

    /// The group's log.
    pub fn log(&self) -> &SegmentLog<A> {
        &self.inner.log
    }

    /// The latest openraft metrics of this replica.
    pub(crate) fn metrics(&self) -> RaftMetrics<TypeConfig<A>> {
        self.inner.raft.metrics().borrow_watched().clone()
    }

    /// Whether this replica is the leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The leader this replica knows of: its replica id and node.
    pub fn leader(&self) -> Option<(ReplicaId, ReplicaNode)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Makes this replica the founding member of a new group with `members` as voters (every
    /// member's node included); it campaigns at once. Call on exactly one replica.
    pub async fn initialize(&self, members: BTreeMap<ReplicaId, ReplicaNode>) -> Result<(), Error> {
        let g = self.inner.id;
        self.inner.note_replicas(members.keys().copied());
        self.inner.raft.initialize(members).await.map_err(|e| raft_err(g, e))
    }

    /// Adds replica `id` on `node` as a learner and waits until it has caught up (it first
    /// installs the snapshot at the retention point if the log was purged). Replica ids are
    /// never reused: an id this group has had before is refused.
    pub async fn add_learner(&self, id: ReplicaId, node: ReplicaNode) -> Result<(), Error> {
        let g = self.inner.id;
        let membership = self.metrics().membership_config.membership().clone();
        let present = membership.get_node(&id).is_some();
        if !present && self.inner.seen_replicas.lock().unwrap().contains(&id) {
            return Err(Error::Membership {
                group: g,
                detail: format!(
                    "replica id {id} was used before in this group; ids are never reused"
                ),
            });
        }
        self.inner.note_replicas([id]);
        self.inner
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| self.client_write_error(g, e))?;
        Ok(())
    }

    /// Promotes learners to voters.
    pub async fn promote(&self, ids: impl IntoIterator<Item = ReplicaId>) -> Result<(), Error> {
        self.change_membership(ChangeMembers::AddVoterIds(ids.into_iter().collect()), false).await
    }

    /// Removes voters (and forgets them: they do not stay as learners).
    pub async fn remove_voters(
        &self,
        ids: impl IntoIterator<Item = ReplicaId>,
    ) -> Result<(), Error> {
        self.change_membership(ChangeMembers::RemoveVoters(ids.into_iter().collect()), false).await
    }

    /// Makes exactly `ids` the voters (joint consensus when the set changes by more than one);
    /// voters left out are forgotten. Every id must already be a member (add learners first).
    pub async fn replace_voters(
        &self,
        ids: impl IntoIterator<Item = ReplicaId>,
    ) -> Result<(), Error> {
        let change = ChangeMembers::ReplaceAllVoters(ids.into_iter().collect());
        self.change_membership(change, false).await
    }

    /// [`Group::replace_voters`], keeping the voters left out as learners (they go on
    /// receiving the log until [`Group::remove_learners`]).
    pub async fn replace_voters_keeping_learners(
        &self,
        ids: impl IntoIterator<Item = ReplicaId>,
    ) -> Result<(), Error> {
        let change = ChangeMembers::ReplaceAllVoters(ids.into_iter().collect());
        self.change_membership(change, true).await
    }

    /// Forgets learners `ids` (voters must be removed with [`Group::replace_voters`]).
    pub async fn remove_learners(
        &self,
        ids: impl IntoIterator<Item = ReplicaId>,
    ) -> Result<(), Error> {
        self.change_membership(ChangeMembers::RemoveNodes(ids.into_iter().collect()), false).await
    }

    /// One membership change on the leader, after confirming its lease; returns once the
    /// new membership is committed.
    async fn change_membership(
        &self,
        change: ChangeMembers<ReplicaId, ReplicaNode>,
        retain: bool,
    ) -> Result<(), Error> {
        let g = self.inner.id;
        self.renew_lease().await?;
        self.inner
            .raft
            .change_membership(change, retain)
            .await
            .map_err(|e| self.client_write_error(g, e))?;
        Ok(())
    }

    /// The voters of the newest membership if it is applied (so committed) and not joint;
    /// `None` while a change is under way.
    pub fn settled_voters(&self) -> Option<BTreeSet<ReplicaId>> {
        let m = self.metrics();
        let config = &m.membership_config;
        let applied = m.last_applied.map(|l| l.index);
        if config.log_id().map(|l| l.index) > applied {
            return None;
        }
        let membership = config.membership();
        let joint = membership.get_joint_config();
        if joint.len() != 1 {
            return None;
        }
        Some(joint[0].clone())
    }

    /// Takes a snapshot at the state machine's retention point and purges the log up to it.
    /// Returns the snapshot's last log id.
    pub async fn compact(&self, timeout: Duration) -> Result<Option<crate::model::LogId>, Error> {
        let g = self.inner.id;
        let raft = &self.inner.raft;
        let before = self.metrics().snapshot;
        raft.trigger().snapshot().await.map_err(|e| stopped(g, e))?;
        // The snapshot changes unless the retention point has not moved since the last one.
        let snapshot = match raft
            .wait(Some(timeout))
            .metrics(|m| m.snapshot != before, "snapshot built")
            .await
        {
            Ok(m) => m.snapshot,
            Err(_) => before,
        };
        let Some(snapshot) = snapshot else { return Ok(None) };
        raft.trigger().purge_log(snapshot.index).await.map_err(|e| stopped(g, e))?;
        raft.wait(Some(timeout))
            .metrics(|m| m.purged.as_ref().map(|p| p.index) >= Some(snapshot.index), "log purged")
            .await
            .map_err(|e| Error::Timeout { group: g, detail: e.to_string() })?;
        Ok(Some(snapshot.into()))
    }
}

fn stopped<C: openraft::RaftTypeConfig>(group: GroupId, e: openraft::errors::Fatal<C>) -> Error {
    crate::error::fatal(group, e)
}

impl<A: App, S: StateMachine<A>> GroupInner<A, S> {
    pub(crate) fn note_replicas(&self, ids: impl IntoIterator<Item = ReplicaId>) {
        self.seen_replicas.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
    }

    /// Whether this replica follows a live leader: one is known, it is another replica, its
    /// broker is alive, and it has reached this replica since this replica started or that
    /// broker last died or restarted.
    fn leader_healthy(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader {
            return false;
        }
        let Some(leader) = m.current_leader else { return false };
        if leader == self.replica || !self.heard_leader.load(Ordering::Relaxed) {
            return false;
        }
        m.membership_config.membership().get_node(&leader).is_some_and(|n| {
            self.detector.is_alive(n.broker_id) && !self.detector.is_stopped(n.broker_id, self.id)
        })
    }

    /// This replica's answer refusing a pre-vote.
    fn refuse_vote(&self) -> pb::VoteResponse {
        let vote = self.raft.metrics().borrow_watched().vote;
        pb::VoteResponse {
            vote: Some(wire::vote_to_pb(&vote)),
            vote_granted: false,
            last_log_id: wire::opt_log_id_to_pb(self.log.last_raft_log_id().as_ref()),
        }
    }
}

impl<A: App, S: StateMachine<A>> GroupInner<A, S> {
    /// Asks the other voters whether they would vote for this replica at the next term
    /// (they answer by log and term when they see no live leader). Resolves to whether a
    /// quorum, this replica included, would.
    fn sounding(&self) -> BoxFuture<'static, bool> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        // During a membership change a vote needs a majority of each configuration.
        let configs: Vec<BTreeSet<ReplicaId>> = membership.get_joint_config().clone();
        let nodes: Vec<(ReplicaId, ReplicaNode)> = configs
            .iter()
            .flatten()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|v| **v != self.replica)
            .filter_map(|v| Some((*v, membership.get_node(v)?.clone())))
            .collect();
        let vote = pb::Vote { term: m.current_term + 1, voted_for: self.replica, committed: false };
        let last = wire::opt_log_id_to_pb(self.log.last_raft_log_id().as_ref());
        let (group, me, broker) = (self.id, self.replica, self.peers.me());
        let peers = self.peers.clone();
        let detector = self.detector.clone();
        let timeout = self.detector.timeout();
        async move {
            let mut asks = futures::stream::FuturesUnordered::new();
            for (target, node) in nodes {
                // A broker held dead cannot vote: do not wait out a connect timeout on it.
                if !detector.is_alive(node.broker_id) {
                    continue;
                }
                let Ok(peer) = peers.get(node.broker_id, &node.addr) else { continue };
                if peer.cut.load(Ordering::Relaxed) {
                    continue;
                }
                let req = pb::VoteRequest {
                    address: Some(pb::Address { group, target, from: me, from_broker: broker }),
                    vote: Some(vote),
                    last_log_id: last,
                    leadership_transfer: false,
                    pre_vote: true,
                };
                asks.push(async move {
                    peer.counters.rpcs.fetch_add(1, Ordering::Relaxed);
                    let mut client = peer.client.clone();
                    let mut request = tonic::Request::new(req);
                    request.set_timeout(timeout);
                    let granted = matches!(
                        tokio::time::timeout(timeout, client.vote(request)).await,
                        Ok(Ok(r)) if r.get_ref().vote_granted
                    );
                    (target, granted)
                });
            }
            let mut yes: BTreeSet<ReplicaId> = BTreeSet::from([me]);
            let quorum = |yes: &BTreeSet<ReplicaId>| {
                configs.iter().all(|c| c.iter().filter(|v| yes.contains(v)).count() * 2 > c.len())
            };
            // Done as soon as a quorum would grant.
            while let Some((target, granted)) = asks.next().await {
                if granted {
                    yes.insert(target);
                    if quorum(&yes) {
                        return true;
                    }
                }
            }
            quorum(&yes)
        }
        .boxed()
    }
}

impl<A: App, S: StateMachine<A>> GroupRpc for GroupInner<A, S> {
    fn group_id(&self) -> GroupId {
        self.id
    }

    fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    fn append_stream(
        &self,
        first: pb::AppendRequest,
        rest: BoxStream<'static, Result<pb::AppendRequest, Status>>,
    ) -> BoxStream<'static, Result<pb::AppendResponse, Status>> {
        self.heard_leader.store(true, Ordering::Relaxed);
        let bad: Arc<Mutex<Option<String>>> = Arc::default();
        let bad_in = bad.clone();
        let input = futures::stream::once(async { Ok(first) }).chain(rest).scan((), move |_, r| {
            let decoded = match r {
                Ok(req) => wire::append_from_pb::<A>(req).map_err(|e| format!("bad append: {e}")),
                Err(status) => Err(format!("append stream broken: {}", status.message())),
            };
            futures::future::ready(match decoded {
                Ok(req) => Some(req),
                Err(e) => {
                    *bad_in.lock().unwrap() = Some(e);
                    None
                }
            })
        });
        let output = self.raft.stream_append(input).map(|r| match r {
            Ok(res) => Ok(wire::append_result_to_pb::<A>(&res)),
            Err(fatal) => Ok(wire::append_error_to_pb(format!("raft stopped: {fatal}"))),
        });
        let tail = futures::stream::once(async move { bad.lock().unwrap().take() })
            .filter_map(|e| async move { e.map(|e| Ok(wire::append_error_to_pb(e))) });
        output.chain(tail).boxed()
    }

    fn heartbeat(&self, req: pb::AppendRequest) -> BoxFuture<'static, pb::AppendResponse> {
        self.heard_leader.store(true, Ordering::Relaxed);
        let raft = self.raft.clone();
        async move {
            let req = match wire::append_from_pb::<A>(req) {
                Ok(r) => r,
                Err(e) => return wire::append_error_to_pb(format!("bad heartbeat: {e}")),
            };
            let (prev, last) = wire::append_range::<A>(&req);
            match raft.append_entries(req).await {
                Ok(resp) => wire::append_result_to_pb::<A>(&resp.into_stream_result(prev, last)),
                Err(e) => wire::append_error_to_pb(format!("raft: {e}")),
            }
        }
        .boxed()
    }

    fn vote(&self, req: pb::VoteRequest) -> BoxFuture<'static, Result<pb::VoteResponse, Status>> {
        let mut vote = match wire::vote_req_from_pb::<A>(&req) {
            Ok(v) => v,
            Err(e) => {
                let status = Status::invalid_argument(format!("bad vote request: {e}"));
                return async move { Err(status) }.boxed();
            }
        };
        let raft = self.raft.clone();
        let is_leader = self.raft.metrics().borrow_watched().state == ServerState::Leader;
        let healthy = self.leader_healthy();
        if req.pre_vote && !is_leader && !healthy {
            // No live leader here: answer by log and term alone, as a pre-vote is meant to,
            // without openraft's lease check (the lease outlives a dead leader by far).
            let mine = self.raft.metrics().borrow_watched().vote;
            let my_last = self.log.last_raft_log_id();
            let granted = vote.last_log_id >= my_last
                && matches!(
                    vote.vote.partial_cmp(&mine),
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                );
            let resp = pb::VoteResponse {
                vote: Some(wire::vote_to_pb(&mine)),
                vote_granted: granted,
                last_log_id: wire::opt_log_id_to_pb(my_last.as_ref()),
            };
            return async move { Ok(resp) }.boxed();
        }
        if req.pre_vote && (is_leader || healthy) {
            // Idle groups hold no lease (nothing is sent), so openraft alone would grant this
            // pre-vote and let, e.g., a restarted follower depose a live leader. A live leader
            // refuses it and heartbeats, so the candidate learns of it.
            if is_leader {
                self.trigger_heartbeat();
            }
            let refused = self.refuse_vote();
            return async move { Ok(refused) }.boxed();
        }
        // The leader lease keeps a live leader from being disrupted. When this replica has no
        // live leader (its broker is dead as far as this broker's own failure detector can
        // tell), there is nothing to protect: let the vote through at once instead of waiting
        // out the dead leader's lease.
        let lease_void = !req.pre_vote && !is_leader && !healthy;
        let span = self.span.clone();
        async move {
            let resp = if req.pre_vote {
                raft.pre_vote(vote).await
            } else {
                vote.leadership_transfer |= lease_void;
                raft.vote(vote).await
            };
            let resp = resp.map_err(|e| Status::unavailable(format!("raft: {e}")))?;
            Ok(wire::vote_resp_to_pb::<A>(&resp))
        }
        .instrument(span)
        .boxed()
    }

    fn install_snapshot(
        &self,
        req: pb::SnapshotRequest,
    ) -> BoxFuture<'static, Result<pb::SnapshotResponse, Status>> {
        self.heard_leader.store(true, Ordering::Relaxed);
        let raft = self.raft.clone();
        async move {
            let bad = |e: std::io::Error| Status::invalid_argument(format!("bad snapshot: {e}"));
            let vote = wire::vote_from_pb(req.vote.as_ref()).map_err(bad)?;
            let membership =
                wire::stored_membership_from_pb(req.membership_log_id.as_ref(), req.membership)
                    .map_err(bad)?;
            let snapshot = Snapshot {
                meta: RaftSnapshotMeta {
                    last_log_id: wire::opt_log_id_from_pb(req.last_log_id.as_ref()),
                    last_membership: membership,
                },
                snapshot: SnapshotData { next_offset: req.next_offset, data: req.data },
            };
            let resp = raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| Status::unavailable(format!("raft: {e}")))?;
            Ok(pb::SnapshotResponse { vote: Some(wire::vote_to_pb(&resp.vote)) })
        }
        .boxed()
    }

    fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<pb::TransferLeaderResponse, Status>> {
        let raft = self.raft.clone();
        async move {
            let from = wire::vote_from_pb(req.from_leader.as_ref())
                .map_err(|e| Status::invalid_argument(format!("bad transfer request: {e}")))?;
            let tl = TransferLeaderRequest::new(
                from,
                req.to_node_id,
                wire::opt_log_id_from_pb(req.last_log_id.as_ref()),
            );
            let resp = raft
                .handle_transfer_leader(tl)
                .await
                .map_err(|e| Status::unavailable(format!("raft: {e}")))?;
            use pb::transfer_leader_response::Result as R;
            let result = match resp {
                Ok(()) => R::Accepted(true),
                Err(TransferLeaderError::VoteChanged { expected, actual }) => {
                    R::VoteChanged(pb::VoteChanged {
                        expected: Some(wire::vote_to_pb(&expected)),
                        actual: Some(wire::vote_to_pb(&actual)),
                    })
                }
                Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                    R::LogNotFlushed(pb::LogNotFlushed {
                        expected: wire::opt_log_id_to_pb(expected.as_ref()),
                        actual: wire::opt_log_id_to_pb(actual.as_ref()),
                    })
                }
            };
            Ok(pb::TransferLeaderResponse { result: Some(result) })
        }
        .boxed()
    }

    fn status(&self) -> GroupStatus {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        let broker_of = |id: &ReplicaId| membership.get_node(id).map(|n| n.broker_id);
        let voters: Vec<ReplicaId> = membership.voter_ids().collect();
        let last_log_index = m.last_log_index;
        GroupStatus {
            is_leader: m.state == ServerState::Leader,
            is_voter: voters.contains(&self.replica),
            running: m.running_state.is_ok(),
            leader: m.current_leader.map(|id| (id, broker_of(&id))),
            voter_brokers: voters.iter().filter_map(broker_of).collect(),
            voters: voters.iter().filter_map(|id| Some((*id, broker_of(id)?))).collect(),
            replica: self.replica,
            replica_brokers: membership.nodes().map(|(_, n)| n.broker_id).collect(),
            members: membership.nodes().map(|(_, n)| (n.broker_id, n.addr.clone())).collect(),
            follower_lag: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, matched)| {
                            let matched = matched.as_ref().map_or(0, |l| l.index + 1);
                            (*id, last_log_index.map_or(0, |l| l + 1).saturating_sub(matched))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn brief(&self) -> Brief {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let membership = m.membership_config.membership();
        let last_log_index = m.last_log_index;
        // Not `voter_ids()`: that builds a set; this scan runs for every group.
        let joint = membership.get_joint_config();
        let is_voter = joint.iter().any(|c| c.contains(&self.replica));
        Brief {
            is_leader: m.state == ServerState::Leader,
            is_voter,
            sole_voter: is_voter && matches!(joint.as_slice(), [c] if c.len() == 1),
            running: m.running_state.is_ok(),
            leader_broker: m
                .current_leader
                .filter(|l| *l != self.replica)
                .and_then(|l| membership.get_node(&l))
                .map(|n| n.broker_id),
            term: m.current_term,
            last_log_index,
            committed: m.local_committed.map(|c| c.index),
            applied: m.last_applied.map(|c| c.index),
            lagging: m.replication.as_ref().is_some_and(|r| {
                r.values().any(|matched| matched.as_ref().map(|l| l.index) < last_log_index)
            }),
        }
    }

    fn heard_leader(&self) -> bool {
        self.heard_leader.load(Ordering::Relaxed)
    }

    fn forget_leader(&self) {
        self.heard_leader.store(false, Ordering::Relaxed);
    }

    fn trigger_heartbeat(&self) {
        let raft = self.raft.clone();
        tokio::spawn(async move {
            let _ = raft.trigger().heartbeat().await;
        });
    }

    fn trigger_elect(&self, delay: Duration, pre_vote: bool) {
        let raft = self.raft.clone();
        let span = self.span.clone();
        let term = self.raft.metrics().borrow_watched().current_term;
        let detector = self.detector.clone();
        let heard = self.heard_leader.clone();
        let sounding = (!pre_vote).then(|| self.sounding());
        let group = self.id;
        tokio::spawn(
            async move {
                tokio::time::sleep(delay).await;
                // Another replica may have campaigned meanwhile (this one voted: its term
                // moved) or a leader may have reached us: campaigning now would only
                // depose it.
                let still_needed = {
                    let m = raft.metrics();
                    let m = m.borrow_watched();
                    let leader_alive = heard.load(Ordering::Relaxed)
                        && m.current_leader.is_some_and(|l| {
                            m.membership_config.membership().get_node(&l).is_some_and(|n| {
                                detector.is_alive(n.broker_id)
                                    && !detector.is_stopped(n.broker_id, group)
                            })
                        });
                    // A pre-vote cannot depose a leader that still holds its lease; a forced
                    // campaign (after a peer's death) must not run while a live leader is known.
                    m.current_term == term
                        && m.state != ServerState::Leader
                        && (pre_vote || !leader_alive)
                };
                if !still_needed {
                    tracing::debug!("campaign called off: the group moved on");
                    return;
                }
                // A forced campaign bumps the term even when it cannot win (this replica's
                // log is behind), and then blocks the survivor that could at that term.
                // Sound the other voters first, as a pre-vote would (openraft's own pre-vote
                // waits out the dead leader's lease on this side).
                if let Some(sounding) = sounding {
                    if !sounding.await {
                        tracing::debug!("campaign called off: no quorum would vote for this one");
                        return;
                    }
                    // The sounding took a round trip: another survivor may have won meanwhile.
                    let m = raft.metrics();
                    let m = m.borrow_watched();
                    if m.current_term != term || m.state == ServerState::Leader {
                        tracing::debug!("campaign called off: the group moved on");
                        return;
                    }
                }
                tracing::info!(pre_vote, "campaigning");
                let _ = raft.trigger().elect(pre_vote).await;
            }
            .instrument(span),
        );
    }

    fn hand_off(&self, timeout: Duration) -> BoxFuture<'static, ()> {
        let raft = self.raft.clone();
        let me = self.replica;
        let target = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<ReplicaId> = membership.voter_ids().collect();
            // A voter on a live broker, the most caught up, and of those the one heard from
            // last: a replica just restarted elsewhere may not answer yet.
            let live = |id: &ReplicaId| {
                membership.get_node(id).is_some_and(|n| {
                    self.detector.is_alive(n.broker_id)
                        && !self.detector.is_stopped(n.broker_id, self.id)
                })
            };
            let heard =
                |id: &ReplicaId| m.heartbeat.as_ref().and_then(|h| h.get(id).copied().flatten());
            let target = m.replication.as_ref().and_then(|r| {
                r.iter()
                    .filter(|(id, _)| **id != me && voters.contains(id) && live(id))
                    .max_by_key(|(id, matched)| (matched.map(|l| l.index), heard(id)))
                    .map(|(id, _)| *id)
            });
            target.filter(|_| m.state == ServerState::Leader).map(|to| (m.current_term, to))
        };
        if let Some((term, to)) = target {
            self.note_hand_off(term, to);
        }
        let group = self.id;
        async move {
            let Some((_, to)) = target else { return };
            let started = std::time::Instant::now();
            if let Err(e) = raft.trigger().transfer_leader(to).await {
                tracing::info!(group, to, "leadership hand-off not started: {e}");
                return;
            }
            // Until the new leader is heard from: requests refused from here on name it.
            let moved = raft
                .wait(Some(timeout))
                .metrics(
                    |m| m.state != ServerState::Leader && m.current_leader.is_some_and(|l| l != me),
                    "handed off",
                )
                .await;
            match moved {
                Ok(_) => {
                    tracing::debug!(group, to, took = ?started.elapsed(), "leadership handed off")
                }
                Err(e) => tracing::info!(group, to, "leadership hand-off unfinished: {e}"),
            }
        }
        .boxed()
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let raft = self.raft.clone();
        async move {
            let _ = raft.shutdown().await;
        }
        .boxed()
    }
}
