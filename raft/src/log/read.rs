//! Reading a group's log: entries for openraft, and lookups by record offset and timestamp.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum Target {
    Offset(i64),
    Timestamp(i64),
    Index(u64),
}

impl Target {
    /// Whether the entry `h` is (or is past) what the lookup wants.
    fn reached(&self, h: &EntryHeader) -> bool {
        match *self {
            Target::Offset(o) => h.next_offset() > o && h.record_count > 0,
            Target::Timestamp(ts) => h.max_timestamp >= ts,
            Target::Index(i) => h.index >= i,
        }
    }
}

impl<A: App> Shared<A> {
    /// Finds the first retained entry that reaches `target`. Segment files are scanned
    /// one at a time without holding the state lock.
    pub(super) fn find(&self, target: Target) -> io::Result<Option<EntryLocation>> {
        let mut scanned: Option<u64> = None; // first index of the last segment scanned
        loop {
            let (file, from, size, first_index, purged) = {
                let st = lock(&self.state);
                if let Target::Offset(o) = target
                    && (o < st.log_start_offset() || o >= st.next_offset)
                {
                    return Ok(None);
                }
                let purged = st.purged.map(|p| p.log_id.index);
                let i = match (scanned, target) {
                    (Some(f), _) => st.segments.partition_point(|s| s.first_index <= f),
                    (None, Target::Offset(o)) => {
                        st.segments.partition_point(|s| s.next_offset <= o)
                    }
                    (None, Target::Timestamp(ts)) => {
                        st.segments.partition_point(|s| s.prefix_max_timestamp < ts)
                    }
                    (None, Target::Index(i)) => {
                        st.segments.partition_point(|s| s.last_index().is_some_and(|l| l < i))
                    }
                };
                let Some(s) = st.segments.get(i) else {
                    // Past the segment files: entries not yet written.
                    let written = st.written_index();
                    return Ok(st
                        .tail
                        .iter()
                        .filter(|c| Some(c.header.index) > written && Some(c.header.index) > purged)
                        .find(|c| target.reached(&c.header))
                        .map(|c| EntryLocation::from(&c.header)));
                };
                let from = match target {
                    Target::Offset(o) => s.seek_offset(o),
                    Target::Timestamp(ts) => s.seek_timestamp(ts),
                    Target::Index(i) => s.seek_index(i),
                };
                (s.file.clone(), from, s.size, s.first_index, purged)
            };
            scanned = Some(first_index);
            let mut found = None;
            let end = segment::scan(&file, from, size, |h, _, _| {
                if Some(h.index) > purged && target.reached(h) {
                    found = Some(EntryLocation::from(h));
                    return false;
                }
                true
            })?;
            if found.is_some() {
                return Ok(found);
            }
            if let ScanEnd::Invalid { pos, reason } = end {
                // Either damage (report it, never skip past it) or a truncation that cut
                // the file under us (look again from the start).
                let st = lock(&self.state);
                if st.segments.iter().any(|s| s.first_index == first_index && s.size > pos) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("segment {first_index}: corrupt entry at byte {pos}: {reason}"),
                    ));
                }
                scanned = None;
            }
        }
    }

    /// Reads entries `[start, end)` from segment files; blocking.
    pub(super) fn read_disk(&self, start: u64, end: u64) -> io::Result<Vec<Entry<A>>> {
        let mut out = Vec::with_capacity((end - start).min(1024) as usize);
        let mut next = start;
        while next < end {
            let (file, from, size, seg_last, path) = {
                let st = lock(&self.state);
                let Some(s) = st.segment_of(next) else {
                    return Err(io::Error::other(format!("entry {next} is in no segment")));
                };
                (
                    s.file.clone(),
                    s.seek_index(next),
                    s.size,
                    s.last_index().expect("non-empty"),
                    s.log_path.clone(),
                )
            };
            let stop = end.min(seg_last + 1);
            let mut err = None;
            let res = segment::scan(&file, from, size, |h, _, rec| {
                if h.index < next {
                    return true;
                }
                if h.index != next {
                    err = Some(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: expected entry {next}, found {}", path.display(), h.index),
                    ));
                    return false;
                }
                match decode_entry::<A>(h, rec.clone()) {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        err = Some(e);
                        return false;
                    }
                }
                next += 1;
                next < stop
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            if let ScanEnd::Invalid { pos, reason } = res {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: corrupt entry at byte {pos}: {reason}", path.display()),
                ));
            }
            if next < stop {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: entry {next} missing", path.display()),
                ));
            }
        }
        Ok(out)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<A: App> RaftLogReader<TypeConfig<A>> for SegmentLog<A> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry<A>>> {
        let (start, end) = bounds(&range);
        let (disk, tail) = {
            let st = lock(&self.shared.state);
            let lo = start.max(st.first_index());
            let hi = st.last_log_id.map_or(lo, |l| end.min(l.index + 1));
            if lo >= hi {
                return Ok(Vec::new());
            }
            let tail_first = st.tail.front().map_or(hi, |c| c.header.index.max(lo));
            let tail: Vec<Entry<A>> = st
                .tail
                .iter()
                .filter(|c| c.header.index >= lo && c.header.index < hi)
                .map(|c| c.entry.clone())
                .collect();
            (lo..tail_first.min(hi), tail)
        };
        if disk.is_empty() {
            return Ok(tail);
        }
        let shared = self.shared.clone();
        let mut out = blocking(move || shared.read_disk(disk.start, disk.end)).await?;
        out.extend(tail);
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(lock(&self.shared.state).vote)
    }
}
