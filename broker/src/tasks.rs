//! The broker's background loops: the reconciler (host exactly the partitions the controller
//! assigns here), heartbeats to the controller leader, retention, and the metrics refresh.
//! Each is level-triggered: it compares what is with what should be on every pass, so it
//! converges after crashes, restarts and missed notifications.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::ReplicaNode;
use rafka_raft::StateMachine;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::live::PartitionLive;
use crate::controller::state::BrokerRecord;
use crate::controller::state::PartitionRecord;
use crate::group::Coordinator;
use crate::group::OffsetsSm;
use crate::internal;
use crate::membership;
use crate::metrics as m;
use crate::partition::Partition;
use crate::partition::PartitionSm;
use crate::partition::retention::Retention;

/// Entries a follower may trail the leader by and still count as in sync.
const IN_SYNC_MAX_LAG: u64 = 1000;

/// Hosts the assigned partitions and deletes those of deleted topics, on every change of
/// the controller state and every second.
pub async fn reconcile_loop(b: Arc<Broker>) {
    let mut rx = b.controller_state.clone();
    while !b.is_stopping() {
        reconcile(&b).await;
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn reconcile(b: &Arc<Broker>) {
    let state = b.state();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let local = membership::local_replica(b, p.group);
            if local.is_some_and(|r| p.removed.contains(&r)) {
                membership::remove_replica(b, p.group, "its replica was moved off this broker");
                continue;
            }
            let Some(mine) = p.assigned(b.id) else { continue };
            // A replica of an older incarnation was lost with a wiped disk: the controller
            // replaces it with a fresh one. A copy under another id waits for its removal.
            if b.hosts(p.group)
                || !membership::is_current(b, &mine)
                || local.is_some_and(|r| r != mine.replica)
            {
                continue;
            }
            let name = format!("{}-{i}", t.name);
            let hosted = if t.internal && t.name == OFFSETS_TOPIC {
                host_coordinator(b, &name, i as u32, p, mine.replica).await
            } else {
                host_partition(b, &name, p, mine.replica).await
            };
            if let Err(e) = hosted {
                tracing::warn!(partition = %name, "cannot host partition yet: {e}");
            }
        }
    }
    let hosted: Vec<u64> =
        b.partitions.read().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
    let stored = b.node.log_runtime().stored_groups().unwrap_or_default();
    for group in hosted.into_iter().chain(stored) {
        if group != crate::controller::CONTROLLER_GROUP && state.deleted_groups.contains(&group) {
            membership::remove_replica(b, group, "its topic was deleted");
        }
    }
    membership::drive_reassignments(b, &state);
}

/// Removes `<group>.json`, `<group>.snapshot.json` and any temp file a crash left behind.
pub(crate) fn remove_state_files(b: &Broker, group: u64) {
    let prefix = format!("{group}.");
    let Ok(dir) = std::fs::read_dir(b.config.data_dir.join("partitions")) else { return };
    for ent in dir.flatten() {
        if ent.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_file(ent.path());
        }
    }
}

fn checkpoint_path(b: &Broker, group: u64) -> std::path::PathBuf {
    b.config.data_dir.join("partitions").join(format!("{group}.json"))
}

async fn host_partition(
    b: &Arc<Broker>,
    name: &str,
    p: &PartitionRecord,
    replica: u64,
) -> anyhow::Result<()> {
    let retention = Arc::default();
    let log_handle: crate::partition::sm::LogHandle = Arc::default();
    let (sm, applied) =
        PartitionSm::open(checkpoint_path(b, p.group), log_handle.clone(), Arc::clone(&retention))?;
    let members = replica_members(b, p)?;
    let group = b.node.create_group(p.group, replica, sm).await?;
    let _ = log_handle.set(group.log().clone());
    let part = Arc::new(Partition::new(name.to_string(), group.clone(), applied, retention));
    b.partitions.write().unwrap_or_else(|p| p.into_inner()).insert(p.group, part);
    initialize_if_new(b, group, p, members, name);
    Ok(())
}

