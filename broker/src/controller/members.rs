//! Changing the brokers of a running cluster, decided by the controller leader from its
//! state: which replicas to move off a draining broker ([`drain_moves`]), when a drained
//! broker can go ([`removable`]), whether a decommission is possible at all
//! ([`check_decommission`]), the moves that spread replicas and preferred leaders evenly
//! over the brokers ([`rebalance_moves`]), and the voters of the controller group
//! ([`controller_voters`]). Pure functions of the state; the commands they return go
//! through the reassignment machinery like any `ReassignPartition`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::state::Command;
use super::state::ControllerState;
use super::state::PartitionRecord;
use crate::error::Error;
use crate::error::Result;

/// Partitions moved at once while draining or rebalancing: each move copies a replica, and
/// a few at a time keep the copies from starving client traffic.
pub const MAX_MOVES: usize = 4;

/// Controller voters kept when enough brokers can hold one (more only if the cluster was
/// founded with more).
pub const CONTROLLER_VOTERS: usize = 3;

fn brokers_of(p: &PartitionRecord) -> Vec<u64> {
    p.replicas.iter().map(|r| r.broker).collect()
}

/// Replicas per broker (targets of moves under way counted at their destination).
fn load(state: &ControllerState, brokers: &[u64]) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        let held = p.target.as_ref().unwrap_or(&p.replicas);
        for r in held {
            if let Some(n) = load.get_mut(&r.broker) {
                *n += 1;
            }
        }
    }
    load
}

fn moving(state: &ControllerState) -> usize {
    state.topics.values().flat_map(|t| &t.partitions).filter(|p| p.target.is_some()).count()
}

/// Brokers that can take replicas: registered, not draining, alive (`live`).
fn takers(state: &ControllerState, live: &[u64]) -> Vec<u64> {
    live.iter().copied().filter(|b| state.brokers.get(b).is_some_and(|r| !r.draining)).collect()
}

/// Whether `broker` can be decommissioned: it is registered, and the brokers left (neither
/// it nor another draining one) can hold every partition's replicas.
pub fn check_decommission(state: &ControllerState, broker: u64) -> Result<()> {
    if state.decommissioned.contains(&broker) {
        return Err(Error::InvalidRequest(format!("broker {broker} is already decommissioned")));
    }
    if !state.brokers.contains_key(&broker) {
        return Err(Error::InvalidRequest(format!("broker {broker} is not registered")));
    }
    let left = state.brokers.values().filter(|b| b.id != broker && !b.draining).count();
    let needed = state
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .map(|(t, p)| (p.replicas.len(), t.name.as_str()))
        .max();
    match needed {
        Some((rf, topic)) if rf > left => Err(Error::InvalidReplicationFactor(format!(
            "decommissioning broker {broker} would leave {left} broker(s) for topic {topic}, \
             whose partitions have {rf} replicas: add a broker first"
        ))),
        _ if left == 0 => {
            Err(Error::InvalidReplicationFactor(format!("broker {broker} is the last broker")))
        }
        _ => Ok(()),
    }
}

/// Moves replicas off draining brokers, up to [`MAX_MOVES`] partitions moving at once: each
/// replica there is replaced, in place (a preferred leader's successor is preferred), by the
/// live, non-draining broker holding the fewest replicas among those not in the partition.
pub fn drain_moves(state: &ControllerState, live: &[u64]) -> Vec<Command> {
    let draining: BTreeSet<u64> =
        state.brokers.values().filter(|b| b.draining).map(|b| b.id).collect();
    if draining.is_empty() {
        return Vec::new();
    }
    let takers = takers(state, live);
    let mut load = load(state, &takers);
    let mut budget = MAX_MOVES.saturating_sub(moving(state));
    let mut out = Vec::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if budget == 0 {
                return out;
            }
            if p.target.is_some() || !p.replicas.iter().any(|r| draining.contains(&r.broker)) {
                continue;
            }
            let mut brokers = brokers_of(p);
            let mut ok = true;
            for slot in 0..brokers.len() {
                if !draining.contains(&brokers[slot]) {
                    continue;
                }
                let to = takers
                    .iter()
                    .filter(|b| !brokers.contains(b))
                    .min_by_key(|b| (load[b], **b))
                    .copied();
                match to {
                    Some(to) => {
                        brokers[slot] = to;
                        *load.get_mut(&to).expect("a taker") += 1;
                    }
                    None => ok = false,
                }
            }
            if ok {
                out.push(Command::ReassignPartition {
                    name: t.name.clone(),
                    partition: i as u32,
                    brokers,
                });
                budget -= 1;
            }
        }
    }
    out
}

