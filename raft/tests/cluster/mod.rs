//! A test cluster of [`RaftNode`]s over real gRPC on loopback, each node in its own tokio
//! runtime (so killing a node = shutting its runtime down, abruptly), with `must_*` helpers
//! and a transport filter for partitions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use openraft::RaftLogReader;
use rafka_raft::Entry;
use rafka_raft::EntryPayload;
use rafka_raft::Group;
use rafka_raft::LogConfig;
use rafka_raft::LogId;
use rafka_raft::LogPayload;
use rafka_raft::LogRuntime;
use rafka_raft::NodeConfig;
use rafka_raft::RaftNode;
use rafka_raft::RaftTiming;
use rafka_raft::ReplicaId;
use rafka_raft::ReplicaNode;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;
use rafka_raft::codec;

use crate::common::TestApp;
use crate::common::TestData;

// ---- the state machine: a digest of everything applied ----

/// What a replica has applied: enough to compare replicas byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Normal entries applied.
    pub entries: u64,
    /// Record offset after the last applied entry.
    pub next_offset: i64,
    /// CRC32C chained over (index, payload) of every normal entry.
    pub digest: u32,
}

impl Applied {
    fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64_le(self.entries);
        b.put_u32_le(self.digest);
        b.freeze()
    }
}

/// The test application's state machine; snapshots at an explicit checkpoint (the
/// "retention point") rather than at the head.
#[derive(Default)]
pub struct DigestSm {
    pub state: Applied,
    pub checkpoint: Option<Applied>,
    pub snapshot: Option<(SnapshotMeta, SnapshotData)>,
}

impl DigestSm {
    /// Marks the current state as the retention point the next snapshot describes.
    pub fn checkpoint(&mut self) {
        self.checkpoint = Some(self.state.clone());
    }
}

impl StateMachine<TestApp> for DigestSm {
    fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    fn apply(&mut self, entry: Entry<TestApp>) -> io::Result<u64> {
        let s = &mut self.state;
        match &entry.payload {
            EntryPayload::Normal(d) => {
                let mut buf = BytesMut::new();
                buf.put_u64_le(entry.log_id.index);
                d.encode(&mut buf);
                s.digest = crc32c::crc32c_append(s.digest, &buf);
                s.entries += 1;
                s.next_offset += i64::from(d.record_count());
            }
            EntryPayload::Membership(m) => {
                s.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            EntryPayload::Blank => {}
        }
        s.last_applied = Some(entry.log_id);
        Ok(entry.log_id.index)
    }

    fn build_snapshot(&mut self) -> io::Result<(SnapshotMeta, SnapshotData)> {
        let at = self.checkpoint.clone().unwrap_or_else(|| self.state.clone());
        let meta =
            SnapshotMeta { last_log_id: at.last_applied, last_membership: at.membership.clone() };
        let data = SnapshotData { next_offset: at.next_offset, data: at.encode() };
        self.snapshot = Some((meta.clone(), data.clone()));
        Ok((meta, data))
    }

    fn current_snapshot(&mut self) -> io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        Ok(self.snapshot.clone())
    }

    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> io::Result<()> {
        let mut b = data.data.clone();
        if b.len() != 12 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad snapshot"));
        }
        self.state = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            entries: b.get_u64_le(),
            next_offset: data.next_offset,
            digest: b.get_u32_le(),
        };
        self.snapshot = Some((meta.clone(), data));
        Ok(())
    }
}

pub type TestGroup = Group<TestApp, DigestSm>;

/// A payload of `len` bytes unique to (group, n).
pub fn payload(group: u64, n: u64, len: usize) -> TestData {
    let mut body = BytesMut::with_capacity(len);
    body.put_u64_le(group);
    body.put_u64_le(n);
    body.resize(len.max(16), (n % 251) as u8);
    TestData { records: 1 + (n % 3) as u32, ts: n as i64, body: body.freeze() }
}

// ---- nodes and cluster ----

pub struct TestNode {
    pub id: u64,
    pub addr: SocketAddr,
    pub rt: Option<tokio::runtime::Runtime>,
    pub node: Option<Arc<RaftNode>>,
    pub groups: Arc<Mutex<HashMap<u64, TestGroup>>>,
}

impl TestNode {
    pub fn is_up(&self) -> bool {
        self.rt.is_some()
    }

