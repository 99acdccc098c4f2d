//! [`Controller`]: this broker's view of the controller group — the replica it hosts (once
//! it has one), the latest applied state, who leads, and proposing commands there.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use rafka_raft::RaftNode;
use tokio::sync::watch;

use super::CONTROLLER_GROUP;
use super::Command;
use super::CommandEntry;
use super::ControllerGroup;
use super::ControllerSm;
use super::ControllerState;
use super::Outcome;
use crate::error::Error;
use crate::error::Leader;
use crate::error::Result;

/// This broker's controller replica and the state it applied.
pub struct Controller {
    me: u64,
    /// Unset while a broker on an empty data directory finds out whether it founds the
    /// cluster or replaces its own lost disk.
    group: OnceLock<ControllerGroup>,
    /// The state machine until the replica is created.
    pending: Mutex<Option<ControllerSm>>,
    state: watch::Receiver<Arc<ControllerState>>,
}

impl Controller {
    /// The controller of broker `me`, without a replica yet.
    pub fn new(me: u64) -> Controller {
        let (sm, state) = ControllerSm::new();
        Controller { me, group: OnceLock::new(), pending: Mutex::new(Some(sm)), state }
    }

    /// Creates the controller replica `replica` on `node` (once).
    pub async fn create_replica(&self, node: &RaftNode, replica: u64) -> Result<ControllerGroup> {
        let sm = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::Internal("the controller replica exists already".into()))?;
        let group = node
            .create_group(CONTROLLER_GROUP, replica, sm)
            .await
            .map_err(|e| Error::from_raft("controller", e))?;
        let _ = self.group.set(group.clone());
        Ok(group)
    }

    /// This broker's controller replica, once it has one.
    pub fn group(&self) -> Option<&ControllerGroup> {
        self.group.get()
    }

    /// The replica id of this broker's controller replica (0: none yet).
    pub fn replica_id(&self) -> u64 {
        self.group().map_or(0, |c| c.replica_id())
    }

    /// The latest controller state this replica applied.
    pub fn state(&self) -> Arc<ControllerState> {
        self.state.borrow().clone()
    }

    /// A receiver that sees every newly applied state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControllerState>> {
        self.state.clone()
    }

    /// Whether this broker's replica leads the controller group.
    pub fn is_leader(&self) -> bool {
        self.group().is_some_and(|c| c.is_leader())
    }

    /// The controller leader's broker id and address.
    pub fn leader(&self) -> Option<(u64, String)> {
        self.group()?.leader().map(|(_, n)| (n.broker_id, n.addr))
    }

    /// `NOT_CONTROLLER` pointing at the controller leader.
    pub fn not_controller(&self) -> Error {
        let leader = self.leader();
        let message = match &leader {
            Some((b, a)) => {
                format!("broker {} is not the controller; it is broker {b} at {a}", self.me)
            }
            None => "the controller has no leader right now".to_string(),
        };
        let leader = leader.map(|(broker_id, address)| Leader { broker_id, address });
        Error::NotController { message, leader }
    }

    /// Proposes a command; only on the controller leader.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome> {
        let Some(controller) = self.group().filter(|c| c.is_leader()) else {
            return Err(self.not_controller());
        };
        match controller.write(CommandEntry::new(&cmd)).await {
            Ok((_, Outcome::Refused { code, message })) => Err(Error::from_code(code, message)),
            Ok((_, out)) => Ok(out),
            Err(rafka_raft::Error::NotLeader { .. }) => Err(self.not_controller()),
            Err(e) => Err(Error::from_raft("controller", e)),
        }
    }
}
