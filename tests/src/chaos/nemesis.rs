//! The nemesis: faults injected into a running [`Cluster`], each recorded in the [`History`]
//! (process `nemesis`, `invoke` when it starts, `ok` once applied, and a `heal` op when it is
//! undone), and a seeded schedule of them.
//!
//! Victims are biased toward leaders: three times in four the victim is the current leader of
//! a random partition of the workload's topic (when one is known), otherwise any broker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::history::Call;
use super::history::History;
use super::proxy::Mode;
use crate::Cluster;
use crate::TestClient;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL one broker (leader-biased); restarted on heal.
    KillOne,
    /// SIGKILL every broker at once; all restarted on heal.
    KillAll,
    /// SIGSTOP one broker (leader-biased); SIGCONT on heal.
    Pause,
    /// Cut one broker (leader-biased) from all others, both ways.
    IsolateLeader,
    /// Split the brokers into a minority (holding the victim) and a majority.
    MajorityMinority,
    /// Two brokers cannot talk to each other; both still talk to a third.
    Bridge,
    /// The victim cannot reach one other broker; that broker still reaches it.
    OneWay,
    /// Latency with jitter on every link.
    Delay,
    /// Connections of one random link reset for the whole hold.
    Resets,
    /// One random link stalls (bytes held, then delivered on heal).
    Stall,
    /// Arms a random crash point (see `rafka_raft::crash`) on one broker (leader-biased): it
    /// aborts the next time it passes there; restarted on heal, disarmed if never reached.
    /// Needs a broker built with the `failpoints` feature.
    CrashPoint,
    /// The client proxies reset connections instead of delivering some responses: requests
    /// that took effect look failed, and producers retry them (Jepsen's way to find
    /// duplicates).
    ClientDrops,
    /// Reassigns a random partition (leader-biased) to a random set of as many brokers:
    /// learners join, the voters change, removed replicas delete their copy. With as many
    /// brokers as replicas it only changes the preferred leader. Nothing to undo on heal.
    MoveReplica,
    /// SIGKILL one broker (leader-biased) and delete its data directory; restarted empty on
    /// heal, so its replicas (and controller replica) are replaced by fresh ones. Skipped
    /// while a replacement or move is still under way or a broker is down: losing a second
    /// disk before the first is re-replicated can lose a majority, as in any Raft system.
    WipeDisk,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 14] = [
        Fault::KillOne,
        Fault::KillAll,
        Fault::Pause,
        Fault::IsolateLeader,
        Fault::MajorityMinority,
        Fault::Bridge,
        Fault::OneWay,
        Fault::Delay,
        Fault::Resets,
        Fault::Stall,
        Fault::CrashPoint,
        Fault::ClientDrops,
        Fault::MoveReplica,
        Fault::WipeDisk,
    ];

    /// The name used in histories.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillOne => "kill",
            Fault::KillAll => "kill-all",
            Fault::Pause => "pause",
            Fault::IsolateLeader => "isolate",
            Fault::MajorityMinority => "majority-minority",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
            Fault::Delay => "delay",
            Fault::Resets => "resets",
            Fault::Stall => "stall",
            Fault::CrashPoint => "crash-point",
            Fault::ClientDrops => "client-drops",
            Fault::MoveReplica => "move-replica",
            Fault::WipeDisk => "wipe-disk",
        }
    }

    fn needs_net(self) -> bool {
        !matches!(
            self,
            Fault::KillOne
                | Fault::KillAll
                | Fault::Pause
                | Fault::CrashPoint
                | Fault::MoveReplica
                | Fault::WipeDisk
        )
    }
}

/// What a schedule does: which faults, how long each is held, the gaps between them.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Faults to draw from (uniformly).
    pub faults: Vec<Fault>,
    /// How long the fault phase lasts.
    pub duration: Duration,
    /// Bounds on how long one fault is held.
    pub hold: (Duration, Duration),
    /// Bounds on the quiet gap before each fault.
    pub gap: (Duration, Duration),
    /// What [`Fault::CrashPoint`] draws from (see [`PRODUCE_CRASH_POINTS`]).
    pub crash_points: Vec<&'static str>,
}

