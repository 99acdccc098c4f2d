//! The openraft type configuration shared by every rafka Raft group.
//!
//! rafka-raft replicates opaque entries. What an entry *means* belongs to the application
//! (the broker's partition or controller state machine); the log only needs to know how to
//! store the payload and how many records it carries, which it learns through [`LogPayload`].

use std::fmt;
use std::io;
use std::marker::PhantomData;

use bytes::Bytes;
use bytes::BytesMut;

/// Replica id: the openraft `NodeId` of one replica of one group (never reused).
pub type ReplicaId = u64;
/// Raft group id: 0 is the controller, partition groups get ids from the controller.
pub type GroupId = u64;

/// What the log needs to know about an application entry payload.
///
/// `record_count` and `max_timestamp` feed the record-offset function and the time index:
/// `base_offset(e) = base_offset(prev) + record_count(prev)`.
pub trait LogPayload: Clone + fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// Number of records (offsets) this payload occupies.
    fn record_count(&self) -> u32;
    /// Largest record timestamp in the payload (ms since the epoch); `i64::MIN` if none.
    fn max_timestamp(&self) -> i64;
    /// Bytes `encode` will write.
    fn encoded_len(&self) -> usize;
    /// Appends the stored form to `buf`.
    fn encode(&self, buf: &mut BytesMut);
    /// Rebuilds a payload from its stored form. `bytes` is a zero-copy slice of a read buffer.
    fn decode(bytes: Bytes) -> io::Result<Self>;
}

/// An application of the Raft runtime: its entry payload and its apply response.
pub trait App:
    fmt::Debug + Clone + Copy + Default + Eq + PartialEq + Ord + PartialOrd + Send + Sync + 'static
{
    /// Payload of normal entries.
    type Data: LogPayload;
    /// What applying a normal entry returns to the proposer.
    type Response: Send + Sync + 'static;
    /// Whether entries carry record offsets that must stay exact. When true (partition
    /// logs), purging past the end of the local log needs the offset from the installed
    /// snapshot ([`crate::SegmentLog::set_snapshot_offset`]); when false (the controller),
    /// offsets are not used and that purge just keeps counting from the local end.
    const RECORD_OFFSETS: bool = true;
    /// Whether every entry is fdatasynced before it is acknowledged whatever the
    /// [`crate::FlushPolicy`] (the controller: losing metadata a quorum acknowledged loses the
    /// cluster, not just some records). Blank and membership entries of every group always
    /// are: a replica that lost its membership can never elect a leader again.
    const ALWAYS_SYNC: bool = false;
}

/// The openraft type config of application `A`: standard Raft leader ids (one leader per
/// term), u64 replica ids, [`ReplicaNode`] as node info.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TypeConfig<A: App>(PhantomData<A>);

/// Where a replica lives: the broker hosting it and that broker's Raft address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaNode {
    /// The broker hosting the replica.
    pub broker_id: u64,
    /// The broker's internal (Raft) address, `host:port`.
    pub addr: String,
}

impl fmt::Display for ReplicaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker-{}@{}", self.broker_id, self.addr)
    }
}

/// Standard Raft leader id (term + voted-for).
pub type LeaderId = openraft::vote::leader_id_std::LeaderId<u64, ReplicaId>;
/// What a log id carries of its leader: the term.
pub type CommittedLeaderId = openraft::vote::leader_id_std::CommittedLeaderId<u64>;
/// (term, index) of a log entry.
pub type LogId = openraft::LogId<CommittedLeaderId>;
/// A Raft vote.
pub type Vote = openraft::Vote<LeaderId>;

/// Entry payload of application `A`.
pub type Payload<A> = openraft::EntryPayload<<A as App>::Data, ReplicaId, ReplicaNode>;
/// A log entry of application `A`.
pub type Entry<A> = openraft::Entry<CommittedLeaderId, Payload<A>>;
/// A membership config.
pub type Membership = openraft::Membership<ReplicaId, ReplicaNode>;

#[allow(deprecated)] // openraft re-exports the tokio runtime under a deprecated path only.
type Runtime = openraft::TokioRuntime;

impl<A: App> openraft::RaftTypeConfig for TypeConfig<A> {
    type D = A::Data;
    type R = A::Response;
    type NodeId = ReplicaId;
    type Node = ReplicaNode;
    type Term = u64;
    type LeaderId = LeaderId;
    type Vote = Vote;
    type Payload = Payload<A>;
    type Entry = Entry<A>;
    type AsyncRuntime = Runtime;
    type Responder<T>
        = openraft::impls::ProgressResponder<Self, T>
    where
        T: Send + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: Send + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// Builds a log id from term and index.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term), index)
}
