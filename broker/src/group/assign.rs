//! Server-side partition assignors of consumer groups (KIP-848): pure functions from the
//! members' subscriptions and the topics' partition counts to a target assignment.
//!
//! Both assignors are deterministic (they only walk `BTreeMap`s), list every member in their
//! output (possibly with an empty assignment), give each partition of a subscribed topic to
//! exactly one subscribed member and leave topics nobody subscribes to unassigned. The
//! [`Assignment`]s they return never hold a topic with an empty partition set.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::state::Assignment;

/// Kafka's `RangeAssignor`, topic by topic: the members subscribed to a topic, sorted by id,
/// get contiguous ranges of its partitions, and the first `partitions % members` of them get
/// one partition more than the others.
///
/// `subs` maps member ids to subscribed topic names; `topics` maps existing topics to their
/// partition counts (subscribed topics missing from it are ignored).
pub fn range(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, u32>,
) -> BTreeMap<String, Assignment> {
    let mut out = empty_assignments(subs);
    for (topic, &count) in topics {
        let members: Vec<&String> =
            subs.iter().filter(|(_, s)| s.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let per_member = count / members.len() as u32;
        let extra = count % members.len() as u32;
        let mut start = 0;
        for (i, member) in members.into_iter().enumerate() {
            let len = per_member + u32::from((i as u32) < extra);
            if len > 0 {
                let assignment = out.entry(member.clone()).or_default();
                assignment.insert(topic.clone(), (start..start + len).collect());
            }
            start += len;
        }
    }
    out
}

/// The sticky, balanced assignor (the default).
///
/// Every member keeps the partitions `previous` gave it that it may still have (the topic
/// exists, has that partition and is still subscribed); the rest go one by one to the least
/// loaded subscriber, most constrained topics first; then partitions move, one at a time,
/// from a member to a subscriber of the same topic holding at least two fewer, until no such
/// move is left. With identical subscriptions that leaves every member within one partition
/// of every other, and only the partitions balance requires have moved. With different
/// subscriptions the balance is best effort.
pub fn uniform(
    subs: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    // Subscribers of every existing topic that has any.
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member, subscribed) in subs {
        for topic in subscribed {
            if topics.contains_key(topic) {
                subscribers.entry(topic.as_str()).or_default().push(member.as_str());
            }
        }
    }

    let mut held: BTreeMap<&str, BTreeMap<&str, BTreeSet<u32>>> =
        subs.keys().map(|m| (m.as_str(), BTreeMap::new())).collect();
    let mut load: BTreeMap<&str, usize> = subs.keys().map(|m| (m.as_str(), 0)).collect();
    let mut taken: BTreeSet<(&str, u32)> = BTreeSet::new();

    // Stickiness: keep what is still valid. `taken` guards against a previous assignment that
    // (wrongly) gave a partition twice.
    for (member, assignment) in previous {
        let Some((member, subscribed)) = subs.get_key_value(member) else {
            continue;
        };
        for (topic, partitions) in assignment {
            let Some((topic, &count)) = topics.get_key_value(topic) else {
                continue;
            };
            if !subscribed.contains(topic) {
                continue;
            }
            for &p in partitions.iter().filter(|&&p| p < count) {
                if taken.insert((topic.as_str(), p)) {
                    give(&mut held, &mut load, member, topic, p);
                }
            }
        }
    }

    // Topics with fewer subscribers first: their partitions have fewer places to go.
    let mut order: Vec<(&str, &Vec<&str>)> = subscribers.iter().map(|(t, m)| (*t, m)).collect();
    order.sort_by_key(|(topic, members)| (members.len(), *topic));
    for (topic, members) in order {
        for p in 0..topics[topic] {
            if taken.contains(&(topic, p)) {
                continue;
            }
            let member = least_loaded(members, &load);
            taken.insert((topic, p));
            give(&mut held, &mut load, member, topic, p);
        }
    }

    // Each move lowers the sum of squared loads by at least two, so this terminates.
    while let Some((from, to, topic, p)) = find_move(&held, &load, &subscribers) {
        take(&mut held, &mut load, from, topic, p);
        give(&mut held, &mut load, to, topic, p);
    }

    held.into_iter()
        .map(|(member, assignment)| {
            let assignment = assignment
                .into_iter()
                .filter(|(_, partitions)| !partitions.is_empty())
                .map(|(topic, partitions)| (topic.to_string(), partitions))
                .collect();
            (member.to_string(), assignment)
        })
        .collect()
}

