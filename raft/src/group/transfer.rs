//! Handing leadership over: the transfer, what the old leader remembers of it (its reads are
//! fenced for the rest of that term), and resending a transfer that stalled.

use super::*;

impl<A: App, S: StateMachine<A>> Group<A, S> {
    /// Asks the leader (this replica) to hand leadership to voter `to`; returns once `to`
    /// leads, or fails after `timeout` — having first made sure the group is not left with a
    /// leader stuck mid-transfer (see `rescue_failed_transfer`).
    pub async fn transfer_leadership(&self, to: ReplicaId, timeout: Duration) -> Result<(), Error> {
        let g = self.inner.id;
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(Error::NotLeader { group: g, leader: self.leader() });
        }
        if to == self.inner.replica {
            // Already there: openraft would mark this leader as transferring, refusing writes.
            return Ok(());
        }
        self.inner.note_hand_off(m.current_term, to);
        self.inner.raft.trigger().transfer_leader(to).await.map_err(|e| stopped(g, e))?;
        let waited = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader == Some(to), "leadership transferred")
            .await;
        if let Err(e) = waited {
            self.rescue_failed_transfer(m.current_term, to, timeout).await;
            return Err(Error::Timeout { group: g, detail: e.to_string() });
        }
        Ok(())
    }

    /// A transfer whose target never took over (the request was lost, the target died)
    /// leaves openraft's leader marked as transferring for the rest of its term: it takes
    /// no writes and sends no heartbeats, and its followers, whose detectors see its broker
    /// alive, elect no one else. While this replica still leads `term`, the transfer is sent
    /// again: to the same target, then to the other voters, most caught-up first, each given
    /// `timeout`. (openraft will not let a leader campaign for itself.)
    async fn rescue_failed_transfer(&self, term: u64, to: ReplicaId, timeout: Duration) {
        let still_stuck = |m: &RaftMetrics<TypeConfig<A>>| {
            m.state == ServerState::Leader && m.current_term == term
        };
        let m = self.metrics();
        if !still_stuck(&m) {
            return;
        }
        let voters: BTreeSet<ReplicaId> = m.membership_config.membership().voter_ids().collect();
        let mut others: Vec<(Option<u64>, ReplicaId)> = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != to && **id != self.inner.replica && voters.contains(id))
            .map(|(id, matched)| (matched.map(|l| l.index), *id))
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        let g = self.inner.id;
        for target in std::iter::once(to).chain(others.into_iter().map(|(_, id)| id)) {
            if !still_stuck(&self.metrics()) {
                return;
            }
            tracing::info!(
                group = g,
                term,
                to = target,
                "leadership transfer stalled: sending it again"
            );
            self.inner.note_hand_off(term, target);
            if self.inner.raft.trigger().transfer_leader(target).await.is_err() {
                return;
            }
            let moved = self
                .inner
                .raft
                .wait(Some(timeout))
                .metrics(|m| !still_stuck(m), "leadership handed over")
                .await;
            if moved.is_ok() {
                return;
            }
        }
    }
}

impl<A: App, S: StateMachine<A>> GroupInner<A, S> {
    /// Records, before the transfer is sent, that this leader hands `term` over to `to`.
    pub(crate) fn note_hand_off(&self, term: u64, to: ReplicaId) {
        *self.handed_off.lock().unwrap_or_else(|p| p.into_inner()) = Some((term, to));
    }

    /// The replica this leader handed its current term to, if it did.
    pub(crate) fn handed_off_to(&self, term: u64) -> Option<ReplicaId> {
        match *self.handed_off.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((t, to)) if t == term => Some(to),
            _ => None,
        }
    }
}
