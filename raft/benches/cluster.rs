//! Cluster benchmarks of the multi-raft runtime: 3 nodes as separate processes on loopback
//! (this binary re-executes itself as each node), real gRPC, real fsync.
//!
//! ```text
//! cargo bench --workspace --bench cluster -- throughput   # 1 and 100 groups, 1 KiB entries
//! cargo bench --workspace --bench cluster -- idle 1000 10000
//! cargo bench --workspace --bench cluster -- failover 20
//! ```
//!
//! Timing is LAN defaults (`RaftTiming::lan`) unless `RAFKA_BENCH_TIMING=loopback`.
//! Writes are proposed inside the leader's process (no client RPC): the figures are those
//! of replication and the log, not of a client protocol.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_raft::App;
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
use rafka_raft::ReplicaNode;
use rafka_raft::SnapshotData;
use rafka_raft::SnapshotMeta;
use rafka_raft::StateMachine;
use rafka_raft::StoredMembership;

// ---- a minimal application ----

#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob(Bytes);

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({})", self.0.len())
    }
}

impl LogPayload for Blob {
    fn record_count(&self) -> u32 {
        1
    }
    fn max_timestamp(&self) -> i64 {
        0
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.0);
    }
    fn decode(b: Bytes) -> std::io::Result<Self> {
        Ok(Blob(b))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct BenchApp;

impl App for BenchApp {
    type Data = Blob;
    type Response = ();
}

#[derive(Default)]
struct CountSm {
    applied: Option<LogId>,
    membership: StoredMembership,
    next_offset: i64,
    snapshot: Option<(SnapshotMeta, SnapshotData)>,
}

impl StateMachine<BenchApp> for CountSm {
    fn applied_state(&mut self) -> std::io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.applied, self.membership.clone()))
    }
    fn apply(&mut self, entry: Entry<BenchApp>) -> std::io::Result<()> {
        match &entry.payload {
            EntryPayload::Normal(d) => self.next_offset += i64::from(d.record_count()),
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone())
            }
            EntryPayload::Blank => {}
        }
        self.applied = Some(entry.log_id);
        Ok(())
    }
    fn build_snapshot(&mut self) -> std::io::Result<(SnapshotMeta, SnapshotData)> {
        let meta =
            SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone() };
        let data = SnapshotData { next_offset: self.next_offset, data: Bytes::new() };
        self.snapshot = Some((meta.clone(), data.clone()));
        Ok((meta, data))
    }
    fn current_snapshot(&mut self) -> std::io::Result<Option<(SnapshotMeta, SnapshotData)>> {
        Ok(self.snapshot.clone())
    }
    fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> std::io::Result<()> {
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.next_offset = data.next_offset;
        Ok(())
    }
}

type BenchGroup = Group<BenchApp, CountSm>;

fn timing() -> RaftTiming {
    match std::env::var("RAFKA_BENCH_TIMING").as_deref() {
        Ok("loopback") => RaftTiming::loopback(),
        _ => RaftTiming::lan(),
    }
}

fn replica_id(g: u64, b: u64, inc: u64) -> u64 {
    (g << 16) | (inc << 8) | b
}

