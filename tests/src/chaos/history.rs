//! A Jepsen-style history: every client operation as one JSON line
//! `{"process":..., "type":"invoke"|"ok"|"fail"|"info", "f":..., "value":{...}, "time":µs}`.
//!
//! `fail` means the broker certainly did not apply the operation; `info` means the outcome is
//! unknown (timeout, lost connection). Values written are unique strings `"<producer>:<seq>"`,
//! `seq` increasing in the order that producer invoked its sends.
//!
//! A [`History`] is shared (`Arc`) by every workload task; [`History::record`] stamps and
//! appends under one lock so stamps never decrease in history order, which the
//! [checker](super::checker) relies on for "completed before invoked" reasoning.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The kind of one history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// An operation starting.
    Invoke,
    /// An operation that certainly took effect (or a single observation).
    Ok,
    /// An operation that certainly did not take effect.
    Fail,
    /// An operation whose outcome is unknown.
    Info,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The client process (producer, reader, consumer, "nemesis", ...).
    pub process: String,
    /// Invoke or completion kind.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function and its arguments/results (`f` and `value` in JSON).
    #[serde(flatten)]
    pub call: Call,
    /// Microseconds since the history started.
    pub time: u64,
}

/// (offset, value) of one record as read.
pub type Rec = (i64, String);

/// The function of an operation with its arguments (invoke) or results (completion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", content = "value", rename_all = "snake_case")]
pub enum Call {
    /// A produce of one record. Completion (ok) carries the acknowledged offset; fail/info
    /// carry error text.
    Send {
        /// Target partition.
        partition: u32,
        /// The unique value `"<producer>:<seq>"`.
        value: String,
        /// The acknowledged offset (ok completions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<i64>,
        /// Error text (fail/info completions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A fetch by a reader from `from`; completion carries the records returned (those at
    /// >= from) and the high watermark the broker reported. Used for stale-read checks.
    Read {
        /// Partition read.
        partition: u32,
        /// Fetch offset.
        from: i64,
        /// Records returned (completion).
        #[serde(default)]
        records: Vec<Rec>,
        /// High watermark the broker reported (completion).
        #[serde(default)]
        high_watermark: Option<i64>,
        /// The broker's message when it answered OFFSET_OUT_OF_RANGE (completion).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
    },
    /// Records a consumer (process) delivered to the application from one poll, for one
    /// partition, in order. A single ok op. `group` is set for group consumers.
    Poll {
        /// Consumer group, if any.
        #[serde(default)]
        group: Option<String>,
        /// Partition polled.
        partition: u32,
        /// Records delivered, in delivery order.
        records: Vec<Rec>,
    },
    /// A consumer's position for `partition` was set to `offset` (assignment start, seek,
    /// rebalance). A single ok op.
    Seek {
        /// Consumer group, if any.
        #[serde(default)]
        group: Option<String>,
        /// Partition.
        partition: u32,
        /// The new position.
        offset: i64,
    },
    /// A consumer lost `partition` (revoked/closed). A single ok op. Its next poll of that
    /// partition must follow a [`Call::Seek`].
    Release {
        /// Consumer group, if any.
        #[serde(default)]
        group: Option<String>,
        /// Partition released.
        partition: u32,
    },
    /// An offset commit; invoke and ok/fail/info.
    Commit {
        /// Consumer group.
        group: String,
        /// Partition.
        partition: u32,
        /// Offset committed (the next offset to consume).
        offset: i64,
    },
    /// A read of a group's committed offset (FetchOffsets); a single ok op with the offset
    /// seen (-1: none).
    Committed {
        /// Consumer group.
        group: String,
        /// Partition.
        partition: u32,
        /// Committed offset seen, -1 when none.
        offset: i64,
    },
    /// After healing: the whole log of one replica from offset 0 up to its high watermark.
    /// A single ok op.
    FinalRead {
        /// Partition.
        partition: u32,
        /// Broker id of the replica.
        replica: u64,
        /// Whether this replica was the leader when read.
        leader: bool,
        /// The replica's high watermark.
        high_watermark: i64,
        /// Every record below the high watermark.
        records: Vec<Rec>,
        /// Per stored batch: (base offset, digest of the stored batch bytes).
        batches: Vec<(i64, u32)>,
    },
    /// The nemesis: a fault starting (invoke), applied (ok), or healed (`fault == "heal"`).
    /// Process is "nemesis".
    Nemesis {
        /// Fault name, or "heal".
        fault: String,
        /// Free-form description (targets, durations).
        #[serde(default)]
        detail: String,
    },
    /// A leader change observed by polling metadata; a single ok op.
    Leader {
        /// Partition.
        partition: u32,
        /// Leader broker id seen.
        broker: u64,
    },
}

/// Mutable state behind the [`History`] lock.
struct Inner {
    ops: Vec<Op>,
    /// Last stamp handed out: stamps are clamped to it so they never decrease.
    last: u64,
    writer: Option<BufWriter<File>>,
    /// First write error, kept for [`History::flush`] since `record` cannot fail.
    error: Option<std::io::Error>,
}

/// A thread-safe, append-only history, optionally mirrored to a JSON-lines file.
pub struct History {
    start: Instant,
    inner: Mutex<Inner>,
}

impl History {
    /// Writes every op as a JSON line to `path` (buffered; flushed by [`History::flush`] and
    /// on drop) and keeps them in memory.
    pub fn create(path: &Path) -> std::io::Result<Arc<History>> {
        let file = File::create(path)?;
        Ok(Arc::new(Self::new(Some(BufWriter::new(file)))))
    }

