//! The IO-thread side of a group's log: writing appends, rolling segments, persisting index
//! records once their entries are durable, truncating and purging.

use std::sync::atomic::Ordering;

use super::*;

impl<A: App> Shared<A> {
    /// Marks the group failed when a truncate or purge failed midway (its files and memory
    /// may disagree): openraft treats storage errors as fatal, and so does the log.
    pub(super) fn fail_on_err<T>(&self, res: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &res
            && e.kind() != io::ErrorKind::InvalidInput
        {
            tracing::error!(group = self.group, error = %e, "log operation failed");
            lock(&self.state).failed.get_or_insert_with(|| e.to_string());
        }
        res
    }

    /// IO thread: writes every pending append, coalescing consecutive small ones into one
    /// write (and so one flush request) of up to `COALESCE_BYTES`.
    pub(super) fn drain(self: Arc<Self>) {
        const COALESCE_BYTES: usize = 16 << 20;
        // Joining costs a copy; it pays only where the syscall dominates (small appends).
        const SMALL: usize = 16 << 10;
        let batch = {
            let mut p = lock(&self.pending);
            p.1 = false;
            std::mem::take(&mut p.0)
        };
        // Group consecutive appends, then build each group's buffer once.
        let mut groups: Vec<Vec<PendingWrite>> = Vec::new();
        let mut size = 0;
        for w in batch {
            match groups.last_mut() {
                Some(g)
                    if w.buf.len() < SMALL
                        && g.last().is_some_and(|l| l.buf.len() < SMALL)
                        && size + w.buf.len() <= COALESCE_BYTES =>
                {
                    size += w.buf.len();
                    g.push(w);
                }
                _ => {
                    size = w.buf.len();
                    groups.push(vec![w]);
                }
            }
        }
        let mut chunks: Vec<PendingWrite> = groups.into_iter().map(coalesce).collect();
        // The last write takes our `Arc`, so none is held once its callback can fire.
        let last = chunks.pop();
        for c in chunks {
            Shared::write(self.clone(), c.buf, c.headers, c.done);
        }
        // Here, while this job still holds our `Arc` (the last write takes it).
        if let Err(e) = self.store_committed() {
            tracing::warn!(group = self.group, error = %e, "storing the committed id failed");
        }
        if let Some(c) = last {
            Shared::write(self, c.buf, c.headers, c.done);
        }
    }

    /// IO thread: writes one encoded append batch and syncs it, or queues it for the flusher.
    ///
    /// Takes the `Arc` by value and lets go of it before signalling anyone, and flush
    /// completions hold only a `Weak`: once a caller has seen its last callback, dropping its
    /// handles really closes the group (and, with the last group, the RocksDB instance).
    pub(super) fn write(
        self: Arc<Self>,
        buf: Bytes,
        headers: Vec<(EntryHeader, usize)>,
        done: FlushDone,
    ) {
        let res = self.write_inner(&buf, &headers);
        // Keep only what flushing needs: not the runtime (it owns the RocksDB handle).
        let flusher = self.rt.flusher.clone();
        let control = headers.iter().any(|(h, _)| h.kind != crate::codec::KIND_NORMAL);
        let urgent = self.urgent.clone();
        let sync_now = A::ALWAYS_SYNC || control || urgent.load(Ordering::SeqCst) > 0;
        let policy = self.rt.config.flush;
        if let Err(e) = &res {
            tracing::error!(group = self.group, error = %e, "writing to the log failed");
            lock(&self.state).failed = Some(e.to_string());
        }
        // Sync here, sparing the hand-off to the flusher and back, when nothing of this
        // group is with the flusher (callbacks stay in log order) and no other job waits for
        // this IO thread (with several, the flusher syncs their files at once instead).
        let inline = matches!(policy, FlushPolicy::Always)
            && self.in_flusher.load(Ordering::SeqCst) == 0
            && self.rt.io_idle(self.group);
        let in_flusher = self.in_flusher.clone();
        let weak = Arc::downgrade(&self);
        drop(self);
        // Every callback handed to the flusher is counted until it has run.
        let counted = |done: FlushDone| -> FlushDone {
            in_flusher.fetch_add(1, Ordering::SeqCst);
            let in_flusher = in_flusher.clone();
            Box::new(move |r| {
                done(r);
                in_flusher.fetch_sub(1, Ordering::SeqCst);
            })
        };
        let (file, seg_first, size, generation) = match res {
            Ok(v) => v,
            // Through the flusher, so it reaches openraft after earlier writes' results.
            Err(e) => return flusher.submit_failed(e, counted(done)),
        };
        let last = headers.last().expect("non-empty batch").0;
        // Returns the result to report: once the group has failed, nothing is durable any
        // more, even if a later fdatasync of the same file "succeeds" (Linux reports a
        // writeback error once and may mark the lost pages clean).
        let on_durable = move |r: io::Result<()>| -> io::Result<()> {
            let Some(shared) = weak.upgrade() else { return r };
            match r {
                Ok(()) => shared.on_durable(seg_first, size, generation, &last),
                Err(e) => {
                    tracing::error!(group = shared.group, error = %e, "fdatasync failed");
                    lock(&shared.state)
                        .failed
                        .get_or_insert_with(|| format!("fdatasync failed: {e}"));
                    Err(e)
                }
            }
        };
        match policy {
            FlushPolicy::Always => {
                let mut done: FlushDone = Box::new(move |r| done(on_durable(r)));
                if inline {
                    match flusher.sync_inline(file.clone(), done) {
                        Ok(()) => return,
                        Err(back) => done = back,
                    }
                }
                flusher.submit(file, counted(done))
            }
            FlushPolicy::Interval(_) if sync_now => {
                urgent.fetch_add(1, Ordering::SeqCst);
                flusher.submit_now(
                    file,
                    counted(Box::new(move |r| {
                        done(on_durable(r));
                        urgent.fetch_sub(1, Ordering::SeqCst);
                    })),
                );
            }
            FlushPolicy::Interval(_) => {
                flusher.submit(
                    file,
                    Box::new(move |r| {
                        let _ = on_durable(r);
                    }),
                );
                done(Ok(()))
            }
        }
    }

