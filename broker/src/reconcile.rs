//! The reconciler: hosts exactly the replicas the controller assigns to this broker, deletes
//! copies that were moved away or whose topic was deleted, and has this broker's groups
//! with a reassignment target driven ([`crate::reassign`]). It is level-triggered: every
//! pass (on each change of the controller state, and every second) compares what is with
//! what should be, so it converges after crashes, restarts and missed notifications.
//!
//! Removal is safe against a lagging view of the controller state: completion of a
//! reassignment lists the replica ids it dropped, and a broker deletes its copy of a group
//! only when its replica id is on that list (ids are never reused) or the group's topic is
//! deleted (deleted groups stay as tombstones).

use std::sync::Arc;
use std::time::Duration;

use rafka_proto::groups::OFFSETS_TOPIC;

use crate::broker::Broker;
use crate::controller::CONTROLLER_GROUP;
use crate::reassign;
use crate::replicas::NewReplica;

/// Reconciles on every change of the controller state and every second, until shutdown.
pub async fn run(b: Arc<Broker>) {
    let mut changes = b.controller().subscribe();
    loop {
        reconcile(&b).await;
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn reconcile(b: &Arc<Broker>) {
    let state = b.state();
    let replicas = b.replicas();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let local = replicas.local_replica(p.group);
            if local.is_some_and(|r| p.removed.contains(&r)) {
                replicas.remove(p.group, "its replica was moved off this broker");
                continue;
            }
            let Some(mine) = p.assigned(b.id()) else { continue };
            // A replica of an older incarnation was lost with a wiped disk: the controller
            // replaces it with a fresh one. A copy under another id waits for its removal.
            if replicas.hosts(p.group)
                || !b.is_current(&mine)
                || local.is_some_and(|r| r != mine.replica)
            {
                continue;
            }
            let new = NewReplica {
                name: format!("{}-{i}", t.name),
                partition: i as u32,
                record: p,
                replica: mine.replica,
            };
            let name = new.name.clone();
            let hosted = if t.internal && t.name == OFFSETS_TOPIC {
                replicas.host_coordinator(&state, new).await
            } else {
                replicas.host_partition(&state, new).await
            };
            if let Err(e) = hosted {
                tracing::warn!(partition = %name, "cannot host partition yet: {e}");
            }
        }
    }
    let stored = b.node().log_runtime().stored_groups().unwrap_or_default();
    for group in replicas.hosted_groups().into_iter().chain(stored) {
        if group != CONTROLLER_GROUP && state.deleted_groups.contains(&group) {
            replicas.remove(group, "its topic was deleted");
        }
    }
    reassign::drive_all(b, &state);
}
