//! [`GroupsConfig`]: the `[groups]` table of the broker config.

use serde::Deserialize;
use serde::Serialize;

use crate::config::ConfigError;
use crate::config::invalid;

/// Consumer-group settings (`[groups]`). The offsets-topic settings are read once, by the
/// controller leader that creates `__consumer_offsets` at cluster bootstrap; the timeouts
/// are the coordinator's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupsConfig {
    /// Partitions of `__consumer_offsets` (fixed once the topic exists).
    pub offsets_topic_partitions: u32,
    /// Replicas of each `__consumer_offsets` partition, capped by the founding brokers.
    pub offsets_topic_replication_factor: u32,
    /// A member that sends no heartbeat for this long is removed from its group.
    pub session_timeout_ms: u64,
    /// How often members are told to heartbeat.
    pub heartbeat_interval_ms: u64,
    /// How long a member may take to confirm a revocation before it is removed.
    pub rebalance_timeout_ms: u64,
    /// How often coordinators export lag metrics.
    pub lag_metrics_interval_ms: u64,
    /// Most members one group may have (a join beyond it gets `GROUP_MAX_SIZE_REACHED`).
    pub max_group_size: u32,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            rebalance_timeout_ms: 60_000,
            lag_metrics_interval_ms: 5_000,
            max_group_size: 1000,
        }
    }
}

impl GroupsConfig {
    /// Checks ranges. Keys in errors are prefixed `groups.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return Err(invalid(
                "groups.offsets-topic-partitions",
                format!("must be 1..=1000, got {}", self.offsets_topic_partitions),
            ));
        }
        if self.offsets_topic_replication_factor == 0 {
            return Err(invalid(
                "groups.offsets-topic-replication-factor",
                "must be at least 1, got 0",
            ));
        }
        for (key, value) in [
            ("groups.session-timeout-ms", self.session_timeout_ms),
            ("groups.heartbeat-interval-ms", self.heartbeat_interval_ms),
            ("groups.rebalance-timeout-ms", self.rebalance_timeout_ms),
            ("groups.lag-metrics-interval-ms", self.lag_metrics_interval_ms),
        ] {
            if !(1..=i32::MAX as u64).contains(&value) {
                return Err(invalid(key, format!("must be 1..={}, got {value}", i32::MAX)));
            }
        }
        if !(1..=100_000).contains(&self.max_group_size) {
            return Err(invalid(
                "groups.max-group-size",
                format!("must be 1..=100000, got {}", self.max_group_size),
            ));
        }
        if self.heartbeat_interval_ms >= self.session_timeout_ms {
            return Err(invalid(
                "groups.heartbeat-interval-ms",
                format!(
                    "must be below groups.session-timeout-ms ({}), got {}",
                    self.session_timeout_ms, self.heartbeat_interval_ms
                ),
            ));
        }
        Ok(())
    }
}
