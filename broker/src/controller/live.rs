//! What the controller leader learns from broker heartbeats: which broker leads each
//! partition, its in-sync replicas and offsets, and which replicas their own brokers report
//! as still catching up (those are never in sync, whatever the leader reports). Soft state:
//! a new controller leader rebuilds it from the next round of heartbeats (brokers send one at
//! once to a new leader).

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
    /// Per broker, the groups whose replica there is catching up, as of its last heartbeat.
    catching_up: Mutex<HashMap<u64, std::collections::HashSet<u64>>>,
}

impl LiveView {
    /// Records a heartbeat of `broker` listing every partition it leads and the groups whose
    /// replica there is catching up.
    pub fn report(
        &self,
        broker: u64,
        leading: Vec<PartitionLive>,
        catching_up: std::collections::HashSet<u64>,
    ) {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).insert(broker, Instant::now());
        self.catching_up.lock().unwrap_or_else(|p| p.into_inner()).insert(broker, catching_up);
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

    /// The latest report on `group`, without the replicas whose broker reports them
    /// catching up among the in-sync ones.
    pub fn partition(&self, group: u64) -> Option<PartitionLive> {
        let mut p =
            self.partitions.lock().unwrap_or_else(|p| p.into_inner()).get(&group).cloned()?;
        let behind = self.catching_up.lock().unwrap_or_else(|p| p.into_inner());
        p.in_sync.retain(|b| !behind.get(b).is_some_and(|groups| groups.contains(&group)));
        Some(p)
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
        v.report(1, vec![live(10, 1, 3), live(11, 1, 1)], Default::default());
        v.report(2, vec![live(10, 2, 2)], Default::default());
        assert_eq!(v.partition(10).unwrap().leader, 1, "older term ignored");
        v.report(2, vec![live(10, 2, 4)], Default::default());
        assert_eq!(v.partition(10).unwrap().leader, 2);
        v.report(1, vec![], Default::default());
        assert!(v.partition(11).is_none());
        assert_eq!(v.partition(10).unwrap().leader, 2);
        assert!(v.heard_within(1, Duration::from_secs(5)));
        assert!(!v.heard_within(3, Duration::from_secs(5)));
    }

    #[test]
    fn a_replica_its_broker_reports_catching_up_is_not_in_sync() {
        let v = LiveView::default();
        let mut report = live(10, 1, 3);
        report.in_sync = vec![1, 2, 3];
        v.report(1, vec![report], Default::default());
        v.report(3, vec![], [10].into());
        assert_eq!(v.partition(10).unwrap().in_sync, vec![1, 2]);
        v.report(3, vec![], Default::default());
        assert_eq!(v.partition(10).unwrap().in_sync, vec![1, 2, 3]);
    }
}
