//! Configuration of the segmented log.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::error::Error;

/// When appended entries are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlushPolicy {
    /// fdatasync before an entry is acknowledged to Raft (group-committed). No acknowledged
    /// write is lost when a machine loses power.
    Always,
    /// Acknowledge once written to the OS; fdatasync every interval. Kafka's default trade:
    /// a power loss on a quorum of replicas can lose up to one interval of acknowledged writes.
    Interval(Duration),
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushPolicy::Always => f.write_str("always"),
            FlushPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

impl FromStr for FlushPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad =
            || Error::Config(format!("flush: expected `always` or `interval:<ms>`, got `{s}`"));
        if s == "always" {
            return Ok(FlushPolicy::Always);
        }
        let ms = s.strip_prefix("interval:").ok_or_else(bad)?;
        let ms: u64 = ms.parse().map_err(|_| bad())?;
        if ms == 0 {
            return Err(bad());
        }
        Ok(FlushPolicy::Interval(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for FlushPolicy {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<FlushPolicy> for String {
    fn from(p: FlushPolicy) -> String {
        p.to_string()
    }
}

/// Segmented-log settings, shared by every group of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct LogConfig {
    /// Roll to a new segment when the active one would pass this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is older than this.
    pub segment_ms: u64,
    /// Add a sparse-index record after at least this many bytes of entries.
    pub index_interval_bytes: u32,
    /// Durability of appends.
    pub flush: FlushPolicy,
    /// Recently appended entries each group keeps in memory for reads.
    pub tail_cache_bytes: usize,
    /// Threads writing appends to segment files.
    pub io_threads: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 256 << 20,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Always,
            tail_cache_bytes: 1 << 20,
            io_threads: 2,
        }
    }
}

impl LogConfig {
    /// Checks ranges; positions in a segment are u32, so segments stay under 2 GiB.
    pub fn validate(&self) -> Result<(), Error> {
        if !(128..=(2u64 << 30)).contains(&self.segment_bytes) {
            return Err(Error::Config(format!(
                "segment-bytes must be between 128 and 2147483648, got {}",
                self.segment_bytes
            )));
        }
        if self.segment_ms == 0 {
            return Err(Error::Config("segment-ms must be positive".into()));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config("index-interval-bytes must be positive".into()));
        }
        if !(1..=64).contains(&self.io_threads) {
            return Err(Error::Config(format!(
                "io-threads must be 1..=64, got {}",
                self.io_threads
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_round_trips_and_rejects_garbage() {
        for s in ["always", "interval:1000"] {
            assert_eq!(s.parse::<FlushPolicy>().unwrap().to_string(), s);
        }
        for s in ["", "sometimes", "interval:", "interval:0", "interval:-5", "interval:1s"] {
            assert!(s.parse::<FlushPolicy>().is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(LogConfig::default().validate().is_ok());
        let bad = [
            LogConfig { segment_bytes: 100, ..Default::default() },
            LogConfig { segment_bytes: 3 << 30, ..Default::default() },
            LogConfig { index_interval_bytes: 0, ..Default::default() },
            LogConfig { io_threads: 0, ..Default::default() },
            LogConfig { segment_ms: 0, ..Default::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} accepted");
        }
    }
}
