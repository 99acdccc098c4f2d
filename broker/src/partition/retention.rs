//! Retention by time and size: whole sealed segments go, oldest first.
//!
//! Every replica enforces retention on its own log (purging is local in Raft): it picks the
//! last segment to delete, sets that segment's last entry as the retention point, and
//! compacts — a snapshot at that point, then a purge up to it — so the log start offset
//! moves and a new replica installs the small snapshot and receives the rest by
//! replication.

use super::*;

/// A topic's retention settings (-1 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

impl Partition {
    /// Deletes the segments retention allows to go; returns the new log start offset when
    /// it moved.
    pub async fn enforce_retention(
        &self,
        retention: Retention,
        now_ms: i64,
        timeout: Duration,
    ) -> Result<Option<i64>> {
        let Some(point) = self.retention_point(retention, now_ms) else {
            return Ok(None);
        };
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = Some(point);
        let purged =
            self.group.compact(timeout).await.map_err(|e| Error::from_raft(&self.name, e))?;
        if purged.is_some_and(|p| p.index >= point.log_id.index) {
            let start = self.log_start_offset();
            tracing::info!(partition = %self.name, log_start_offset = start, "retention deleted segments");
            Ok(Some(start))
        } else {
            Ok(None)
        }
    }

    /// The last entry of the last segment retention deletes, if any may go.
    fn retention_point(&self, r: Retention, now_ms: i64) -> Option<RetentionPoint> {
        if r.retention_ms < 0 && r.retention_bytes < 0 {
            return None;
        }
        let segments = self.group.log().segments();
        // Only what is applied and durable here: the snapshot at the point is written before
        // the purge, and must not describe entries a crash could still take away.
        let flushed = self.group.log().flushed_log_id().map_or(0, |l| l.index);
        let applied = self.applied().index.min(flushed);
        let mut remaining: i64 = segments.iter().map(|s| s.bytes as i64).sum();
        let mut point = None;
        // The active (last) segment is never deleted.
        for s in segments.iter().take(segments.len().saturating_sub(1)) {
            let Some(last) = s.last else { continue };
            if last.index > applied {
                break;
            }
            let by_time = r.retention_ms >= 0
                && s.max_timestamp != i64::MIN
                && s.max_timestamp < now_ms.saturating_sub(r.retention_ms);
            let by_size = r.retention_bytes >= 0 && remaining - s.bytes as i64 >= r.retention_bytes;
            if !(by_time || by_size) {
                break;
            }
            remaining -= s.bytes as i64;
            point = Some(RetentionPoint { log_id: last, next_offset: s.next_offset });
        }
        point
    }
}
