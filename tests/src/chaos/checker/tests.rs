//! Hand-built histories: each violation kind is detected, and a messy but correct run is not
//! flagged.

use super::*;

/// Builds a history; each op is stamped `step` µs after the previous one unless `at` is used.
struct H {
    ops: Vec<Op>,
    t: u64,
    step: u64,
}

fn recs(r: &[(i64, &str)]) -> Vec<Rec> {
    r.iter().map(|(o, v)| (*o, (*v).to_owned())).collect()
}

fn send(partition: u32, value: &str, offset: Option<i64>) -> Call {
    Call::Send { partition, value: value.into(), offset, error: None }
}

impl H {
    fn new() -> H {
        H { ops: Vec::new(), t: 0, step: 1_000 }
    }

    /// Stamps the next op at `t` exactly.
    fn at(&mut self, t: u64) -> &mut Self {
        self.t = t;
        self.step = 0;
        self
    }

    fn op(&mut self, process: &str, kind: OpType, call: Call) -> &mut Self {
        self.t += self.step;
        self.step = 1_000;
        self.ops.push(Op { process: process.into(), kind, call, time: self.t });
        self
    }

    fn invoke(&mut self, p: &str, part: u32, value: &str) -> &mut Self {
        self.op(p, OpType::Invoke, send(part, value, None))
    }

    fn ack(&mut self, p: &str, part: u32, value: &str, offset: i64) -> &mut Self {
        self.op(p, OpType::Ok, send(part, value, Some(offset)))
    }

    fn send_end(&mut self, p: &str, kind: OpType, part: u32, value: &str) -> &mut Self {
        let call = Call::Send {
            partition: part,
            value: value.into(),
            offset: None,
            error: Some("e".into()),
        };
        self.op(p, kind, call)
    }

    /// Invoke + ok.
    fn produce(&mut self, p: &str, part: u32, value: &str, offset: i64) -> &mut Self {
        self.invoke(p, part, value).ack(p, part, value, offset)
    }

    fn read(
        &mut self,
        p: &str,
        part: u32,
        from: i64,
        r: &[(i64, &str)],
        hw: Option<i64>,
    ) -> &mut Self {
        let inv = Call::Read {
            partition: part,
            from,
            records: vec![],
            high_watermark: None,
            refusal: None,
        };
        self.op(p, OpType::Invoke, inv);
        let done = Call::Read {
            partition: part,
            from,
            records: recs(r),
            high_watermark: hw,
            refusal: None,
        };
        self.op(p, OpType::Ok, done)
    }

    fn poll(&mut self, p: &str, g: Option<&str>, part: u32, r: &[(i64, &str)]) -> &mut Self {
        let call = Call::Poll { group: g.map(Into::into), partition: part, records: recs(r) };
        self.op(p, OpType::Ok, call)
    }

    fn seek(&mut self, p: &str, g: Option<&str>, part: u32, offset: i64) -> &mut Self {
        self.op(p, OpType::Ok, Call::Seek { group: g.map(Into::into), partition: part, offset })
    }

    fn release(&mut self, p: &str, g: Option<&str>, part: u32) -> &mut Self {
        self.op(p, OpType::Ok, Call::Release { group: g.map(Into::into), partition: part })
    }

    fn commit_op(&mut self, p: &str, kind: OpType, g: &str, part: u32, offset: i64) -> &mut Self {
        self.op(p, kind, Call::Commit { group: g.into(), partition: part, offset })
    }

    fn commit(&mut self, p: &str, g: &str, part: u32, offset: i64) -> &mut Self {
        self.commit_op(p, OpType::Invoke, g, part, offset).commit_op(p, OpType::Ok, g, part, offset)
    }

    fn committed(&mut self, p: &str, g: &str, part: u32, offset: i64) -> &mut Self {
        self.op(p, OpType::Ok, Call::Committed { group: g.into(), partition: part, offset })
    }

    /// A final read with one batch per record, digest derived from the value.
    fn fin(
        &mut self,
        part: u32,
        replica: u64,
        leader: bool,
        hw: i64,
        r: &[(i64, &str)],
    ) -> &mut Self {
        let batches = r.iter().map(|(o, v)| (*o, v.len() as u32 * 7 + *o as u32)).collect();
        self.fin_batches(part, replica, leader, hw, r, batches)
    }

