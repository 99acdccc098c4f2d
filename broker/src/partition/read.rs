//! Reading a partition: fetch from an offset (long poll), offset lookups.

use super::*;
use crate::error::Watermarks;

/// Which offset a ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the next offset to be written).
    Latest,
    /// The first offset whose batch has a timestamp at or after this (ms); the high
    /// watermark if none.
    Timestamp(i64),
    /// The first record with the largest timestamp in the log (Kafka's MAX_TIMESTAMP); -1
    /// and -1 when the log holds no record.
    MaxTimestamp,
}

/// Most entries read from the log per step of a fetch.
const READ_STEP: u64 = 64;

/// Entries to read next: as many as the bytes still wanted hold at the average size seen so
/// far (one to start: an entry may be as large as `max.message.bytes`, and reading a full
/// step of megabyte batches to return one would read 64 times what is sent).
fn next_step(seen_entries: u64, seen_bytes: usize, wanted: usize) -> u64 {
    if seen_entries == 0 {
        return 1;
    }
    let average = (seen_bytes as u64 / seen_entries).max(1);
    (wanted as u64 / average + 1).clamp(1, READ_STEP)
}

/// How long a read waits for a new leader to become ready before answering
/// `LEADER_NOT_AVAILABLE` (retriable).
const READY_WAIT: Duration = Duration::from_secs(2);

impl Partition {
    /// Whether this replica may serve reads: a follower when the client opted in (its high
    /// watermark may trail); otherwise only a leader whose reads cannot be stale. A leader
    /// must have applied an entry of its own term — until then its high watermark may trail
    /// what the previous leader acknowledged (Kafka answers OFFSET_NOT_AVAILABLE then,
    /// KIP-207) — and must still hold its quorum (a deposed leader that does not know it yet
    /// would serve an old high watermark). Both were found by the fault suite as stale reads.
    async fn check_readable(&self, allow_follower: bool) -> Result<()> {
        if allow_follower {
            return Ok(());
        }
        if !self.group.is_leader() {
            return Err(self.leader_error());
        }
        if !self.group.is_leader_ready() && !self.group.wait_leader_ready(READY_WAIT).await {
            return Err(Error::LeaderNotAvailable(format!(
                "{}: the new leader has not caught up with its term yet",
                self.name
            )));
        }
        match self.group.confirm_read_lease().await {
            Ok(()) => Ok(()),
            // Deposed, or handed its term to another replica (named in the error).
            Err(e @ rafka_raft::Error::NotLeader { .. }) => Err(Error::from_raft(&self.name, e)),
            Err(e) => Err(Error::LeaderNotAvailable(format!(
                "{}: leadership not confirmed by a quorum: {e}",
                self.name
            ))),
        }
    }