    /// Runs `f` on this node's runtime and waits for it.
    pub async fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Arc<RaftNode>, Arc<Mutex<HashMap<u64, TestGroup>>>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("node is down");
        let node = self.node.clone().expect("node is down");
        rt.spawn(f(node, self.groups.clone())).await.expect("task panicked")
    }

    pub fn group(&self, g: u64) -> Option<TestGroup> {
        self.groups.lock().unwrap().get(&g).cloned()
    }

    pub fn replica_node(&self) -> ReplicaNode {
        ReplicaNode { broker_id: self.id, addr: self.addr.to_string() }
    }
}

/// Cluster tests share 2 cores: one cluster at a time, so timings stay meaningful.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Cluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub timing: RaftTiming,
    pub log_config: LogConfig,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.node = None;
            if let Some(rt) = n.rt.take() {
                rt.shutdown_background();
            }
        }
    }
}

/// Replica id of group `g` on broker `b`, incarnation `inc` (ids are never reused).
pub fn replica_id(g: u64, b: u64, inc: u64) -> ReplicaId {
    (g << 16) | (inc << 8) | b
}

impl Cluster {
    /// Starts `n` nodes (broker ids 1..=n) with loopback timing.
    pub async fn start(n: u64, log_config: LogConfig) -> Cluster {
        Cluster::start_with(n, log_config, RaftTiming::loopback()).await
    }