    fn fin_batches(
        &mut self,
        part: u32,
        replica: u64,
        leader: bool,
        hw: i64,
        r: &[(i64, &str)],
        batches: Vec<(i64, u32)>,
    ) -> &mut Self {
        let call = Call::FinalRead {
            partition: part,
            replica,
            leader,
            high_watermark: hw,
            records: recs(r),
            batches,
        };
        self.op("verify", OpType::Ok, call)
    }

    fn nemesis(&mut self, kind: OpType, fault: &str) -> &mut Self {
        self.op("nemesis", kind, Call::Nemesis { fault: fault.into(), detail: String::new() })
    }

    fn leader(&mut self, part: u32, broker: u64) -> &mut Self {
        self.op("watch", OpType::Ok, Call::Leader { partition: part, broker })
    }

    fn check(&self) -> Report {
        check(&self.ops, &CheckOptions::default())
    }
}

/// Asserts the report holds exactly `n` violations, all of `kind`, and returns them.
fn only(report: &Report, kind: &str, n: usize) -> Vec<Violation> {
    assert_eq!(report.count(kind), n, "{}", report.summary());
    assert_eq!(report.violations.len(), n, "{}", report.summary());
    report.violations.clone()
}

/// A correct run with concurrency, retries, indeterminate and failed sends, faults, three
/// replicas (one lagging), leader changes and a group that rebalances.
fn clean() -> H {
    let mut h = H::new();
    h.leader(0, 1).leader(1, 2);
    // Concurrent sends on partition 0.
    h.invoke("a", 0, "a:1").invoke("b", 0, "b:1").ack("a", 0, "a:1", 0).ack("b", 0, "b:1", 1);
    h.invoke("a", 0, "a:2").invoke("b", 0, "b:2");
    // A reader concurrent with a:2 may or may not see it.
    h.read("r", 0, 0, &[(0, "a:1"), (1, "b:1")], Some(2));
    h.ack("a", 0, "a:2", 2);
    h.nemesis(OpType::Invoke, "kill").nemesis(OpType::Ok, "kill");
    // b:2 times out, then its retry (same value) succeeds exactly once.
    h.send_end("b", OpType::Info, 0, "b:2").invoke("b", 0, "b:2").ack("b", 0, "b:2", 3);
    h.leader(0, 1).leader(0, 2);
    // c:1 definitely fails; c:2 is indeterminate and never applied; c:3 never completes.
    h.invoke("c", 0, "c:1").send_end("c", OpType::Fail, 0, "c:1");
    h.invoke("c", 0, "c:2").send_end("c", OpType::Info, 0, "c:2");
    h.invoke("c", 0, "c:3");
    // a:3's ack is lost (info) but it was applied; a:4 acked after.
    h.invoke("a", 0, "a:3").send_end("a", OpType::Info, 0, "a:3").produce("a", 0, "a:4", 5);
    h.read("r", 0, 2, &[(2, "a:2"), (3, "b:2"), (4, "a:3"), (5, "a:4")], Some(6));
    h.produce("a", 1, "a:100", 0).produce("b", 1, "b:100", 1);
    h.nemesis(OpType::Invoke, "heal").nemesis(OpType::Ok, "heal");
    h.produce("b", 0, "b:3", 6).produce("a", 1, "a:101", 2);

    // Group g: c1 holds both partitions, then a rebalance moves partition 0 to c2.
    let g = Some("g");
    h.seek("c1", g, 0, 0).seek("c1", g, 1, 0);
    h.poll("c1", g, 0, &[(0, "a:1"), (1, "b:1")]).poll("c1", g, 1, &[(0, "a:100")]);
    h.poll("c1", g, 0, &[(2, "a:2")]).commit("c1", "g", 0, 3).commit("c1", "g", 1, 1);
    h.release("c1", g, 0).committed("c2", "g", 0, 3).seek("c2", g, 0, 3);
    h.poll("c2", g, 0, &[(3, "b:2"), (4, "a:3")]).poll("c2", g, 0, &[(5, "a:4"), (6, "b:3")]);
    h.commit("c2", "g", 0, 7).poll("c1", g, 1, &[(1, "b:100"), (2, "a:101")]);
    // Concurrent commits settle on the lower one: fine, the later read sees a value written.
    h.commit_op("c1", OpType::Invoke, "g", 1, 3).commit_op("c3", OpType::Invoke, "g", 1, 2);
    h.commit_op("c1", OpType::Ok, "g", 1, 3).commit_op("c3", OpType::Ok, "g", 1, 2);
    h.committed("c1", "g", 1, 2).commit("c1", "g", 1, 3);
    // A standalone consumer with no seek starts wherever its first record is.
    h.poll("solo", None, 0, &[(4, "a:3"), (5, "a:4")]);
    h.committed("c2", "g", 0, 7).committed("c1", "g", 1, 3);

    let p0 = [(0, "a:1"), (1, "b:1"), (2, "a:2"), (3, "b:2"), (4, "a:3"), (5, "a:4"), (6, "b:3")];
    h.fin(0, 2, true, 7, &p0).fin(0, 1, false, 7, &p0).fin(0, 3, false, 5, &p0[..5]);
    let p1 = [(0, "a:100"), (1, "b:100"), (2, "a:101")];
    h.fin(1, 2, true, 3, &p1).fin(1, 3, false, 3, &p1);
    // A lagging follower may hold an uncommitted, different tail above its watermark.
    h.fin(1, 1, false, 2, &[(0, "a:100"), (1, "b:100")]);
    h
}

