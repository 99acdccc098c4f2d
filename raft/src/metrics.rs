//! Metric names of rafka-raft, described once in [`describe`].

/// Histogram: seconds one fdatasync of a segment file took.
pub const LOG_FSYNC_SECONDS: &str = "rafka_log_fsync_seconds";
/// Histogram: segment writes made durable by one flush round (group-commit width).
pub const LOG_FLUSH_BATCH_WRITES: &str = "rafka_log_flush_batch_writes";
/// Counter: entry bytes written to segment files.
pub const LOG_APPENDED_BYTES: &str = "rafka_log_appended_bytes_total";
/// Counter: entries written to segment files.
pub const LOG_APPENDED_ENTRIES: &str = "rafka_log_appended_entries_total";
/// Counter: segments rolled.
pub const LOG_SEGMENTS_ROLLED: &str = "rafka_log_segments_rolled_total";
/// Counter: bytes cut from torn or corrupt segment tails during recovery.
pub const LOG_RECOVERY_TRUNCATED_BYTES: &str = "rafka_log_recovery_truncated_bytes_total";

/// Registers descriptions of every metric above with the installed recorder.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(
        LOG_FSYNC_SECONDS,
        Unit::Seconds,
        "Duration of one segment fdatasync"
    );
    metrics::describe_histogram!(
        LOG_FLUSH_BATCH_WRITES,
        Unit::Count,
        "Segment writes made durable by one flush round"
    );
    metrics::describe_counter!(
        LOG_APPENDED_BYTES,
        Unit::Bytes,
        "Entry bytes written to segment files"
    );
    metrics::describe_counter!(
        LOG_APPENDED_ENTRIES,
        Unit::Count,
        "Entries written to segment files"
    );
    metrics::describe_counter!(LOG_SEGMENTS_ROLLED, Unit::Count, "Segments rolled");
    metrics::describe_counter!(
        LOG_RECOVERY_TRUNCATED_BYTES,
        Unit::Bytes,
        "Bytes cut from torn or corrupt segment tails during recovery"
    );
}

/// Gauge per group: 1 when this replica leads the group, else 0.
pub const GROUP_ROLE: &str = "rafka_raft_group_leader";
/// Gauge per group: current term.
pub const GROUP_TERM: &str = "rafka_raft_group_term";
/// Gauge per group: committed log index (-1: none).
pub const GROUP_COMMIT_INDEX: &str = "rafka_raft_group_commit_index";
/// Gauge per group: applied log index (-1: none).
pub const GROUP_APPLIED_INDEX: &str = "rafka_raft_group_applied_index";
/// Gauge per group and follower (on the leader): entries the follower is behind.
pub const GROUP_FOLLOWER_LAG: &str = "rafka_raft_group_follower_lag_entries";
/// Gauge: groups hosted by this node.
pub const DRIVER_GROUPS: &str = "rafka_raft_groups";
/// Gauge: groups this node leads.
pub const DRIVER_LEADERS: &str = "rafka_raft_leaders";
/// Counter: heartbeats the driver asked leaders to send.
pub const DRIVER_HEARTBEATS: &str = "rafka_raft_heartbeats_total";
/// Counter: campaigns the driver started, by cause (`peer_down`, `no_leader`).
pub const DRIVER_ELECTIONS: &str = "rafka_raft_elections_total";
/// Gauge per peer broker: 1 while the failure detector holds it alive.
pub const DETECTOR_PEER_ALIVE: &str = "rafka_raft_peer_alive";
/// Counter per peer broker: times it was declared dead.
pub const DETECTOR_PEER_DOWN: &str = "rafka_raft_peer_down_total";
/// Counter per peer and RPC: RPCs sent.
pub const TRANSPORT_RPCS: &str = "rafka_raft_rpcs_sent_total";
/// Counter per peer and RPC: RPCs that failed.
pub const TRANSPORT_ERRORS: &str = "rafka_raft_rpc_errors_total";
/// Histogram per peer and RPC: seconds from send to answer.
pub const TRANSPORT_RPC_SECONDS: &str = "rafka_raft_rpc_seconds";
/// Counter per peer: entry payload bytes sent.
pub const TRANSPORT_BYTES_SENT: &str = "rafka_raft_sent_bytes_total";
/// Histogram per peer: entries per append request.
pub const TRANSPORT_APPEND_ENTRIES: &str = "rafka_raft_append_batch_entries";
/// Histogram per peer: heartbeats per coalesced heartbeat RPC sent.
pub const TRANSPORT_HEARTBEAT_BATCH_SENT: &str = "rafka_raft_heartbeat_batch_sent";
/// Histogram: heartbeats per coalesced heartbeat RPC received.
pub const TRANSPORT_HEARTBEAT_BATCH: &str = "rafka_raft_heartbeat_batch_received";
/// Counter per RPC: RPCs served.
pub const TRANSPORT_SERVED: &str = "rafka_raft_rpcs_served_total";
/// Histogram per RPC: seconds to serve.
pub const TRANSPORT_SERVE_SECONDS: &str = "rafka_raft_rpc_serve_seconds";