/// Hosts a replica of a `__consumer_offsets` partition: a group coordinator.
async fn host_coordinator(
    b: &Arc<Broker>,
    name: &str,
    partition: u32,
    p: &PartitionRecord,
    replica: u64,
) -> anyhow::Result<()> {
    let sm = OffsetsSm::open(b.groups_db.clone(), p.group)?;
    let view = sm.view();
    let members = replica_members(b, p)?;
    let group = b.node.create_group(p.group, replica, sm).await?;
    let c = Coordinator::new(
        partition,
        group.clone(),
        b.groups_db.clone(),
        view,
        b.config.groups.clone(),
    );
    b.coordinators.write().unwrap_or_else(|p| p.into_inner()).insert(p.group, Arc::new(c));
    initialize_if_new(b, group, p, members, name);
    Ok(())
}

/// The voters of a partition group, registering their brokers as Raft peers.
fn replica_members(b: &Broker, p: &PartitionRecord) -> anyhow::Result<BTreeMap<u64, ReplicaNode>> {
    let state = b.state();
    let mut members = BTreeMap::new();
    for r in p.replicas.iter().chain(p.target.iter().flatten()) {
        let broker = state
            .brokers
            .get(&r.broker)
            .ok_or_else(|| anyhow::anyhow!("replica broker {} is not registered", r.broker))?;
        if r.broker != b.id {
            b.node.add_peer(r.broker, &broker.address)?;
        }
        if p.replicas.contains(r) {
            members.insert(
                r.replica,
                ReplicaNode { broker_id: r.broker, addr: broker.address.clone() },
            );
        }
    }
    Ok(members)
}

/// A new group: its first replica initialises it at once; the others only if it still has
/// no log after an election timeout (that broker may be down). Only founding replicas of a
/// never-reassigned partition initialise: any other replica joins as a learner.
fn initialize_if_new<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: Group<A, S>,
    p: &PartitionRecord,
    members: BTreeMap<u64, ReplicaNode>,
    name: &str,
) {
    if p.epoch != 0 || !members.contains_key(&group.replica_id()) {
        return;
    }
    initialize_when_quiet(b, group, p.replicas[0].broker == b.id, members, name);
}

/// Initialises a group that has no log yet: at once on its `first` replica, on the others
/// only if it still has none after two election timeouts (the first one may be down).
/// Initialising with the same members on several replicas is safe in Raft.
pub(crate) fn initialize_when_quiet<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: Group<A, S>,
    first: bool,
    members: BTreeMap<u64, ReplicaNode>,
    name: &str,
) {
    if group.metrics().last_log_index.is_some() {
        return;
    }
    let delay = if first {
        Duration::ZERO
    } else {
        Duration::from_millis(b.config.raft.election_timeout_max_ms * 2)
    };
    let name = name.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if group.metrics().last_log_index.is_none() {
            match group.initialize(members).await {
                Ok(()) => tracing::info!(group = %name, "group initialised"),
                Err(e) => tracing::debug!(group = %name, "already initialised: {e}"),
            }
        }
    });
}

/// What this broker leads, for the controller.
fn leading(b: &Broker) -> Vec<internal::PartitionReport> {
    let mut out: Vec<_> = b
        .hosted()
        .iter()
        .filter_map(|p| report(b, &p.group, || (p.applied().high_watermark, p.log_start_offset())))
        .collect();
    // Offsets partitions hold no records: they report leadership only.
    out.extend(b.coordinators().iter().filter_map(|c| report(b, &c.group, || (0, 0))));
    out
}

