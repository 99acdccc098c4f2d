//! Writing to a group: proposals (waited for, or submitted in order and fenced to a term),
//! the leader-ready rule, and lease renewal for quiesced groups.

use super::*;

impl<A: App, S: StateMachine<A>> Group<A, S> {
    /// Proposes `data`; returns its log id and the state machine's response once it is
    /// committed and applied. Fails `NOT_LEADER` (with the leader) on a follower.
    pub async fn write(&self, data: A::Data) -> Result<(crate::model::LogId, A::Response), Error> {
        let g = self.inner.id;
        let mut attempt = 0;
        loop {
            match self.inner.raft.client_write(data.clone()).await {
                Ok(r) => return Ok((r.log_id.into(), r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                    if f.reason == ForwardReason::LeaseExpired && attempt < 3 =>
                {
                    // An idle (quiesced) group sends no heartbeats, so its leader's quorum
                    // lease lapses; one heartbeat round renews it.
                    attempt += 1;
                    self.renew_lease().await?;
                }
                Err(e) => {
                    tracing::debug!(group = g, "write refused: {e}");
                    return Err(self.client_write_error(g, e));
                }
            }
        }
    }

    /// Submits `data` for replication without waiting for it; the returned future resolves
    /// with its log id and the state machine's response once it is committed and applied.
    /// Proposals submitted one after another enter the log in that order, and only while
    /// this replica leads the term it led at submission (else they fail `NOT_LEADER`).
    pub async fn propose(
        &self,
        data: A::Data,
    ) -> Result<
        impl Future<Output = Result<(crate::model::LogId, A::Response), Error>> + Send + 'static,
        Error,
    > {
        let term = self.metrics().current_term;
        self.propose_in_term(data, term).await
    }

    /// [`Group::propose`], refused (`NOT_LEADER`) unless this replica leads `term`: a caller
    /// that checked state under one term never proposes into another.
    pub async fn propose_in_term(
        &self,
        data: A::Data,
        term: u64,
    ) -> Result<
        impl Future<Output = Result<(crate::model::LogId, A::Response), Error>> + Send + 'static,
        Error,
    > {
        let g = self.inner.id;
        let m = self.metrics();
        if m.state != ServerState::Leader || m.current_term != term {
            return Err(Error::NotLeader { group: g, leader: self.leader() });
        }
        // A lone voter is its own quorum: it has no lease to renew (no heartbeat of its would
        // ever be acknowledged).
        let alone = m.membership_config.membership().voter_ids().count() <= 1;
        let fresh = m
            .last_quorum_acked
            .as_ref()
            .is_some_and(|t| openraft::Instant::elapsed(&**t) < self.inner.lease / 2);
        if !alone && !fresh {
            self.renew_lease().await?;
        }
        let (responder, rx) = openraft::impls::ProgressResponder::complete_only();
        self.inner
            .raft
            .write(data)
            .with_leader(crate::types::CommittedLeaderId::new(term))
            .responder(responder)
            .await
            .map_err(|e| crate::error::fatal(g, e))?;
        let group = self.clone();
        Ok(async move {
            match rx.await {
                Ok(Ok(r)) => Ok((r.log_id.into(), r.data)),
                Ok(Err(e)) => Err(group.write_error(g, e)),
                Err(_) => Err(group.moved_or_stopped("proposal dropped")),
            }
        })
    }

    /// A proposal this replica dropped as it stopped: `NOT_LEADER` naming the leader it
    /// handed over to (the caller retries there at once), else `Stopped`.
    fn moved_or_stopped(&self, detail: &str) -> Error {
        match self.leader() {
            Some((id, node)) if id != self.inner.replica => {
                Error::NotLeader { group: self.inner.id, leader: Some((id, node)) }
            }
            _ => Error::Stopped { group: self.inner.id, detail: detail.into() },
        }
    }

    /// Whether this replica leads and has applied an entry of its own term: every entry of
    /// earlier terms is then applied too, so state read from the state machine is complete.
    pub fn is_leader_ready(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader
            && m.last_applied
                .as_ref()
                .is_some_and(|l| l.committed_leader_id().term == m.current_term)
    }

    /// Waits up to `timeout` for [`Group::is_leader_ready`]; false if this replica stops
    /// leading or time runs out.
    pub async fn wait_leader_ready(&self, timeout: Duration) -> bool {
        let ready = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.last_applied
                            .as_ref()
                            .is_some_and(|l| l.committed_leader_id().term == m.current_term)
                },
                "leader ready",
            )
            .await;
        ready.is_ok() && self.is_leader_ready()
    }