#[test]
fn clean_history_has_no_violations() {
    let report = clean().check();
    assert!(report.is_valid(), "{}", report.summary());
    let f = &report.figures;
    assert_eq!(f.attempted, 14);
    assert_eq!(f.acked, 9);
    assert_eq!(f.failed, 1);
    assert_eq!(f.indeterminate, 4);
    assert_eq!(f.elections, 1);
    assert_eq!(f.unavailable_total_us, 0);
    assert!(f.recovery_p50_us.is_some());
}

#[test]
fn lost_acked_value_missing_from_leader() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 0, "a:2", 1);
    // A follower having it does not help: the leader's log is the truth.
    h.fin(0, 1, true, 1, &[(0, "a:1")]).fin(0, 2, false, 2, &[(0, "a:1"), (1, "a:2")]);
    let v = only(&h.check(), "lost", 1);
    assert!(matches!(&v[0], Violation::Lost { partition: 0, value, offset: Some(1), .. }
        if value == "a:2"));
    assert_eq!(h.check().figures.lost, 1);
}

#[test]
fn lost_uses_the_leader_read_with_the_highest_watermark() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 0, "a:2", 1);
    h.fin(0, 1, true, 2, &[(0, "a:1"), (1, "a:2")]).fin(0, 2, true, 1, &[(0, "a:1")]);
    assert!(h.check().is_valid(), "{}", h.check().summary());
}

#[test]
fn missing_final_read_is_liveness_not_lost() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 1, "a:2", 0);
    h.fin(1, 1, true, 1, &[(0, "a:2")]);
    let v = only(&h.check(), "liveness", 1);
    assert!(matches!(&v[0], Violation::Liveness { partition: 0, .. }));
}

#[test]
fn duplicate_value_counted_once() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 0, "a:2", 2);
    h.read("r", 0, 0, &[(0, "a:1"), (1, "a:1")], Some(3));
    h.poll("c", None, 0, &[(0, "a:1"), (1, "a:1"), (2, "a:2")]);
    h.fin(0, 1, true, 3, &[(0, "a:1"), (1, "a:1"), (2, "a:2")]);
    let report = h.check();
    let v = only(&report, "duplicate", 1);
    assert!(matches!(&v[0], Violation::Duplicate { partition: 0, value, offsets, .. }
        if value == "a:1" && offsets == &[0, 1]));
    assert_eq!(report.figures.duplicated, 1);
}

#[test]
fn inconsistent_offset_counted_once() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0);
    h.poll("c", None, 0, &[(0, "zz:1")]).poll("d", None, 0, &[(0, "zz:1")]);
    h.read("r", 0, 0, &[(0, "yy:1")], Some(1));
    h.fin(0, 1, true, 1, &[(0, "a:1")]);
    let report = h.check();
    let v = only(&report, "inconsistent", 1);
    assert!(matches!(&v[0], Violation::Inconsistent { partition: 0, offset: 0, values, .. }
        if values == &["a:1", "yy:1", "zz:1"]));
    assert_eq!(report.figures.inconsistent, 1);
}

#[test]
fn inconsistent_ack_offset() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 3);
    h.fin(0, 1, true, 1, &[(0, "a:1")]);
    let v = only(&h.check(), "inconsistent", 1);
    let Violation::WrongAckOffset { partition: 0, value, acked_offset: 3, read_offsets, .. } =
        &v[0]
    else {
        panic!("{v:?}")
    };
    assert_eq!((value.as_str(), read_offsets.as_slice()), ("a:1", &[0][..]));
}