    /// Starts `n` nodes (broker ids 1..=n) with `timing`.
    pub async fn start_with(n: u64, log_config: LogConfig, timing: RaftTiming) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster { _turn: turn, dir, nodes: Vec::new(), timing, log_config };
        for id in 1..=n {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut node = TestNode {
                id,
                addr,
                rt: None,
                node: None,
                groups: Arc::new(Mutex::new(HashMap::new())),
            };
            c.boot(&mut node, listener).await;
            c.nodes.push(node);
        }
        c
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    async fn boot(&self, node: &mut TestNode, listener: std::net::TcpListener) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("node-{}", node.id))
            .enable_all()
            .build()
            .unwrap();
        let log = LogRuntime::open(&self.data_dir(node.id), self.log_config.clone()).unwrap();
        let config = NodeConfig {
            broker_id: node.id,
            advertise_addr: node.addr.to_string(),
            cluster: "test".into(),
            timing: self.timing.clone(),
            dialer: None,
        };
        listener.set_nonblocking(true).unwrap();
        let raft_node = rt
            .spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                RaftNode::start(config, log, listener).await.unwrap()
            })
            .await
            .unwrap();
        node.rt = Some(rt);
        node.node = Some(Arc::new(raft_node));
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[(id - 1) as usize]
    }

    /// Kills node `id` at once: its runtime stops, nothing is flushed or handed over.
    pub fn kill(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        n.groups.lock().unwrap().clear();
        n.node = None;
        n.rt.take().expect("node already down").shutdown_background();
    }

    /// Restarts node `id` on its old address and data, re-creating `groups` (group id →
    /// replica id) as they were.
    pub async fn restart(&mut self, id: u64, groups: Vec<(u64, ReplicaId)>) {
        let addr = self.node(id).addr;
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        // The killed runtime's threads may still hold the storage for a moment.
        let mut node = std::mem::replace(
            &mut self.nodes[(id - 1) as usize],
            TestNode {
                id,
                addr,
                rt: None,
                node: None,
                groups: Arc::new(Mutex::new(HashMap::new())),
            },
        );
        let dir = self.data_dir(id);
        let log_config = self.log_config.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match LogRuntime::open(&dir, log_config.clone()) {
                Ok(rt) => {
                    drop(rt);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("reopen storage of node {id}: {e}"),
            }
        }
        self.boot(&mut node, listener).await;
        self.nodes[(id - 1) as usize] = node;
        for (g, r) in groups {
            self.create_group(id, g, r).await;
        }
    }

    pub async fn create_group(&self, node: u64, g: u64, replica: ReplicaId) -> TestGroup {
        let n = self.node(node);
        n.run(move |node, groups| async move {
            let group = node
                .create_group::<TestApp, DigestSm>(g, replica, DigestSm::default())
                .await
                .unwrap();
            groups.lock().unwrap().insert(g, group.clone());
            group
        })
        .await
    }

    /// Creates group `g` with a replica on each of `brokers` and initializes it on the
    /// first; returns the replica ids by broker.
    pub async fn must_create_group(&self, g: u64, brokers: &[u64]) -> BTreeMap<u64, ReplicaId> {
        let mut members = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for &b in brokers {
            let r = replica_id(g, b, 0);
            self.create_group(b, g, r).await;
            members.insert(r, self.node(b).replica_node());
            replicas.insert(b, r);
        }
        let first = self.node(brokers[0]).group(g).unwrap();
        self.node(brokers[0])
            .run(move |_, _| async move { first.initialize(members).await.unwrap() })
            .await;
        replicas
    }

    /// Waits until every live replica of `g` agrees on one leader (on a live node); returns
    /// the broker hosting it.
    pub async fn must_leader(&self, g: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.leader_of(g) {
                return b;
            }
            assert!(Instant::now() < deadline, "group {g}: no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker whose replica of `g` leads with a committed vote, if every live member of
    /// its membership knows it.
    pub fn leader_of(&self, g: u64) -> Option<u64> {
        let (leader_broker, leader_metrics) = self
            .nodes
            .iter()
            .filter(|n| n.is_up())
            .filter_map(|n| Some((n.id, n.group(g)?.raft_metrics())))
            .find(|(_, m)| m.state == openraft::ServerState::Leader && m.vote.committed)?;
        let membership = leader_metrics.membership_config.membership().clone();
        for (replica, node) in membership.nodes() {
            let n = self.node(node.broker_id);
            if !n.is_up() || *replica == leader_metrics.id {
                continue;
            }
            let group = n.group(g)?;
            if group.replica_id() != *replica {
                continue;
            }
            if group.raft_metrics().current_leader != Some(leader_metrics.id) {
                return None;
            }
        }
        Some(leader_broker)
    }

    /// Writes through the leader of `g`, retrying on leader changes until `timeout`.
    pub async fn must_write(&self, g: u64, data: TestData, timeout: Duration) -> LogId {
        let up: Vec<u64> = self.nodes.iter().filter(|n| n.is_up()).map(|n| n.id).collect();
        self.must_write_among(g, &up, data, timeout).await
    }

    /// Writes through whichever of `brokers` leads `g` (a side of a partition), retrying on
    /// leader changes until `timeout`.
    pub async fn must_write_among(
        &self,
        g: u64,
        brokers: &[u64],
        data: TestData,
        timeout: Duration,
    ) -> LogId {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(Instant::now() < deadline, "group {g}: {brokers:?} accepted no write");
            let leader = brokers
                .iter()
                .copied()
                .find(|&b| self.node(b).group(g).is_some_and(|grp| grp.is_leader()));
            if let Some(b) = leader {
                let group = self.node(b).group(g).unwrap();
                let d = data.clone();
                let res = tokio::time::timeout(
                    Duration::from_secs(3),
                    self.node(b).run(move |_, _| async move { group.write(d).await }),
                )
                .await;
                if let Ok(Ok((log_id, _))) = res {
                    return log_id;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every live replica of `g` has applied `index`.
    pub async fn must_apply(&self, g: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for n in self.nodes.iter().filter(|n| n.is_up()) {
            let Some(group) = n.group(g) else { continue };
            loop {
                let applied = group.state_machine().lock().unwrap().state.last_applied;
                if applied.map(|l| l.index) >= Some(index) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "group {g}: broker {} applied {applied:?}, want {index}",
                    n.id
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// What each live replica of `g` applied, by broker.
    pub fn applied(&self, g: u64) -> BTreeMap<u64, Applied> {
        self.nodes
            .iter()
            .filter(|n| n.is_up())
            .filter_map(|n| Some((n.id, n.group(g)?.state_machine().lock().unwrap().state.clone())))
            .collect()
    }

    /// Every replica's log records (as stored: index, term, offsets, payload, CRC) from
    /// index `from` to the end, by broker.
    pub async fn log_records(&self, g: u64, from: u64) -> BTreeMap<u64, Vec<Bytes>> {
        let mut out = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.is_up()) {
            let Some(group) = n.group(g) else { continue };
            let records = n
                .run(move |_, _| async move {
                    let mut log = group.log().clone();
                    let entries = log.try_get_log_entries(from..).await.unwrap();
                    let mut offset = match entries.first() {
                        Some(e) => {
                            log.find_index(e.log_id.index)
                                .await
                                .unwrap()
                                .expect("retained entry is found")
                                .base_offset
                        }
                        None => 0,
                    };
                    entries
                        .iter()
                        .map(|e| {
                            let mut buf = BytesMut::new();
                            let h = codec::encode_entry::<TestApp>(e, offset, &mut buf);
                            offset = h.next_offset();
                            buf.freeze()
                        })
                        .collect::<Vec<_>>()
                })
                .await;
            out.insert(n.id, records);
        }
        out
    }
}

/// Runs `f` with a deadline; panics (failing the test) past it.
pub async fn within<T>(what: &str, d: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(d, f).await.unwrap_or_else(|_| panic!("{what}: not done within {d:?}"))
}
