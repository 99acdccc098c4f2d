//! The controller: Raft group 0. Every broker hosts a replica: the founding brokers'
//! (`--initial-cluster`) start as its voters; brokers that join later are learners until the
//! leader makes one a voter in place of a decommissioned one ([`members`]).
//!
//! - [`state`]: the replicated state (brokers, topics, partition placement, producer ids)
//!   and its commands, applied deterministically.
//! - [`placement`]: where a new topic's replicas go (computed by the leader, with liveness).
//! - [`ControllerSm`]: the state machine; it publishes every applied state on a watch
//!   channel, which the reconciler and metadata readers follow.
//! - [`plan`]: the leader's decisions — what a request or a heartbeat becomes (validation,
//!   placement), or why it is refused.
//! - [`handle`]: [`Controller`], this broker's replica of the group: state, leader,
//!   proposing.
//! - [`members`]: adding and removing brokers — draining, removal, rebalancing moves, and
//!   the controller group's voters.
//! - [`live`]: what the controller leader learns from broker heartbeats (partition leaders,
//!   in-sync replicas) — soft state, never in the log.

pub mod handle;
pub mod live;
pub mod members;
pub mod placement;
pub mod plan;
pub mod state;

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use rafka_raft::Entry;
use rafka_raft::EntryPayload;
use rafka_raft::Group;
use rafka_raft::LogId;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;
use tokio::sync::watch;

pub use handle::Controller;
pub use state::Command;
pub use state::ControllerState;
pub use state::Outcome;

/// The controller's Raft group id.
pub const CONTROLLER_GROUP: u64 = 0;

/// The Raft application of the controller group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ControllerApp;

impl rafka_raft::App for ControllerApp {
    type Data = CommandEntry;
    type Response = Outcome;
    const RECORD_OFFSETS: bool = false;
    // Cluster metadata is fsynced before it is acknowledged even with `flush = interval`.
    const ALWAYS_SYNC: bool = true;
}

/// A command as stored in the controller log (JSON).
pub type CommandEntry = crate::json_entry::JsonEntry;

/// The controller state machine. State lives in memory and is rebuilt by re-applying the
/// log on restart (the controller log holds only metadata changes).
pub struct ControllerSm {
    state: ControllerState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMeta, SnapshotData)>,
    tx: watch::Sender<Arc<ControllerState>>,
}

impl ControllerSm {
    /// A fresh state machine and the channel its states are published on.
    pub fn new() -> (ControllerSm, watch::Receiver<Arc<ControllerState>>) {
        let (tx, rx) = watch::channel(Arc::new(ControllerState::default()));
        let sm = ControllerSm {
            state: ControllerState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            tx,
        };
        (sm, rx)
    }
}

impl StateMachine<ControllerApp> for ControllerSm {
    fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    fn apply(&mut self, entry: Entry<ControllerApp>) -> io::Result<Outcome> {
        let id = entry.log_id;
        let out = match entry.payload {
            EntryPayload::Blank => Outcome::None,
            EntryPayload::Normal(c) => {
                let cmd: Command = c.decode("controller command")?;
                self.state.apply(id.index, cmd)
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(id), m);
                Outcome::None
            }
        };
        self.state.version = id.index;
        self.last_applied = Some(id);
        self.tx.send_replace(Arc::new(self.state.clone()));
        Ok(out)
    }

    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
        };
        let data = SnapshotData {
            next_offset: 0,
            data: Bytes::from(serde_json::to_vec(&self.state).map_err(io::Error::other)?),
        };
        self.snapshot = Some((meta.clone(), data.clone()));
        Ok((meta, data))
    }

    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        Ok(self.snapshot.clone())
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> io::Result<()> {
        self.state = serde_json::from_slice(&data.data).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad controller snapshot: {e}"))
        })?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.snapshot = Some((meta.clone(), data));
        self.tx.send_replace(Arc::new(self.state.clone()));
        Ok(())
    }
}

/// The controller group handle on this broker.
pub type ControllerGroup = Group<ControllerApp, ControllerSm>;
