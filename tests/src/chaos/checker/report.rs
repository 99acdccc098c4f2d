//! What the [checker](super) reports: [`Violation`]s, [`Figures`] and the [`Report`] that
//! prints them (summary and figures-table row).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// One way the history contradicts the log's guarantees. Times are µs since history start.
#[derive(Debug, Clone, Serialize)]
pub enum Violation {
    /// An acknowledged value is missing from the leader's final log.
    Lost {
        /// Partition.
        partition: u32,
        /// The value.
        value: String,
        /// Offset it was acknowledged at, if reported.
        offset: Option<i64>,
        /// Producer process.
        process: String,
        /// When the ack arrived.
        acked_at: u64,
    },
    /// One value read at two or more offsets.
    Duplicate {
        /// Partition.
        partition: u32,
        /// The value.
        value: String,
        /// Every distinct offset it was seen at.
        offsets: Vec<i64>,
        /// Where each offset was first seen.
        sources: Vec<String>,
    },
    /// One offset seen holding two or more values (reads and acks).
    Inconsistent {
        /// Partition.
        partition: u32,
        /// The offset.
        offset: i64,
        /// Every distinct value seen there.
        values: Vec<String>,
        /// Where each value was first seen there.
        sources: Vec<String>,
    },
    /// A send was acknowledged at one offset but its value is read at others only.
    WrongAckOffset {
        /// Partition.
        partition: u32,
        /// The value.
        value: String,
        /// Producer process.
        process: String,
        /// Offset in the ack.
        acked_offset: i64,
        /// Offsets the value was read at.
        read_offsets: Vec<i64>,
    },
    /// A value whose every send definitely failed was read.
    AbortedRead {
        /// Partition.
        partition: u32,
        /// The value.
        value: String,
        /// Offset it was read at.
        offset: i64,
        /// Where it was first seen.
        source: String,
    },
    /// A poll delivered an offset below the consumer's position (went back).
    PollOrder {
        /// Consumer process.
        process: String,
        /// Its group, if any.
        group: Option<String>,
        /// Partition.
        partition: u32,
        /// Offset expected next.
        expected: i64,
        /// Offset delivered.
        got: i64,
        /// Time of the poll.
        time: u64,
    },
    /// A poll delivered an offset above the consumer's position (skipped records).
    PollSkip {
        /// Consumer process.
        process: String,
        /// Its group, if any.
        group: Option<String>,
        /// Partition.
        partition: u32,
        /// Offset expected next.
        expected: i64,
        /// Offset delivered.
        got: i64,
        /// Time of the poll.
        time: u64,
    },
    /// A producer's later send (higher seq) was acknowledged at a lower-or-equal offset.
    ProducerOrder {
        /// Partition.
        partition: u32,
        /// Producer (value prefix).
        producer: String,
        /// The lower-seq value and its ack offset.
        earlier_value: String,
        /// Its acked offset.
        earlier_offset: i64,
        /// The next higher-seq value.
        later_value: String,
        /// Its acked offset.
        later_offset: i64,
    },
    /// A read invoked after an ack at offset `acked_offset` did not see that offset committed.
    StaleRead {
        /// Partition.
        partition: u32,
        /// Reader process.
        process: String,
        /// Fetch offset.
        from: i64,
        /// High watermark reported.
        high_watermark: Option<i64>,
        /// The broker's message, when it answered OFFSET_OUT_OF_RANGE.
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        /// Last offset returned.
        last_read: Option<i64>,
        /// The acknowledged value it missed.
        acked_value: String,
        /// Its acked offset.
        acked_offset: i64,
        /// When the ack arrived.
        acked_at: u64,
        /// When the read was invoked.
        read_at: u64,
    },
    /// A leader read reported a high watermark below one an earlier read (completed before
    /// this one was invoked) had reported: reads went backwards.
    WatermarkRegression {
        /// Partition.
        partition: u32,
        /// Reader process.
        process: String,
        /// Fetch offset.
        from: i64,
        /// High watermark reported.
        high_watermark: i64,
        /// The broker's message, when it answered OFFSET_OUT_OF_RANGE.
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
        /// The higher watermark reported before.
        earlier_high_watermark: i64,
        /// The process that was told it.
        earlier_process: String,
        /// When the read was invoked.
        read_at: u64,
    },
    /// A replica's final log differs from the leader's below both high watermarks.
    ReplicaDivergence {
        /// Partition.
        partition: u32,
        /// Leader broker.
        leader: u64,
        /// Diverging replica.
        replica: u64,
        /// First differing offset (record or batch base).
        offset: i64,
        /// Leader's record there.
        leader_value: Option<String>,
        /// Replica's record there.
        replica_value: Option<String>,
        /// Whether the first difference is in the batch list (base or digest).
        in_batches: bool,
    },
    /// A committed offset went backwards between two non-overlapping observations.
    CommitRegression {
        /// Group.
        group: String,
        /// Partition.
        partition: u32,
        /// The earlier (higher) offset.
        earlier_offset: i64,
        /// When that observation completed.
        earlier_at: u64,
        /// The later (lower) offset.
        later_offset: i64,
        /// When the later observation was invoked.
        later_at: u64,
        /// "commit" or "committed": which kind of op the later observation is.
        later_kind: &'static str,
    },
    /// Records below a group's final committed offset that no member of the group polled.
    GroupSkip {
        /// Group.
        group: String,
        /// Partition.
        partition: u32,
        /// Final committed offset.
        committed: i64,
        /// How many offsets are missing.
        missing: usize,
        /// The first few missing offsets.
        first_missing: Vec<i64>,
    },
    /// A partition did not recover after the last heal, or has no final leader read.
    Liveness {
        /// Partition.
        partition: u32,
        /// What was missing.
        reason: String,
        /// The heal time it is measured from.
        since: u64,
    },
}

