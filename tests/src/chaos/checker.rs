//! The checker: turns a [history](super::history) into [`Violation`]s and [`Figures`].
//!
//! Completions are paired with invocations first: a Send completion with the latest open
//! Send invoke of the same process and value (so retries of one value pair correctly), Read
//! and Commit completions with the latest open invoke of the same process and function. A
//! completion with no invoke is treated as invoked when it completed (lenient: the workload
//! may record only completions). Poll, Seek, Release, Committed, FinalRead and Leader are
//! single ok ops.
//!
//! Checks (per partition unless said): `lost` (acked, absent from the leader's final log),
//! `duplicate` (a value at two offsets in any read), `inconsistent` (an offset with two values
//! across reads and acks, or an ack offset the value is never read at), `aborted_read` (a
//! value whose every send failed is read), `poll_order`/`poll_skip` (per consumer, group and
//! partition, polls continue exactly from the last seek or poll), `producer_order` (a
//! producer's acks increase with its seq), `stale_read` (a read after an ack at `o` reports a
//! watermark <= `o`), `watermark_regression` (a read reports a lower watermark than a read
//! that completed before it), `replica_divergence` (replicas equal the leader below both watermarks),
//! `commit_regression` (committed offsets never go back between ordered observations),
//! `group_skip` (a group polled everything below its final commit) and `liveness` (every
//! partition acks a send soon after the last heal, and has a final leader read).
//!
//! "X completed before Y was invoked" is decided by position in the history, not by time
//! stamps: [`History::record`](super::history::History::record) stamps and appends under one
//! lock, so positions are a total order consistent with the stamps while stamps can tie.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::history::{Call, Op, OpType, Rec};

mod report;
mod stale;

pub use report::Figures;
pub use report::Report;
pub use report::Violation;

/// Tunables of [`check`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// A gap without any acknowledged send on a partition longer than this is unavailability.
    pub unavailable_threshold_us: u64,
    /// After the last heal, every partition must acknowledge a new send within this bound.
    pub liveness_bound_us: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { unavailable_threshold_us: 1_000_000, liveness_bound_us: 30_000_000 }
    }
}

/// One send attempt (invoke plus its completion, if any).
struct Attempt<'a> {
    process: &'a str,
    partition: u32,
    value: &'a str,
    invoked: u64,
    /// Completion: kind, time, history position.
    done: Option<(OpType, u64, usize)>,
    offset: Option<i64>,
}

/// A completed (ok) read.
struct ReadDone<'a> {
    process: &'a str,
    partition: u32,
    from: i64,
    records: &'a [Rec],
    high_watermark: Option<i64>,
    refusal: Option<&'a str>,
    invoked: u64,
    invoked_pos: usize,
    done_pos: usize,
}

/// One replica's final log.
struct Final<'a> {
    partition: u32,
    replica: u64,
    leader: bool,
    high_watermark: i64,
    records: &'a [Rec],
    batches: &'a [(i64, u32)],
}

/// A committed offset observation spanning history positions [start, end].
struct CommitObs {
    offset: i64,
    start: (usize, u64),
    end: (usize, u64),
    kind: &'static str,
}

/// A commit that may have been applied, by history position; an indeterminate or
/// uncompleted one may take effect at any later point (`completed == usize::MAX`).
struct CommitWrite {
    offset: i64,
    invoked: usize,
    completed: usize,
}