    /// A history kept only in memory.
    pub fn in_memory() -> Arc<History> {
        Arc::new(Self::new(None))
    }

    fn new(writer: Option<BufWriter<File>>) -> History {
        History {
            start: Instant::now(),
            inner: Mutex::new(Inner { ops: Vec::new(), last: 0, writer, error: None }),
        }
    }

    /// Appends an op stamped with the current time and returns the stamp. Stamping and
    /// appending happen under one lock, so stamps never decrease in history order.
    pub fn record(&self, process: &str, kind: OpType, call: Call) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let time = self.now().max(inner.last);
        inner.last = time;
        let op = Op { process: process.to_owned(), kind, call, time };
        if inner.error.is_none() {
            let Inner { writer, error, .. } = &mut *inner;
            if let Some(w) = writer.as_mut() {
                let res = serde_json::to_writer(&mut *w, &op)
                    .map_err(std::io::Error::other)
                    .and_then(|()| w.write_all(b"\n"));
                if let Err(e) = res {
                    *error = Some(e);
                }
            }
        }
        inner.ops.push(op);
        time
    }

    /// Records an invocation.
    pub fn invoke(&self, process: &str, call: Call) -> u64 {
        self.record(process, OpType::Invoke, call)
    }

    /// Records a successful completion or a single observation.
    pub fn ok(&self, process: &str, call: Call) -> u64 {
        self.record(process, OpType::Ok, call)
    }

    /// Records a definite failure.
    pub fn fail(&self, process: &str, call: Call) -> u64 {
        self.record(process, OpType::Fail, call)
    }

    /// Records an indeterminate outcome.
    pub fn info(&self, process: &str, call: Call) -> u64 {
        self.record(process, OpType::Info, call)
    }

