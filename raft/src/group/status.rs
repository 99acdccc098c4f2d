//! A replica's view of its group ([`Group::status`]), with the leader's judgement of which
//! members answered since their broker was last found up.

use super::*;

impl<A: App, S: StateMachine<A>> Group<A, S> {
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