/// The history with completions paired and ops sorted by function.
#[derive(Default)]
struct Parsed<'a> {
    attempts: Vec<Attempt<'a>>,
    reads: Vec<ReadDone<'a>>,
    /// Poll, Seek and Release ops in history order.
    consumer: Vec<&'a Op>,
    finals: Vec<Final<'a>>,
    /// Per (group, partition): commits acked and committed-offset reads.
    commits: BTreeMap<(&'a str, u32), Vec<CommitObs>>,
    /// Per (group, partition): every commit not known to have failed.
    commit_writes: BTreeMap<(&'a str, u32), Vec<CommitWrite>>,
    /// (kind, time, fault) of every nemesis op.
    nemesis: Vec<(OpType, u64, &'a str)>,
    /// Per partition, leaders in observation order.
    leaders: BTreeMap<u32, Vec<u64>>,
}

fn parse(ops: &[Op]) -> Parsed<'_> {
    let mut p = Parsed::default();
    let mut open_sends: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut open_calls: HashMap<(&str, &str), Vec<(usize, u64)>> = HashMap::new();
    for (pos, op) in ops.iter().enumerate() {
        let process = op.process.as_str();
        let invoke = op.kind == OpType::Invoke;
        match &op.call {
            Call::Send { partition, value, offset, .. } => {
                let key = (process, value.as_str());
                let attempt = || Attempt {
                    process,
                    partition: *partition,
                    value,
                    invoked: op.time,
                    done: None,
                    offset: None,
                };
                if invoke {
                    open_sends.entry(key).or_default().push(p.attempts.len());
                    p.attempts.push(attempt());
                    continue;
                }
                let idx = match open_sends.get_mut(&key).and_then(Vec::pop) {
                    Some(idx) => idx,
                    None => {
                        p.attempts.push(attempt());
                        p.attempts.len() - 1
                    }
                };
                let a = &mut p.attempts[idx];
                a.done = Some((op.kind, op.time, pos));
                a.offset = if op.kind == OpType::Ok { *offset } else { None };
            }
            Call::Read { partition, from, records, high_watermark, refusal } => {
                let key = (process, "read");
                if invoke {
                    open_calls.entry(key).or_default().push((pos, op.time));
                    continue;
                }
                let (ipos, itime) =
                    open_calls.get_mut(&key).and_then(Vec::pop).unwrap_or((pos, op.time));
                if op.kind == OpType::Ok {
                    p.reads.push(ReadDone {
                        process,
                        partition: *partition,
                        from: *from,
                        records,
                        high_watermark: *high_watermark,
                        refusal: refusal.as_deref(),
                        invoked: itime,
                        invoked_pos: ipos,
                        done_pos: pos,
                    });
                }
            }
            Call::Commit { group, partition, offset } => {
                let key = (process, "commit");
                if invoke {
                    open_calls.entry(key).or_default().push((pos, op.time));
                    continue;
                }
                let start = open_calls.get_mut(&key).and_then(Vec::pop).unwrap_or((pos, op.time));
                if op.kind != OpType::Fail {
                    let completed = if op.kind == OpType::Ok { pos } else { usize::MAX };
                    let w = CommitWrite { offset: *offset, invoked: start.0, completed };
                    p.commit_writes.entry((group, *partition)).or_default().push(w);
                }
                if op.kind == OpType::Ok {
                    p.commits.entry((group, *partition)).or_default().push(CommitObs {
                        offset: *offset,
                        start,
                        end: (pos, op.time),
                        kind: "commit",
                    });
                }
            }
            Call::Committed { group, partition, offset } => {
                p.commits.entry((group, *partition)).or_default().push(CommitObs {
                    offset: *offset,
                    start: (pos, op.time),
                    end: (pos, op.time),
                    kind: "committed",
                });
            }
            Call::Poll { .. } | Call::Seek { .. } | Call::Release { .. } => p.consumer.push(op),
            Call::FinalRead { partition, replica, leader, high_watermark, records, batches } => {
                p.finals.push(Final {
                    partition: *partition,
                    replica: *replica,
                    leader: *leader,
                    high_watermark: *high_watermark,
                    records,
                    batches,
                })
            }
            Call::Nemesis { fault, .. } => p.nemesis.push((op.kind, op.time, fault)),
            Call::Leader { partition, broker } => {
                p.leaders.entry(*partition).or_default().push(*broker)
            }
        }
    }
    // Commits never completed may still have been applied at any point after their invoke.
    for (pos, _) in open_calls.into_iter().filter(|(k, _)| k.1 == "commit").flat_map(|e| e.1) {
        if let Call::Commit { group, partition, offset } = &ops[pos].call {
            let w = CommitWrite { offset: *offset, invoked: pos, completed: usize::MAX };
            p.commit_writes.entry((group, *partition)).or_default().push(w);
        }
    }
    p
}

/// Everything read, indexed both ways, with where each fact was first seen.
#[derive(Default)]
struct Seen<'a> {
    /// (partition, value) -> offset -> source.
    by_value: BTreeMap<(u32, &'a str), BTreeMap<i64, usize>>,
    /// (partition, offset) -> value -> source; includes acks.
    by_offset: BTreeMap<(u32, i64), BTreeMap<&'a str, usize>>,
    sources: Vec<String>,
}

impl<'a> Seen<'a> {
    fn source(&mut self, source: String) -> usize {
        self.sources.push(source);
        self.sources.len() - 1
    }

    fn add_read(&mut self, partition: u32, records: &'a [Rec], source: String) {
        let src = self.source(source);
        for (offset, value) in records {
            let offs = self.by_value.entry((partition, value)).or_default();
            offs.entry(*offset).or_insert(src);
            let vals = self.by_offset.entry((partition, *offset)).or_default();
            vals.entry(value).or_insert(src);
        }
    }
}

/// Checks a history: pairs completions (see the module docs), then runs every check.
pub fn check(ops: &[Op], opts: &CheckOptions) -> Report {
    let p = parse(ops);
    let mut v = Vec::new();
    // The leader's final log per partition: the leader read with the highest watermark.
    let mut leaders: BTreeMap<u32, &Final<'_>> = BTreeMap::new();
    for f in p.finals.iter().filter(|f| f.leader) {
        let slot = leaders.entry(f.partition).or_insert(f);
        if f.high_watermark >= slot.high_watermark {
            *slot = f;
        }
    }
    let acked: Vec<&Attempt<'_>> =
        p.attempts.iter().filter(|a| matches!(a.done, Some((OpType::Ok, ..)))).collect();

    check_lost(&acked, &leaders, &mut v);
    let seen = collect_reads(&p, &acked);
    check_reads(&p, &acked, &seen, &mut v);
    check_polls(&p, &mut v);
    check_producer_order(&acked, &mut v);
    stale::check_stale(&p, &acked, &mut v);
    stale::check_watermarks(&p, &mut v);
    check_divergence(&p, &leaders, &mut v);
    check_commits(&p, &mut v);
    check_group_skip(&p, &leaders, &mut v);
    check_liveness(&p, &leaders, opts, &mut v);

    let figures = figures(&p, &v, opts);
    Report { figures, violations: v }
}

fn check_lost(acked: &[&Attempt<'_>], leaders: &BTreeMap<u32, &Final<'_>>, v: &mut Vec<Violation>) {
    let mut in_log: HashMap<u32, BTreeSet<&str>> = HashMap::new();
    for (part, f) in leaders {
        in_log.insert(*part, f.records.iter().map(|r| r.1.as_str()).collect());
    }
    let mut reported = BTreeSet::new();
    for a in acked {
        // No final read at all is a liveness failure, reported there.
        let Some(log) = in_log.get(&a.partition) else { continue };
        if !log.contains(a.value) && reported.insert((a.partition, a.value)) {
            v.push(Violation::Lost {
                partition: a.partition,
                value: a.value.to_owned(),
                offset: a.offset,
                process: a.process.to_owned(),
                acked_at: a.done.map_or(0, |d| d.1),
            });
        }
    }
}

fn collect_reads<'a>(p: &Parsed<'a>, acked: &[&Attempt<'a>]) -> Seen<'a> {
    let mut seen = Seen::default();
    for r in &p.reads {
        let src = format!("read by {} invoked at {}µs from {}", r.process, r.invoked, r.from);
        seen.add_read(r.partition, r.records, src);
    }
    for op in &p.consumer {
        if let Call::Poll { group, partition, records } = &op.call {
            let g = group.as_deref().map(|g| format!(" (group {g})")).unwrap_or_default();
            let src = format!("poll by {}{g} at {}µs", op.process, op.time);
            seen.add_read(*partition, records, src);
        }
    }
    for f in &p.finals {
        let src = format!("final read of replica {} (leader: {})", f.replica, f.leader);
        seen.add_read(f.partition, f.records, src);
    }
    for a in acked {
        if let (Some(offset), Some((_, time, _))) = (a.offset, a.done) {
            // An ack is a claim about the offset only: acks never make duplicates.
            let src_idx = seen.source(format!("ack to {} at {}µs", a.process, time));
            let vals = seen.by_offset.entry((a.partition, offset)).or_default();
            vals.entry(a.value).or_insert(src_idx);
        }
    }
    seen
}

fn check_reads(p: &Parsed<'_>, acked: &[&Attempt<'_>], seen: &Seen<'_>, v: &mut Vec<Violation>) {
    let src = |i: &usize| seen.sources[*i].clone();
    for ((partition, value), offsets) in &seen.by_value {
        if offsets.len() > 1 {
            v.push(Violation::Duplicate {
                partition: *partition,
                value: (*value).to_owned(),
                offsets: offsets.keys().copied().collect(),
                sources: offsets.values().map(src).collect(),
            });
        }
    }
    for ((partition, offset), values) in &seen.by_offset {
        if values.len() > 1 {
            v.push(Violation::Inconsistent {
                partition: *partition,
                offset: *offset,
                values: values.keys().map(|s| (*s).to_owned()).collect(),
                sources: values.values().map(src).collect(),
            });
        }
    }
    for a in acked {
        let Some(acked_offset) = a.offset else { continue };
        let Some(read) = seen.by_value.get(&(a.partition, a.value)) else { continue };
        if !read.contains_key(&acked_offset) {
            v.push(Violation::WrongAckOffset {
                partition: a.partition,
                value: a.value.to_owned(),
                process: a.process.to_owned(),
                acked_offset,
                read_offsets: read.keys().copied().collect(),
            });
        }
    }
    // A value is aborted only if every attempt of it definitely failed: a retry of the same
    // value after a failure may legitimately succeed.
    let mut aborted: BTreeMap<(u32, &str), bool> = BTreeMap::new();
    for a in &p.attempts {
        let failed = matches!(a.done, Some((OpType::Fail, ..)));
        *aborted.entry((a.partition, a.value)).or_insert(true) &= failed;
    }
    for ((partition, value), all_failed) in aborted {
        if !all_failed {
            continue;
        }
        if let Some((offset, s)) =
            seen.by_value.get(&(partition, value)).and_then(|m| m.first_key_value())
        {
            v.push(Violation::AbortedRead {
                partition,
                value: value.to_owned(),
                offset: *offset,
                source: seen.sources[*s].clone(),
            });
        }
    }
}

fn check_polls(p: &Parsed<'_>, v: &mut Vec<Violation>) {
    // Expected next offset per (process, group, partition); None = unknown (lenient start).
    let mut expected: HashMap<(&str, Option<&str>, u32), Option<i64>> = HashMap::new();
    for op in &p.consumer {
        match &op.call {
            Call::Seek { group, partition, offset } => {
                expected.insert((&op.process, group.as_deref(), *partition), Some(*offset));
            }
            Call::Release { group, partition } => {
                expected.insert((&op.process, group.as_deref(), *partition), None);
            }
            Call::Poll { group, partition, records } => {
                let slot = expected.entry((&op.process, group.as_deref(), *partition)).or_default();
                for (got, _) in records {
                    if let Some(exp) = *slot {
                        let (process, group, partition, got, time) =
                            (op.process.clone(), group.clone(), *partition, *got, op.time);
                        if got < exp {
                            v.push(Violation::PollOrder {
                                process,
                                group,
                                partition,
                                expected: exp,
                                got,
                                time,
                            });
                        } else if got > exp {
                            v.push(Violation::PollSkip {
                                process,
                                group,
                                partition,
                                expected: exp,
                                got,
                                time,
                            });
                        }
                    }
                    *slot = Some(got + 1);
                }
            }
            _ => {}
        }
    }
}

/// seq -> (value, acked offset) of one producer on one partition.
type BySeq<'a> = BTreeMap<u64, (&'a str, i64)>;

fn check_producer_order(acked: &[&Attempt<'_>], v: &mut Vec<Violation>) {
    // (producer, partition) -> seq -> (value, offset); the first ack of a value wins.
    let mut by_producer: BTreeMap<(&str, u32), BySeq<'_>> = BTreeMap::new();
    for a in acked {
        let Some(offset) = a.offset else { continue };
        let Some((producer, seq)) = a.value.rsplit_once(':') else { continue };
        let Ok(seq) = seq.parse::<u64>() else { continue };
        let seqs = by_producer.entry((producer, a.partition)).or_default();
        seqs.entry(seq).or_insert((a.value, offset));
    }
    for ((producer, partition), seqs) in by_producer {
        let list: Vec<_> = seqs.values().collect();
        for w in list.windows(2) {
            let ((ev, eo), (lv, lo)) = (w[0], w[1]);
            if lo <= eo {
                v.push(Violation::ProducerOrder {
                    partition,
                    producer: producer.to_owned(),
                    earlier_value: (*ev).to_owned(),
                    earlier_offset: *eo,
                    later_value: (*lv).to_owned(),
                    later_offset: *lo,
                });
            }
        }
    }
}

fn check_divergence(p: &Parsed<'_>, leaders: &BTreeMap<u32, &Final<'_>>, v: &mut Vec<Violation>) {
    for f in &p.finals {
        let Some(l) = leaders.get(&f.partition) else { continue };
        if std::ptr::eq(*l, f) {
            continue;
        }
        let min_hw = l.high_watermark.min(f.high_watermark);
        let below = |recs: &[Rec]| -> BTreeMap<i64, String> {
            recs.iter().filter(|r| r.0 < min_hw).map(|r| (r.0, r.1.clone())).collect()
        };
        let (lr, fr) = (below(l.records), below(f.records));
        let rec_diff = lr.keys().chain(fr.keys()).copied().filter(|o| lr.get(o) != fr.get(o)).min();
        let batches = |b: &[(i64, u32)]| -> Vec<(i64, u32)> {
            b.iter().copied().filter(|x| x.0 < min_hw).collect()
        };
        let (lb, fb) = (batches(l.batches), batches(f.batches));
        let batch_diff = match lb.iter().zip(&fb).find(|(a, b)| a != b) {
            Some((a, b)) => Some(a.0.min(b.0)),
            None if lb.len() != fb.len() => lb.get(fb.len()).or(fb.get(lb.len())).map(|x| x.0),
            None => None,
        };
        let offset = match (rec_diff, batch_diff) {
            (None, None) => continue,
            (a, b) => a.into_iter().chain(b).min().unwrap_or_default(),
        };
        v.push(Violation::ReplicaDivergence {
            partition: f.partition,
            leader: l.replica,
            replica: f.replica,
            offset,
            leader_value: lr.get(&offset).cloned(),
            replica_value: fr.get(&offset).cloned(),
            in_batches: rec_diff != Some(offset),
        });
    }
}

fn check_commits(p: &Parsed<'_>, v: &mut Vec<Violation>) {
    for ((group, partition), obs) in &p.commits {
        let writes = p.commit_writes.get(&(*group, *partition)).map_or(&[][..], Vec::as_slice);
        for y in obs {
            // Higher observations completed before `y` started: the highest, and the latest
            // start among them.
            let mut earlier = obs.iter().filter(|x| x.end.0 < y.start.0 && x.offset > y.offset);
            let Some(first) = earlier.next() else { continue };
            let (x, latest) = earlier.fold((first, first.start.0), |(x, latest), e| {
                let x = if (e.offset, e.end.0) > (x.offset, x.end.0) { e } else { x };
                (x, latest.max(e.start.0))
            });
            if y.kind == "committed" {
                // Concurrent commits may land in any order: reading `y` is fine if a commit of
                // `y` (acked or indeterminate) may have been applied after every higher
                // observation started, i.e. it did not complete before the latest of them.
                let excused = writes
                    .iter()
                    .any(|w| w.offset == y.offset && w.invoked < y.end.0 && w.completed > latest);
                if excused {
                    continue;
                }
            }
            v.push(Violation::CommitRegression {
                group: (*group).to_owned(),
                partition: *partition,
                earlier_offset: x.offset,
                earlier_at: x.end.1,
                later_offset: y.offset,
                later_at: y.start.1,
                later_kind: y.kind,
            });
        }
    }
}

fn check_group_skip(p: &Parsed<'_>, leaders: &BTreeMap<u32, &Final<'_>>, v: &mut Vec<Violation>) {
    let mut polled: HashMap<(&str, u32), BTreeSet<i64>> = HashMap::new();
    for op in &p.consumer {
        if let Call::Poll { group: Some(g), partition, records } = &op.call {
            polled.entry((g, *partition)).or_default().extend(records.iter().map(|r| r.0));
        }
    }
    for ((group, partition), obs) in &p.commits {
        let last_read = obs.iter().filter(|o| o.kind == "committed").max_by_key(|o| o.end.0);
        let committed = match last_read {
            Some(o) => o.offset,
            None => obs.iter().map(|o| o.offset).max().unwrap_or(-1),
        };
        let Some(log) = leaders.get(partition) else { continue };
        let seen = polled.get(&(*group, *partition));
        let missing: Vec<i64> = log
            .records
            .iter()
            .map(|r| r.0)
            .filter(|o| *o < committed && !seen.is_some_and(|s| s.contains(o)))
            .collect();
        if !missing.is_empty() {
            v.push(Violation::GroupSkip {
                group: (*group).to_owned(),
                partition: *partition,
                committed,
                missing: missing.len(),
                first_missing: missing.into_iter().take(10).collect(),
            });
        }
    }
}

/// The time liveness and recovery are measured from: the last heal; with nemesis ops but no
/// heal, the last nemesis op (faults may still be in force, which should then fail); with no
/// nemesis at all, 0.
fn heal_time(p: &Parsed<'_>) -> u64 {
    let heals = p.nemesis.iter().filter(|n| n.2 == "heal").map(|n| n.1).max();
    heals.or_else(|| p.nemesis.iter().map(|n| n.1).max()).unwrap_or(0)
}

fn check_liveness(
    p: &Parsed<'_>,
    leaders: &BTreeMap<u32, &Final<'_>>,
    opts: &CheckOptions,
    v: &mut Vec<Violation>,
) {
    let since = heal_time(p);
    let deadline = since.saturating_add(opts.liveness_bound_us);
    let partitions: BTreeSet<u32> = p.attempts.iter().map(|a| a.partition).collect();
    for partition in partitions {
        let recovered = p.attempts.iter().any(|a| {
            a.partition == partition
                && a.invoked >= since
                && matches!(a.done, Some((OpType::Ok, t, _)) if t <= deadline)
        });
        if !recovered {
            let reason = format!(
                "no send invoked at or after {since}µs was acknowledged within {}µs",
                opts.liveness_bound_us
            );
            v.push(Violation::Liveness { partition, reason, since });
        }
        if !leaders.contains_key(&partition) {
            let reason = "no final read of the leader replica".to_owned();
            v.push(Violation::Liveness { partition, reason, since });
        }
    }
}

fn figures(p: &Parsed<'_>, v: &[Violation], opts: &CheckOptions) -> Figures {
    let mut f = Figures { attempted: p.attempts.len() as u64, ..Figures::default() };
    for a in &p.attempts {
        match a.done {
            Some((OpType::Ok, ..)) => f.acked += 1,
            Some((OpType::Fail, ..)) => f.failed += 1,
            _ => f.indeterminate += 1,
        }
    }
    let count = |k: &str| v.iter().filter(|x| x.kind() == k).count() as u64;
    f.lost = count("lost");
    f.duplicated = count("duplicate");
    f.inconsistent = count("inconsistent");
    f.reordered = count("producer_order");
    f.stale = count("stale_read") + count("watermark_regression");

    let windows = unavailable_windows(p, opts.unavailable_threshold_us);
    f.unavailable_longest_us = windows.iter().map(|w| w.1 - w.0).max().unwrap_or(0);
    f.unavailable_total_us = union_len(windows);

    let mut recoveries = recoveries(p);
    recoveries.sort_unstable();
    // Lower median: with an even count it is an observed value, not an interpolation.
    f.recovery_p50_us = recoveries.get(recoveries.len().saturating_sub(1) / 2).copied();
    f.recovery_max_us = recoveries.last().copied();

    for seen in p.leaders.values() {
        f.elections += seen.windows(2).filter(|w| w[0] != w[1]).count() as u64;
    }
    f
}

/// Per partition with sends: gaps between consecutive acks (and from the first send to the
/// first ack, and from the last ack to the last send activity) longer than `threshold`.
fn unavailable_windows(p: &Parsed<'_>, threshold: u64) -> Vec<(u64, u64)> {
    let mut per: BTreeMap<u32, (u64, u64, Vec<u64>)> = BTreeMap::new();
    for a in &p.attempts {
        let done = a.done.map(|d| d.1);
        let e = per.entry(a.partition).or_insert((a.invoked, a.invoked, Vec::new()));
        e.0 = e.0.min(a.invoked);
        e.1 = e.1.max(done.unwrap_or(a.invoked));
        if let Some((OpType::Ok, t, _)) = a.done {
            e.2.push(t);
        }
    }
    let mut windows = Vec::new();
    for (first, last, mut oks) in per.into_values() {
        oks.sort_unstable();
        // The trailing edge catches a partition that never acks again (or never acked).
        let points = std::iter::once(first).chain(oks).chain(std::iter::once(last));
        let points: Vec<u64> = points.collect();
        for w in points.windows(2) {
            if w[1] > w[0] && w[1] - w[0] > threshold {
                windows.push((w[0], w[1]));
            }
        }
    }
    windows
}

/// Measure of the union of half-open intervals.
fn union_len(mut windows: Vec<(u64, u64)>) -> u64 {
    windows.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in windows {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            _ => {
                total += cur.map_or(0, |(cs, ce)| ce - cs);
                cur = Some((s, e));
            }
        }
    }
    total + cur.map_or(0, |(cs, ce)| ce - cs)
}

/// Per fault start (nemesis invoke, not heal): the time until every partition acknowledged a
/// send invoked after it (partitions that never did are skipped).
fn recoveries(p: &Parsed<'_>) -> Vec<u64> {
    // Per partition: acked sends by invoke time with the suffix minimum of their completion,
    // so "first ack among sends invoked at or after t" is one binary search.
    let mut per: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for a in &p.attempts {
        let e = per.entry(a.partition).or_default();
        if let Some((OpType::Ok, done, _)) = a.done {
            e.push((a.invoked, done));
        }
    }
    for acks in per.values_mut() {
        acks.sort_unstable();
        for i in (0..acks.len().saturating_sub(1)).rev() {
            acks[i].1 = acks[i].1.min(acks[i + 1].1);
        }
    }
    let mut out = Vec::new();
    for &(kind, t, fault) in &p.nemesis {
        if kind != OpType::Invoke || fault == "heal" {
            continue;
        }
        let worst = per
            .values()
            .filter_map(|acks| acks.get(acks.partition_point(|a| a.0 < t)))
            .map(|a| a.1.saturating_sub(t))
            .max();
        out.extend(worst);
    }
    out
}

#[cfg(test)]
mod tests;