    /// A copy of every op recorded so far, in history order.
    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).ops.clone()
    }

    /// Flushes the file (if any); reports the first write error seen since creation.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = inner.error.take() {
            return Err(e);
        }
        match inner.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Reads a history file back (for replaying the checker on a saved history).
    pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut ops = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: bad op: {line}", path.display(), i + 1))?;
            ops.push(op);
        }
        Ok(ops)
    }

    /// Time since creation in µs (the same clock as stamps).
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Drop for History {
    fn drop(&mut self) {
        // Best effort: a drop cannot report errors, and callers who care call `flush`.
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = inner.writer.as_mut() {
            let _ = w.flush();
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("History")
            .field("ops", &inner.ops.len())
            .field("file", &inner.writer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_ok() -> Call {
        Call::Send { partition: 0, value: "p1:1".into(), offset: Some(5), error: None }
    }

    #[test]
    fn op_json_shape() {
        let op = Op { process: "p1".into(), kind: OpType::Ok, call: send_ok(), time: 42 };
        let got = serde_json::to_value(&op).unwrap();
        let want = serde_json::json!({
            "process": "p1", "type": "ok", "f": "send",
            "value": {"partition": 0, "value": "p1:1", "offset": 5}, "time": 42
        });
        assert_eq!(got, want);
        let back: Op = serde_json::from_value(got).unwrap();
        assert_eq!(back, op);
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).unwrap();
        h.invoke(
            "p1",
            Call::Send { partition: 0, value: "p1:1".into(), offset: None, error: None },
        );
        h.ok("p1", send_ok());
        h.info(
            "p2",
            Call::Send {
                partition: 1,
                value: "p2:7".into(),
                offset: None,
                error: Some("t".into()),
            },
        );
        h.ok(
            "c1",
            Call::Poll { group: Some("g".into()), partition: 0, records: vec![(5, "p1:1".into())] },
        );
        h.ok("c1", Call::Seek { group: None, partition: 0, offset: 6 });
        h.ok("c1", Call::Release { group: Some("g".into()), partition: 0 });
        h.invoke("c1", Call::Commit { group: "g".into(), partition: 0, offset: 6 });
        h.ok("c1", Call::Committed { group: "g".into(), partition: 0, offset: -1 });
        h.ok(
            "r",
            Call::Read {
                partition: 0,
                from: 0,
                records: vec![(5, "p1:1".into())],
                high_watermark: Some(6),
                refusal: None,
            },
        );
        h.ok(
            "verify",
            Call::FinalRead {
                partition: 0,
                replica: 2,
                leader: true,
                high_watermark: 6,
                records: vec![(5, "p1:1".into())],
                batches: vec![(5, 0xdead_beef)],
            },
        );
        h.invoke("nemesis", Call::Nemesis { fault: "kill".into(), detail: "b1".into() });
        h.ok("watch", Call::Leader { partition: 0, broker: 3 });
        h.flush().unwrap();
        let ops = h.ops();
        assert_eq!(ops.len(), 12);
        assert!(ops.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(History::load(&path).unwrap(), ops);
    }

    #[test]
    fn load_accepts_missing_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(
            &path,
            "{\"process\":\"r\",\"type\":\"invoke\",\"f\":\"read\",\
             \"value\":{\"partition\":1,\"from\":3},\"time\":1}\n\n\
             {\"process\":\"nemesis\",\"type\":\"ok\",\"f\":\"nemesis\",\
             \"value\":{\"fault\":\"heal\"},\"time\":2}\n",
        )
        .unwrap();
        let ops = History::load(&path).unwrap();
        assert_eq!(
            ops[0].call,
            Call::Read {
                partition: 1,
                from: 3,
                records: vec![],
                high_watermark: None,
                refusal: None
            }
        );
        assert_eq!(ops[1].call, Call::Nemesis { fault: "heal".into(), detail: String::new() });
        std::fs::write(&path, "{not json}\n").unwrap();
        assert!(History::load(&path).is_err());
    }

    #[test]
    fn stamps_never_decrease_across_threads() {
        let h = History::in_memory();
        std::thread::scope(|s| {
            for t in 0..4 {
                let h = &h;
                s.spawn(move || {
                    for i in 0..200 {
                        h.ok("w", Call::Leader { partition: t, broker: i });
                    }
                });
            }
        });
        let ops = h.ops();
        assert_eq!(ops.len(), 800);
        assert!(ops.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(h.now() >= ops.last().unwrap().time);
    }
}
