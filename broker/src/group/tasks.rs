//! Background work of consumer groups: creating `__consumer_offsets` at cluster bootstrap
//! (controller leader), and on every coordinator: session expiry, lag metrics, log
//! compaction.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_proto::v1;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::ControllerState;
use crate::controller::placement;
use crate::metrics as m;

/// Every user topic and its partition count: what assignors distribute.
pub fn topic_partitions(state: &ControllerState) -> BTreeMap<String, u32> {
    state
        .topics
        .values()
        .filter(|t| !t.internal)
        .map(|t| (t.name.clone(), t.partitions.len() as u32))
        .collect()
}

/// On the controller leader: creates `__consumer_offsets` once enough brokers are registered
/// and alive for its replication factor (capped by the founding brokers).
pub fn ensure_offsets_topic(b: &Arc<Broker>) {
    let state = b.state();
    if state.topics.contains_key(OFFSETS_TOPIC) || state.cluster_id.is_empty() {
        return;
    }
    let founding = b.config.initial_cluster().map_or(1, |c| c.len());
    let rf = (b.config.groups.offsets_topic_replication_factor as usize).min(founding).max(1);
    let live: Vec<u64> = state.brokers.keys().copied().filter(|id| b.is_alive(*id)).collect();
    if live.len() < rf || b.creating_offsets_topic.swap(true, Ordering::SeqCst) {
        return;
    }
    let partitions = b.config.groups.offsets_topic_partitions;
    let placement = placement::place(&state, &live, partitions, rf);
    let b = b.clone();
    tokio::spawn(async move {
        let cmd = Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            placement,
            configs: BTreeMap::new(),
            internal: true,
        };
        match b.propose(cmd).await {
            Ok(_) => tracing::info!(partitions, rf, "created {OFFSETS_TOPIC}"),
            Err(e) => tracing::debug!("creating {OFFSETS_TOPIC}: {e}"),
        }
        b.creating_offsets_topic.store(false, Ordering::SeqCst);
    });
}

/// Expires members on every hosted coordinator, often enough to honour the session
/// timeout closely. Lag and compaction run in their own loop ([`upkeep_loop`]), so a slow
/// lookup never delays expiry.
pub async fn coordinator_loop(b: Arc<Broker>) {
    let cfg = &b.config.groups;
    let tick = Duration::from_millis((cfg.session_timeout_ms / 10).clamp(50, 1000));
    let upkeep = tokio::spawn(upkeep_loop(b.clone()));
    while !b.is_stopping() {
        tokio::time::sleep(tick).await;
        let topics = topic_partitions(&b.state());
        for c in b.coordinators() {
            if let Err(e) = c.expire_members(&topics).await {
                tracing::debug!(partition = c.partition, "expiring members: {e}");
            }
        }
    }
    upkeep.abort();
}

/// Exports lag and compacts offsets logs, every `lag-metrics-interval-ms`.
async fn upkeep_loop(b: Arc<Broker>) {
    let every = Duration::from_millis(b.config.groups.lag_metrics_interval_ms);
    while !b.is_stopping() {
        tokio::time::sleep(every).await;
        export_lag(&b).await;
        for c in b.coordinators() {
            c.maybe_compact().await;
        }
    }
}

/// Sets the lag gauges of every group this broker coordinates.
async fn export_lag(b: &Broker) {
    let mut high_watermarks: HashMap<(String, u32), Option<i64>> = HashMap::new();
    let mut coordinated = 0;
    for c in b.coordinators() {
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
                    let hw = b
                        .list_offset_anywhere(
                            &topic,
                            partition,
                            v1::offset_spec::Spec::Latest(true),
                        )
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
