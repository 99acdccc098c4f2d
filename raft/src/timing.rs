//! Failure-detection and election timing of a cluster ([`RaftTiming`]).
//!
//! Failover speed does not depend on per-group heartbeats: brokers
//! probe each other every `detector-interval-ms`; a peer silent for `detector-timeout-ms` is
//! dead, and the groups it led elect at once (spread over `election-jitter-ms`). Per-group
//! heartbeats (`heartbeat-interval-ms`) are sent only while a group has something to tell its
//! followers; idle groups send nothing. `election-timeout-*` bound how long a follower waits
//! for a leader it has never heard from (e.g. after a restart) before it asks for votes; the
//! leader lease is derived from the upper bound (see `RaftTiming::lease`).

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

use crate::error::Error;

/// Timing of failure detection, heartbeats and elections. Same on every node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RaftTiming {
    /// How often each broker probes each peer broker.
    pub detector_interval_ms: u64,
    /// A peer that answered no probe for this long is dead.
    pub detector_timeout_ms: u64,
    /// Heartbeat period of a group with pending work (commits to propagate, lagging followers).
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized wait before a follower without a leader campaigns.
    pub election_timeout_min_ms: u64,
    /// Upper bound of that wait. openraft's leader lease is eight times this.
    pub election_timeout_max_ms: u64,
    /// Spacing of the campaigns of a group's survivors after a peer's death (the first starts
    /// within half of it), so that they rarely split the vote.
    pub election_jitter_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming::lan()
    }
}

impl RaftTiming {
    /// Defaults for brokers on one LAN: dead after 600 ms of silence; failover well under
    /// 1.5 s.
    pub fn lan() -> RaftTiming {
        RaftTiming {
            detector_interval_ms: 150,
            detector_timeout_ms: 600,
            heartbeat_interval_ms: 500,
            election_timeout_min_ms: 2500,
            election_timeout_max_ms: 5000,
            election_jitter_ms: 200,
        }
    }

    /// Defaults for nodes on one machine (tests, the local 3-node cluster).
    pub fn loopback() -> RaftTiming {
        RaftTiming {
            detector_interval_ms: 100,
            detector_timeout_ms: 500,
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            election_jitter_ms: 100,
        }
    }

    /// Checks that the values are usable together.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.detector_interval_ms == 0 || self.heartbeat_interval_ms == 0 {
            return bad("detector-interval-ms and heartbeat-interval-ms must be positive".into());
        }
        if self.detector_timeout_ms < 2 * self.detector_interval_ms {
            return bad(format!(
                "detector-timeout-ms ({}) must be at least twice detector-interval-ms ({})",
                self.detector_timeout_ms, self.detector_interval_ms
            ));
        }
        if self.election_timeout_min_ms == 0
            || self.election_timeout_max_ms <= self.election_timeout_min_ms
        {
            return bad(format!(
                "election-timeout range {}..{} ms must be non-empty and positive",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return bad(format!(
                "election-timeout-min-ms ({}) must exceed heartbeat-interval-ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        Ok(())
    }

    pub(crate) fn detector_interval(&self) -> Duration {
        Duration::from_millis(self.detector_interval_ms)
    }
    pub(crate) fn detector_timeout(&self) -> Duration {
        Duration::from_millis(self.detector_timeout_ms)
    }
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// Timeout of one coalesced heartbeat RPC.
    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms)
    }

    /// openraft's leader lease: how long a leader keeps accepting writes without a quorum
    /// acknowledging anything, and how long a follower protects its leader from real votes.
    /// Elections do not wait for it (the driver times them, and voters drop the lease when
    /// their own detector holds the leader dead), so it can be long enough that an overloaded
    /// cluster, whose round trips stretch to seconds, keeps writing.
    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms * 8)
    }

    /// A fresh random election timeout.
    pub(crate) fn election_timeout(&self) -> Duration {
        Duration::from_millis(rand::random_range(
            self.election_timeout_min_ms..self.election_timeout_max_ms,
        ))
    }

    /// A fresh random delay before a post-failure election.
    pub(crate) fn election_jitter(&self) -> Duration {
        Duration::from_millis(rand::random_range(0..self.election_jitter_ms.max(1)))
    }

    /// The openraft config of a group: no tick (the node drives heartbeats and elections),
    /// pre-vote on, snapshots only when asked (at the retention point).
    pub(crate) fn openraft_config(&self, cluster: &str) -> Result<openraft::Config, Error> {
        let config = openraft::Config {
            cluster_name: cluster.to_string(),
            // With the tick off, openraft uses this only as the timeout of one heartbeat
            // round trip: generous, so a busy link does not drop lease renewals.
            heartbeat_interval: self.election_timeout_max_ms,
            // With the tick off, openraft's election timeouts only set the lease (`lease`).
            election_timeout_min: self.lease().as_millis() as u64 / 2,
            election_timeout_max: self.lease().as_millis() as u64,
            enable_tick: false,
            enable_heartbeat: false,
            enable_elect: false,
            enable_pre_vote: Some(true),
            snapshot_policy: openraft::SnapshotPolicy::Never,
            // The retention point decides what is purged, not a count of entries.
            max_in_snapshot_log_to_keep: 0,
            // A restarted leader must win an election again: restoring leadership at its old
            // term after losing unsynced entries (flush = interval) could put a different
            // entry at a log id a follower already holds. The driver elects quickly instead.
            enable_leader_restore: Some(false),
            // Per-stage latency ring buffers (openraft runtime stats) cost ~170 KiB per group
            // at the default 1024 slots; thousands of groups cannot afford that.
            log_stage_capacity: Some(8),
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(format!("raft config: {e}")))
    }
}