// ---- node process: commands on stdin, answers on stdout ----

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn node_main(id: u64, dir: String, port: u16) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = LogRuntime::open(std::path::Path::new(&dir), LogConfig::default()).unwrap();
        let config = NodeConfig {
            broker_id: id,
            advertise_addr: addr.to_string(),
            cluster: "bench".into(),
            timing: timing(),
            dialer: None,
        };
        let node = Arc::new(RaftNode::start(config, log, listener).await.unwrap());
        println!("addr {addr}");
        let groups: Arc<Mutex<BTreeMap<u64, BenchGroup>>> = Arc::default();
        let mut peers: BTreeMap<u64, String> = BTreeMap::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = rx.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["peers", list @ ..] => {
                    for p in list {
                        let (b, a) = p.split_once('=').unwrap();
                        peers.insert(b.parse().unwrap(), a.to_string());
                    }
                    println!("ok");
                }
                ["groups", from, to, rejoin] => {
                    let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
                    let rss_before = rss_bytes();
                    for g in from..=to {
                        let group = node
                            .create_group::<BenchApp, CountSm>(
                                g,
                                replica_id(g, id, 0),
                                CountSm::default(),
                            )
                            .await
                            .unwrap();
                        if *rejoin == "new" && 1 + g % 3 == id {
                            let members = peers
                                .iter()
                                .map(|(&b, a)| {
                                    (
                                        replica_id(g, b, 0),
                                        ReplicaNode { broker_id: b, addr: a.clone() },
                                    )
                                })
                                .collect();
                            group.initialize(members).await.unwrap();
                        }
                        groups.lock().unwrap().insert(g, group);
                    }
                    println!("ok {rss_before} {}", rss_bytes());
                }
                ["stats"] => {
                    let led = groups.lock().unwrap().values().filter(|g| g.is_leader()).count();
                    let s = node.transport_stats();
                    println!(
                        "stats {led} {} {} {} {} {}",
                        s.rpcs,
                        s.heartbeat_rpcs,
                        s.heartbeats,
                        s.probes,
                        rss_bytes()
                    );
                }
                ["leader", g] => {
                    let g: u64 = g.parse().unwrap();
                    let group = groups.lock().unwrap().get(&g).cloned();
                    let leader = group.and_then(|g| g.leader()).map_or(0, |(_, n)| n.broker_id);
                    println!("leader {leader}");
                }
                ["write", n, size, conc] => {
                    // Writes n entries to every group this node leads, `conc` in flight each.
                    let (n, size, conc): (u64, usize, usize) =
                        (n.parse().unwrap(), size.parse().unwrap(), conc.parse().unwrap());
                    let led: Vec<BenchGroup> = groups
                        .lock()
                        .unwrap()
                        .values()
                        .filter(|g| g.is_leader())
                        .cloned()
                        .collect();
                    let started = Instant::now();
                    let body = Bytes::from(vec![7u8; size]);
                    let tasks: Vec<_> = led
                        .iter()
                        .map(|g| {
                            let g = g.clone();
                            let body = body.clone();
                            tokio::spawn(async move {
                                let mut inflight = FuturesUnordered::new();
                                let mut sent = 0;
                                let mut done = 0u64;
                                while done < n {
                                    while sent < n && inflight.len() < conc {
                                        let g = g.clone();
                                        let b = Blob(body.clone());
                                        inflight.push(async move { g.write(b).await });
                                        sent += 1;
                                    }
                                    inflight.next().await.unwrap().expect("write");
                                    done += 1;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    println!("wrote {} {}", led.len() as u64 * n, started.elapsed().as_secs_f64());
                }
                ["try-write", g] => {
                    // One write attempt to group g, if this node leads it.
                    let g: u64 = g.parse().unwrap();
                    let group = groups.lock().unwrap().get(&g).cloned().unwrap();
                    let ok = group.is_leader()
                        && matches!(
                            tokio::time::timeout(
                                Duration::from_secs(2),
                                group.write(Blob(Bytes::from_static(b"probe"))),
                            )
                            .await,
                            Ok(Ok(_))
                        );
                    println!("try {}", if ok { "ok" } else { "no" });
                }
                ["quit"] => break,
                other => println!("error unknown command {other:?}"),
            }
            std::io::stdout().flush().unwrap();
        }
    });
}

// ---- the driver: spawns and steers node processes ----