/// The leader's report of one group; `None` on a follower, and on a new leader until it has
/// applied an entry of its term (its high watermark may trail the previous leader's until
/// then, and metadata must not show a watermark going back). `offsets` gives the high
/// watermark and log start offset, read once the leader is known ready.
fn report<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: &Group<A, S>,
    offsets: impl FnOnce() -> (i64, i64),
) -> Option<internal::PartitionReport> {
    if !group.is_leader_ready() {
        return None;
    }
    let (high_watermark, log_start_offset) = offsets();
    let metrics = group.metrics();
    let last = metrics.last_log_index.unwrap_or(0);
    let membership = metrics.membership_config.membership().clone();
    let mut in_sync = vec![b.id];
    if let Some(replication) = &metrics.replication {
        for (replica, matched) in replication {
            let Some(node) = membership.get_node(replica) else { continue };
            let matched = matched.as_ref().map_or(0, |l| l.index);
            if node.broker_id != b.id && matched + IN_SYNC_MAX_LAG >= last {
                in_sync.push(node.broker_id);
            }
        }
    }
    in_sync.sort_unstable();
    in_sync.dedup();
    Some(internal::PartitionReport {
        group: group.id(),
        term: metrics.current_term,
        in_sync,
        high_watermark,
        log_start_offset,
        voters: membership::reported_voters(group),
    })
}

