//! The controller leader's side of adding and removing brokers (see
//! [`crate::controller::members`] for the decisions): on every heartbeat it moves replicas
//! off draining brokers a few partitions at a time, removes a broker once it holds nothing
//! and votes in no controller quorum, and keeps the controller group's membership right —
//! every registered broker's controller replica a member (a learner at first), the voters
//! moved off draining brokers and onto new ones, replicas of lost disks and removed brokers
//! dropped.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use rafka_raft::ReplicaNode;

use crate::broker::Broker;
use crate::controller::ControllerState;
use crate::controller::members;
use crate::controller::state::Command;
use crate::error::Error;
use crate::supervisor::TaskKey;

/// One step of every membership change under way; called on the controller leader with the
/// state it acts on and the live brokers.
pub fn step(b: &Arc<Broker>, state: &ControllerState, live: &[u64]) {
    let moves = members::drain_moves(state, live);
    if !moves.is_empty() {
        let this = b.clone();
        b.tasks().spawn_keyed(TaskKey::Drain, "drain brokers", async move {
            for cmd in moves {
                let what = format!("{cmd:?}");
                match this.controller().propose(cmd).await {
                    Ok(_) => tracing::info!("draining: {what}"),
                    Err(e) => tracing::info!("draining: {what} refused, retried later: {e}"),
                }
            }
        });
    }
    let voters = controller_voter_brokers(b);
    for broker in members::removable(state) {
        if voters.contains(&broker) {
            continue;
        }
        let this = b.clone();
        b.tasks().spawn_keyed(TaskKey::RemoveBroker(broker), "remove a broker", async move {
            match this.controller().propose(Command::RemoveBroker { broker }).await {
                Ok(_) => tracing::info!(broker, "broker decommissioned: it holds no replicas"),
                Err(e) => tracing::info!(broker, "removing the broker failed, retried: {e}"),
            }
        });
    }
    controller_members(b, state);
}

/// Brokers holding a voter of the controller group, as the group's leader sees it.
fn controller_voter_brokers(b: &Broker) -> BTreeSet<u64> {
    let Some(c) = b.controller().group() else { return BTreeSet::new() };
    let membership = c.status().membership;
    let voters = c.settled_voters().unwrap_or_default();
    voters.iter().filter_map(|r| membership.get_node(r)).map(|n| n.broker_id).collect()
}

/// Keeps the controller group's members and voters as [`members::controller_voters`] says.
fn controller_members(b: &Arc<Broker>, state: &ControllerState) {
    let Some(c) = b.controller().group() else { return };
    if !c.is_leader_ready() {
        return;
    }
    let Some(voters) = c.settled_voters() else { return };
    let status = c.status();
    let membership = status.membership.clone();
    let voter_brokers: BTreeMap<u64, u64> =
        voters.iter().filter_map(|r| membership.get_node(r).map(|n| (*r, n.broker_id))).collect();
    let current = |r: &crate::controller::state::BrokerRecord| {
        (r.controller_replica != 0).then_some(r.controller_replica)
    };
    let missing: Vec<(u64, u64, String)> = state
        .brokers
        .values()
        .filter(|r| b.is_alive(r.id))
        .filter_map(|r| current(r).map(|c| (r.id, c, r.address.clone())))
        .filter(|(_, replica, _)| membership.get_node(replica).is_none())
        .collect();
    let candidates: BTreeMap<u64, u64> = state
        .brokers
        .values()
        .filter(|r| !r.draining && b.is_alive(r.id))
        .filter_map(|r| current(r).map(|c| (r.id, c)))
        .filter(|(_, replica)| {
            membership.get_node(replica).is_some()
                && (voters.contains(replica)
                    || status.caught_up(c.replica_id(), &BTreeSet::from([*replica])))
        })
        .collect();
    let next = members::controller_voters(state, &voter_brokers, &candidates);
    let stale: Vec<u64> = membership
        .nodes()
        .filter(|(id, n)| {
            !next.contains(id)
                && match state.brokers.get(&n.broker_id) {
                    None => state.decommissioned.contains(&n.broker_id),
                    Some(r) => r.controller_replica != 0 && r.controller_replica != **id,
                }
        })
        .map(|(id, _)| *id)
        .collect();
    if missing.is_empty() && next == voters && stale.is_empty() {
        return;
    }
    let (this, c) = (b.clone(), c.clone());
    b.tasks().spawn_keyed(TaskKey::ControllerMembers, "controller members", async move {
        let changed = async {
            let raft = |e| Error::from_raft("controller", e);
            for (broker, replica, addr) in missing {
                tracing::info!(broker, replica, "adding a controller learner");
                this.node().add_peer(broker, &addr).map_err(raft)?;
                let node = ReplicaNode { broker_id: broker, addr };
                c.add_learner(replica, node).await.map_err(raft)?;
            }
            if next != voters {
                tracing::info!(from = ?voters, to = ?next, "changing the controller voters");
                // A voter left out stays a learner while its broker is registered (a draining
                // broker still follows the controller state); it goes as `stale` below.
                c.replace_voters_keeping_learners(next.iter().copied()).await.map_err(raft)?;
            }
            let left: Vec<u64> = c
                .status()
                .membership
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| stale.contains(id) && !next.contains(id))
                .collect();
            if !left.is_empty() {
                tracing::info!(replicas = ?left, "removing controller learners");
                c.remove_learners(left).await.map_err(raft)?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = changed.await {
            tracing::info!("changing the controller members failed, retrying later: {e}");
        }
    });
}
