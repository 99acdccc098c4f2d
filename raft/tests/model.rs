//! Property test: random append / truncate / purge / reopen sequences against a simple
//! in-memory model of the log, checking entries, log state, record offsets and lookups.

mod common;

use common::TestApp;
use common::append_durable;
use common::normal;
use common::read_all;
use openraft::storage::RaftLogStorage;
use proptest::prelude::*;
use rafka_raft::EntryLocation;
use rafka_raft::LogConfig;
use rafka_raft::LogRuntime;
use rafka_raft::SegmentLog;
use rafka_raft::types::Entry;
use rafka_raft::types::LogId;
use rafka_raft::types::log_id;

#[derive(Debug, Clone)]
enum Op {
    /// Append entries: (records, timestamp, body bytes) each.
    Append(Vec<(u32, i64, usize)>),
    /// Truncate this many entries off the end (bounded by what is retained).
    Truncate(usize),
    /// Purge a fraction (per mille) of the retained entries.
    Purge(u16),
    /// Purge past the end, as after installing a snapshot `ahead` entries further holding
    /// `records` more records.
    PurgeBeyond { ahead: u64, records: i64 },
    /// Close everything and reopen from disk.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u32..4, -50i64..200, 0usize..300), 1..6).prop_map(Op::Append),
        2 => (0usize..6).prop_map(Op::Truncate),
        2 => (0u16..=1000).prop_map(Op::Purge),
        1 => (1u64..4, 0i64..6).prop_map(|(ahead, records)| Op::PurgeBeyond { ahead, records }),
        2 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone)]
struct ModelEntry {
    id: LogId,
    records: u32,
    ts: i64,
    size: usize,
    base: i64,
}

#[derive(Debug, Default)]
struct Model {
    entries: Vec<ModelEntry>,
    purged: Option<(LogId, i64)>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        match (self.entries.last(), self.purged) {
            (Some(e), _) => e.id.index + 1,
            (None, Some((p, _))) => p.index + 1,
            (None, None) => 0,
        }
    }
    fn next_offset(&self) -> i64 {
        match (self.entries.last(), self.purged) {
            (Some(e), _) => e.base + i64::from(e.records),
            (None, Some((_, o))) => o,
            (None, None) => 0,
        }
    }
    fn start_offset(&self) -> i64 {
        match (self.entries.first(), self.purged) {
            (_, Some((_, o))) => o,
            (Some(e), None) => e.base,
            (None, None) => 0,
        }
    }
    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last().map(|e| e.id).or(self.purged.map(|p| p.0))
    }
    fn entry(&self, e: &ModelEntry) -> Entry<TestApp> {
        normal(e.id.leader_id.term, e.id.index, e.records, e.ts, e.size)
    }
    fn loc(e: &ModelEntry) -> EntryLocation {
        EntryLocation {
            index: e.id.index,
            base_offset: e.base,
            record_count: e.records,
            max_timestamp: e.ts,
        }
    }
    fn find_offset(&self, o: i64) -> Option<EntryLocation> {
        if o < self.start_offset() || o >= self.next_offset() {
            return None;
        }
        self.entries
            .iter()
            .find(|e| e.records > 0 && e.base + i64::from(e.records) > o)
            .map(Self::loc)
    }
    fn find_ts(&self, ts: i64) -> Option<EntryLocation> {
        self.entries.iter().find(|e| e.ts >= ts).map(Self::loc)
    }
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 150,
        tail_cache_bytes: 400,
        ..LogConfig::default()
    }
}

async fn check(log: &mut SegmentLog<TestApp>, model: &Model, step: usize) {
    let got = read_all(log).await.unwrap();
    let want: Vec<_> = model.entries.iter().map(|e| model.entry(e)).collect();
    assert_eq!(got, want, "step {step}: entries");
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, model.purged.map(|p| p.0), "step {step}: purged");
    assert_eq!(st.last_log_id, model.last_log_id(), "step {step}: last log id");
    assert_eq!(log.log_end_offset(), model.next_offset(), "step {step}: log end offset");
    assert_eq!(log.log_start_offset(), model.start_offset(), "step {step}: log start offset");
    assert_eq!(log.flushed_log_id(), model.last_log_id().map(Into::into), "step {step}: flushed");
    for o in model.start_offset() - 2..model.next_offset() + 2 {
        assert_eq!(
            log.find_offset(o).await.unwrap(),
            model.find_offset(o),
            "step {step}: find_offset({o})"
        );
    }
    for ts in [-60, -1, 0, 7, 50, 120, 199, 250] {
        assert_eq!(
            log.find_timestamp(ts).await.unwrap(),
            model.find_ts(ts),
            "step {step}: find_timestamp({ts})"
        );
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = LogRuntime::open(dir.path(), cfg()).unwrap();
    let mut log = rt.open_group::<TestApp>(1).unwrap();
    let mut model = Model { term: 1, ..Model::default() };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(items) => {
                let mut batch = Vec::new();
                for (records, ts, size) in items {
                    let base = model.next_offset();
                    let e = ModelEntry {
                        id: log_id(model.term, model.next_index()),
                        records,
                        ts,
                        size,
                        base,
                    };
                    batch.push(model.entry(&e));
                    model.entries.push(e);
                }
                append_durable(&mut log, batch).await.unwrap();
            }
            Op::Truncate(back) => {
                let keep = model.entries.len().saturating_sub(back);
                let last = if keep == 0 {
                    model.purged.map(|p| p.0)
                } else {
                    Some(model.entries[keep - 1].id)
                };
                model.entries.truncate(keep);
                model.term += 1;
                log.truncate_after(last).await.unwrap();
            }
            Op::Purge(per_mille) => {
                let n = model.entries.len() * per_mille as usize / 1000;
                if n == 0 {
                    continue;
                }
                let upto = model.entries[n - 1].clone();
                model.entries.drain(..n);
                model.purged = Some((upto.id, upto.base + i64::from(upto.records)));
                log.purge(upto.id).await.unwrap();
            }
            Op::PurgeBeyond { ahead, records } => {
                let id = log_id(model.term, model.next_index() + ahead - 1);
                let next = model.next_offset() + records;
                log.set_snapshot_offset(id.index, next);
                model.entries.clear();
                model.purged = Some((id, next));
                log.purge(id).await.unwrap();
            }
            Op::Reopen => {
                drop(log);
                drop(rt);
                rt = LogRuntime::open(dir.path(), cfg()).unwrap();
                log = rt.open_group::<TestApp>(1).unwrap();
            }
        }
        check(&mut log, &model, step).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