struct NodeProc {
    id: u64,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl NodeProc {
    fn spawn(id: u64, dir: &std::path::Path, port: u16) -> NodeProc {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .env("RAFKA_BENCH_NODE", format!("{id} {} {port}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut n = NodeProc { id, child, stdin, lines, addr: String::new() };
        let line = n.expect("addr ");
        n.addr = line.trim_start_matches("addr ").to_string();
        n
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn expect(&mut self, prefix: &str) -> String {
        let line = self.lines.recv_timeout(Duration::from_secs(600)).unwrap_or_else(|e| {
            panic!("node {}: no answer ({e})", self.id);
        });
        assert!(line.starts_with(prefix), "node {}: expected {prefix:?}, got {line:?}", self.id);
        line
    }

    fn ask(&mut self, cmd: &str, prefix: &str) -> Vec<String> {
        self.send(cmd);
        self.expect(prefix).split_whitespace().skip(1).map(str::to_string).collect()
    }

    /// CPU seconds (user + system) the process has used.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / clk_tck()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn clk_tck() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

struct BenchCluster {
    // Fields drop in order: the node processes die before their data dirs go.
    nodes: Vec<NodeProc>,
    _dir: tempfile::TempDir,
}

impl BenchCluster {
    fn start() -> BenchCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<NodeProc> =
            (1..=3).map(|id| NodeProc::spawn(id, &dir.path().join(format!("n{id}")), 0)).collect();
        let peers: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.id, n.addr)).collect();
        let cmd = format!("peers {}", peers.join(" "));
        for n in &mut nodes {
            n.ask(&cmd, "ok");
        }
        BenchCluster { nodes, _dir: dir }
    }

    /// Creates groups `from..=to` on every node; returns RSS (before, after) per node.
    fn create_groups(&mut self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let cmd = format!("groups {from} {to} new");
        for n in &mut self.nodes {
            n.send(&cmd);
        }
        self.nodes
            .iter_mut()
            .map(|n| {
                let r = n.expect("ok");
                let f: Vec<u64> =
                    r.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
                (f[0], f[1])
            })
            .collect()
    }

    fn stats(&mut self) -> Vec<Vec<u64>> {
        self.nodes
            .iter_mut()
            .map(|n| n.ask("stats", "stats").iter().map(|v| v.parse().unwrap()).collect())
            .collect()
    }

    fn wait_led(&mut self, groups: u64, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let led: u64 = self.stats().iter().map(|s| s[0]).sum();
            if led >= groups {
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "only {led} of {groups} groups led");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn throughput() {
    for groups in [1u64, 100] {
        let mut c = BenchCluster::start();
        c.create_groups(1, groups);
        c.wait_led(groups, Duration::from_secs(120));
        let per_group = if groups == 1 { 100_000 } else { 2_000 };
        let conc = if groups == 1 { 256 } else { 16 };
        let started = Instant::now();
        for n in &mut c.nodes {
            n.send(&format!("write {per_group} 1024 {conc}"));
        }
        let mut total = 0;
        for n in &mut c.nodes {
            let r = n.expect("wrote");
            total += r.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "throughput groups={groups} entries={total} entry=1KiB fsync=always: {:.0} entries/s, {:.1} MB/s ({secs:.2}s)",
            total as f64 / secs,
            total as f64 * 1024.0 / secs / 1e6
        );
    }
}

fn idle(counts: &[u64]) {
    for &groups in counts {
        let mut c = BenchCluster::start();
        let rss = c.create_groups(1, groups);
        let took = c.wait_led(groups, Duration::from_secs(900));
        // Let elections and the first heartbeats settle, then measure a quiet window.
        std::thread::sleep(Duration::from_secs(5));
        let window = Duration::from_secs(
            std::env::var("RAFKA_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20),
        );
        let cpu0: Vec<f64> = c.nodes.iter().map(|n| n.cpu_secs()).collect();
        let s0 = c.stats();
        std::thread::sleep(window);
        let cpu1: Vec<f64> = c.nodes.iter().map(|n| n.cpu_secs()).collect();
        let s1 = c.stats();
        for i in 0..3 {
            let cpu = (cpu1[i] - cpu0[i]) / window.as_secs_f64() * 100.0;
            let rpcs = (s1[i][1] - s0[i][1]) as f64 / window.as_secs_f64();
            let hb = (s1[i][3] - s0[i][3]) as f64 / window.as_secs_f64();
            let probes = (s1[i][4] - s0[i][4]) as f64 / window.as_secs_f64();
            let (before, after) = rss[i];
            let rss_now = s1[i][5];
            println!(
                "idle groups={groups} node={}: cpu {cpu:.2}% of a core, {rpcs:.1} RPCs/s ({probes:.1} probes/s, {hb:.1} group heartbeats/s), rss {:.1} MiB, {:.1} KiB/group (rss growth while creating groups)",
                i + 1,
                rss_now as f64 / 1048576.0,
                after.saturating_sub(before) as f64 / groups as f64 / 1024.0
            );
        }
        println!("idle groups={groups}: all led {took:.1?} after creation");
    }
}

fn failover(trials: usize) {
    let mut c = BenchCluster::start();
    let g = 1;
    c.create_groups(g, g);
    c.wait_led(1, Duration::from_secs(60));
    let dir = c._dir.path().to_path_buf();
    let mut times = Vec::new();
    for trial in 0..trials {
        // Keep the group busy so followers hold a fresh lease from the leader (the hard case).
        let leader = loop {
            let views: Vec<u64> = c
                .nodes
                .iter_mut()
                .map(|n| n.ask(&format!("leader {g}"), "leader")[0].parse().unwrap())
                .collect();
            if views.iter().all(|&v| v != 0 && v == views[0]) {
                break views[0];
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let li = (leader - 1) as usize;
        c.nodes[li].ask("write 200 1024 16", "wrote");
        let addr = c.nodes[li].addr.clone();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let killed = Instant::now();
        c.nodes[li].kill();
        // The outage ends when a survivor accepts a write.
        let elapsed = 'outage: loop {
            for (i, n) in c.nodes.iter_mut().enumerate() {
                if i != li && n.ask(&format!("try-write {g}"), "try")[0] == "ok" {
                    break 'outage killed.elapsed();
                }
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "no leader within 60 s");
            std::thread::sleep(Duration::from_millis(2));
        };
        times.push(elapsed);
        println!(
            "failover trial {trial}: new leader accepted a write {} ms after kill -9",
            elapsed.as_millis()
        );
        // Restart the killed node on its port and data; it rejoins as a follower.
        let id = (li + 1) as u64;
        let mut n = NodeProc::spawn(id, &dir.join(format!("n{id}")), port);
        let peers: Vec<String> = (1..=3u64)
            .map(|b| {
                format!(
                    "{b}={}",
                    if b == id { n.addr.clone() } else { c.nodes[(b - 1) as usize].addr.clone() }
                )
            })
            .collect();
        n.ask(&format!("peers {}", peers.join(" ")), "ok");
        n.ask(&format!("groups {g} {g} rejoin"), "ok");
        c.nodes[li] = n;
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "failover over {trials} trials (timing {:?}): p50 {} ms, max {} ms",
        timing(),
        p50.as_millis(),
        max.as_millis()
    );
}

fn main() {
    if let Ok(spec) = std::env::var("RAFKA_BENCH_NODE") {
        let mut it = spec.split_whitespace();
        let id = it.next().unwrap().parse().unwrap();
        let dir = it.next().unwrap().to_string();
        let port = it.next().unwrap().parse().unwrap();
        node_main(id, dir, port);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    match args.first().map(String::as_str) {
        Some("throughput") => throughput(),
        Some("idle") => {
            let counts: Vec<u64> = args[1..].iter().map(|a| a.parse().unwrap()).collect();
            idle(if counts.is_empty() { &[1000] } else { &counts });
        }
        Some("failover") => failover(args.get(1).map_or(20, |a| a.parse().unwrap())),
        _ => {
            eprintln!(
                "usage: cargo bench --workspace --bench cluster -- throughput | idle N... | failover TRIALS"
            );
        }
    }
}