    /// Confirms that this replica still leads: a quorum acknowledged it within `within`
    /// (else one heartbeat round asks). A leader cut off from its quorum never steps down by
    /// itself, so state served without a write (a read, an unchanged answer) must be fenced
    /// this way when a newer leader may act on the same state after `within`.
    ///
    /// A leader that handed its term to another replica confirms nothing any more: the
    /// target campaigns at once and the voters grant it without waiting out this lease, so
    /// a quorum's recent acknowledgement no longer means no other leader exists. It answers
    /// `NOT_LEADER` pointing at the target until it learns of the newer term.
    pub async fn confirm_leadership(&self, within: Duration) -> Result<(), Error> {
        let g = self.inner.id;
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(Error::NotLeader { group: g, leader: self.leader() });
        }
        self.check_not_handed_off(&m)?;
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return Ok(());
        }
        self.renew_lease_within(within).await?;
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(Error::NotLeader { group: g, leader: self.leader() });
        }
        self.check_not_handed_off(&m)
    }

    /// `NOT_LEADER` (naming the target) if this leader handed its current term over.
    fn check_not_handed_off(&self, m: &RaftMetrics<TypeConfig<A>>) -> Result<(), Error> {
        let Some(to) = self.inner.handed_off_to(m.current_term) else { return Ok(()) };
        let node = m.membership_config.membership().get_node(&to).cloned();
        Err(Error::NotLeader { group: self.inner.id, leader: node.map(|n| (to, n)) })
    }

    /// Confirms, before serving a read, that no other replica can have become leader: a
    /// quorum acknowledged this leader within half the failure detector's timeout (the soonest
    /// its peers may declare it dead and elect another), else one heartbeat round asks. A
    /// leader cut off from its quorum would otherwise keep serving its old high watermark
    /// while a new leader acknowledges writes past it.
    pub async fn confirm_read_lease(&self) -> Result<(), Error> {
        self.confirm_leadership(self.inner.detector.timeout() / 2).await
    }

    /// Sends heartbeat rounds until a quorum has acknowledged one (one renewal at a time
    /// per group; concurrent writers wait for it).
    pub(super) async fn renew_lease(&self) -> Result<(), Error> {
        self.renew_lease_within(self.inner.lease / 2).await
    }

    /// [`Group::renew_lease`], with "fresh" meaning acknowledged within `within`.
    async fn renew_lease_within(&self, within: Duration) -> Result<(), Error> {
        let g = self.inner.id;
        let raft = &self.inner.raft;
        let _one = self.inner.renewing.lock().await;
        let fresh = |m: &RaftMetrics<TypeConfig<A>>| {
            m.last_quorum_acked.as_ref().is_some_and(|t| openraft::Instant::elapsed(&**t) < within)
        };
        // Bounded by round-trip timing, not by the (long) lease: a deposed or cut-off leader
        // must not hold writers for long.
        let round = self.inner.heartbeat_timeout;
        let deadline = std::time::Instant::now() + round * 3;
        loop {
            if self.metrics().state != ServerState::Leader || fresh(&self.metrics()) {
                return Ok(());
            }
            let sent = <openraft::TokioInstant as openraft::Instant>::now();
            raft.trigger().heartbeat().await.map_err(|e| stopped(g, e))?;
            let acked = raft
                .wait(Some(round))
                .metrics(
                    |m| {
                        m.state != ServerState::Leader
                            || m.last_quorum_acked.as_ref().is_some_and(|acked| **acked >= sent)
                    },
                    "quorum lease renewed",
                )
                .await;
            if acked.is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    group: g,
                    detail: "no quorum acknowledged a heartbeat: leader lease not renewed".into(),
                });
            }
        }
    }

    pub(super) fn client_write_error(
        &self,
        g: GroupId,
        e: RaftError<TypeConfig<A>, ClientWriteError<TypeConfig<A>>>,
    ) -> Error {
        match e {
            RaftError::APIError(e) => self.write_error(g, e),
            RaftError::Fatal(f) => crate::error::fatal(g, f),
        }
    }

    pub(super) fn write_error(&self, g: GroupId, e: ClientWriteError<TypeConfig<A>>) -> Error {
        match e {
            ClientWriteError::ForwardToLeader(f) => {
                Error::NotLeader { group: g, leader: f.leader_id.zip(f.leader_node) }
            }
            ClientWriteError::ChangeMembershipError(c) => {
                Error::Membership { group: g, detail: c.to_string() }
            }
            // The entry may still commit through the new leader: the outcome is unknown.
            e @ ClientWriteError::LogEntryDiscarded(_) => {
                Error::Timeout { group: g, detail: e.to_string() }
            }
            ClientWriteError::PreconditionFailed(_) => {
                Error::NotLeader { group: g, leader: self.leader() }
            }
        }
    }
}