#[test]
fn inconsistent_between_ack_and_read() {
    let mut h = H::new();
    // Two acks claim offset 0; only one value can be there.
    h.produce("a", 0, "a:1", 0).produce("b", 0, "b:1", 0);
    h.fin(0, 1, true, 2, &[(0, "a:1"), (1, "b:1")]);
    let report = h.check();
    assert_eq!(report.count("inconsistent"), 2, "{}", report.summary());
    assert!(report.violations.iter().any(|v| matches!(v,
        Violation::Inconsistent { offset: 0, values, .. } if values == &["a:1", "b:1"])));
    assert!(report.violations.iter().any(|v| matches!(v,
        Violation::WrongAckOffset { value, acked_offset: 0, .. } if value == "b:1")));
}

#[test]
fn aborted_read_only_when_every_attempt_failed() {
    let mut h = H::new();
    h.invoke("a", 0, "a:1").send_end("a", OpType::Fail, 0, "a:1");
    // A failed first attempt retried successfully is not aborted.
    h.invoke("a", 0, "a:2").send_end("a", OpType::Fail, 0, "a:2").produce("a", 0, "a:2", 1);
    h.fin(0, 1, true, 2, &[(0, "a:1"), (1, "a:2")]);
    let v = only(&h.check(), "aborted_read", 1);
    assert!(matches!(&v[0], Violation::AbortedRead { partition: 0, value, offset: 0, .. }
        if value == "a:1"));
    assert_eq!(h.check().figures.failed, 2);
}

#[test]
fn poll_order_and_skip() {
    let mut h = H::new();
    let g = Some("g");
    h.seek("c", g, 0, 0).poll("c", g, 0, &[(0, "x"), (1, "y")]);
    h.poll("c", g, 0, &[(1, "y"), (2, "z")]); // went back to 1
    h.poll("c", g, 0, &[(5, "w")]); // skipped 3..5
    h.poll("c", g, 0, &[(6, "v"), (8, "u")]); // gap inside one poll
    // Another group of the same process is tracked separately; a release resets tracking.
    h.seek("c", Some("other"), 0, 3).release("c", g, 0).poll("c", g, 0, &[(20, "t")]);
    h.seek("c", g, 0, 4).poll("c", g, 0, &[(4, "s")]);
    let report = h.check();
    assert_eq!(report.count("poll_order"), 1, "{}", report.summary());
    assert_eq!(report.count("poll_skip"), 2, "{}", report.summary());
    assert_eq!(report.violations.len(), 3);
    let first = &report.violations[0];
    let Violation::PollOrder { partition: 0, expected: 2, got: 1, group: Some(g), .. } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(g, "g");
    assert!(matches!(&report.violations[1], Violation::PollSkip { expected: 3, got: 5, .. }));
    assert!(matches!(&report.violations[2], Violation::PollSkip { expected: 7, got: 8, .. }));
}

#[test]
fn producer_order_by_seq() {
    let mut h = H::new();
    h.invoke("a", 0, "a:1").invoke("a", 0, "a:2");
    h.ack("a", 0, "a:2", 0).ack("a", 0, "a:1", 1).produce("a", 0, "a:3", 2);
    // Another producer's and another partition's offsets are independent.
    h.produce("b", 0, "b:1", 3).produce("a", 1, "a:4", 0);
    h.fin(0, 1, true, 4, &[(0, "a:2"), (1, "a:1"), (2, "a:3"), (3, "b:1")]);
    h.fin(1, 1, true, 1, &[(0, "a:4")]);
    let report = h.check();
    let v = only(&report, "producer_order", 1);
    assert!(matches!(&v[0], Violation::ProducerOrder { partition: 0, producer, earlier_offset: 1,
        later_offset: 0, later_value, .. } if producer == "a" && later_value == "a:2"));
    assert_eq!(report.figures.reordered, 1);
}

#[test]
fn stale_read_after_ack() {
    let mut h = H::new();
    h.invoke("a", 0, "a:1");
    // Concurrent with the send: not stale.
    h.read("r", 0, 0, &[], Some(0));
    h.ack("a", 0, "a:1", 0);
    h.read("r", 0, 0, &[], Some(0)); // stale: hw 0 after offset 0 was acked
    h.read("r", 0, 1, &[], Some(0)); // from beyond the ack: not comparable
    h.read("r", 0, 0, &[], None); // no hw and nothing returned: stale
    h.read("r", 0, 0, &[(0, "a:1")], None); // fine
    h.read("r", 1, 0, &[], Some(0)); // other partition: fine
    h.fin(0, 1, true, 1, &[(0, "a:1")]);
    let report = h.check();
    let v = only(&report, "stale_read", 2);
    assert!(matches!(&v[0], Violation::StaleRead { partition: 0, high_watermark: Some(0),
        acked_offset: 0, acked_value, .. } if acked_value == "a:1"));
    assert!(matches!(&v[1], Violation::StaleRead { high_watermark: None, last_read: None, .. }));
    assert_eq!(report.figures.stale, 2);
}

