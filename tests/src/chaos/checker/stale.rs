//! Stale reads: a read after an acknowledgement that does not see it, and a leader read
//! reporting a lower high watermark than one reported before it.

use std::collections::BTreeMap;

use super::Attempt;
use super::Parsed;
use super::ReadDone;
use super::Violation;

pub(super) fn check_stale(p: &Parsed<'_>, acked: &[&Attempt<'_>], v: &mut Vec<Violation>) {
    // Per partition: acks in history order with the running maximum offset, so the highest
    // offset acked before any position is one binary search away.
    let mut acks: BTreeMap<u32, Vec<(usize, u64, i64, &str)>> = BTreeMap::new();
    for a in acked {
        if let (Some(o), Some((_, t, pos))) = (a.offset, a.done) {
            acks.entry(a.partition).or_default().push((pos, t, o, a.value));
        }
    }
    for list in acks.values_mut() {
        list.sort_by_key(|x| x.0);
        for i in 1..list.len() {
            if list[i - 1].2 > list[i].2 {
                let (_, t, o, val) = list[i - 1];
                list[i] = (list[i].0, t, o, val);
            }
        }
    }
    for r in &p.reads {
        let Some(list) = acks.get(&r.partition) else { continue };
        let n = list.partition_point(|x| x.0 < r.invoked_pos);
        let Some(&(_, acked_at, acked_offset, acked_value)) = n.checked_sub(1).map(|i| &list[i])
        else {
            continue;
        };
        if acked_offset < r.from {
            continue;
        }
        let last_read = r.records.last().map(|x| x.0);
        let stale = match r.high_watermark {
            Some(hw) => hw <= acked_offset,
            None => last_read.is_none_or(|l| l < acked_offset),
        };
        if stale {
            v.push(Violation::StaleRead {
                partition: r.partition,
                process: r.process.to_owned(),
                from: r.from,
                high_watermark: r.high_watermark,
                refusal: r.refusal.map(str::to_owned),
                last_read,
                acked_value: acked_value.to_owned(),
                acked_offset,
                acked_at,
                read_at: r.invoked,
            });
        }
    }
}

/// Leader reads never go backwards: the high watermark a read reports is at least every one
/// reported by reads that completed before it was invoked (a committed offset stays
/// committed, whichever replica leads).
pub(super) fn check_watermarks(p: &Parsed<'_>, v: &mut Vec<Violation>) {
    let mut by_partition: BTreeMap<u32, Vec<&ReadDone<'_>>> = BTreeMap::new();
    for r in p.reads.iter().filter(|r| r.high_watermark.is_some()) {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for reads in by_partition.values_mut() {
        // Completions in history order with the running maximum of what they reported.
        let mut done: Vec<&ReadDone<'_>> = reads.clone();
        done.sort_by_key(|r| r.done_pos);
        let mut best: Vec<(usize, i64, &str)> = Vec::with_capacity(done.len());
        for r in done {
            let hw = r.high_watermark.unwrap_or(-1);
            let entry = match best.last() {
                Some(&(_, max, who)) if max >= hw => (r.done_pos, max, who),
                _ => (r.done_pos, hw, r.process),
            };
            best.push(entry);
        }
        for r in reads.iter() {
            let n = best.partition_point(|b| b.0 < r.invoked_pos);
            let Some(&(_, earlier, who)) = n.checked_sub(1).map(|i| &best[i]) else { continue };
            let hw = r.high_watermark.unwrap_or(-1);
            if hw < earlier {
                v.push(Violation::WatermarkRegression {
                    partition: r.partition,
                    process: r.process.to_owned(),
                    from: r.from,
                    high_watermark: hw,
                    refusal: r.refusal.map(str::to_owned),
                    earlier_high_watermark: earlier,
                    earlier_process: who.to_owned(),
                    read_at: r.invoked,
                });
            }
        }
    }
}
