//! The Raft transport: one HTTP/2 channel per peer broker, shared by every group.
//!
//! - [`server`]: the tonic service; routes each request to its group by id, answers an
//!   unknown group or replica with a clear status.
//! - [`client`]: [`Peers`] (one channel per peer broker) and the openraft network of a group:
//!   pipelined stream append, votes, snapshots, leadership transfer.
//! - [`heartbeat`]: coalesces the heartbeats of many groups bound for one peer into one RPC.

pub(crate) mod client;
pub mod dial;
pub(crate) mod heartbeat;
pub(crate) mod server;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tonic::Status;

use crate::types::GroupId;
use crate::types::ReplicaId;
use crate::wire::pb;

pub(crate) use client::Peers;
pub(crate) use server::Groups;

/// RPCs a node sent to its peers, since it started ([`crate::RaftNode::transport_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Every RPC sent: append streams opened, votes, snapshots, transfers, heartbeat batches
    /// and probes.
    pub rpcs: u64,
    /// Heartbeat batches sent (each one RPC).
    pub heartbeat_rpcs: u64,
    /// Group heartbeats carried by those batches.
    pub heartbeats: u64,
    /// Failure-detector probes sent.
    pub probes: u64,
}

/// Per-peer counters behind [`TransportStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub rpcs: std::sync::atomic::AtomicU64,
    pub heartbeat_rpcs: std::sync::atomic::AtomicU64,
    pub heartbeats: std::sync::atomic::AtomicU64,
    pub probes: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> TransportStats {
        use std::sync::atomic::Ordering::Relaxed;
        TransportStats {
            rpcs: self.rpcs.load(Relaxed),
            heartbeat_rpcs: self.heartbeat_rpcs.load(Relaxed),
            heartbeats: self.heartbeats.load(Relaxed),
            probes: self.probes.load(Relaxed),
        }
    }
}

/// What the transport server needs of a hosted group, independent of its application type.
pub(crate) trait GroupRpc: Send + Sync + 'static {
    fn group_id(&self) -> GroupId;
    fn replica_id(&self) -> ReplicaId;
    /// Serves one append stream; `first` was already read off the stream to route it.
    fn append_stream(
        &self,
        first: pb::AppendRequest,
        rest: BoxStream<'static, Result<pb::AppendRequest, Status>>,
    ) -> BoxStream<'static, Result<pb::AppendResponse, Status>>;
    /// Serves one heartbeat (an append without entries).
    fn heartbeat(&self, req: pb::AppendRequest) -> BoxFuture<'static, pb::AppendResponse>;
    fn vote(&self, req: pb::VoteRequest) -> BoxFuture<'static, Result<pb::VoteResponse, Status>>;
    fn install_snapshot(
        &self,
        req: pb::SnapshotRequest,
    ) -> BoxFuture<'static, Result<pb::SnapshotResponse, Status>>;
    fn transfer_leader(
        &self,
        req: pb::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<pb::TransferLeaderResponse, Status>>;

    // What the node's driver needs (crate::driver).
    /// The full status (allocates; for elections and events).
    fn status(&self) -> GroupStatus;
    /// What the driver's periodic scan needs, without allocating.
    fn brief(&self) -> Brief;
    fn heard_leader(&self) -> bool;
    /// The leader's broker died or restarted: its leadership is gone until heard again.
    fn forget_leader(&self);
    fn trigger_heartbeat(&self);
    fn trigger_elect(&self, delay: std::time::Duration, pre_vote: bool);
    fn shutdown(&self) -> BoxFuture<'static, ()>;
    /// If leader, hands leadership to the most caught-up voter and waits up to `timeout`.
    fn hand_off(&self, timeout: std::time::Duration) -> BoxFuture<'static, ()>;
}

/// The cheap part of a group's status, read every scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Brief {
    pub is_leader: bool,
    pub is_voter: bool,
    /// This replica is the group's only voter (and no membership change is under way).
    pub sole_voter: bool,
    pub running: bool,
    /// Broker of the known leader, if it is another replica in the membership.
    pub leader_broker: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub lagging: bool,
}

/// A group's Raft state as the driver sees it.
#[derive(Debug, Clone)]
pub(crate) struct GroupStatus {
    pub is_leader: bool,
    pub is_voter: bool,
    pub running: bool,
    /// Known leader: replica id and (if in the membership) its broker.
    pub leader: Option<(ReplicaId, Option<u64>)>,
    pub voter_brokers: Vec<u64>,
    /// Voters as (replica id, broker).
    pub voters: Vec<(ReplicaId, u64)>,
    /// This replica.
    pub replica: ReplicaId,
    pub replica_brokers: Vec<u64>,
    /// Every member's broker and address.
    pub members: Vec<(u64, String)>,
    /// (Leader only) entries each follower is behind.
    pub follower_lag: Vec<(ReplicaId, u64)>,
}

/// Checks that a request is for this replica: ids are never reused, so a mismatch means a
/// stale sender (the replica was replaced) and the request must not reach openraft.
pub(crate) fn check_target(g: &dyn GroupRpc, address: Option<&pb::Address>) -> Result<(), Status> {
    let Some(a) = address else {
        return Err(Status::invalid_argument("request without an address"));
    };
    if a.target != g.replica_id() {
        return Err(Status::failed_precondition(format!(
            "group {}: replica {} is not hosted here (this node hosts replica {})",
            a.group,
            a.target,
            g.replica_id()
        )));
    }
    Ok(())
}
