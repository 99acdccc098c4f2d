//! openraft's `RaftLogStorage` over the segmented log.

use super::*;
use crate::codec::ENTRY_HEADER_LEN;
use crate::codec::MAX_ENTRY_LEN;
use crate::types::LogPayload;
use openraft::EntryPayload;

/// Upper bound of one append batch, keeping segment positions within u32.
const MAX_APPEND_BYTES: usize = 1 << 30;

impl<A: App> RaftLogStorage<TypeConfig<A>> for SegmentLog<A> {
    type LogReader = SegmentLog<A>;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig<A>>> {
        let st = lock(&self.shared.state);
        let purged = st.purged.map(|p| p.log_id);
        Ok(LogState { last_purged_log_id: purged, last_log_id: st.last_log_id.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // Through the IO thread, so the vote is ordered after earlier log writes (openraft
        // requires all write IO to be applied in order).
        let v = *vote;
        self.run_io(move |s| {
            s.rt.meta.save_vote(s.group, &v)?;
            lock(&s.state).vote = Some(v);
            Ok(())
        })
        .await
    }

    /// Noted here and stored by the group's next write on its IO thread (or when the log
    /// closes), so no commit waits for a RocksDB write. The stored id may lag: a restarted
    /// replica then applies a little less at once, and the rest when a leader tells it the
    /// commit index, as Raft allows (the committed id is a hint, not a promise).
    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        *lock(&self.shared.committed) = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        // The committed id is written without sync and may reach disk ahead of the entries
        // (with flush = interval): never report more than the log holds.
        let noted = *lock(&self.shared.committed);
        let committed = match noted {
            Some(c) => c,
            None => self.shared.rt.meta.read_committed(self.shared.group)?,
        };
        let last = lock(&self.shared.state).last_log_id;
        Ok(committed.min(last))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig<A>>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry<A>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<A>> = entries.into_iter().collect();
        let mut buf = BytesMut::new();
        let mut headers = Vec::with_capacity(entries.len());
        {
            let mut st = lock(&self.shared.state);
            st.check_failed()?;
            // Check the whole batch first: a refused append changes nothing.
            let mut prev = st.last_log_id;
            let mut total = 0usize;
            for entry in &entries {
                let len = match &entry.payload {
                    EntryPayload::Normal(d) => d.encoded_len(),
                    _ => 0,
                } + ENTRY_HEADER_LEN;
                total += len;
                if len > MAX_ENTRY_LEN || total > MAX_APPEND_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "append of entry {} is too large ({len} bytes, {total} in the batch)",
                            entry.log_id
                        ),
                    ));
                }
                if let Some(l) = prev
                    && l.index + 1 != entry.log_id.index
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("append of entry {} after {l} would leave a hole", entry.log_id),
                    ));
                }
                prev = Some(entry.log_id);
            }
            // One allocation for the batch (membership entries may still grow it a little):
            // growing it entry by entry would copy every payload again.
            buf.reserve(total);
            for entry in entries {
                let at = buf.len();
                let header = encode_entry::<A>(&entry, st.next_offset, &mut buf);
                st.next_offset = header.next_offset();
                st.last_log_id = Some(entry.log_id);
                let size = buf.len() - at;
                st.tail_bytes += size;
                st.tail.push_back(Cached { entry, header, size });
                headers.push((header, at));
            }
        }
        if headers.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        let done: FlushDone = Box::new(move |r| callback.io_completed(r));
        let write = PendingWrite { buf: buf.freeze(), headers, done };
        let schedule = {
            let mut p = lock(&self.shared.pending);
            p.0.push(write);
            !std::mem::replace(&mut p.1, true)
        };
        if schedule {
            let shared = self.shared.clone();
            let res =
                self.shared.rt.submit(self.shared.group, Box::new(move || Shared::drain(shared)));
            if res.is_err() {
                lock(&self.shared.pending).1 = false;
            }
            return self.shared.fail_on_err(res);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.run_io(move |s| s.fail_on_err(s.truncate(last_log_id))).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.run_io(move |s| s.fail_on_err(s.purge(log_id))).await
    }
}