fn empty_assignments(subs: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, Assignment> {
    subs.keys().map(|m| (m.clone(), Assignment::new())).collect()
}

fn least_loaded<'a>(members: &[&'a str], load: &BTreeMap<&str, usize>) -> &'a str {
    members
        .iter()
        .copied()
        .min_by_key(|m| (load[m], *m))
        .expect("a topic in `subscribers` has at least one subscriber")
}

fn give<'a>(
    held: &mut BTreeMap<&'a str, BTreeMap<&'a str, BTreeSet<u32>>>,
    load: &mut BTreeMap<&'a str, usize>,
    member: &'a str,
    topic: &'a str,
    p: u32,
) {
    held.entry(member).or_default().entry(topic).or_default().insert(p);
    *load.entry(member).or_default() += 1;
}

fn take<'a>(
    held: &mut BTreeMap<&'a str, BTreeMap<&'a str, BTreeSet<u32>>>,
    load: &mut BTreeMap<&'a str, usize>,
    member: &'a str,
    topic: &'a str,
    p: u32,
) {
    if let Some(partitions) = held.get_mut(member).and_then(|a| a.get_mut(topic))
        && partitions.remove(&p)
    {
        *load.entry(member).or_default() -= 1;
    }
}

/// The first move, most loaded member first, of one partition to a subscriber of its topic
/// holding at least two fewer partitions.
fn find_move<'a>(
    held: &BTreeMap<&'a str, BTreeMap<&'a str, BTreeSet<u32>>>,
    load: &BTreeMap<&'a str, usize>,
    subscribers: &BTreeMap<&'a str, Vec<&'a str>>,
) -> Option<(&'a str, &'a str, &'a str, u32)> {
    let mut by_load: Vec<&str> = held.keys().copied().collect();
    by_load.sort_by_key(|m| (std::cmp::Reverse(load[m]), *m));
    for from in by_load {
        for (&topic, partitions) in &held[from] {
            let Some(&p) = partitions.last() else {
                continue;
            };
            let to = least_loaded(&subscribers[topic], load);
            if load[from] > load[to] + 1 {
                return Some((from, to, topic, p));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn same_subs(members: &[&str], topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        subs(&members.iter().map(|m| (*m, topics)).collect::<Vec<_>>())
    }

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn load(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    /// Every partition of a subscribed topic exactly once, to a subscriber; nothing else.
    fn assert_covers(
        out: &BTreeMap<String, Assignment>,
        subs: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, u32>,
    ) {
        assert_eq!(out.keys().collect::<Vec<_>>(), subs.keys().collect::<Vec<_>>());
        let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();
        for (member, assignment) in out {
            for (topic, partitions) in assignment {
                assert!(!partitions.is_empty(), "empty set for {topic} in {member}");
                assert!(subs[member].contains(topic), "{member} got unsubscribed {topic}");
                for &p in partitions {
                    assert!(p < topics[topic], "{topic}-{p} does not exist");
                    *seen.entry((topic.clone(), p)).or_default() += 1;
                }
            }
        }
        for (topic, &count) in topics {
            let subscribed = subs.values().any(|s| s.contains(topic));
            for p in 0..count {
                let times = seen.get(&(topic.clone(), p)).copied().unwrap_or(0);
                assert_eq!(times, usize::from(subscribed), "{topic}-{p} assigned {times} times");
            }
        }
    }

    fn spread(out: &BTreeMap<String, Assignment>) -> usize {
        let loads: Vec<usize> = out.values().map(load).collect();
        loads.iter().max().unwrap() - loads.iter().min().unwrap()
    }

    /// (member, topic, partition) pairs kept from `before` to `after`.
    fn moved(before: &BTreeMap<String, Assignment>, after: &BTreeMap<String, Assignment>) -> usize {
        let pairs = |x: &BTreeMap<String, Assignment>| -> BTreeSet<(String, String, u32)> {
            x.iter()
                .flat_map(|(m, a)| {
                    a.iter()
                        .flat_map(move |(t, ps)| ps.iter().map(move |p| (m.clone(), t.clone(), *p)))
                })
                .collect()
        };
        let before = pairs(before);
        let after = pairs(after);
        // A partition that changed owner shows up once in `after - before`.
        after.difference(&before).count()
    }

    #[test]
    fn range_matches_kafka_layout() {
        let s = same_subs(&["a", "b", "c"], &["t"]);
        let t = topics(&[("t", 7)]);
        let out = range(&s, &t);
        assert_eq!(out["a"]["t"], (0..3).collect());
        assert_eq!(out["b"]["t"], (3..5).collect());
        assert_eq!(out["c"]["t"], (5..7).collect());
        assert_covers(&out, &s, &t);
    }

    #[test]
    fn range_per_topic_with_more_members_than_partitions() {
        let s = subs(&[("a", &["x", "y"]), ("b", &["x"]), ("c", &["x", "y", "gone"])]);
        let t = topics(&[("x", 2), ("y", 3), ("other", 4)]);
        let out = range(&s, &t);
        assert_eq!(
            out["a"],
            Assignment::from([
                ("x".to_string(), BTreeSet::from([0])),
                ("y".to_string(), BTreeSet::from([0, 1])),
            ])
        );
        assert_eq!(out["b"], Assignment::from([("x".to_string(), BTreeSet::from([1]))]));
        assert_eq!(out["c"], Assignment::from([("y".to_string(), BTreeSet::from([2]))]));
        assert_covers(&out, &s, &t);
    }

    #[test]
    fn uniform_homogeneous_covers_and_balances() {
        for members in 1..=7 {
            for count in [0, 1, 5, 12, 13] {
                let names: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let s = same_subs(&names, &["a", "b"]);
                let t = topics(&[("a", count), ("b", 3), ("c", 9)]);
                let out = uniform(&s, &t, &BTreeMap::new());
                assert_covers(&out, &s, &t);
                assert!(spread(&out) <= 1, "{members} members, {count}: {out:?}");
            }
        }
    }

    #[test]
    fn uniform_adding_a_member_moves_only_what_balance_needs() {
        let t = topics(&[("t", 12)]);
        let three = same_subs(&["a", "b", "c"], &["t"]);
        let before = uniform(&three, &t, &BTreeMap::new());
        let four = same_subs(&["a", "b", "c", "d"], &["t"]);
        let after = uniform(&four, &t, &before);
        assert_covers(&after, &four, &t);
        assert!(after.values().all(|a| load(a) == 3));
        assert_eq!(moved(&before, &after), 3);
    }

    #[test]
    fn uniform_removing_a_member_moves_only_its_partitions() {
        let t = topics(&[("t", 12)]);
        let four = same_subs(&["a", "b", "c", "d"], &["t"]);
        let before = uniform(&four, &t, &BTreeMap::new());
        let three = same_subs(&["a", "c", "d"], &["t"]);
        let after = uniform(&three, &t, &before);
        assert_covers(&after, &three, &t);
        assert!(after.values().all(|a| load(a) == 4));
        assert_eq!(moved(&before, &after), load(&before["b"]));
        for m in ["a", "c", "d"] {
            assert!(before[m].iter().all(|(t, ps)| after[m][t].is_superset(ps)));
        }
    }

    #[test]
    fn uniform_is_stable_when_nothing_changes() {
        let s = same_subs(&["a", "b", "c"], &["x", "y"]);
        let t = topics(&[("x", 5), ("y", 7)]);
        let first = uniform(&s, &t, &BTreeMap::new());
        assert_eq!(uniform(&s, &t, &first), first);
    }

    #[test]
    fn uniform_heterogeneous_covers_everything() {
        let s = subs(&[
            ("a", &["x"]),
            ("b", &["x", "y"]),
            ("c", &["y", "z", "missing"]),
            ("d", &[]),
            ("e", &["z"]),
        ]);
        let t = topics(&[("x", 6), ("y", 4), ("z", 1), ("w", 3)]);
        let out = uniform(&s, &t, &BTreeMap::new());
        assert_covers(&out, &s, &t);
        assert!(out["d"].is_empty());
        // x and y (10 partitions) over a, b, c, with c also able to take z: 11 over 4 members
        // of which e can only take z.
        let loads: Vec<usize> = ["a", "b", "c"].iter().map(|m| load(&out[*m])).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{out:?}");
        // Deterministic.
        assert_eq!(uniform(&s, &t, &BTreeMap::new()), out);
    }

    #[test]
    fn uniform_drops_previous_partitions_that_are_no_longer_valid() {
        let s = subs(&[("a", &["x"]), ("b", &["x", "y"])]);
        let t = topics(&[("x", 2), ("y", 2)]);
        let previous = BTreeMap::from([
            // `a` no longer subscribes to y; x-5 no longer exists; both claim x-0.
            (
                "a".to_string(),
                Assignment::from([
                    ("x".to_string(), BTreeSet::from([0, 5])),
                    ("y".to_string(), BTreeSet::from([0, 1])),
                ]),
            ),
            ("b".to_string(), Assignment::from([("x".to_string(), BTreeSet::from([0]))])),
            ("gone".to_string(), Assignment::from([("x".to_string(), BTreeSet::from([1]))])),
        ]);
        let out = uniform(&s, &t, &previous);
        assert_covers(&out, &s, &t);
        assert!(out["a"]["x"].contains(&0));
    }
}