/// Registers descriptions of the replication metrics.
pub fn describe_replication() {
    use metrics::Unit;
    metrics::describe_gauge!(GROUP_ROLE, Unit::Count, "1 when this replica leads the group");
    metrics::describe_gauge!(GROUP_TERM, Unit::Count, "Current Raft term of the group");
    metrics::describe_gauge!(GROUP_COMMIT_INDEX, Unit::Count, "Committed log index");
    metrics::describe_gauge!(GROUP_APPLIED_INDEX, Unit::Count, "Applied log index");
    metrics::describe_gauge!(GROUP_FOLLOWER_LAG, Unit::Count, "Entries a follower is behind");
    metrics::describe_gauge!(DRIVER_GROUPS, Unit::Count, "Raft groups hosted");
    metrics::describe_gauge!(DRIVER_LEADERS, Unit::Count, "Raft groups led");
    metrics::describe_counter!(DRIVER_HEARTBEATS, Unit::Count, "Group heartbeats triggered");
    metrics::describe_counter!(DRIVER_ELECTIONS, Unit::Count, "Campaigns started, by cause");
    // At 0 from the start: a dashboard's election rate is 0, not "no data", until one.
    for cause in ["peer_down", "no_leader"] {
        metrics::counter!(DRIVER_ELECTIONS, "cause" => cause).increment(0);
    }
    metrics::describe_gauge!(DETECTOR_PEER_ALIVE, Unit::Count, "1 while a peer broker is alive");
    metrics::describe_counter!(DETECTOR_PEER_DOWN, Unit::Count, "Times a peer was declared dead");
    metrics::describe_counter!(TRANSPORT_RPCS, Unit::Count, "Raft RPCs sent");
    metrics::describe_counter!(TRANSPORT_ERRORS, Unit::Count, "Raft RPCs failed");
    metrics::describe_histogram!(TRANSPORT_RPC_SECONDS, Unit::Seconds, "Raft RPC latency");
    metrics::describe_counter!(TRANSPORT_BYTES_SENT, Unit::Bytes, "Entry bytes sent");
    metrics::describe_histogram!(TRANSPORT_APPEND_ENTRIES, Unit::Count, "Entries per append");
    metrics::describe_histogram!(
        TRANSPORT_HEARTBEAT_BATCH_SENT,
        Unit::Count,
        "Heartbeats per coalesced RPC sent"
    );
    metrics::describe_histogram!(
        TRANSPORT_HEARTBEAT_BATCH,
        Unit::Count,
        "Heartbeats per coalesced RPC received"
    );
    metrics::describe_counter!(TRANSPORT_SERVED, Unit::Count, "Raft RPCs served");
    metrics::describe_histogram!(TRANSPORT_SERVE_SECONDS, Unit::Seconds, "Raft RPC serve time");
}