impl Violation {
    /// Short kind name: "lost", "duplicate", "inconsistent" (also for a wrong ack offset),
    /// "aborted_read", "poll_order", "poll_skip", "producer_order", "stale_read",
    /// "watermark_regression", "replica_divergence", "commit_regression", "group_skip", "liveness".
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Lost { .. } => "lost",
            Violation::Duplicate { .. } => "duplicate",
            Violation::Inconsistent { .. } | Violation::WrongAckOffset { .. } => "inconsistent",
            Violation::AbortedRead { .. } => "aborted_read",
            Violation::PollOrder { .. } => "poll_order",
            Violation::PollSkip { .. } => "poll_skip",
            Violation::ProducerOrder { .. } => "producer_order",
            Violation::StaleRead { .. } => "stale_read",
            Violation::WatermarkRegression { .. } => "watermark_regression",
            Violation::ReplicaDivergence { .. } => "replica_divergence",
            Violation::CommitRegression { .. } => "commit_regression",
            Violation::GroupSkip { .. } => "group_skip",
            Violation::Liveness { .. } => "liveness",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The variant's fields as JSON are precise and never stale against the enum.
        let json = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        let fields = json.as_object().and_then(|o| o.values().next()).unwrap_or(&json);
        write!(f, "{}: {fields}", self.kind())
    }
}

/// Counts and timings of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Send invocations.
    pub attempted: u64,
    /// Send ok completions.
    pub acked: u64,
    /// Send fail completions.
    pub failed: u64,
    /// Send info completions plus sends never completed.
    pub indeterminate: u64,
    /// "lost" violations.
    pub lost: u64,
    /// "duplicate" violations.
    pub duplicated: u64,
    /// "inconsistent" violations.
    pub inconsistent: u64,
    /// "producer_order" violations.
    pub reordered: u64,
    /// "stale_read" violations.
    pub stale: u64,
    /// Measure of the union of all partitions' unavailable windows.
    pub unavailable_total_us: u64,
    /// Longest single unavailable window of any partition.
    pub unavailable_longest_us: u64,
    /// Median time from a fault to every partition acknowledging a new send.
    pub recovery_p50_us: Option<u64>,
    /// Longest such recovery.
    pub recovery_max_us: Option<u64>,
    /// Observed leader changes.
    pub elections: u64,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Counts and timings.
    pub figures: Figures,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether no violation was found.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }

    /// Number of violations of one [`Violation::kind`].
    pub fn count(&self, kind: &str) -> usize {
        self.violations.iter().filter(|v| v.kind() == kind).count()
    }

    /// Markdown table header (two lines: names and separator) matching [`Report::table_row`].
    pub fn table_header() -> String {
        let cols = [
            "scenario",
            "attempted",
            "acked",
            "failed",
            "indet.",
            "lost",
            "dup",
            "inconsistent",
            "reordered",
            "stale",
            "unavail. s (total/longest)",
            "recovery p50/max s",
            "elections",
            "violations",
        ];
        format!("| {} |\n|{}", cols.join(" | "), "---|".repeat(cols.len()))
    }

    /// One markdown table row for `scenario`.
    pub fn table_row(&self, scenario: &str) -> String {
        let f = &self.figures;
        let secs =
            |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1e6));
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            *kinds.entry(v.kind()).or_default() += 1;
        }
        let violations = if kinds.is_empty() {
            "0".to_owned()
        } else {
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!("{} ({})", self.violations.len(), list.join(", "))
        };
        format!(
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} | {} | {} |",
            f.attempted,
            f.acked,
            f.failed,
            f.indeterminate,
            f.lost,
            f.duplicated,
            f.inconsistent,
            f.reordered,
            f.stale,
            secs(Some(f.unavailable_total_us)),
            secs(Some(f.unavailable_longest_us)),
            secs(f.recovery_p50_us),
            secs(f.recovery_max_us),
            f.elections,
            violations,
        )
    }

    /// Multi-line human summary: figures, then up to 20 violations (and the count of the rest).
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let secs =
            |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.3}", us as f64 / 1e6));
        let mut s = format!(
            "sends: attempted {}, acked {}, failed {}, indeterminate {}\n\
             anomalies: lost {}, duplicated {}, inconsistent {}, reordered {}, stale {}\n\
             unavailable: {} s total, {} s longest; recovery p50 {} s, max {} s; elections {}\n\
             violations: {}\n",
            f.attempted,
            f.acked,
            f.failed,
            f.indeterminate,
            f.lost,
            f.duplicated,
            f.inconsistent,
            f.reordered,
            f.stale,
            secs(Some(f.unavailable_total_us)),
            secs(Some(f.unavailable_longest_us)),
            secs(f.recovery_p50_us),
            secs(f.recovery_max_us),
            f.elections,
            self.violations.len(),
        );
        for v in self.violations.iter().take(20) {
            s.push_str(&format!("  - {v}\n"));
        }
        if self.violations.len() > 20 {
            s.push_str(&format!("  ... and {} more\n", self.violations.len() - 20));
        }
        s
    }
}