#[test]
fn watermark_regression_between_reads() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 0, "a:2", 1).produce("a", 0, "a:3", 2);
    h.read("r1", 0, 0, &[(0, "a:1"), (1, "a:2"), (2, "a:3")], Some(3));
    // Overlapping reads may complete in any order: r2 was invoked before r3 completed.
    h.op("r2", OpType::Invoke, read_call(0, 3, None));
    h.read("r3", 0, 3, &[], Some(3));
    h.op("r2", OpType::Ok, read_call(0, 3, Some(3)));
    // Invoked after r1 reported 3: a lower watermark is a regression, even with nothing
    // acknowledged above it.
    h.read("r2", 0, 3, &[], Some(2));
    h.read("r2", 1, 0, &[], Some(0)); // other partition: fine
    h.fin(0, 1, true, 3, &[(0, "a:1"), (1, "a:2"), (2, "a:3")]);
    let report = h.check();
    let v = only(&report, "watermark_regression", 1);
    assert!(matches!(&v[0], Violation::WatermarkRegression { partition: 0, high_watermark: 2,
        earlier_high_watermark: 3, process, .. } if process == "r2"));
    assert_eq!(report.figures.stale, 1);
}

fn read_call(partition: u32, from: i64, hw: Option<i64>) -> Call {
    Call::Read { partition, from, records: vec![], high_watermark: hw, refusal: None }
}

#[test]
fn replica_divergence_in_records_and_batches() {
    let mut h = H::new();
    h.produce("a", 0, "a", 0).produce("a", 0, "b", 1).produce("a", 0, "c", 2);
    let log = [(0, "a"), (1, "b"), (2, "c")];
    h.fin_batches(0, 1, true, 3, &log, vec![(0, 10), (1, 11), (2, 12)]);
    // Replica 2 differs at offset 1 (its record and batch).
    h.fin_batches(0, 2, false, 2, &[(0, "a"), (1, "x")], vec![(0, 10), (1, 99)]);
    // Replica 3 has the same records but a different batch digest at base 2.
    h.fin_batches(0, 3, false, 3, &log, vec![(0, 10), (1, 11), (2, 13)]);
    // Replica 4 differs only above its watermark: fine.
    h.fin_batches(0, 4, false, 1, &[(0, "a")], vec![(0, 10), (1, 77)]);
    let report = h.check();
    assert_eq!(report.count("replica_divergence"), 2, "{}", report.summary());
    let div: Vec<_> =
        report.violations.iter().filter(|v| v.kind() == "replica_divergence").collect();
    let Violation::ReplicaDivergence {
        partition: 0,
        leader: 1,
        replica: 2,
        offset: 1,
        leader_value: Some(l),
        replica_value: Some(r),
        in_batches: false,
    } = div[0]
    else {
        panic!("{:?}", div[0])
    };
    assert_eq!((l.as_str(), r.as_str()), ("b", "x"));
    assert!(matches!(
        div[1],
        Violation::ReplicaDivergence { replica: 3, offset: 2, in_batches: true, .. }
    ));
    // The conflicting record at offset 1 is also an inconsistency; nothing else is flagged.
    assert_eq!(report.count("inconsistent"), 1);
    assert_eq!(report.violations.len(), 3);
}

#[test]
fn commit_regression() {
    let mut h = H::new();
    h.commit("c", "g", 0, 5).committed("d", "g", 0, 3);
    // An acked lower commit after a higher one.
    h.commit("c", "g", 1, 5).commit("c", "g", 1, 4);
    // Committed offsets lost entirely.
    h.commit("c", "g", 2, 1).committed("d", "g", 2, -1);
    // Overlapping observations are not ordered: fine.
    h.commit_op("c", OpType::Invoke, "g", 3, 9).committed("d", "g", 3, 2);
    h.commit_op("c", OpType::Ok, "g", 3, 9);
    // A read of -1 before anything was committed is fine.
    h.committed("d", "g", 4, -1).commit("c", "g", 4, 1);
    let report = h.check();
    let v = only(&report, "commit_regression", 3);
    assert!(matches!(
        &v[0],
        Violation::CommitRegression {
            partition: 0,
            earlier_offset: 5,
            later_offset: 3,
            later_kind: "committed",
            ..
        }
    ));
    assert!(matches!(
        &v[1],
        Violation::CommitRegression {
            partition: 1,
            earlier_offset: 5,
            later_offset: 4,
            later_kind: "commit",
            ..
        }
    ));
    assert!(matches!(&v[2], Violation::CommitRegression { partition: 2, later_offset: -1, .. }));
}

