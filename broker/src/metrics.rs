//! Metric names of the broker (`rafka_broker_*`, `rafka_partition_*`, `rafka_controller_*`,
//! `rafka_group_*`),
//! described once by [`describe`].

/// Requests handled, by `rpc` and error `code` (NONE for success).
pub const REQUESTS: &str = "rafka_broker_requests_total";
/// Request latency in seconds, by `rpc`.
pub const REQUEST_SECONDS: &str = "rafka_broker_request_duration_seconds";
/// Record-batch bytes accepted by Produce.
pub const PRODUCE_BYTES: &str = "rafka_broker_produce_bytes_total";
/// Records accepted by Produce.
pub const PRODUCE_RECORDS: &str = "rafka_broker_produce_records_total";
/// Record-batch bytes returned by Fetch and Subscribe.
pub const FETCH_BYTES: &str = "rafka_broker_fetch_bytes_total";
/// High watermark of a hosted partition replica, by `partition`.
pub const PARTITION_HIGH_WATERMARK: &str = "rafka_partition_high_watermark";
/// Log start offset of a hosted partition replica.
pub const PARTITION_LOG_START_OFFSET: &str = "rafka_partition_log_start_offset";
/// Bytes of a hosted replica's segment files.
pub const PARTITION_LOG_SIZE_BYTES: &str = "rafka_partition_log_size_bytes";
/// Segment files of a hosted replica.
pub const PARTITION_SEGMENTS: &str = "rafka_partition_segments";
/// 1 when this broker leads the partition.
pub const PARTITION_LEADER: &str = "rafka_partition_leader";
/// 1 when this broker leads the controller group.
pub const CONTROLLER_LEADER: &str = "rafka_controller_leader";
/// Topics in the controller state.
pub const CONTROLLER_TOPICS: &str = "rafka_controller_topics";
/// Registered brokers.
pub const CONTROLLER_BROKERS: &str = "rafka_controller_brokers";
/// Raft index of the controller state this broker applied.
pub const CONTROLLER_VERSION: &str = "rafka_controller_state_version";

/// Records a group has not consumed, by `group`, `topic`, `partition` (on the coordinator).
pub const GROUP_LAG: &str = "rafka_group_lag_records";
/// Committed offset of a group, by `group`, `topic`, `partition` (on the coordinator).
pub const GROUP_COMMITTED_OFFSET: &str = "rafka_group_committed_offset";
/// Members of a group, by `group` (on the coordinator).
pub const GROUP_MEMBERS: &str = "rafka_group_members";
/// Groups this broker coordinates.
pub const GROUPS_COORDINATED: &str = "rafka_group_coordinated";

/// Connections to the broker port that did not become a TLS session, by `reason`
/// (`plaintext`: the client did not start a TLS handshake; `handshake`: the handshake failed,
/// e.g. an unknown or missing client certificate; `principal`: no mapping rule named one).
pub const TLS_REFUSED: &str = "rafka_broker_tls_refused_total";
/// Readings of changed TLS files, by `result` (`ok`, or `error` when the old ones were kept).
pub const TLS_RELOADS: &str = "rafka_broker_tls_reloads_total";

/// Failed authentications, by `protocol` (`kafka`, `grpc`).
pub const AUTH_FAILURES: &str = "rafka_broker_authentication_failures_total";

/// Requests refused for want of permission, by `resource` (`broker`: a broker-only call
/// from a principal that is not a broker).
pub const DENIALS: &str = "rafka_broker_authorization_denials_total";
pub const BUILD_INFO: &str = "rafka_build_info";
pub const UNDER_REPLICATED: &str = "rafka_controller_under_replicated_partitions";
pub const OFFLINE: &str = "rafka_controller_offline_partitions";
pub const DISK_FREE: &str = "rafka_broker_disk_free_bytes";
pub const DISK_TOTAL: &str = "rafka_broker_disk_total_bytes";
/// 1 while produce is refused for want of space: the data directory's free space is under
/// `min-free-bytes`, or a batch was refused since the last measurement.
pub const DISK_FULL: &str = "rafka_broker_disk_full";