/// Sends a heartbeat to the controller leader every half second.
pub async fn heartbeat_loop(b: Arc<Broker>) {
    while !b.is_stopping() {
        let req = internal::BrokerHeartbeatRequest {
            broker_id: b.id,
            address: b.address.clone(),
            rack: b.config.rack.clone(),
            leading: leading(&b),
            incarnation: b.incarnation,
            controller_replica: b.controller().map_or(0, |c| c.replica_id()),
        };
        if b.is_controller() {
            handle_heartbeat(&b, req);
        } else {
            // Without a known leader (a replica that is not a member yet learns of none),
            // every founding broker is told; those not leading ignore it.
            let targets: Vec<String> = match b.controller_leader() {
                Some((_, addr)) => vec![addr],
                None => b
                    .config
                    .initial_cluster()
                    .map(|c| c.into_iter().filter(|(id, _)| *id != b.id).map(|(_, a)| a).collect())
                    .unwrap_or_default(),
            };
            for addr in targets {
                let Ok(ch) = b.channel(&addr) else { continue };
                let mut client = internal::internal_client::InternalClient::new(ch);
                let sent = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.broker_heartbeat(req.clone()),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::debug!("heartbeat to the controller at {addr} failed: {sent:?}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The controller leader's side of a heartbeat: liveness, leaderships, registration.
pub fn handle_heartbeat(
    b: &Arc<Broker>,
    req: internal::BrokerHeartbeatRequest,
) -> internal::BrokerHeartbeatResponse {
    if !b.is_controller() {
        return internal::BrokerHeartbeatResponse {
            accepted: false,
            message: format!("broker {} is not the controller leader", b.id),
        };
    }
    let leading = req
        .leading
        .iter()
        .map(|p| PartitionLive {
            group: p.group,
            leader: req.broker_id,
            term: p.term,
            in_sync: p.in_sync.clone(),
            high_watermark: p.high_watermark,
            log_start_offset: p.log_start_offset,
        })
        .collect();
    b.live.report(req.broker_id, leading);
    membership::complete_reassignments(b, &req.leading);
    if req.controller_replica != 0 {
        membership::replace_controller_replica(
            b,
            req.broker_id,
            req.controller_replica,
            &req.address,
        );
    }
    let state = b.state();
    let record = BrokerRecord {
        id: req.broker_id,
        address: req.address.clone(),
        rack: (!req.rack.is_empty()).then(|| req.rack.clone()),
        incarnation: req.incarnation,
    };
    if state.brokers.get(&req.broker_id) != Some(&record) || state.cluster_id.is_empty() {
        let b = b.clone();
        tokio::spawn(async move {
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            match b.propose(Command::RegisterBroker { broker: record, cluster_id }).await {
                Ok(_) => {
                    tracing::info!(broker = req.broker_id, addr = %req.address, "broker registered")
                }
                Err(e) => tracing::debug!("registering broker {} failed: {e}", req.broker_id),
            }
        });
    }
    crate::group::tasks::ensure_offsets_topic(b);
    internal::BrokerHeartbeatResponse { accepted: true, message: String::new() }
}

/// Enforces retention on every hosted partition, every `retention-check-interval-ms`.
pub async fn retention_loop(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config.retention_check_interval_ms);
    while !b.is_stopping() {
        tokio::time::sleep(every).await;
        let state = b.state();
        let parts = b.hosted();
        for p in parts {
            let Some((t, _)) = state.partition_of_group(p.group.id()) else { continue };
            let c = b.topic_config(t);
            let r = Retention { retention_ms: c.retention_ms, retention_bytes: c.retention_bytes };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if let Err(e) = p.enforce_retention(r, now, Duration::from_secs(30)).await {
                tracing::warn!(partition = %p.name, "retention failed: {e}");
            }
        }
    }
}

/// Preferred-leader balancing (Kafka's `auto.leader.rebalance`): placement spreads the first
/// replicas of partitions evenly, so a broker leading a partition whose first replica is
/// another live, caught-up broker hands leadership back to it. After failovers and restarts
/// leaderships therefore return to an even spread.
pub async fn leader_balance_loop(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config.leader_balance_interval_ms);
    while !b.is_stopping() {
        tokio::time::sleep(every).await;
        for p in b.hosted() {
            hand_to_preferred(&b, &p.group, &p.name, every).await;
        }
        for c in b.coordinators() {
            let name = format!("{}-{}", rafka_proto::groups::OFFSETS_TOPIC, c.partition);
            hand_to_preferred(&b, &c.group, &name, every).await;
        }
    }
}

/// Transfers leadership of `group` to its preferred replica if that one is alive and caught
/// up and this broker leads instead.
async fn hand_to_preferred<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: &Group<A, S>,
    name: &str,
    timeout: Duration,
) {
    if !group.is_leader_ready() {
        return;
    }
    let state = b.state();
    let Some((t, i)) = state.partition_of_group(group.id()) else { return };
    if t.partitions[i as usize].target.is_some() {
        return;
    }
    let preferred = t.partitions[i as usize].replicas[0];
    if preferred.broker == b.id || !b.node.is_peer_alive(preferred.broker) {
        return;
    }
    let m = group.metrics();
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = m.replication.as_ref().is_some_and(|r| {
        r.get(&preferred.replica).is_some_and(|l| l.as_ref().map_or(0, |l| l.index) >= last)
    });
    if !caught_up {
        return;
    }
    tracing::info!(partition = %name, to = preferred.broker, "handing leadership to the preferred replica");
    if let Err(e) = group.transfer_leadership(preferred.replica, timeout).await {
        tracing::debug!(partition = %name, "leadership transfer failed: {e}");
    }
}

/// Refreshes the per-partition and controller gauges every few seconds.
pub async fn metrics_loop(b: Arc<Broker>) {
    while !b.is_stopping() {
        let parts = b.hosted();
        for p in parts {
            let labels = [("partition", p.name.clone())];
            let segments = p.group.log().segments();
            metrics::gauge!(m::PARTITION_HIGH_WATERMARK, &labels)
                .set(p.applied().high_watermark as f64);
            metrics::gauge!(m::PARTITION_LOG_START_OFFSET, &labels)
                .set(p.log_start_offset() as f64);
            metrics::gauge!(m::PARTITION_LOG_SIZE_BYTES, &labels)
                .set(segments.iter().map(|s| s.bytes).sum::<u64>() as f64);
            metrics::gauge!(m::PARTITION_SEGMENTS, &labels).set(segments.len() as f64);
            metrics::gauge!(m::PARTITION_LEADER, &labels).set(if p.group.is_leader() {
                1.0
            } else {
                0.0
            });
        }
        let state = b.state();
        metrics::gauge!(m::CONTROLLER_LEADER).set(if b.is_controller() { 1.0 } else { 0.0 });
        metrics::gauge!(m::CONTROLLER_TOPICS).set(state.topics.len() as f64);
        metrics::gauge!(m::CONTROLLER_BROKERS).set(state.brokers.len() as f64);
        metrics::gauge!(m::CONTROLLER_VERSION).set(state.version as f64);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
