//! Replica membership of partition groups: reassignment (learners first, then one change of
//! the voters), removal of replicas moved off this broker, and replacement of replicas lost
//! with a wiped disk.
//!
//! - **Incarnations**: a broker's data directory holds `incarnation`, a random id drawn
//!   when the directory is created. The broker heartbeats it; the controller stamps every
//!   replica with the incarnation of its broker at assignment. A broker hosts only replicas
//!   of its own incarnation, so a broker that lost its disk never rejoins a group under a
//!   replica id whose votes and acknowledged entries it forgot (that could elect a leader
//!   without committed entries). On a new incarnation the controller swaps each lost replica
//!   for a fresh one on the same broker, which joins as a learner like any moved replica.
//! - **Reassignment** is level-triggered: the record's `target` says where the partition
//!   goes; its leader adds missing replicas as learners, waits until they are caught up,
//!   makes exactly the target the voters, removes leftover learners, and reports the
//!   settled voters in its heartbeat; the controller leader then completes the move. Any
//!   later leader picks up where a crashed one stopped.
//! - **Removal**: completion lists the replica ids it dropped; a broker deletes its copy of
//!   a group only when its replica id is on that list (ids are never reused), so a lagging
//!   view of the controller state can never delete a live replica.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::ReplicaNode;
use rafka_raft::StateMachine;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::ControllerState;
use crate::controller::state::Replica;
use crate::internal;

/// How long a leader waits for a new learner to catch up before it retries on a later pass.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(30);

/// Reads this data directory's incarnation, drawing and durably storing one if it is new.
pub fn load_incarnation(data_dir: &Path) -> anyhow::Result<u64> {
    let path = data_dir.join("incarnation");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|e| {
            anyhow::anyhow!("{} is corrupt ({e}); it must hold one integer", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = rand::random::<u64>().max(1);
            let tmp = data_dir.join("incarnation.tmp");
            rafka_raft::durable::creating(&tmp)?;
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "{id}")?;
                f.sync_all()?;
            }
            rafka_raft::durable::rename(&tmp, &path)?;
            rafka_raft::durable::sync_dir(data_dir)?;
            tracing::info!(incarnation = id, "new data directory");
            Ok(id)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// The replica id of this broker's copy of `group` (hosted or only stored), if any.
pub fn local_replica(b: &Broker, group: u64) -> Option<u64> {
    if let Some(p) = b.partition(group) {
        return Some(p.group.replica_id());
    }
    if let Some(c) = b.coordinators.read().unwrap_or_else(|p| p.into_inner()).get(&group) {
        return Some(c.group.replica_id());
    }
    b.node.log_runtime().stored_replica(group).ok().flatten()
}

/// Whether this broker may host `r`: a replica stamped with another incarnation was lost
/// with an earlier disk (0: assigned before incarnations existed).
pub fn is_current(b: &Broker, r: &Replica) -> bool {
    r.incarnation == b.incarnation || r.incarnation == 0
}

/// Deletes this broker's copy of `group` in the background (one task per group): stops the
/// replica, removes its log, Raft metadata, checkpoints and consumer-group rows.
pub fn remove_replica(b: &Arc<Broker>, group: u64, why: &'static str) {
    if !b.deleting.lock().unwrap_or_else(|p| p.into_inner()).insert(group) {
        return;
    }
    let b = b.clone();
    tokio::spawn(async move {
        let removed = b.partitions.write().unwrap_or_else(|p| p.into_inner()).remove(&group);
        let coordinator = b.coordinators.write().unwrap_or_else(|p| p.into_inner()).remove(&group);
        let name = removed.as_ref().map_or(format!("group {group}"), |p| p.name.clone());
        drop((removed, coordinator));
        // A deletion waits for in-flight requests (a long poll holds its partition up to
        // 30 s) and must not hold up the reconciler.
        match b.node.delete_group(group, Duration::from_secs(35)).await {
            Ok(()) => {
                crate::tasks::remove_state_files(&b, group);
                if let Err(e) = b.groups_db.remove_partition(group) {
                    tracing::warn!(partition = %name, "cannot remove consumer-group rows: {e}");
                }
                tracing::info!(partition = %name, group, "deleted this broker's copy: {why}");
            }
            Err(e) => tracing::warn!(partition = %name, group, "cannot delete yet: {e}"),
        }
        b.deleting.lock().unwrap_or_else(|p| p.into_inner()).remove(&group);
    });
}

/// Starts driving the reassignment of every group this broker leads that has a target.
pub fn drive_reassignments(b: &Arc<Broker>, state: &ControllerState) {
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(target) = &p.target else { continue };
            let name = format!("{}-{i}", t.name);
            if let Some(part) = b.partition(p.group) {
                spawn_drive(b, part.group.clone(), target.clone(), name);
            } else if let Some(c) =
                b.coordinators.read().unwrap_or_else(|p| p.into_inner()).get(&p.group)
            {
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
    let id = group.id();
    if !b.reassigning.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
        return;
    }
    let b = b.clone();
    tokio::spawn(async move {
        if let Err(e) = drive(&b, &group, &target, &name).await {
            tracing::info!(partition = %name, "reassignment step failed, retrying later: {e}");
        }
        b.reassigning.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    });
}

/// One pass of a reassignment on the leader; each step is skipped once done.
async fn drive<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: &Group<A, S>,
    target: &[Replica],
    name: &str,
) -> anyhow::Result<()> {
    let state = b.state();
    let ids: BTreeSet<u64> = target.iter().map(|r| r.replica).collect();
    for r in target {
        let membership = group.metrics().membership_config.membership().clone();
        if membership.get_node(&r.replica).is_some() {
            continue;
        }
        let addr = state
            .brokers
            .get(&r.broker)
            .map(|x| x.address.clone())
            .ok_or_else(|| anyhow::anyhow!("broker {} is not registered", r.broker))?;
        if r.broker != b.id {
            b.node.add_peer(r.broker, &addr)?;
        }
        tracing::info!(partition = %name, replica = r.replica, broker = r.broker, "adding a learner");
        let node = ReplicaNode { broker_id: r.broker, addr };
        tokio::time::timeout(LEARNER_CATCH_UP, group.add_learner(r.replica, node))
            .await
            .map_err(|_| anyhow::anyhow!("learner {} still catching up", r.replica))??;
    }
    if group.settled_voters().as_ref() != Some(&ids) {
        if !learners_caught_up(group, &ids) {
            anyhow::bail!("new replicas are not caught up yet");
        }
        tracing::info!(partition = %name, voters = ?ids, "changing the voters");
        group.replace_voters(ids.iter().copied()).await?;
    }
    let membership = group.metrics().membership_config.membership().clone();
    let extra: Vec<u64> =
        membership.nodes().map(|(id, _)| *id).filter(|id| !ids.contains(id)).collect();
    if !extra.is_empty() {
        group.remove_learners(extra).await?;
    }
    if !ids.contains(&group.replica_id())
        && group.is_leader()
        && let Some(first) = target.first()
    {
        // This replica left the voters: hand leadership on rather than wait for an election.
        group.transfer_leadership(first.replica, Duration::from_secs(5)).await?;
    }
    Ok(())
}