    pub(super) fn write_inner(
        &self,
        buf: &[u8],
        headers: &[(EntryHeader, usize)],
    ) -> io::Result<(Arc<SegFile>, u64, u64, u64)> {
        let cfg = &self.rt.config;
        let mut w = lock(&self.writer);
        let first = headers[0].0;
        enum Act {
            Append,
            Roll,
            New,
        }
        let act = {
            let mut st = lock(&self.state);
            st.check_failed()?;
            match st.segments.last() {
                None => Act::New,
                Some(s) if s.is_empty() && s.first_index != first.index => {
                    // Left empty by a roll just before everything in it was purged.
                    let s = st.segments.pop().expect("last");
                    remove_segment_files(&s)?;
                    *w = None;
                    Act::New
                }
                Some(s) if s.last_index().is_some_and(|l| l + 1 != first.index) => {
                    return Err(io::Error::other(format!(
                        "append at index {} would leave a hole after {:?}",
                        first.index,
                        s.last_index()
                    )));
                }
                Some(s)
                    if !s.is_empty()
                        && (s.size + buf.len() as u64 > cfg.segment_bytes
                            || s.created.elapsed() >= Duration::from_millis(cfg.segment_ms)) =>
                {
                    Act::Roll
                }
                Some(_) => Act::Append,
            }
        };
        if let Act::Roll = act {
            self.seal_last(&mut w)?;
            metrics::counter!(m::LOG_SEGMENTS_ROLLED).increment(1);
        }
        if matches!(act, Act::Roll | Act::New) {
            let seg = Segment::create(&self.dir, first.index, first.base_offset)?;
            let mut st = lock(&self.state);
            st.segments.push(seg);
            st.recompute_prefix_max();
        }

        let (file, pos0, seg_first, generation) = {
            let st = lock(&self.state);
            let s = st.segments.last().expect("active segment");
            (s.file.clone(), s.size, s.first_index, st.generation)
        };
        file.write_all_at(buf, pos0)?;
        metrics::counter!(m::LOG_APPENDED_BYTES).increment(buf.len() as u64);
        metrics::counter!(m::LOG_APPENDED_ENTRIES).increment(headers.len() as u64);

        let size = {
            let mut st = lock(&self.state);
            let n = st.segments.len();
            let prev_prefix =
                if n > 1 { st.segments[n - 2].prefix_max_timestamp } else { i64::MIN };
            let s = st.segments.last_mut().expect("active segment");
            for (h, at) in headers {
                let pos = pos0 + *at as u64;
                s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
                let due = match s.index.last() {
                    None => true,
                    Some(r) => pos - u64::from(r.position) >= u64::from(cfg.index_interval_bytes),
                };
                if due {
                    s.index.push(IndexRecord {
                        index: h.index,
                        position: pos as u32,
                        base_offset: h.base_offset,
                        max_timestamp: s.max_timestamp,
                    });
                }
                s.last = Some((h.index, h.term));
                s.next_offset = h.next_offset();
            }
            s.prefix_max_timestamp = prev_prefix.max(s.max_timestamp);
            s.size = pos0 + buf.len() as u64;
            let size = s.size;
            st.evict_tail(cfg.tail_cache_bytes);
            size
        };
        self.persist_index(&mut w)?;
        Ok((file, seg_first, size, generation))
    }