/// Describes every broker metric to the installed recorder.
pub fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(REQUESTS, "Requests handled, by rpc and error code.");
    metrics::describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Request latency, by rpc.");
    metrics::describe_counter!(PRODUCE_BYTES, Unit::Bytes, "Record-batch bytes produced.");
    metrics::describe_counter!(PRODUCE_RECORDS, "Records produced.");
    metrics::describe_counter!(FETCH_BYTES, Unit::Bytes, "Record-batch bytes fetched.");
    metrics::describe_gauge!(PARTITION_HIGH_WATERMARK, "High watermark per hosted partition.");
    metrics::describe_gauge!(PARTITION_LOG_START_OFFSET, "Log start offset per hosted partition.");
    metrics::describe_gauge!(
        PARTITION_LOG_SIZE_BYTES,
        Unit::Bytes,
        "Log size per hosted partition."
    );
    metrics::describe_gauge!(PARTITION_SEGMENTS, "Segment files per hosted partition.");
    metrics::describe_gauge!(PARTITION_LEADER, "1 when this broker leads the partition.");
    metrics::describe_gauge!(
        UNDER_REPLICATED,
        "Partitions with fewer in-sync replicas than replicas (on the controller leader; 0 elsewhere)."
    );
    metrics::describe_gauge!(
        OFFLINE,
        "Partitions without a live leader (on the controller leader; 0 elsewhere)."
    );
    metrics::describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Space free to the broker on its data directory's filesystem."
    );
    metrics::describe_gauge!(DISK_TOTAL, Unit::Bytes, "Size of the data directory's filesystem.");
    metrics::describe_gauge!(
        DISK_FULL,
        "1 while produce requests are refused because free space is (or would go) under min-free-bytes."
    );
    metrics::describe_gauge!(CONTROLLER_LEADER, "1 when this broker leads the controller.");
    metrics::describe_gauge!(CONTROLLER_TOPICS, "Topics in the controller state.");
    metrics::describe_gauge!(CONTROLLER_BROKERS, "Registered brokers.");
    metrics::describe_gauge!(CONTROLLER_VERSION, "Applied controller state version.");
    metrics::describe_gauge!(GROUP_LAG, "Consumer lag: high watermark minus committed offset.");
    metrics::describe_gauge!(GROUP_COMMITTED_OFFSET, "Committed offset per group partition.");
    metrics::describe_gauge!(GROUP_MEMBERS, "Members per group.");
    metrics::describe_gauge!(GROUPS_COORDINATED, "Groups this broker coordinates.");
    metrics::describe_counter!(TLS_REFUSED, "Connections refused before a TLS session, by reason.");
    metrics::describe_counter!(TLS_RELOADS, "Readings of changed TLS files, by result.");
    metrics::describe_counter!(AUTH_FAILURES, "Failed authentications, by protocol.");
    metrics::describe_counter!(DENIALS, "Requests refused for want of permission, by resource.");
    // Counters of security events exist from the start (at 0), so dashboards and alerts
    // see a rate of 0 rather than no series.
    for protocol in ["kafka", "grpc"] {
        metrics::counter!(AUTH_FAILURES, "protocol" => protocol).increment(0);
    }
    for resource in ["topic", "group", "cluster", "transactional_id", "broker"] {
        metrics::counter!(DENIALS, "resource" => resource).increment(0);
    }
}

/// Counts a connection refused before its TLS session began.
pub fn tls_refused(reason: &'static str) {
    metrics::counter!(TLS_REFUSED, "reason" => reason).increment(1);
}

/// Counts a reading of changed TLS files.
pub fn tls_reloaded(ok: bool) {
    metrics::counter!(TLS_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// Counts one request and its latency.
pub fn request(rpc: &'static str, code: rafka_proto::ErrorCode, started: std::time::Instant) {
    metrics::counter!(REQUESTS, "rpc" => rpc, "code" => code.as_str_name()).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "rpc" => rpc).record(started.elapsed().as_secs_f64());
}

/// Counts a failed authentication.
pub fn auth_failed(protocol: &'static str) {
    metrics::counter!(AUTH_FAILURES, "protocol" => protocol).increment(1);
}

/// Sets `rafka_build_info{version, commit}` to 1 (Prometheus' idiom for labels that
/// describe the process).
pub fn build_info(version: &'static str, commit: &'static str) {
    metrics::describe_gauge!(BUILD_INFO, "1, labelled with the version and git commit built.");
    metrics::gauge!(BUILD_INFO, "version" => version, "commit" => commit).set(1.0);
}

/// Counts a request refused for want of permission.
pub fn denied(resource: &'static str) {
    metrics::counter!(DENIALS, "resource" => resource).increment(1);
}
