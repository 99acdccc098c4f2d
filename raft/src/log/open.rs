//! Opening a group's log: recovery of its segments from disk.

use super::*;

impl<A: App> SegmentLog<A> {
    pub(crate) fn open(rt: Arc<RuntimeInner>, group: GroupId) -> Result<SegmentLog<A>, Error> {
        let dir = rt.group_dir(group);
        if !dir.exists() {
            crate::durable::create_dir(&dir)?;
            crate::durable::sync_dir(dir.parent().expect("groups dir"))?;
        }
        let mut firsts = Vec::new();
        for ent in std::fs::read_dir(&dir)? {
            let name = ent?.file_name();
            if let Some(first) = name.to_str().and_then(segment::parse_log_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = rt.meta.read_purged(group)?;
        let corrupt = |detail: String| Error::Corrupt { group, detail };

        let mut segments: Vec<Segment> = Vec::with_capacity(firsts.len());
        let n = firsts.len();
        let mut recovery = RecoveryStats { segments: n, ..RecoveryStats::default() };
        for (i, first) in firsts.into_iter().enumerate() {
            let rec = segment::recover(&dir, first, rt.config.index_interval_bytes)?;
            recovery.scanned_bytes += rec.scanned_bytes;
            let seg = rec.segment;
            if let Some((pos, reason, len)) = rec.invalid_tail {
                if i + 1 < n {
                    // A hole in the middle of the log cannot be repaired by truncation.
                    return Err(corrupt(format!(
                        "sealed segment {} is invalid at byte {pos} of {len}: {reason}",
                        seg.log_path.display()
                    )));
                }
                tracing::warn!(
                    group, segment = %seg.log_path.display(), pos, len, reason,
                    "truncating torn or corrupt tail of the active segment"
                );
                metrics::counter!(m::LOG_RECOVERY_TRUNCATED_BYTES).increment(len - pos);
                recovery.truncated_bytes += len - pos;
                seg.file.set_len(pos)?;
            }
            if i + 1 == n {
                // The tail may be bytes a killed process wrote but never synced, still in
                // the page cache: make them durable before calling them durable (they may
                // be acknowledged to the leader as soon as the group starts).
                seg.file.sync_data()?;
                // New index records are appended after the valid ones: drop any torn or
                // stale records after them first.
                let want = (seg.index_persisted * INDEX_RECORD_LEN) as u64;
                let idx = crate::durable::open_file(
                    &seg.index_path,
                    OpenOptions::new().write(true).create(true).truncate(false),
                )?;
                if idx.metadata()?.len() != want {
                    idx.set_len(want)?;
                    idx.sync_data()?;
                }
            }
            segments.push(seg);
        }

        // Finish a purge that crashed between recording the purge point and deleting files.
        if let Some(p) = purged {
            while let Some(s) = segments.first() {
                let gone = match s.last_index() {
                    Some(l) => l <= p.log_id.index,
                    None => s.first_index <= p.log_id.index + 1,
                };
                if !gone {
                    break;
                }
                remove_segment_files(&segments.remove(0))?;
            }
        }

        // Check the remaining segments form one contiguous log, and fill in empty ones.
        let mut next_index = purged.map(|p| p.log_id.index + 1);
        let mut next_offset = purged.map(|p| p.next_offset);
        let mut last_log_id = purged.map(|p| p.log_id);
        let count = segments.len();
        for (i, s) in segments.iter_mut().enumerate() {
            if s.is_empty() {
                if i + 1 < count {
                    return Err(corrupt(format!(
                        "sealed segment {} is empty",
                        s.log_path.display()
                    )));
                }
                let off = next_offset.unwrap_or(0);
                s.base_offset = off;
                s.next_offset = off;
                continue;
            }
            let contiguous = match next_index {
                // The first retained segment may start before the purge point.
                Some(ni) if i == 0 => s.first_index <= ni && s.last_index() >= Some(ni - 1),
                Some(ni) => s.first_index == ni,
                None => true,
            };
            let offsets_agree = match (i, next_offset) {
                (0, _) | (_, None) => true,
                (_, Some(o)) => s.base_offset == o,
            };
            if !contiguous || !offsets_agree {
                return Err(corrupt(format!(
                    "segment {} does not continue the log (expected index {next_index:?}, offset {next_offset:?})",
                    s.log_path.display()
                )));
            }
            let (li, lt) = s.last.expect("non-empty");
            next_index = Some(li + 1);
            next_offset = Some(s.next_offset);
            last_log_id = Some(log_id(lt, li));
        }
        crate::durable::sync_dir(&dir)?;

        let next_offset = next_offset.unwrap_or(0);
        let mut state = State {
            segments,
            tail: VecDeque::new(),
            tail_bytes: 0,
            last_log_id,
            next_offset,
            purged,
            flushed: last_log_id,
            flushed_offset: next_offset,
            vote: rt.meta.read_vote(group)?,
            snapshot_offset: None,
            generation: 0,
            failed: None,
        };
        state.recompute_prefix_max();
        Ok(SegmentLog {
            shared: Arc::new(Shared {
                group,
                dir,
                rt,
                recovery,
                state: Mutex::new(state),
                writer: Mutex::new(None),
                pending: Mutex::new((Vec::new(), false)),
                urgent: Arc::default(),
                in_flusher: Arc::default(),
                committed: Mutex::new(None),
            }),
        })
    }
}