/// Draining brokers that hold no replica and are the target of no move: ready to remove.
pub fn removable(state: &ControllerState) -> Vec<u64> {
    let held: BTreeSet<u64> = state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| p.replicas.iter().chain(p.target.iter().flatten()))
        .map(|r| r.broker)
        .collect();
    state.brokers.values().filter(|b| b.draining && !held.contains(&b.id)).map(|b| b.id).collect()
}

/// Moves that spread replicas, then preferred leaders (first replicas), evenly over the live,
/// non-draining brokers: while the most loaded broker holds two more replicas than the least
/// loaded one, a partition on the first and not on the second moves one replica across (in
/// place); then partitions whose preferred leader is on a broker preferred more than its
/// share are reordered to prefer a less preferred replica. Partitions already moving are
/// left alone. At most [`MAX_MOVES`] partitions move at once: run it again for more.
pub fn rebalance_moves(state: &ControllerState, live: &[u64]) -> Vec<Command> {
    let takers = takers(state, live);
    if takers.len() < 2 {
        return Vec::new();
    }
    let mut load = load(state, &takers);
    let mut budget = MAX_MOVES.saturating_sub(moving(state));
    let mut planned: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    let partitions: Vec<(&str, u32, &PartitionRecord)> = state
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().enumerate().map(|(i, p)| (t.name.as_str(), i as u32, p)))
        .filter(|(_, _, p)| p.target.is_none())
        .collect();
    while budget > 0 {
        let (&most, &high) =
            load.iter().max_by_key(|(b, n)| (**n, std::cmp::Reverse(**b))).unwrap();
        let (&least, &low) = load.iter().min_by_key(|(b, n)| (**n, **b)).unwrap();
        if high < low + 2 {
            break;
        }
        let candidate = partitions.iter().find(|(name, i, p)| {
            let key = (name.to_string(), *i);
            let brokers = planned.get(&key).cloned().unwrap_or_else(|| brokers_of(p));
            !planned.contains_key(&key) && brokers.contains(&most) && !brokers.contains(&least)
        });
        let Some((name, i, p)) = candidate else { break };
        let brokers: Vec<u64> =
            brokers_of(p).into_iter().map(|b| if b == most { least } else { b }).collect();
        planned.insert((name.to_string(), *i), brokers);
        *load.get_mut(&most).expect("a taker") -= 1;
        *load.get_mut(&least).expect("a taker") += 1;
        budget -= 1;
    }
    // Preferred leaders: user topics only (internal ones carry little load).
    let user: Vec<&(&str, u32, &PartitionRecord)> = partitions
        .iter()
        .filter(|(name, _, _)| state.topics.get(*name).is_some_and(|t| !t.internal))
        .collect();
    let mut preferred: BTreeMap<u64, usize> = takers.iter().map(|b| (*b, 0)).collect();
    fn current(
        planned: &BTreeMap<(String, u32), Vec<u64>>,
        name: &str,
        i: u32,
        p: &PartitionRecord,
    ) -> Vec<u64> {
        planned.get(&(name.to_string(), i)).cloned().unwrap_or_else(|| brokers_of(p))
    }
    for (name, i, p) in &user {
        if let Some(n) = current(&planned, name, *i, p).first().and_then(|b| preferred.get_mut(b)) {
            *n += 1;
        }
    }
    for (name, i, p) in &user {
        let brokers = current(&planned, name, *i, p);
        let Some(&first) = brokers.first() else { continue };
        let Some(&leads) = preferred.get(&first) else { continue };
        // The replica preferred least, if it is preferred at least two fewer times.
        let better = brokers
            .iter()
            .skip(1)
            .filter_map(|b| preferred.get(b).map(|n| (*n, *b)))
            .min()
            .filter(|(n, _)| n + 2 <= leads)
            .map(|(_, b)| b);
        let Some(to) = better else { continue };
        let key = (name.to_string(), *i);
        if !planned.contains_key(&key) {
            if budget == 0 {
                continue;
            }
            budget -= 1;
        }
        let mut reordered = brokers.clone();
        let at = reordered.iter().position(|b| *b == to).expect("a replica");
        reordered.swap(0, at);
        planned.insert(key, reordered);
        *preferred.get_mut(&first).expect("counted") -= 1;
        *preferred.get_mut(&to).expect("counted") += 1;
    }
    planned
        .into_iter()
        .map(|((name, partition), brokers)| Command::ReassignPartition { name, partition, brokers })
        .collect()
}

