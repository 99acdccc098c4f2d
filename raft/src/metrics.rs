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
