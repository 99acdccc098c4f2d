//! Membership changes of partition groups, driven by their leader: reassignment (learners
//! first, then one change of the voters). The controller group's own members are kept by
//! [`crate::scale`].
//!
//! Reassignment is level-triggered: the partition record's `target` says where the
//! partition goes; its leader adds missing replicas as learners, waits until they are
//! caught up, makes exactly the target the voters, removes leftover learners, and reports the
//! settled voters in its heartbeat ([`reported_voters`]); the controller leader then
//! completes the move. Any later leader picks up where a crashed one stopped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::ReplicaNode;
use rafka_raft::StateMachine;

use crate::broker::Broker;
use crate::controller::ControllerState;
use crate::controller::state::Replica;
use crate::error::Error;
use crate::error::Result;
use crate::supervisor::TaskKey;

/// How long a leader waits for a new learner to catch up before it retries on a later pass.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(30);

/// Starts driving the reassignment of every group this broker leads that has a target.
pub fn drive_all(b: &Arc<Broker>, state: &ControllerState) {
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(target) = &p.target else { continue };
            let name = format!("{}-{i}", t.name);
            if let Some(part) = b.replicas().partition(p.group) {
                spawn_drive(b, part.group.clone(), target.clone(), name);
            } else if let Some(c) = b.replicas().coordinator(p.group) {
                spawn_drive(b, c.group.clone(), target.clone(), name);
            }
        }
    }
}

fn spawn_drive<A: App, S: StateMachine<A>>(
    b: &Arc<Broker>,
    group: Group<A, S>,
    target: Vec<Replica>,
    name: String,
) {
    if !group.is_leader_ready() {
        return;
    }
    let this = b.clone();
    b.tasks().spawn_keyed(TaskKey::Reassign(group.id()), "reassign", async move {
        if let Err(e) = drive(&this, &group, &target, &name).await {
            tracing::info!(partition = %name, "reassignment step failed, retrying later: {e}");
        }
    });
}

/// One pass of a reassignment on the leader; each step is skipped once done.
async fn drive<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: &Group<A, S>,
    target: &[Replica],
    name: &str,
) -> Result<()> {
    let state = b.state();
    let ids: BTreeSet<u64> = target.iter().map(|r| r.replica).collect();
    let raft = |e| Error::from_raft(name, e);
    for r in target {
        if group.status().membership.get_node(&r.replica).is_some() {
            continue;
        }
        let addr =
            state.brokers.get(&r.broker).map(|x| x.address.clone()).ok_or_else(|| {
                Error::ShuttingDown(format!("broker {} is not registered", r.broker))
            })?;
        if r.broker != b.id() {
            b.node().add_peer(r.broker, &addr).map_err(raft)?;
        }
        tracing::info!(partition = %name, replica = r.replica, broker = r.broker, "adding a learner");
        let node = ReplicaNode { broker_id: r.broker, addr };
        add_learner(group, r.replica, node, name).await?;
    }
    if group.settled_voters().as_ref() != Some(&ids) {
        if !learners_caught_up(group, &ids) {
            return Err(Error::TimedOut(format!("{name}: new replicas are not caught up yet")));
        }
        tracing::info!(partition = %name, voters = ?ids, "changing the voters");
        group.replace_voters(ids.iter().copied()).await.map_err(raft)?;
    }
    let membership = group.status().membership;
    let extra: Vec<u64> =
        membership.nodes().map(|(id, _)| *id).filter(|id| !ids.contains(id)).collect();
    if !extra.is_empty() {
        group.remove_learners(extra).await.map_err(raft)?;
    }
    if !ids.contains(&group.replica_id())
        && group.is_leader()
        && let Some(first) = target.first()
    {
        // This replica left the voters: hand leadership on rather than wait for an election.
        group.transfer_leadership(first.replica, Duration::from_secs(5)).await.map_err(raft)?;
    }
    Ok(())
}

/// Adds a learner and waits (bounded) until it has caught up.
async fn add_learner<A: App, S: StateMachine<A>>(
    group: &Group<A, S>,
    replica: u64,
    node: ReplicaNode,
    name: &str,
) -> Result<()> {
    match tokio::time::timeout(LEARNER_CATCH_UP, group.add_learner(replica, node)).await {
        Ok(r) => r.map_err(|e| Error::from_raft(name, e)),
        Err(_) => Err(Error::TimedOut(format!("{name}: learner {replica} still catching up"))),
    }
}

/// Whether every member of `ids` has replicated up to the leader's commit index.
fn learners_caught_up<A: App, S: StateMachine<A>>(
    group: &Group<A, S>,
    ids: &BTreeSet<u64>,
) -> bool {
    group.status().caught_up(group.replica_id(), ids)
}

/// The settled voters of a group this broker leads, for its heartbeat report.
pub fn reported_voters<A: App, S: StateMachine<A>>(group: &Group<A, S>) -> Vec<u64> {
    let Some(voters) = group.settled_voters() else { return Vec::new() };
    let members = group.status().membership.nodes().count();
    if members != voters.len() {
        return Vec::new();
    }
    voters.into_iter().collect()
}