/// Injects faults into one cluster. Undo with [`Nemesis::heal`].
pub struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    history: Arc<History>,
    client: TestClient,
    topic: String,
    partitions: u32,
    rng: StdRng,
    killed: BTreeSet<u64>,
    paused: BTreeSet<u64>,
    armed: Vec<(u64, &'static str)>,
    crash_points: Vec<&'static str>,
    net_faulty: bool,
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `cluster`, choosing victims with `seed`.
    pub fn new(
        cluster: &'a mut Cluster,
        history: Arc<History>,
        topic: &str,
        partitions: u32,
        seed: u64,
    ) -> Nemesis<'a> {
        let client = cluster
            .client()
            .with_timeout(Duration::from_secs(2))
            .with_attempt_timeout(Duration::from_secs(1));
        Nemesis {
            cluster,
            history,
            client,
            topic: topic.to_string(),
            partitions,
            rng: StdRng::seed_from_u64(seed),
            killed: BTreeSet::new(),
            paused: BTreeSet::new(),
            armed: Vec::new(),
            crash_points: PRODUCE_CRASH_POINTS.to_vec(),
            net_faulty: false,
        }
    }

    /// Whether broker `id`'s process exits within `timeout`.
    async fn exits_within(&mut self, id: u64, timeout: Duration) -> bool {
        let what = format!("broker {id} to exit");
        crate::poll(&what, timeout, || {
            let running = self.cluster.broker_mut(id).is_running();
            async move { if running { Err("still running") } else { Ok(()) } }
        })
        .await
        .is_ok()
    }

    /// A victim: usually the leader of a random partition, else a random broker.
    async fn victim(&mut self) -> u64 {
        let ids = self.cluster.ids();
        if self.rng.random_bool(0.75) {
            let partition = self.rng.random_range(0..self.partitions);
            if let Ok((id, _)) = self.client.leader(&self.topic, partition).await
                && ids.contains(&id)
            {
                return id;
            }
        }
        ids[self.rng.random_range(0..ids.len())]
    }

    fn other_than(&mut self, not: &[u64]) -> Option<u64> {
        let ids: Vec<u64> = self.cluster.ids().into_iter().filter(|i| !not.contains(i)).collect();
        (!ids.is_empty()).then(|| ids[self.rng.random_range(0..ids.len())])
    }

    fn cut_mode(&mut self) -> Mode {
        if self.rng.random_bool(0.5) { Mode::Blackhole } else { Mode::Stall }
    }

    /// Applies `fault`; returns what was done (also recorded).
    pub async fn apply(&mut self, fault: Fault) -> anyhow::Result<String> {
        let name = fault.name().to_string();
        if fault.needs_net() && self.cluster.net().is_none() {
            anyhow::bail!("fault {name} needs a proxied cluster");
        }
        let call = |detail: &str| Call::Nemesis { fault: name.clone(), detail: detail.into() };
        self.history.invoke("nemesis", call(""));
        let detail = match fault {
            Fault::KillOne => {
                let v = self.victim().await;
                self.cluster.broker_mut(v).kill()?;
                self.killed.insert(v);
                format!("killed {v}")
            }
            Fault::KillAll => {
                for id in self.cluster.ids() {
                    self.cluster.broker_mut(id).kill()?;
                    self.killed.insert(id);
                }
                "killed every broker".to_string()
            }
            Fault::Pause => {
                let v = self.victim().await;
                self.cluster.broker_mut(v).pause()?;
                self.paused.insert(v);
                format!("paused {v}")
            }
            Fault::IsolateLeader => {
                let v = self.victim().await;
                let mode = self.cut_mode();
                self.net().isolate(v, mode);
                self.net_faulty = true;
                self.net().describe()
            }
            Fault::MajorityMinority => {
                let v = self.victim().await;
                let mut ids = self.cluster.ids();
                ids.retain(|i| *i != v);
                ids.shuffle(&mut self.rng);
                let minority_size = ids.len().div_ceil(2);
                let mut minority = vec![v];
                minority.extend(ids.drain(..minority_size.saturating_sub(1)));
                let mode = self.cut_mode();
                self.net().partition(&[minority, ids], mode);
                self.net_faulty = true;
                self.net().describe()
            }
            Fault::Bridge => {
                let mut ids = self.cluster.ids();
                anyhow::ensure!(ids.len() >= 3, "a bridge needs three brokers");
                ids.shuffle(&mut self.rng);
                let mode = self.cut_mode();
                self.net().bridge(ids[0], ids[1], ids[2], mode);
                self.net_faulty = true;
                self.net().describe()
            }
            Fault::OneWay => {
                let v = self.victim().await;
                let other = self.other_than(&[v]).ok_or_else(|| anyhow::anyhow!("one broker"))?;
                let mode = self.cut_mode();
                self.net().one_way(v, other, mode);
                self.net_faulty = true;
                self.net().describe()
            }
            Fault::Delay => {
                let base = Duration::from_millis(self.rng.random_range(10..=80));
                let jitter = base / 2;
                self.net().set_all(Mode::Delay { base, jitter });
                self.net_faulty = true;
                format!("delay {base:?} ± {jitter:?} on every link")
            }
            Fault::CrashPoint => {
                let v = self.victim().await;
                let points = &self.crash_points;
                let point = points[self.rng.random_range(0..points.len())];
                let armed = self.cluster.broker(v).arm_crash_point(point, "1*return").await;
                self.armed.push((v, point));
                match armed {
                    Ok(()) => format!("armed {point} on {v}"),
                    // A busy broker can reach the point and abort before its answer is
                    // written: that is the fault taking effect, not a harness failure.
                    Err(e) if self.exits_within(v, Duration::from_secs(3)).await => {
                        format!("armed {point} on {v}; it fired before answering ({e:#})")
                    }
                    Err(e) => return Err(e),
                }
            }
            Fault::ClientDrops => {
                let probability = self.rng.random_range(0.02..=0.2);
                self.net().set_clients(Mode::DropResponses { probability });
                self.net_faulty = true;
                format!("client proxies drop {:.0}% of response chunks", probability * 100.0)
            }
            Fault::MoveReplica => self.move_replica().await,
            Fault::WipeDisk => match self.unsettled().await {
                Some(why) => format!("skipped: {why}"),
                None => {
                    let v = self.victim().await;
                    self.cluster.broker_mut(v).kill()?;
                    self.killed.insert(v);
                    let dir = self.cluster.broker(v).data_dir().to_path_buf();
                    std::fs::remove_dir_all(&dir)?;
                    format!("killed {v} and deleted its data directory")
                }
            },
            Fault::Resets | Fault::Stall => {
                let a = self.victim().await;
                let b = self.other_than(&[a]).ok_or_else(|| anyhow::anyhow!("one broker"))?;
                let mode = if fault == Fault::Resets { Mode::Reset } else { Mode::Stall };
                self.net().set(a, b, mode.clone());
                self.net().set(b, a, mode);
                self.net_faulty = true;
                self.net().describe()
            }
        };
        self.history.ok("nemesis", call(&detail));
        Ok(detail)
    }

    /// Reassigns a random partition to a random broker set of its size; a refusal (no
    /// controller, a move already under way) is recorded, not an error.
    async fn move_replica(&mut self) -> String {
        let partition = self.rng.random_range(0..self.partitions);
        let Ok(md) = self.client.metadata(&[&self.topic]).await else {
            return "skipped: no metadata".into();
        };
        let Some(info) =
            md.topics.first().and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        else {
            return "skipped: partition not in metadata".into();
        };
        let mut ids = self.cluster.ids();
        ids.shuffle(&mut self.rng);
        // Leader-biased: usually move the leader's replica away when there is room.
        if let Some(l) = info.leader
            && ids.len() > info.replicas.len()
            && self.rng.random_bool(0.75)
        {
            ids.retain(|i| *i != l);
        }
        ids.truncate(info.replicas.len());
        let req = rafka_proto::v1::ReassignPartitionRequest {
            topic: self.topic.clone(),
            partition,
            brokers: ids.clone(),
        };
        let addr = self.cluster.broker(ids[0]).addr().to_string();
        let answer = match self.client.admin_at(&addr) {
            Ok(mut admin) => admin.reassign_partition(req).await,
            Err(e) => return format!("skipped: {e}"),
        };
        match answer.map(|r| r.into_inner().error.unwrap_or_default()) {
            Ok(e) if e.code == 0 => format!("{partition} from {:?} to {ids:?}", info.replicas),
            Ok(e) => format!("{partition} to {ids:?} refused: {}", e.message),
            Err(e) => format!("{partition} to {ids:?} failed: {}", e.message()),
        }
    }

    /// Why wiping a disk now could lose a majority of some group, if it could.
    async fn unsettled(&self) -> Option<String> {
        let md = match self.client.metadata(&[]).await {
            Ok(md) => md,
            Err(e) => return Some(format!("no metadata: {e}")),
        };
        if let Some(b) = md.brokers.iter().find(|b| !b.alive) {
            return Some(format!("broker {} is down", b.broker_id));
        }
        for t in &md.topics {
            for p in &t.partitions {
                if !p.target_replicas.is_empty() {
                    return Some(format!("{}/{} is being moved", t.name, p.partition));
                }
                if p.replicas.iter().any(|r| !p.in_sync.contains(r)) {
                    return Some(format!("{}/{} is not fully in sync", t.name, p.partition));
                }
            }
        }
        None
    }

    fn net(&self) -> &super::net::Net {
        self.cluster.net().expect("checked by apply")
    }

    /// Undoes every fault: heals the network, resumes paused brokers, disarms crash points,
    /// restarts killed and crashed brokers (without waiting for them to be ready). Recorded as
    /// a `heal` op.
    pub async fn heal(&mut self) -> anyhow::Result<String> {
        let mut done = Vec::new();
        for (id, point) in std::mem::take(&mut self.armed) {
            let b = self.cluster.broker_mut(id);
            // Disarm first: a broker still running may pass the point any moment.
            if b.is_running() && b.disarm_crash_point(point).await.is_ok() && b.is_running() {
                done.push(format!("{point} not reached on {id}, disarmed"));
            } else {
                // Crashed (or crashing): the disarm may have raced the abort.
                let _ = crate::poll("crashed broker exiting", Duration::from_secs(10), || {
                    let running = self.cluster.broker_mut(id).is_running();
                    async move { if running { Err("running") } else { Ok(()) } }
                })
                .await;
                done.push(format!("{id} crashed at {point}"));
                self.killed.insert(id);
            }
        }
        if self.net_faulty {
            self.net().heal();
            self.net_faulty = false;
            done.push("network healed".to_string());
        }
        for id in std::mem::take(&mut self.paused) {
            self.cluster.broker_mut(id).resume()?;
            done.push(format!("resumed {id}"));
        }
        for id in std::mem::take(&mut self.killed) {
            self.cluster.broker_mut(id).start()?;
            done.push(format!("restarted {id}"));
        }
        let detail = done.join(", ");
        self.history.ok("nemesis", Call::Nemesis { fault: "heal".into(), detail: detail.clone() });
        Ok(detail)
    }

    /// Runs `schedule`: gap, fault, hold, heal, until its duration has passed; ends healed.
    /// Sleeping here paces the fault schedule; it never stands in for waiting on a state.
    pub async fn run(&mut self, schedule: &Schedule) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(!schedule.faults.is_empty(), "a schedule needs at least one fault");
        anyhow::ensure!(!schedule.crash_points.is_empty(), "a schedule needs crash points");
        self.crash_points = schedule.crash_points.clone();
        let end = Instant::now() + schedule.duration;
        let mut log = Vec::new();
        while Instant::now() < end {
            let gap = self.between(schedule.gap);
            tokio::time::sleep(gap.min(end.saturating_duration_since(Instant::now()))).await;
            if Instant::now() >= end {
                break;
            }
            let fault = schedule.faults[self.rng.random_range(0..schedule.faults.len())];
            let done = self.apply(fault).await;
            // A failed injection is still healed before the error is returned.
            let hold = self.between(schedule.hold);
            if done.is_ok() {
                tokio::time::sleep(hold).await;
            }
            let healed = self.heal().await?;
            log.push(format!("{}: {} (held {hold:?}); {healed}", fault.name(), done?));
        }
        Ok(log)
    }

    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        if hi <= lo {
            return lo;
        }
        let ms = self.rng.random_range(lo.as_millis()..=hi.as_millis());
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// The crash points a [`Fault::CrashPoint`] draws from by default: those a produce workload
/// passes. `before-dir-fsync` strikes at a segment roll or a state checkpoint, between a file
/// creation or rename and the directory fsync (with `lazy-io`, the next start undoes them).
/// `offset-commit` needs a consumer group (add it in [`Schedule::crash_points`]);
/// `snapshot-install` is left out: no scenario purges logs (`tests/tests/membership.rs`
/// crashes a replica there).
pub const PRODUCE_CRASH_POINTS: [&str; 5] =
    ["log-before-fsync", "log-after-fsync", "partition-apply", "segment-roll", "before-dir-fsync"];
