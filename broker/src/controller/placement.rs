//! Replica placement: spread a new topic's replicas over the live brokers, fewest replicas
//! first, and rotate the first replica (the one that initialises the group and usually
//! leads it) so leaders spread too. Racks: replicas of one partition go to distinct racks
//! while enough racks have live brokers.

use std::collections::BTreeMap;

use super::state::ControllerState;

/// Replica brokers for `partitions` new partitions of `rf` replicas each, over `live`
/// brokers (sorted, distinct, at least `rf`).
pub fn place(state: &ControllerState, live: &[u64], partitions: u32, rf: usize) -> Vec<Vec<u64>> {
    let mut load: BTreeMap<u64, (usize, usize)> = live.iter().map(|b| (*b, (0, 0))).collect();
    // Internal topics (`__consumer_offsets`) carry little load: counting them would skew the
    // first user topic's leaders away from the brokers that lead them.
    for p in state.topics.values().filter(|t| !t.internal).flat_map(|t| t.partitions.iter()) {
        for (i, r) in p.replicas.iter().enumerate() {
            if let Some(l) = load.get_mut(&r.broker) {
                l.0 += 1;
                if i == 0 {
                    l.1 += 1;
                }
            }
        }
    }
    let rack = |b: u64| state.brokers.get(&b).and_then(|r| r.rack.clone());
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        let mut replicas: Vec<u64> = Vec::with_capacity(rf);
        // First replica: fewest first replicas, then fewest replicas, rotating on ties.
        let n = live.len();
        let first = *live
            .iter()
            .enumerate()
            .min_by_key(|(i, b)| (load[b].1, load[b].0, (i + n - p % n) % n))
            .map(|(_, b)| b)
            .expect("live brokers");
        replicas.push(first);
        while replicas.len() < rf {
            let used_racks: Vec<_> = replicas.iter().filter_map(|b| rack(*b)).collect();
            let next = live
                .iter()
                .enumerate()
                .filter(|(_, b)| !replicas.contains(b))
                .min_by_key(|(i, b)| {
                    let same_rack = rack(**b).is_some_and(|r| used_racks.contains(&r));
                    (same_rack, load[b].0, (i + n - p % n) % n)
                })
                .map(|(_, b)| *b)
                .expect("rf <= live brokers");
            replicas.push(next);
        }
        for (i, b) in replicas.iter().enumerate() {
            let l = load.get_mut(b).expect("live");
            l.0 += 1;
            if i == 0 {
                l.1 += 1;
            }
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_replicas_and_first_replicas_evenly() {
        let s = ControllerState::default();
        let placement = place(&s, &[1, 2, 3], 6, 3);
        let mut firsts = BTreeMap::new();
        for replicas in &placement {
            assert_eq!(replicas.len(), 3);
            let mut d = replicas.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3, "distinct brokers: {replicas:?}");
            *firsts.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(firsts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "{placement:?}");
        let placement = place(&s, &[1, 2, 3, 4], 4, 2);
        let mut count = BTreeMap::new();
        for b in placement.iter().flatten() {
            *count.entry(*b).or_insert(0) += 1;
        }
        assert!(count.values().all(|c| *c == 2), "{count:?}");
    }
}
