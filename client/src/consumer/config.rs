//! What a [`Consumer`](super::Consumer) is configured with and what it hands back.

use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;
use crate::error::Result;

/// Where a consumer starts reading a partition that has no committed offset (and where it
/// goes when its position falls outside the log, e.g. after retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset still stored.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
}

/// Where [`Consumer::seek`](super::Consumer::seek) moves a partition's position; also where
/// [`Admin::reset_offsets`](crate::Admin::reset_offsets) moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// This exact offset (the next record to read).
    Offset(i64),
    /// The first offset still stored.
    Beginning,
    /// The high watermark.
    End,
    /// The first offset whose timestamp is at or after this (ms since the Unix epoch); the
    /// high watermark if there is none.
    Timestamp(i64),
}

/// How a [`Consumer`](super::Consumer) reads and commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The consumer group; required by `subscribe`, and by commits.
    pub group: Option<String>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Commit consumed positions this often (inside `poll`), on revocation and on `close`;
    /// `None` commits only when asked.
    pub auto_commit_interval: Option<Duration>,
    /// Bytes one fetch of one partition may return (about; at least one batch).
    pub fetch_max_bytes: u32,
    /// How long one fetch waits for data when there is none (a long poll).
    pub fetch_max_wait: Duration,
    /// Free-form id shown by `DescribeGroup`.
    pub client_id: String,
    /// Server-side assignor wanted: "uniform", "range", or "" for the broker's default.
    pub assignor: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: None,
            auto_offset_reset: OffsetReset::Earliest,
            auto_commit_interval: Some(Duration::from_secs(5)),
            fetch_max_bytes: 1 << 20,
            fetch_max_wait: Duration::from_millis(500),
            client_id: "rafka-client".to_string(),
            assignor: String::new(),
        }
    }
}

impl ConsumerConfig {
    /// Checks that the config can work.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if let Some(g) = &self.group
            && (g.is_empty() || g.len() > 255)
        {
            return bad(format!("group id {g:?} must be 1 to 255 bytes"));
        }
        if self.auto_commit_interval.is_some_and(|d| d.is_zero()) {
            return bad("auto_commit_interval must be positive (None turns it off)".into());
        }
        if self.fetch_max_bytes == 0 {
            return bad("fetch_max_bytes must be positive".into());
        }
        if self.client_id.len() > 255 || self.assignor.len() > 255 {
            return bad("client_id and assignor are at most 255 bytes".into());
        }
        Ok(())
    }
}

/// One record read by a [`Consumer`](super::Consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, as the producer set it.
    pub timestamp: i64,
    /// The key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order; names may repeat, values may be null.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Told when a group member's partitions change. Called from inside `poll` (and `close`),
/// on the consumer's task: a revoked partition's position is committed (with auto-commit)
/// right after `on_revoked` returns.
pub trait RebalanceListener: Send + Sync {
    /// These partitions are no longer this consumer's.
    fn on_revoked(&self, partitions: &[(String, u32)]) {
        let _ = partitions;
    }
    /// These partitions are now this consumer's.
    fn on_assigned(&self, partitions: &[(String, u32)]) {
        let _ = partitions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        ConsumerConfig::default().validate().unwrap();
        let bad = [
            ConsumerConfig { group: Some(String::new()), ..Default::default() },
            ConsumerConfig { auto_commit_interval: Some(Duration::ZERO), ..Default::default() },
            ConsumerConfig { fetch_max_bytes: 0, ..Default::default() },
            ConsumerConfig { client_id: "x".repeat(300), ..Default::default() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::InvalidConfig(_))), "{c:?}");
        }
    }
}
