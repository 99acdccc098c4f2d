//! Membership changes of Raft groups, driven by their leader: partition reassignment
//! (learners first, then one change of the voters) and the swap of a replaced broker's
//! controller replica into the controller voters.
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

/// On the controller leader: a broker heartbeating a controller replica id the controller
/// group does not have as a voter, while an older replica of that broker is one, replaced
/// its disk. Adds the new replica as a learner, then swaps it in for the old voter.
pub fn replace_controller_replica(b: &Arc<Broker>, broker: u64, replica: u64, addr: &str) {
    let Some(c) = b.controller().group() else { return };
    let Some(voters) = c.settled_voters() else { return };
    let membership = c.status().membership;
    let stale: BTreeSet<u64> = membership
        .nodes()
        .filter(|(id, n)| n.broker_id == broker && **id != replica)
        .map(|(id, _)| *id)
        .collect();
    if stale.is_empty() || !voters.iter().any(|v| stale.contains(v)) && voters.contains(&replica) {
        return;
    }
    let (this, c, addr) = (b.clone(), c.clone(), addr.to_string());
    let key = TaskKey::ReplaceControllerReplica;
    b.tasks().spawn_keyed(key, "replace controller replica", async move {
        let swapped = async {
            let raft = |e| Error::from_raft("controller", e);
            if membership.get_node(&replica).is_none() {
                tracing::info!(broker, replica, "adding a replaced broker's controller learner");
                this.node().add_peer(broker, &addr).map_err(raft)?;
                let node = ReplicaNode { broker_id: broker, addr };
                add_learner(&c, replica, node, "controller").await?;
            }
            let mut next: BTreeSet<u64> =
                voters.iter().copied().filter(|v| !stale.contains(v)).collect();
            if voters.iter().any(|v| stale.contains(v)) {
                next.insert(replica);
            }
            if next != voters {
                tracing::info!(broker, ?next, "swapping the controller voters");
                c.replace_voters(next.iter().copied()).await.map_err(raft)?;
            }
            let left: Vec<u64> = c
                .status()
                .membership
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| stale.contains(id))
                .collect();
            if !left.is_empty() {
                c.remove_learners(left).await.map_err(raft)?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = swapped.await {
            tracing::info!(broker, "replacing a controller replica failed, retrying later: {e}");
        }
    });
}
