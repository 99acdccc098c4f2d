//! The application state machine of a group, and its adapter to openraft.
//!
//! The caller (the broker) supplies one [`StateMachine`] per group: partition, consumer
//! offsets or controller state. The trait is synchronous and small on purpose: every method
//! runs on the group's state-machine task, one at a time, and the state is small (the Raft
//! log is the data log, the state machine holds only metadata).
//!
//! Snapshots: [`StateMachine::build_snapshot`] describes the state as of the
//! *retention point* (a checkpoint at or below the applied index), not the head, so a new
//! replica installs a small snapshot and then receives every retained entry by replication.

use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use bytes::Bytes;
use futures::Stream;
use futures::TryStreamExt;
use openraft::RaftSnapshotBuilder;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;

use crate::log::SegmentLog;
use crate::model::Entry;
use crate::model::LogId;
use crate::model::SnapshotMeta;
use crate::model::StoredMembership;
use crate::types::App;
use crate::types::CommittedLeaderId;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::TypeConfig;

/// openraft's last applied membership.
pub(crate) type RaftStoredMembership =
    openraft::StoredMembership<CommittedLeaderId, ReplicaId, ReplicaNode>;
/// openraft's snapshot metadata.
pub(crate) type RaftSnapshotMeta =
    openraft::SnapshotMeta<CommittedLeaderId, ReplicaId, ReplicaNode>;
/// A snapshot as openraft handles it.
pub(crate) type Snapshot =
    openraft::Snapshot<CommittedLeaderId, ReplicaId, ReplicaNode, SnapshotData>;

/// The bytes of a snapshot, and the record offset right after its last entry.
///
/// `next_offset` lets a replica that installs the snapshot continue the record-offset
/// sequence exactly (`SegmentLog::set_snapshot_offset`); apps without record offsets
/// ([`App::RECORD_OFFSETS`] false) may leave it 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotData {
    /// Record offset after the snapshot's last entry.
    pub next_offset: i64,
    /// Application state, in the application's own encoding.
    pub data: Bytes,
}

/// The state of one group, supplied by the application.
///
/// Errors are storage errors: openraft stops the group on any of them (it cannot skip an
/// entry), so bad *input* must be rejected before it is proposed, never here.
pub trait StateMachine<A: App>: Send + 'static {
    /// The last applied log id and membership (on restart: what the durable state holds;
    /// entries after it are applied again).
    fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)>;

    /// The record offset after the last applied entry, for apps with record offsets
    /// ([`App::RECORD_OFFSETS`]); `None` (the default) when the app does not track it.
    fn applied_next_offset(&mut self) -> Option<i64> {
        None
    }

    /// Applies one committed entry, in log order. Blank and membership entries are applied
    /// too (they advance the applied log id and carry no records).
    fn apply(&mut self, entry: Entry<A>) -> io::Result<A::Response>;

    /// Builds a snapshot at the retention point: a checkpoint at or below the applied index.
    /// The log may then be purged up to the snapshot's last log id.
    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)>;

    /// The latest snapshot built or installed, if any (what a new replica receives).
    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>>;

    /// Replaces the whole state with a snapshot received from the leader.
    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> io::Result<()>;
}

/// Adapts a [`StateMachine`] to openraft's `RaftStateMachine`, converting rafka's types to
/// openraft's. The state is shared so that snapshot builders and the owner of the group
/// handle can reach it.
pub(crate) struct SmAdapter<A: App, S: StateMachine<A>> {
    pub(crate) sm: Arc<Mutex<S>>,
    pub(crate) log: SegmentLog<A>,
}

pub(crate) fn lock_sm<S>(sm: &Mutex<S>) -> MutexGuard<'_, S> {
    // A panic inside the app's state machine leaves openraft's worker stopped anyway; the
    // state is still the app's to inspect.
    sm.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds snapshots off the state-machine task.
pub(crate) struct SnapshotBuilder<S> {
    sm: Arc<Mutex<S>>,
}

impl<A: App, S: StateMachine<A>> RaftSnapshotBuilder<TypeConfig<A>> for SnapshotBuilder<S> {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let (meta, snapshot) = lock_sm(&self.sm).build_snapshot()?;
        Ok(Snapshot { meta: meta.to_raft(), snapshot })
    }
}

impl<A: App, S: StateMachine<A>> RaftStateMachine<TypeConfig<A>> for SmAdapter<A, S> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<crate::types::LogId>, RaftStoredMembership)> {
        let mut sm = lock_sm(&self.sm);
        let (applied, membership) = sm.applied_state()?;
        // A state machine restored from its own checkpoint may be ahead of the local log
        // (the checkpoint was written after an entry was applied, the crash cut the log
        // before it): openraft then purges the log up to the applied entry, which needs the
        // record offset that follows it.
        if let (Some(last), Some(next)) = (applied, sm.applied_next_offset()) {
            self.log.set_snapshot_offset(last.index, next);
        }
        Ok((applied.map(Into::into), membership.to_raft()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig<A>>>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = lock_sm(&self.sm).apply(Entry::from_raft(entry))?;
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.sm.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &RaftSnapshotMeta,
        data: SnapshotData,
    ) -> io::Result<()> {
        // The log is purged up to the snapshot right after this: tell it where record
        // offsets continue, since it may hold none of the snapshot's entries.
        if let Some(last) = &meta.last_log_id {
            self.log.set_snapshot_offset(last.index, data.next_offset);
        }
        lock_sm(&self.sm).install_snapshot(&SnapshotMeta::from_raft(meta), data)
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let current = lock_sm(&self.sm).current_snapshot()?;
        Ok(current.map(|(meta, snapshot)| Snapshot { meta: meta.to_raft(), snapshot }))
    }
}