#[test]
fn commit_read_excused_only_by_a_commit_that_may_land_later() {
    let mut h = H::new();
    // An indeterminate commit of 2 may apply after the acked 5: reading 2 is fine.
    h.commit_op("c", OpType::Invoke, "g", 0, 2).commit_op("c", OpType::Info, "g", 0, 2);
    h.commit("d", "g", 0, 5).committed("e", "g", 0, 2);
    // A commit of 2 that completed before 5 was invoked cannot explain reading 2.
    h.commit("c", "g", 1, 2).commit("d", "g", 1, 5).committed("e", "g", 1, 2);
    let v = only(&h.check(), "commit_regression", 1);
    assert!(matches!(&v[0], Violation::CommitRegression { partition: 1, .. }));
}

#[test]
fn group_skip_below_final_commit() {
    let mut h = H::new();
    for (i, v) in ["a:1", "a:2", "a:3", "a:4", "a:5"].iter().enumerate() {
        h.produce("a", 0, v, i as i64);
    }
    let g = Some("g");
    h.seek("c1", g, 0, 0).poll("c1", g, 0, &[(0, "a:1"), (1, "a:2")]).commit("c1", "g", 0, 2);
    // c2 wrongly starts at 3 after the rebalance.
    h.release("c1", g, 0).seek("c2", g, 0, 3).poll("c2", g, 0, &[(3, "a:4")]);
    h.commit("c2", "g", 0, 4).committed("c2", "g", 0, 4);
    // Another group commits without polling anything: everything below its commit is missing.
    h.commit("x", "h", 0, 2);
    let log = [(0, "a:1"), (1, "a:2"), (2, "a:3"), (3, "a:4"), (4, "a:5")];
    h.fin(0, 1, true, 5, &log);
    let v = only(&h.check(), "group_skip", 2);
    assert!(matches!(&v[0], Violation::GroupSkip { group, partition: 0, committed: 4, missing: 1,
        first_missing } if group == "g" && first_missing == &[2]));
    assert!(matches!(&v[1], Violation::GroupSkip { group, committed: 2, missing: 2, .. }
        if group == "h"));
}

#[test]
fn liveness_after_heal() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).produce("a", 1, "a:2", 0).produce("a", 2, "a:3", 0);
    h.nemesis(OpType::Invoke, "partition").nemesis(OpType::Ok, "partition");
    h.nemesis(OpType::Invoke, "heal").nemesis(OpType::Ok, "heal");
    let heal = h.t;
    h.produce("a", 0, "a:4", 1);
    // Partition 1 only recovers after the bound; partition 2 never gets a send after heal.
    h.invoke("a", 1, "a:5").at(heal + 31_000_000).ack("a", 1, "a:5", 1);
    h.fin(0, 1, true, 2, &[(0, "a:1"), (1, "a:4")]);
    h.fin(1, 1, true, 2, &[(0, "a:2"), (1, "a:5")]);
    h.fin(2, 1, true, 1, &[(0, "a:3")]);
    let v = only(&h.check(), "liveness", 2);
    assert!(matches!(&v[0], Violation::Liveness { partition: 1, since, .. } if *since == heal));
    assert!(matches!(&v[1], Violation::Liveness { partition: 2, .. }));
}