/// Whether every member of `ids` has replicated up to the leader's commit index.
fn learners_caught_up<A: App, S: StateMachine<A>>(
    group: &Group<A, S>,
    ids: &BTreeSet<u64>,
) -> bool {
    let m = group.metrics();
    let committed = m.cluster_committed.map_or(0, |l| l.index);
    let Some(replication) = &m.replication else { return false };
    ids.iter().all(|id| {
        *id == group.replica_id()
            || replication.get(id).is_some_and(|l| l.as_ref().map_or(0, |l| l.index) >= committed)
    })
}

/// The settled voters of a group this broker leads, for its heartbeat report.
pub fn reported_voters<A: App, S: StateMachine<A>>(group: &Group<A, S>) -> Vec<u64> {
    let Some(voters) = group.settled_voters() else { return Vec::new() };
    let members = group.metrics().membership_config.membership().nodes().count();
    if members != voters.len() {
        return Vec::new();
    }
    voters.into_iter().collect()
}

/// On the controller leader: completes each reassignment whose leader reports the target
/// as its settled voters.
pub fn complete_reassignments(b: &Arc<Broker>, reports: &[internal::PartitionReport]) {
    let state = b.state();
    for r in reports.iter().filter(|r| !r.voters.is_empty()) {
        let Some((t, i)) = state.partition_of_group(r.group) else { continue };
        let Some(target) = &t.partitions[i as usize].target else { continue };
        let mut ids: Vec<u64> = target.iter().map(|r| r.replica).collect();
        ids.sort_unstable();
        if ids != r.voters {
            continue;
        }
        let group = r.group;
        if !b.completing.lock().unwrap_or_else(|p| p.into_inner()).insert(group) {
            continue;
        }
        let b = b.clone();
        let name = format!("{}-{i}", t.name);
        tokio::spawn(async move {
            match b.propose(Command::CompleteReassignment { group, voters: ids }).await {
                Ok(_) => tracing::info!(partition = %name, "reassignment complete"),
                Err(e) => tracing::debug!(partition = %name, "completing failed: {e}"),
            }
            b.completing.lock().unwrap_or_else(|p| p.into_inner()).remove(&group);
        });
    }
}

/// Controller replica ids of brokers that replaced their disk have this bit set (founding
/// replicas use the broker id, partition replicas count up from 2^32).
const REPLACEMENT_CONTROLLER_REPLICA: u64 = 1 << 63;

/// What this broker's controller replica tells a founding broker probing on an empty disk.
pub fn answer_probe(
    b: &Broker,
    req: internal::ProbeMembershipRequest,
) -> internal::ProbeMembershipResponse {
    let registered = b.state().brokers.contains_key(&req.broker_id);
    let current = match b.controller() {
        // No controller log here either: nothing to know.
        None => true,
        Some(c) => {
            let m = c.metrics();
            match m.last_log_index {
                None => true,
                Some(_) => {
                    m.current_leader.is_some()
                        && m.last_applied.map(|l| l.index) >= m.local_committed.map(|l| l.index)
                }
            }
        }
    };
    internal::ProbeMembershipResponse { registered, current }
}