/// The controller group's voters: the current voters that stay (their broker is registered,
/// not draining, and still has that replica), then caught-up replicas of other such brokers,
/// lowest broker id first, until there are [`CONTROLLER_VOTERS`] (or as many as the group had,
/// if more); a leaving voter (draining, or a replica of a lost disk) goes only once another
/// takes its place. A voter whose broker is merely down stays: replacing it needs a quorum
/// anyway, and it may come back. `voters` maps replica → broker; `candidates` maps broker → its
/// current controller replica, for live, caught-up, non-draining brokers.
pub fn controller_voters(
    state: &ControllerState,
    voters: &BTreeMap<u64, u64>,
    candidates: &BTreeMap<u64, u64>,
) -> BTreeSet<u64> {
    // A voter's broker not registered yet (a founding broker starting) stays; one removed by
    // decommissioning goes.
    let stays = |replica: &u64, broker: &u64| match state.brokers.get(broker) {
        None => !state.decommissioned.contains(broker),
        Some(b) => !b.draining && (b.controller_replica == 0 || b.controller_replica == *replica),
    };
    let mut out: BTreeSet<u64> =
        voters.iter().filter(|(r, b)| stays(r, b)).map(|(r, _)| *r).collect();
    let holding: BTreeSet<u64> = out.iter().map(|r| voters[r]).collect();
    let size = CONTROLLER_VOTERS.max(voters.len());
    for (broker, replica) in candidates {
        if out.len() >= size {
            break;
        }
        if !holding.contains(broker) {
            out.insert(*replica);
        }
    }
    for (replica, broker) in voters {
        if out.len() >= size {
            break;
        }
        if state.brokers.contains_key(broker) {
            out.insert(*replica);
        }
    }
    if out.is_empty() {
        // Never leave the group without voters: keep what it has.
        return voters.keys().copied().collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::state::BrokerRecord;

    fn broker(id: u64, draining: bool) -> BrokerRecord {
        BrokerRecord { draining, ..BrokerRecord::for_tests(id) }
    }

    /// Brokers 1..=n registered (ids in `draining` draining), a topic `t` placed as given.
    fn state(n: u64, draining: &[u64], placement: Vec<Vec<u64>>) -> ControllerState {
        let mut s = ControllerState::default();
        for id in 1..=n {
            let cmd = Command::RegisterBroker { broker: broker(id, false), cluster_id: "c".into() };
            s.apply(s.version + 1, cmd);
        }
        let cmd = Command::CreateTopic {
            name: "t".into(),
            placement,
            configs: BTreeMap::new(),
            internal: false,
        };
        s.apply(s.version + 1, cmd);
        for b in draining {
            s.apply(s.version + 1, Command::DecommissionBroker { broker: *b });
        }
        s
    }

    fn apply_all(s: &mut ControllerState, cmds: Vec<Command>) {
        for c in cmds {
            let out = s.apply(s.version + 1, c);
            assert!(!matches!(out, super::super::Outcome::Refused { .. }), "{out:?}");
        }
        // Complete every move at once.
        for t in s.topics.values_mut() {
            for p in &mut t.partitions {
                if let Some(target) = p.target.take() {
                    p.replicas = target;
                }
            }
        }
    }

    fn replicas_on(s: &ControllerState, b: u64) -> usize {
        s.topics.values().flat_map(|t| &t.partitions).filter(|p| p.assigned(b).is_some()).count()
    }

    #[test]
    fn a_draining_broker_is_emptied_then_removable() {
        let placement = vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 3, 2]];
        let mut s = state(4, &[1], placement);
        assert!(removable(&s).is_empty());
        let moves = drain_moves(&s, &[1, 2, 3, 4]);
        assert_eq!(moves.len(), 4, "{moves:?}");
        // The preferred leader's successor takes its place.
        assert_eq!(
            moves[0],
            Command::ReassignPartition { name: "t".into(), partition: 0, brokers: vec![4, 2, 3] }
        );
        apply_all(&mut s, moves);
        assert_eq!(replicas_on(&s, 1), 0);
        assert_eq!(replicas_on(&s, 4), 4);
        assert_eq!(removable(&s), vec![1]);
        s.apply(s.version + 1, Command::RemoveBroker { broker: 1 });
        assert!(!s.brokers.contains_key(&1) && s.decommissioned.contains(&1));
        let again = Command::RegisterBroker { broker: broker(1, false), cluster_id: "c".into() };
        assert!(matches!(s.apply(s.version + 1, again), super::super::Outcome::Refused { .. }));
    }

    #[test]
    fn decommissioning_needs_enough_brokers_left() {
        let s = state(3, &[], vec![vec![1, 2, 3]]);
        let e = check_decommission(&s, 3).unwrap_err();
        assert!(e.to_string().contains("would leave 2 broker(s) for topic t"), "{e}");
        let s = state(4, &[], vec![vec![1, 2, 3]]);
        check_decommission(&s, 3).unwrap();
        let s = state(4, &[4], vec![vec![1, 2, 3]]);
        assert!(check_decommission(&s, 3).is_err(), "another broker is draining already");
        assert!(check_decommission(&s, 9).is_err(), "unknown broker");
    }

    #[test]
    fn a_new_broker_gets_its_share_of_replicas_and_leaders() {
        let placement: Vec<Vec<u64>> = (0..6)
            .map(|i| {
                let first = (i % 3) + 1;
                vec![first, first % 3 + 1, (first + 1) % 3 + 1]
            })
            .collect();
        let mut s = state(4, &[], placement);
        for _ in 0..10 {
            let moves = rebalance_moves(&s, &[1, 2, 3, 4]);
            if moves.is_empty() {
                break;
            }
            apply_all(&mut s, moves);
        }
        let counts: Vec<usize> = (1..=4).map(|b| replicas_on(&s, b)).collect();
        assert!(counts.iter().all(|c| (4..=5).contains(c)), "replicas per broker {counts:?}");
        let leaders: Vec<usize> = (1..=4)
            .map(|b| s.topics["t"].partitions.iter().filter(|p| p.replicas[0].broker == b).count())
            .collect();
        assert!(leaders.iter().all(|l| (1..=2).contains(l)), "preferred leaders {leaders:?}");
        assert!(rebalance_moves(&s, &[1, 2, 3, 4]).is_empty(), "balanced: nothing more to move");
    }

    #[test]
    fn controller_voters_move_off_a_draining_broker_and_onto_new_ones() {
        let s = state(4, &[1], vec![vec![2, 3, 4]]);
        let voters: BTreeMap<u64, u64> = [(1, 1), (2, 2), (3, 3)].into();
        let candidates: BTreeMap<u64, u64> = [(2, 2), (3, 3), (4, 4)].into();
        assert_eq!(controller_voters(&s, &voters, &candidates), BTreeSet::from([2, 3, 4]));
        // A voter that is down but not leaving stays.
        let s = state(4, &[], vec![vec![2, 3, 4]]);
        let candidates: BTreeMap<u64, u64> = [(2, 2), (4, 4)].into();
        assert_eq!(controller_voters(&s, &voters, &candidates), BTreeSet::from([1, 2, 3]));
        // Founding voters whose brokers have not registered yet stay.
        let early = state(2, &[], vec![vec![1, 2]]);
        let candidates: BTreeMap<u64, u64> = [(1, 1), (2, 2)].into();
        assert_eq!(controller_voters(&early, &voters, &candidates), BTreeSet::from([1, 2, 3]));
        // A single-node cluster grows to three voters as brokers join.
        let one: BTreeMap<u64, u64> = [(1, 1)].into();
        let candidates: BTreeMap<u64, u64> = [(1, 1), (2, 2), (3, 3), (4, 4)].into();
        assert_eq!(controller_voters(&s, &one, &candidates), BTreeSet::from([1, 2, 3]));
    }
}
