//! A replica's view of its group ([`Group::status`]), with the leader's judgement of which
//! members answered since their broker was last found up.

use super::*;

impl<A: App, S: StateMachine<A>> Group<A, S> {
    /// On a follower or learner: not yet caught up since this replica started — its leader
    /// has not reached it yet, or it has not applied what it knows is committed. A replica
    /// restarted a moment ago looks in sync to a leader that has not noticed the restart;
    /// this is the replica's own, truthful, answer.
    pub fn is_catching_up(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader {
            return false;
        }
        !self.inner.heard_leader.load(Ordering::Relaxed)
            || m.last_applied.map(|l| l.index) < m.local_committed.map(|c| c.index)
    }

    /// This replica's view of the group: term, leader, log and commit positions, membership,
    /// and on the leader each member's replication progress.
    pub fn status(&self) -> crate::model::RaftStatus {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        let mut status = crate::model::RaftStatus::from_raft(&m);
        // Answers (heartbeat or replication acknowledgements) older than the broker's last
        // start are from its previous life.
        if let Some(acked) = m.heartbeat.as_ref().filter(|_| status.is_leader) {
            let membership = m.membership_config.membership();
            for (replica, at) in acked {
                let Some(node) = membership.get_node(replica) else { continue };
                if node.broker_id == self.inner.peers.me() {
                    continue;
                }
                let now = std::time::Instant::now();
                let heard = at.map(|t| now - openraft::Instant::elapsed(&*t));
                let fresh = match (self.inner.detector.up_since(node.broker_id), heard) {
                    (Some(up), Some(heard)) => heard >= up,
                    (Some(_), None) => false,
                    // Never probed: nothing says its answers are stale.
                    (None, _) => true,
                };
                if !fresh || !self.inner.detector.is_alive(node.broker_id) {
                    status.unheard.insert(*replica);
                }
            }
        }
        status
    }
}
