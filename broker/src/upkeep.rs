//! The broker's periodic upkeep: retention on every hosted partition, preferred-leader
//! balancing, the metrics refresh, and on every group coordinator session expiry, lag
//! metrics and offsets-log compaction. Each loop runs until shutdown cancels it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::StateMachine;

use crate::broker::Broker;
use crate::disk;
use crate::metrics as m;
use crate::partition::OffsetSpec;
use crate::partition::retention::Retention;
use crate::remote;

/// How often the partition and controller gauges are refreshed.
const METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// Enforces retention on every hosted partition, every `retention-check-interval-ms`.
pub async fn retention(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config().retention_check_interval_ms);
    loop {
        tokio::time::sleep(every).await;
        let state = b.state();
        for p in b.replicas().partitions() {
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
pub async fn leader_balance(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config().leader_balance_interval_ms);
    loop {
        tokio::time::sleep(every).await;
        for p in b.replicas().partitions() {
            hand_to_preferred(&b, &p.group, &p.name, every).await;
        }
        for c in b.replicas().coordinators() {
            let name = format!("{OFFSETS_TOPIC}-{}", c.partition);
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
    if preferred.broker == b.id() || !b.node().is_peer_alive(preferred.broker) {
        return;
    }
    if !group.status().has_whole_log(preferred.replica) {
        return;
    }
    tracing::info!(partition = %name, to = preferred.broker, "handing leadership to the preferred replica");
    if let Err(e) = group.transfer_leadership(preferred.replica, timeout).await {
        tracing::debug!(partition = %name, "leadership transfer failed: {e}");
    }
}

/// On the controller leader: partitions with fewer in-sync replicas than replicas, and
/// partitions without a live leader. Elsewhere (0, 0), so that only one broker reports them.
fn partition_health(b: &Broker, state: &crate::controller::state::ControllerState) -> (u64, u64) {
    if !b.controller().is_leader() {
        return (0, 0);
    }
    let (mut under, mut offline) = (0, 0);
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        match b.live().partition(p.group).filter(|l| b.is_alive(l.leader)) {
            None => offline += 1,
            Some(l) if l.in_sync.len() < p.replicas.len() => under += 1,
            Some(_) => {}
        }
    }
    (under, offline)
}

/// Refreshes the per-partition and controller gauges.
pub async fn metrics(b: Arc<Broker>) {
    loop {
        for p in b.replicas().partitions() {
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
        let leader = if b.controller().is_leader() { 1.0 } else { 0.0 };
        metrics::gauge!(m::CONTROLLER_LEADER).set(leader);
        metrics::gauge!(m::CONTROLLER_TOPICS).set(state.topics.len() as f64);
        metrics::gauge!(m::CONTROLLER_BROKERS).set(state.brokers.len() as f64);
        metrics::gauge!(m::CONTROLLER_VERSION).set(state.version as f64);
        let (under, offline) = partition_health(&b, &state);
        metrics::gauge!(m::UNDER_REPLICATED).set(under as f64);
        metrics::gauge!(m::OFFLINE).set(offline as f64);
        tokio::time::sleep(METRICS_INTERVAL).await;
    }
}

/// Measures the data directory's free space every [`disk::CHECK_INTERVAL`] (see
/// [`crate::disk`]).
pub async fn disk_space(b: Arc<Broker>) {
    loop {
        let counted = b.disk().admitted();
        match nix::sys::statvfs::statvfs(&b.config().data_dir) {
            Ok(fs) => {
                let block = fs.fragment_size();
                b.disk().observe(fs.blocks_available() * block, fs.blocks() * block, counted);
            }
            Err(e) => tracing::debug!("statvfs of the data directory: {e}"),
        }
        tokio::time::sleep(disk::CHECK_INTERVAL).await;
    }
}

/// Expires members on every hosted coordinator, often enough to honour the session timeout
/// closely. Lag and compaction run in their own loop ([`group_upkeep`]), so a slow lookup
/// never delays expiry.
pub async fn group_sessions(b: Arc<Broker>) {
    let tick = Duration::from_millis((b.config().groups.session_timeout_ms / 10).clamp(50, 1000));
    loop {
        tokio::time::sleep(tick).await;
        let topics = b.state().user_topic_partitions();
        for c in b.replicas().coordinators() {
            if let Err(e) = c.expire_members(&topics).await {
                tracing::debug!(partition = c.partition, "expiring members: {e}");
            }
            c.classic_tick().await;
        }
    }
}

/// Exports lag and compacts offsets logs, every `lag-metrics-interval-ms`.
pub async fn group_upkeep(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config().groups.lag_metrics_interval_ms);
    loop {
        tokio::time::sleep(every).await;
        export_lag(&b).await;
        for c in b.replicas().coordinators() {
            c.maybe_compact().await;
        }
    }
}

/// Sets the lag gauges of every group this broker coordinates.
async fn export_lag(b: &Broker) {
    let mut high_watermarks: HashMap<(String, u32), Option<i64>> = HashMap::new();
    let mut coordinated = 0;
    for c in b.replicas().coordinators() {
        if !c.group.is_leader() || !c.group.is_leader_ready() {
            continue;
        }
        for (group, state) in c.groups() {
            coordinated += 1;
            metrics::gauge!(m::GROUP_MEMBERS, "group" => group.clone())
                .set(state.members.len() as f64);
            let Ok(offsets) = c.offsets(&group) else { continue };
            for ((topic, partition), committed) in offsets {
                let key = (topic.clone(), partition);
                if !high_watermarks.contains_key(&key) {
                    let hw = remote::list_offsets(b, &topic, partition, OffsetSpec::Latest)
                        .await
                        .ok()
                        .map(|(o, _)| o);
                    high_watermarks.insert(key.clone(), hw);
                }
                let labels = [
                    ("group", group.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                metrics::gauge!(m::GROUP_COMMITTED_OFFSET, &labels).set(committed.offset as f64);
                if let Some(hw) = high_watermarks[&key] {
                    metrics::gauge!(m::GROUP_LAG, &labels)
                        .set((hw - committed.offset).max(0) as f64);
                }
            }
        }
    }
    metrics::gauge!(m::GROUPS_COORDINATED).set(coordinated as f64);
}