/// A founding broker on an empty data directory decides its controller replica: if any
/// peer's controller knows it, its disk was replaced and it joins under a fresh replica id
/// (the controller leader adds it as a learner and swaps it for the lost voter); if a
/// majority of the founding brokers (itself included) answer, currently, that it never
/// registered, it founds the cluster under its broker id. Otherwise it asks again.
pub async fn join_controller(b: Arc<Broker>) {
    if b.controller().is_some() {
        return;
    }
    let peers: Vec<String> = match b.config.initial_cluster() {
        Ok(c) => c.into_iter().filter(|(id, _)| *id != b.id).map(|(_, a)| a).collect(),
        Err(e) => {
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    };
    let founders = peers.len() + 1;
    let majority = founders / 2 + 1;
    while !b.is_stopping() {
        let answers = futures::future::join_all(peers.iter().map(|addr| probe(&b, addr))).await;
        let answers: Vec<_> = answers.into_iter().flatten().collect();
        let replacement = answers.iter().any(|a| a.registered);
        let never = answers.iter().filter(|a| a.current && !a.registered).count();
        let decided = if replacement {
            let replica = REPLACEMENT_CONTROLLER_REPLICA | (b.incarnation >> 1);
            tracing::warn!(
                replica,
                "this broker was a cluster member but its data directory is new: joining the \
                 controller as a new replica"
            );
            b.create_controller(replica, false).await
        } else if 1 + never >= majority {
            tracing::info!("founding the controller group");
            b.create_controller(b.id, true).await
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        if let Err(e) = decided {
            tracing::error!("cannot create the controller replica: {e:#}");
        }
        return;
    }
}

async fn probe(b: &Broker, addr: &str) -> Option<internal::ProbeMembershipResponse> {
    let ch = b.channel(addr).ok()?;
    let mut client = internal::internal_client::InternalClient::new(ch);
    let req = internal::ProbeMembershipRequest { broker_id: b.id };
    let answer = tokio::time::timeout(Duration::from_secs(1), client.probe_membership(req)).await;
    answer.ok()?.ok().map(|r| r.into_inner())
}

/// On the controller leader: a broker heartbeating a controller replica id the controller
/// group does not have as a voter, while an older replica of that broker is one, replaced
/// its disk. Adds the new replica as a learner, then swaps it in for the old voter.
pub fn replace_controller_replica(b: &Arc<Broker>, broker: u64, replica: u64, addr: &str) {
    let Some(c) = b.controller() else { return };
    let Some(voters) = c.settled_voters() else { return };
    let membership = c.metrics().membership_config.membership().clone();
    let stale: BTreeSet<u64> = membership
        .nodes()
        .filter(|(id, n)| n.broker_id == broker && **id != replica)
        .map(|(id, _)| *id)
        .collect();
    if stale.is_empty() || !voters.iter().any(|v| stale.contains(v)) && voters.contains(&replica) {
        return;
    }
    if !b.reassigning.lock().unwrap_or_else(|p| p.into_inner()).insert(CONTROLLER_REPLACING) {
        return;
    }
    let (b, c, addr) = (b.clone(), c.clone(), addr.to_string());
    tokio::spawn(async move {
        let swapped = async {
            if membership.get_node(&replica).is_none() {
                tracing::info!(broker, replica, "adding a replaced broker's controller learner");
                b.node.add_peer(broker, &addr)?;
                let node = ReplicaNode { broker_id: broker, addr };
                tokio::time::timeout(LEARNER_CATCH_UP, c.add_learner(replica, node))
                    .await
                    .map_err(|_| anyhow::anyhow!("learner {replica} still catching up"))??;
            }
            let mut next: BTreeSet<u64> =
                voters.iter().copied().filter(|v| !stale.contains(v)).collect();
            if voters.iter().any(|v| stale.contains(v)) {
                next.insert(replica);
            }
            if next != voters {
                tracing::info!(broker, ?next, "swapping the controller voters");
                c.replace_voters(next.iter().copied()).await?;
            }
            let left: Vec<u64> = c
                .metrics()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| stale.contains(id))
                .collect();
            if !left.is_empty() {
                c.remove_learners(left).await?;
            }
            anyhow::Ok(())
        };
        if let Err(e) = swapped.await {
            tracing::info!(broker, "replacing a controller replica failed, retrying later: {e}");
        }
        b.reassigning.lock().unwrap_or_else(|p| p.into_inner()).remove(&CONTROLLER_REPLACING);
    });
}

/// Key of the controller-replica swap in `Broker::reassigning` (group 0 is never a
/// partition group).
const CONTROLLER_REPLACING: u64 = crate::controller::CONTROLLER_GROUP;