#[test]
fn unavailability_is_the_union_of_windows() {
    let mut h = H::new();
    // Partition 0: acks at 0.1 s, 3.0 s, 3.1 s → window [0.0001, 3.0].
    h.at(0).invoke("a", 0, "a:1").at(100).ack("a", 0, "a:1", 0);
    h.at(2_999_000).invoke("a", 0, "a:2").at(3_000_000).ack("a", 0, "a:2", 1);
    h.at(3_050_000).invoke("a", 0, "a:3").at(3_100_000).ack("a", 0, "a:3", 2);
    // Partition 1: first ack at 2.0 s, then 2.1 s and 5.0 s → [0, 2.0] and [2.1, 5.0].
    h.at(3_100_001).invoke("b", 1, "b:1").at(3_100_002).ack("b", 1, "b:1", 0);
    h.ops.last_mut().unwrap().time = 2_000_000; // ack times per partition need not be sorted
    h.at(3_100_003).invoke("b", 1, "b:0");
    h.ops.last_mut().unwrap().time = 0;
    h.at(3_100_004).send_end("b", OpType::Fail, 1, "b:0");
    h.at(3_100_005).produce("b", 1, "b:2", 1);
    h.ops.last_mut().unwrap().time = 2_100_000;
    h.at(4_999_000).produce("b", 1, "b:3", 2);
    h.ops.last_mut().unwrap().time = 5_000_000;
    h.at(5_000_001).fin(0, 1, true, 3, &[(0, "a:1"), (1, "a:2"), (2, "a:3")]);
    h.fin(1, 1, true, 3, &[(0, "b:1"), (1, "b:2"), (2, "b:3")]);
    let report = h.check();
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(report.figures.unavailable_longest_us, 2_999_900);
    // Union: [0, 2.0] ∪ [0.0001, 3.0] ∪ [2.1, 5.0] = [0, 5.0].
    assert_eq!(report.figures.unavailable_total_us, 5_000_000);
    assert_eq!(union_len(vec![(0, 10), (20, 30), (5, 12), (25, 26)]), 22);
    assert_eq!(union_len(vec![]), 0);
}

#[test]
fn unavailability_counts_a_partition_that_never_recovers() {
    let mut h = H::new();
    h.at(0).produce("a", 0, "a:1", 0);
    h.invoke("a", 0, "a:2").at(5_000_000).send_end("a", OpType::Info, 0, "a:2");
    h.fin(0, 1, true, 1, &[(0, "a:1")]);
    let f = check(&h.ops, &CheckOptions::default()).figures;
    assert_eq!(f.unavailable_total_us, 5_000_000 - 1_000);
}

#[test]
fn recovery_per_fault() {
    let mut h = H::new();
    h.at(0).produce("a", 0, "a:1", 0).produce("b", 1, "b:1", 0);
    h.at(1_000_000).nemesis(OpType::Invoke, "kill").nemesis(OpType::Ok, "kill");
    // Partition 0 acks a send invoked before the fault: does not count.
    h.invoke("a", 0, "a:2").at(1_100_000).ack("a", 0, "a:2", 1);
    h.at(1_200_000).produce("a", 0, "a:3", 2);
    h.at(1_500_000).invoke("b", 1, "b:2").at(2_000_000).ack("b", 1, "b:2", 1);
    h.at(2_500_000).nemesis(OpType::Invoke, "heal");
    h.at(10_000_000).nemesis(OpType::Invoke, "pause");
    h.at(10_050_000).invoke("a", 0, "a:4").invoke("b", 1, "b:3");
    h.at(10_100_000).ack("b", 1, "b:3", 2).at(10_300_000).ack("a", 0, "a:4", 3);
    h.at(11_000_000).nemesis(OpType::Invoke, "heal").nemesis(OpType::Ok, "heal");
    h.produce("a", 0, "a:5", 4).produce("b", 1, "b:4", 3);
    // Slow: partition 0's next ack comes 10.002 s later.
    h.at(20_000_000).nemesis(OpType::Invoke, "kill");
    // Only partition 0 acks after this one (invoked +1 ms, acked +2 ms).
    h.at(30_000_000).nemesis(OpType::Invoke, "delay").produce("a", 0, "a:6", 5);
    // A fault with no ack after it: skipped. Liveness still counts from the last heal.
    h.nemesis(OpType::Invoke, "kill");
    h.fin(0, 1, true, 6, &[(0, "a:1"), (1, "a:2"), (2, "a:3"), (3, "a:4"), (4, "a:5"), (5, "a:6")]);
    h.fin(1, 1, true, 4, &[(0, "b:1"), (1, "b:2"), (2, "b:3"), (3, "b:4")]);
    let report = h.check();
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(recoveries(&parse(&h.ops)), vec![1_000_000, 300_000, 10_002_000, 2_000]);
    // Lower median of four events.
    assert_eq!(report.figures.recovery_p50_us, Some(300_000));
    assert_eq!(report.figures.recovery_max_us, Some(10_002_000));
}

#[test]
fn no_faults_no_recovery() {
    let mut h = H::new();
    h.produce("a", 0, "a:1", 0).fin(0, 1, true, 1, &[(0, "a:1")]);
    let report = h.check();
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(report.figures.recovery_p50_us, None);
    assert_eq!(report.figures.recovery_max_us, None);
    assert_eq!(report.figures.elections, 0);
}

