//! openraft's `RaftLogStorage` over the segmented log.

use super::*;

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

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.shared.rt.meta.save_committed(self.shared.group, committed)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.shared.rt.meta.read_committed(self.shared.group)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig<A>>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry<A>> + Send,
        I::IntoIter: Send,
    {
        let mut buf = BytesMut::new();
        let mut headers = Vec::new();
        {
            let mut st = lock(&self.shared.state);
            st.check_failed()?;
            for entry in entries {
                let index = entry.log_id.index;
                if let Some(l) = st.last_log_id
                    && l.index + 1 != index
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("append of entry {index} after {l} would leave a hole"),
                    ));
                }
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
        let shared = self.shared.clone();
        let buf = buf.freeze();
        let done: FlushDone = Box::new(move |r| callback.io_completed(r));
        self.shared
            .rt
            .submit(self.shared.group, Box::new(move || Shared::write(shared, buf, headers, done)))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        self.run_io(move |s| s.truncate(last_log_id)).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.run_io(move |s| s.purge(log_id)).await
    }
}