    /// Flusher: the bytes up to `size` of segment `seg_first` are durable.
    pub(super) fn on_durable(
        &self,
        seg_first: u64,
        size: u64,
        generation: u64,
        last: &EntryHeader,
    ) -> io::Result<()> {
        let mut st = lock(&self.state);
        if let Some(msg) = &st.failed {
            return Err(io::Error::other(format!("log failed earlier: {msg}")));
        }
        if st.generation != generation {
            return Ok(());
        }
        if let Some(s) = st.segments.iter_mut().find(|s| s.first_index == seg_first) {
            s.durable_size = s.durable_size.max(size.min(s.size));
        }
        if st.flushed.is_none_or(|f| f.index < last.index) {
            st.flushed = Some(log_id(last.term, last.index));
            st.flushed_offset = last.next_offset();
        }
        Ok(())
    }

    /// Appends to the active segment's index file the records whose entries are durable, so
    /// a persisted index record never points at bytes a crash could lose.
    pub(super) fn persist_index(&self, w: &mut Option<(u64, File)>) -> io::Result<()> {
        let (first, bytes, n) = {
            let st = lock(&self.state);
            let Some(s) = st.segments.last() else { return Ok(()) };
            let mut bytes = Vec::new();
            let mut n = 0;
            for r in &s.index[s.index_persisted..] {
                if u64::from(r.position) >= s.durable_size {
                    break;
                }
                r.encode(&mut bytes);
                n += 1;
            }
            (s.first_index, bytes, n)
        };
        if n == 0 {
            return Ok(());
        }
        if w.as_ref().is_none_or(|(f, _)| *f != first) {
            let (_, index_path) = segment::paths(&self.dir, first);
            *w = Some((
                first,
                crate::durable::open_file(
                    &index_path,
                    OpenOptions::new().append(true).create(true),
                )?,
            ));
        }
        w.as_mut().expect("index file").1.write_all(&bytes)?;
        let mut st = lock(&self.state);
        if let Some(s) = st.segments.last_mut()
            && s.first_index == first
        {
            s.index_persisted += n;
        }
        Ok(())
    }

    /// Makes the active segment and its whole index durable before a new segment starts.
    pub(super) fn seal_last(&self, w: &mut Option<(u64, File)>) -> io::Result<()> {
        let file = {
            let st = lock(&self.state);
            st.segments.last().map(|s| s.file.clone())
        };
        let Some(file) = file else { return Ok(()) };
        crate::crash_point!(crate::crash::SEGMENT_ROLL);
        file.sync_data()?;
        {
            let mut st = lock(&self.state);
            let s = st.segments.last_mut().expect("segment");
            s.durable_size = s.size;
        }
        self.persist_index(w)?;
        if let Some((_, f)) = w.take() {
            f.sync_data()?;
        }
        Ok(())
    }