#[test]
fn elections_count_changes_only() {
    let mut h = H::new();
    for (p, b) in [(0, 1), (1, 3), (0, 1), (0, 2), (2, 1), (0, 2), (2, 2), (0, 1)] {
        h.leader(p, b);
    }
    assert_eq!(h.check().figures.elections, 3);
}

#[test]
fn heal_time_rules() {
    let mut h = H::new();
    assert_eq!(heal_time(&parse(&h.ops)), 0);
    h.at(5).nemesis(OpType::Invoke, "kill");
    assert_eq!(heal_time(&parse(&h.ops)), 5);
    h.at(9).nemesis(OpType::Ok, "heal").at(12).nemesis(OpType::Invoke, "kill");
    assert_eq!(heal_time(&parse(&h.ops)), 9);
}

#[test]
fn table_and_summary() {
    let mut h = H::new();
    for i in 0..25 {
        h.produce("a", 0, &format!("a:{i}"), i);
    }
    h.leader(0, 1).leader(0, 2);
    h.fin(0, 1, true, 0, &[]);
    let report = h.check();
    assert_eq!(report.count("lost"), 25);
    assert!(!report.is_valid());
    let header = Report::table_header();
    let row = report.table_row("kill-leader");
    assert!(row.starts_with("| kill-leader | 25 | 25 | 0 | 0 | 25 | 0 | 0 | 0 | 0 |"), "{row}");
    assert!(row.contains("| 1 | 25 (lost 25) |"), "{row}");
    let first = header.lines().next().unwrap();
    assert_eq!(first.matches('|').count(), row.matches('|').count());
    assert_eq!(header.lines().nth(1).unwrap().matches('|').count(), row.matches('|').count());
    let summary = report.summary();
    assert!(summary.contains("lost 25"), "{summary}");
    assert_eq!(summary.lines().filter(|l| l.starts_with("  - lost: ")).count(), 20);
    assert!(summary.contains("and 5 more"), "{summary}");
    let clean = clean().check().table_row("clean");
    assert!(
        clean.starts_with("| clean | 14 | 9 | 1 | 4 | 0 |") && clean.ends_with("| 0 |"),
        "{clean}"
    );
}

#[test]
fn completions_without_invokes_are_tolerated() {
    let mut h = H::new();
    h.ack("a", 0, "a:1", 0);
    h.op(
        "r",
        OpType::Ok,
        Call::Read {
            partition: 0,
            from: 0,
            records: recs(&[(0, "a:1")]),
            high_watermark: Some(1),
            refusal: None,
        },
    );
    h.commit_op("c", OpType::Ok, "g", 0, 1).committed("c", "g", 0, 1);
    h.poll("c", Some("g"), 0, &[(0, "a:1")]);
    h.fin(0, 1, true, 1, &[(0, "a:1")]);
    let report = h.check();
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(report.figures.attempted, 1);
    assert_eq!(report.figures.acked, 1);
}

#[test]
fn kinds_and_serialization() {
    let v = Violation::Liveness { partition: 3, reason: "r".into(), since: 7 };
    assert_eq!(v.kind(), "liveness");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["Liveness"]["partition"], 3);
    assert!(v.to_string().starts_with("liveness: {"), "{v}");
    let report = clean().check();
    assert!(serde_json::to_string(&report).unwrap().contains("\"attempted\":14"));
}

#[test]
fn large_clean_history() {
    // 20k sends over 4 partitions with a poll per send and a group commit every 10: checks
    // stay clean and near-linear (this runs in debug builds).
    let mut h = H::new();
    let g = Some("g");
    let mut logs: Vec<Vec<(i64, String)>> = vec![Vec::new(); 4];
    for part in 0..4 {
        h.seek("c", g, part, 0);
    }
    for i in 0..20_000u64 {
        let part = (i % 4) as u32;
        let offset = logs[part as usize].len() as i64;
        let value = format!("p{part}:{i}");
        h.produce(&format!("p{part}"), part, &value, offset);
        h.poll("c", g, part, &[(offset, &value)]);
        if i % 40 < 4 {
            h.commit("c", "g", part, offset + 1).committed("c", "g", part, offset + 1);
        }
        logs[part as usize].push((offset, value));
    }
    for (part, log) in logs.iter().enumerate() {
        let r: Vec<(i64, &str)> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
        let hw = r.len() as i64;
        h.fin(part as u32, 1, true, hw, &r).fin(part as u32, 2, false, hw, &r);
    }
    let start = std::time::Instant::now();
    let report = h.check();
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(report.figures.acked, 20_000);
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
}