    /// Reads committed batches from `offset`: at least one batch if any is committed at or
    /// after it, then more up to `max_bytes`. At the high watermark it waits up to `max_wait`
    /// for new data.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
        allow_follower: bool,
    ) -> Result<ReadResult> {
        self.check_readable(allow_follower).await?;
        let mut applied = self.applied.clone();
        let start = self.log_start_offset();
        let hw = applied.borrow().high_watermark;
        if offset < start || offset > hw {
            return Err(Error::out_of_range(
                format!("{}: offset {offset} is outside [{start}, {hw}]", self.name),
                Watermarks { high_watermark: hw, log_start_offset: start },
            ));
        }
        if offset == hw && !max_wait.is_zero() {
            let _ = tokio::time::timeout(max_wait, applied.wait_for(|a| a.high_watermark > offset))
                .await;
        }
        let now = *applied.borrow();
        let mut out = ReadResult {
            high_watermark: now.high_watermark,
            log_start_offset: self.log_start_offset(),
            batches: Vec::new(),
            next_offset: offset,
        };
        if offset >= now.high_watermark {
            return Ok(out);
        }
        let log = self.group.log();
        let Some(loc) = log.find_offset(offset).await.map_err(|e| self.io_error(e))? else {
            // Retention removed it between the check and the lookup.
            return Err(self.no_longer_retained(offset, now));
        };
        let mut bytes = 0usize;
        let mut next_index = loc.index;
        let mut next_offset = loc.base_offset;
        let (mut seen_entries, mut seen_bytes) = (0u64, 0usize);
        'read: while next_index <= now.index && next_offset < now.high_watermark {
            let step = next_step(seen_entries, seen_bytes, max_bytes.saturating_sub(bytes));
            let end = (next_index + step).min(now.index + 1);
            let entries = log.read(next_index, end).await.map_err(|e| self.io_error(e))?;
            if entries.is_empty() {
                break;
            }
            seen_entries += entries.len() as u64;
            seen_bytes += entries
                .iter()
                .map(|e| match &e.payload {
                    EntryPayload::Normal(p) => p.batch.len(),
                    _ => 0,
                })
                .sum::<usize>();
            for e in entries {
                // Retention may purge between the lookup and the read (or two reads): the
                // log then skips what it no longer holds, and counting offsets on from there
                // would label batches wrongly. Stop at the gap.
                if e.log_id.index != next_index {
                    break 'read;
                }
                next_index = e.log_id.index + 1;
                if let EntryPayload::Normal(p) = e.payload {
                    if !out.batches.is_empty() && bytes + p.batch.len() > max_bytes {
                        break 'read;
                    }
                    bytes += p.batch.len();
                    // The partition's leader epoch is the Raft term of the entry's leader.
                    let epoch = super::leader_epoch(e.log_id.term);
                    let batch = p.to_kafka(next_offset, epoch).map_err(|e| self.io_error(e))?;
                    out.batches.push(ReadBatch { base_offset: next_offset, batch });
                    next_offset += p.info.record_count as i64;
                    if next_offset >= now.high_watermark {
                        break 'read;
                    }
                }
            }
        }
        out.next_offset = next_offset.max(offset);
        if out.batches.is_empty() && next_index == loc.index {
            return Err(self.no_longer_retained(offset, now));
        }
        Ok(out)
    }

    /// Waits up to `timeout` for the high watermark to pass `hw`; returns whether it did.
    pub async fn wait_high_watermark_above(&self, hw: i64, timeout: Duration) -> bool {
        let mut applied = self.applied.clone();
        tokio::time::timeout(timeout, applied.wait_for(|a| a.high_watermark > hw))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// ListOffsets: `(offset, timestamp)`; timestamp -1 unless looked up by time.
    pub async fn list_offset(&self, spec: OffsetSpec, allow_follower: bool) -> Result<(i64, i64)> {
        self.check_readable(allow_follower).await?;
        let hw = self.applied().high_watermark;
        match spec {
            OffsetSpec::Earliest => Ok((self.log_start_offset(), -1)),
            OffsetSpec::Latest => Ok((hw, -1)),
            OffsetSpec::Timestamp(ts) => self.offset_for_time(ts, hw).await,
            OffsetSpec::MaxTimestamp => self.offset_of_max_timestamp().await,
        }
    }

    async fn offset_of_max_timestamp(&self) -> Result<(i64, i64)> {
        let log = self.group.log();
        let max = log.segments().iter().map(|s| s.max_timestamp).max().unwrap_or(i64::MIN);
        if max == i64::MIN {
            return Ok((-1, -1));
        }
        let Some(loc) = log.find_timestamp(max).await.map_err(|e| self.io_error(e))? else {
            return Ok((-1, -1));
        };
        let entries = log.read(loc.index, loc.index + 1).await.map_err(|e| self.io_error(e))?;
        let Some(EntryPayload::Normal(p)) = entries.into_iter().next().map(|e| e.payload) else {
            return Ok((loc.base_offset, max));
        };
        let records =
            p.records().map_err(|e| Error::Storage(format!("{}: stored batch: {e}", self.name)))?;
        let at = records.iter().position(|r| r.timestamp == max).unwrap_or(0);
        Ok((loc.base_offset + at as i64, max))
    }

    async fn offset_for_time(&self, ts: i64, hw: i64) -> Result<(i64, i64)> {
        let log = self.group.log();
        let Some(loc) = log.find_timestamp(ts).await.map_err(|e| self.io_error(e))? else {
            return Ok((hw, -1));
        };
        if loc.base_offset >= hw {
            return Ok((hw, -1));
        }
        let entries = log.read(loc.index, loc.index + 1).await.map_err(|e| self.io_error(e))?;
        let Some(EntryPayload::Normal(p)) = entries.into_iter().next().map(|e| e.payload) else {
            return Ok((loc.base_offset, loc.max_timestamp));
        };
        // The batch's max timestamp reaches `ts`: find its first record that does.
        let records =
            p.records().map_err(|e| Error::Storage(format!("{}: stored batch: {e}", self.name)))?;
        for (i, r) in records.iter().enumerate() {
            if r.timestamp >= ts {
                return Ok((loc.base_offset + i as i64, r.timestamp));
            }
        }
        Ok((loc.base_offset, loc.max_timestamp))
    }

    fn no_longer_retained(&self, offset: i64, now: Applied) -> Error {
        let watermarks = Watermarks {
            high_watermark: now.high_watermark,
            log_start_offset: self.log_start_offset(),
        };
        Error::out_of_range(
            format!("{}: offset {offset} is no longer retained", self.name),
            watermarks,
        )
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::Storage(format!("{}: {e}", self.name))
    }

    /// The last applied log id (for retention).
    pub fn last_applied(&self) -> Option<LogId> {
        self.group.status().last_applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_steps_follow_entry_sizes() {
        assert_eq!(next_step(0, 0, 4 << 20), 1, "unknown sizes: one entry first");
        assert_eq!(next_step(1, 16 << 10, 4 << 20), READ_STEP, "small batches: a full step");
        assert_eq!(next_step(1, 1 << 20, 1 << 20), 2, "megabyte batches: what fits, and one");
        assert_eq!(next_step(4, 4 << 20, 0), 1, "nothing more wanted: one (it may be the first)");
        assert_eq!(next_step(3, 0, 1 << 20), READ_STEP, "empty entries (membership, blank)");
    }
}
