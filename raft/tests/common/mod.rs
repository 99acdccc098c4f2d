//! Test support: a small application (`TestApp`) whose payload says its own record count and
//! max timestamp, an in-memory state machine for openraft's storage suite, and helpers.

#![allow(dead_code)]

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use futures::Stream;
use futures::TryStreamExt;
use openraft::EntryPayload;
use openraft::RaftSnapshotBuilder;
use openraft::StoredMembership;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use openraft::storage::Snapshot;
use openraft::storage::SnapshotMeta;
use rafka_raft::App;
use rafka_raft::LogConfig;
use rafka_raft::LogPayload;
use rafka_raft::LogRuntime;
use rafka_raft::ReplicaId;
use rafka_raft::ReplicaNode;
use rafka_raft::SegmentLog;
use rafka_raft::types::Entry;
use rafka_raft::types::LogId;
use rafka_raft::types::TypeConfig;
use rafka_raft::types::log_id;

/// Test payload: `records` records, max timestamp `ts`, and `fill` filler bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestData {
    pub records: u32,
    pub ts: i64,
    pub body: Bytes,
}

impl fmt::Display for TestData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestData({} records, ts {}, {} bytes)", self.records, self.ts, self.body.len())
    }
}

impl LogPayload for TestData {
    fn record_count(&self) -> u32 {
        self.records
    }
    fn max_timestamp(&self) -> i64 {
        self.ts
    }
    fn encoded_len(&self) -> usize {
        12 + self.body.len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u32_le(self.records);
        buf.put_i64_le(self.ts);
        buf.put_slice(&self.body);
    }
    fn decode(mut b: Bytes) -> io::Result<Self> {
        if b.len() < 12 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short TestData"));
        }
        let records = b.get_u32_le();
        let ts = b.get_i64_le();
        Ok(TestData { records, ts, body: b })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestApp;

impl App for TestApp {
    type Data = TestData;
    type Response = u64;
}

/// Like [`TestApp`], for logs whose record offsets do not matter (as the controller's):
/// openraft's storage suite purges past the end of the log without a snapshot offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NoOffsetsApp;

impl App for NoOffsetsApp {
    type Data = TestData;
    type Response = u64;
    const RECORD_OFFSETS: bool = false;
}

pub type C = TypeConfig<TestApp>;

pub fn normal(term: u64, index: u64, records: u32, ts: i64, body_len: usize) -> Entry<TestApp> {
    let body = Bytes::from(vec![(index % 251) as u8; body_len]);
    Entry::<TestApp> {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(TestData { records, ts, body }),
    }
}

pub fn blank(term: u64, index: u64) -> Entry<TestApp> {
    Entry::<TestApp> { log_id: log_id(term, index), payload: EntryPayload::Blank }
}

/// Opens a runtime over `dir` with `cfg`.
pub fn runtime(dir: &Path, cfg: LogConfig) -> LogRuntime {
    LogRuntime::open(dir, cfg).expect("open runtime")
}

/// Appends and waits until the entries are reported durable.
pub async fn append_durable(
    log: &mut SegmentLog<TestApp>,
    entries: Vec<Entry<TestApp>>,
) -> io::Result<()> {
    use openraft::storage::IOFlushed;
    use openraft::storage::RaftLogStorage;
    use openraft::type_config::TypeConfigExt;
    let (tx, rx) = C::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.map_err(|_| io::Error::other("flush callback dropped"))?
}

/// Appends without waiting; the returned receiver yields the flush result.
pub async fn append_pending(
    log: &mut SegmentLog<TestApp>,
    entries: Vec<Entry<TestApp>>,
) -> openraft::type_config::alias::OneshotReceiverOf<C, io::Result<()>> {
    use openraft::storage::IOFlushed;
    use openraft::storage::RaftLogStorage;
    use openraft::type_config::TypeConfigExt;
    let (tx, rx) = C::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx
}

/// Opens group `group` of the runtime over `dir` afresh and reads all its entries.
pub async fn reopen_and_read(
    dir: &Path,
    group: u64,
) -> (LogRuntime, SegmentLog<TestApp>, Vec<Entry<TestApp>>) {
    let rt = LogRuntime::open(dir, LogConfig::default()).unwrap();
    let mut log = rt.open_group::<TestApp>(group).unwrap();
    let entries = read_all(&mut log).await.unwrap();
    (rt, log, entries)
}

/// Reads every retained entry of `log`.
pub async fn read_all(log: &mut SegmentLog<TestApp>) -> io::Result<Vec<Entry<TestApp>>> {
    use openraft::RaftLogReader;
    log.try_get_log_entries(..).await
}

// ---- in-memory state machine, just enough for openraft's storage suite ----

#[derive(Debug, Default, Clone)]
struct SmState {
    last_applied: Option<LogId>,
    last_membership: StoredMembership<rafka_raft::types::CommittedLeaderId, ReplicaId, ReplicaNode>,
    applied: u64,
}

type Meta = SnapshotMeta<rafka_raft::types::CommittedLeaderId, ReplicaId, ReplicaNode>;

pub struct MemStateMachine<A = TestApp> {
    state: Arc<Mutex<SmState>>,
    snapshot: Arc<Mutex<Option<(Meta, SmState)>>>,
    _app: std::marker::PhantomData<A>,
}

impl<A> Clone for MemStateMachine<A> {
    fn clone(&self) -> Self {
        MemStateMachine {
            state: self.state.clone(),
            snapshot: self.snapshot.clone(),
            _app: Default::default(),
        }
    }
}

impl<A> Default for MemStateMachine<A> {
    fn default() -> Self {
        MemStateMachine {
            state: Default::default(),
            snapshot: Default::default(),
            _app: Default::default(),
        }
    }
}

impl<A: App<Response = u64>> RaftSnapshotBuilder<TypeConfig<A>> for MemStateMachine<A> {
    type SnapshotData = SmStateData;

    async fn build_snapshot(
        &mut self,
    ) -> io::Result<
        Snapshot<rafka_raft::types::CommittedLeaderId, ReplicaId, ReplicaNode, SmStateData>,
    > {
        let st = self.state.lock().unwrap().clone();
        let meta =
            Meta { last_log_id: st.last_applied, last_membership: st.last_membership.clone() };
        *self.snapshot.lock().unwrap() = Some((meta.clone(), st.clone()));
        Ok(Snapshot { meta, snapshot: SmStateData(st) })
    }
}

/// Snapshot payload of [`MemStateMachine`].
pub struct SmStateData(SmState);

impl<A: App<Response = u64>> RaftStateMachine<TypeConfig<A>> for MemStateMachine<A> {
    type SnapshotData = SmStateData;
    type SnapshotBuilder = MemStateMachine<A>;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(
        Option<LogId>,
        StoredMembership<rafka_raft::types::CommittedLeaderId, ReplicaId, ReplicaNode>,
    )> {
        let st = self.state.lock().unwrap();
        Ok((st.last_applied, st.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig<A>>>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let applied = {
                let mut st = self.state.lock().unwrap();
                st.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    st.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
                st.applied += 1;
                st.applied
            };
            if let Some(r) = responder {
                r.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: SmStateData) -> io::Result<()> {
        *self.state.lock().unwrap() = snapshot.0.clone();
        *self.snapshot.lock().unwrap() = Some((meta.clone(), snapshot.0));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<
        Option<Snapshot<rafka_raft::types::CommittedLeaderId, ReplicaId, ReplicaNode, SmStateData>>,
    > {
        Ok(self
            .snapshot
            .lock()
            .unwrap()
            .clone()
            .map(|(meta, st)| Snapshot { meta, snapshot: SmStateData(st) }))
    }
}