    /// IO thread: removes every entry after `last`.
    pub(super) fn truncate(&self, last: Option<LogId>) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let mut st = lock(&self.state);
        st.check_failed()?;
        let cut = last.map_or(0, |l| l.index + 1);
        if st.last_log_id.is_none_or(|l| l.index < cut) {
            return Ok(());
        }
        if let Some(p) = st.purged
            && cut <= p.log_id.index
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("truncate after {last:?} is inside the purged prefix"),
            ));
        }
        let mut next_offset = None;
        while let Some(s) = st.segments.last() {
            if s.first_index < cut {
                break;
            }
            let s = st.segments.pop().expect("last");
            next_offset = Some(s.base_offset);
            remove_segment_files(&s)?;
            // One at a time, last first, each durable before the next: a crash must leave
            // a shorter log, never a hole (later segments back after earlier ones gone).
            crate::durable::sync_dir(&self.dir)?;
        }
        *w = None;
        if let Some(s) = st.segments.last_mut()
            && s.last_index().is_some_and(|l| l >= cut)
        {
            // Scan from the index record before `cut` to recompute the running max.
            let i = s.index.partition_point(|r| r.index < cut);
            let (from, mut max_ts) = match i.checked_sub(1) {
                None => (0, i64::MIN),
                Some(j) => (u64::from(s.index[j].position), s.index[j].max_timestamp),
            };
            let mut cut_at = None;
            let mut prev = None;
            segment::scan(&s.file, from, s.size, |h, pos, _| {
                if h.index == cut {
                    cut_at = Some((pos, h.base_offset));
                    return false;
                }
                max_ts = max_ts.max(h.max_timestamp);
                prev = Some((h.index, h.term));
                true
            })?;
            let (pos, base) = cut_at.ok_or_else(|| corrupt_read(s, cut))?;
            s.file.set_len(pos)?;
            s.index.truncate(i);
            s.index_persisted = s.index_persisted.min(i);
            let idx = crate::durable::open_file(
                &s.index_path,
                OpenOptions::new().write(true).create(true).truncate(false),
            )?;
            idx.set_len((s.index_persisted * INDEX_RECORD_LEN) as u64)?;
            idx.sync_data()?;
            s.size = pos;
            s.last = prev;
            s.next_offset = base;
            s.max_timestamp = max_ts;
            next_offset = Some(base);
        }
        // Everything kept is made durable here: flush completions of earlier writes are
        // discarded (generation bump below), so they cannot be what advances `flushed`.
        if let Some(s) = st.segments.last_mut() {
            s.file.sync_data()?;
            s.durable_size = s.size;
        }
        st.recompute_prefix_max();
        let next_offset = match next_offset {
            Some(o) => o,
            None => {
                return Err(io::Error::other(format!(
                    "truncate after {last:?}: entry {cut} not found"
                )));
            }
        };
        while st.tail.back().is_some_and(|c| c.header.index >= cut) {
            let c = st.tail.pop_back().expect("back");
            st.tail_bytes -= c.size;
        }
        st.last_log_id = last.or(st.purged.map(|p| p.log_id));
        st.next_offset = next_offset;
        st.generation += 1;
        st.flushed = st.last_log_id;
        st.flushed_offset = next_offset;
        Ok(())
    }

    /// IO thread: forgets every entry up to and including `upto`, deleting whole segments.
    ///
    /// The purge point is made durable before any file goes; the state lock is not held
    /// across that write or the unlinks, so the flusher and readers of this group (and the
    /// other groups on the same flusher) are not stalled by it.
    pub(super) fn purge(&self, upto: LogId) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let (purged, gone, beyond) = {
            let mut st = lock(&self.state);
            st.check_failed()?;
            if st.purged.is_some_and(|p| p.log_id.index >= upto.index) {
                return Ok(());
            }
            let beyond = st.last_log_id.is_none_or(|l| l.index <= upto.index);
            let next_offset = match st.header_of(upto.index)? {
                Some(h) => h.next_offset(),
                None => match st.snapshot_offset {
                    Some((i, o)) if i == upto.index => o,
                    // Entries between our last one and `upto` are unknown to us; only the
                    // state machine's snapshot knows how many records they held.
                    _ if beyond && A::RECORD_OFFSETS => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "purge up to {upto} passes the end of the log, but no \
                                 snapshot offset was set for it (set_snapshot_offset)"
                            ),
                        ));
                    }
                    _ if beyond => st.next_offset,
                    // Below the first stored entry: nothing to delete, offsets start where
                    // the stored entries do.
                    _ if upto.index < st.first_index() => st.log_start_offset(),
                    _ => {
                        return Err(io::Error::other(format!(
                            "purge up to {upto}: entry not found"
                        )));
                    }
                },
            };
            let purged = PurgedState { log_id: upto, next_offset };
            let mut gone = Vec::new();
            while let Some(s) = st.segments.first() {
                if !(beyond || s.last_index().is_some_and(|l| l <= upto.index)) {
                    break;
                }
                gone.push(st.segments.remove(0));
            }
            st.purged = Some(purged);
            while st.tail.front().is_some_and(|c| c.header.index <= upto.index) {
                let c = st.tail.pop_front().expect("front");
                st.tail_bytes -= c.size;
            }
            if beyond {
                st.last_log_id = Some(upto);
                st.next_offset = next_offset;
                st.flushed = Some(upto);
                st.flushed_offset = next_offset;
            }
            st.recompute_prefix_max();
            (purged, gone, beyond)
        };
        if beyond {
            *w = None;
        }
        self.rt.meta.save_purged(self.group, &purged)?;
        for s in &gone {
            remove_segment_files(s)?;
        }
        if !gone.is_empty() {
            crate::durable::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Joins consecutive appends into one write whose callback completes each in order.
fn coalesce(mut group: Vec<PendingWrite>) -> PendingWrite {
    if group.len() == 1 {
        return group.pop().expect("one");
    }
    let total = group.iter().map(|w| w.buf.len()).sum();
    let mut buf = BytesMut::with_capacity(total);
    let mut headers = Vec::new();
    let mut dones = Vec::with_capacity(group.len());
    for w in group {
        let base = buf.len();
        buf.extend_from_slice(&w.buf);
        headers.extend(w.headers.into_iter().map(|(h, at)| (h, at + base)));
        dones.push(w.done);
    }
    let done: FlushDone = Box::new(move |r: io::Result<()>| {
        for d in dones {
            d(match &r {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    });
    PendingWrite { buf: buf.freeze(), headers, done }
}
