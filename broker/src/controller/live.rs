//! What the controller leader learns from broker heartbeats: which broker leads each
//! partition, its in-sync replicas and offsets. Soft state: a new controller leader
//! rebuilds it from the next round of heartbeats (brokers send one at once to a new leader).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// A partition leader's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLive {
    pub group: u64,
    pub leader: u64,
    pub term: u64,
    pub in_sync: Vec<u64>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Partition leaders and broker heartbeats seen by this controller leader.
#[derive(Default)]
pub struct LiveView {
    partitions: Mutex<HashMap<u64, PartitionLive>>,
    heard: Mutex<HashMap<u64, Instant>>,
}

impl LiveView {
    /// Records a heartbeat of `broker` listing every partition it leads.
    pub fn report(&self, broker: u64, leading: Vec<PartitionLive>) {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).insert(broker, Instant::now());
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let reported: std::collections::HashSet<u64> = leading.iter().map(|p| p.group).collect();
        parts.retain(|g, p| p.leader != broker || reported.contains(g));
        for p in leading {
            match parts.get(&p.group) {
                Some(old) if old.term > p.term => {}
                _ => {
                    parts.insert(p.group, p);
                }
            }
        }
    }

    /// The latest report on `group`.
    pub fn partition(&self, group: u64) -> Option<PartitionLive> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).get(&group).cloned()
    }

    /// Whether `broker` sent a heartbeat within `within`.
    pub fn heard_within(&self, broker: u64, within: Duration) -> bool {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .is_some_and(|t| t.elapsed() < within)
    }

    /// Forgets a broker's leaderships (it was seen dead).
    pub fn forget_broker(&self, broker: u64) {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, p| p.leader != broker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(group: u64, leader: u64, term: u64) -> PartitionLive {
        PartitionLive {
            group,
            leader,
            term,
            in_sync: vec![leader],
            high_watermark: 0,
            log_start_offset: 0,
        }
    }

    #[test]
    fn newer_terms_win_and_full_reports_drop_lost_leaderships() {
        let v = LiveView::default();
        v.report(1, vec![live(10, 1, 3), live(11, 1, 1)]);
        v.report(2, vec![live(10, 2, 2)]);
        assert_eq!(v.partition(10).unwrap().leader, 1, "older term ignored");
        v.report(2, vec![live(10, 2, 4)]);
        assert_eq!(v.partition(10).unwrap().leader, 2);
        v.report(1, vec![]);
        assert!(v.partition(11).is_none());
        assert_eq!(v.partition(10).unwrap().leader, 2);
        assert!(v.heard_within(1, Duration::from_secs(5)));
        assert!(!v.heard_within(3, Duration::from_secs(5)));
    }
}
