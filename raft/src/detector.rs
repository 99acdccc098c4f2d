//! The per-broker failure detector.
//!
//! Each broker probes every peer broker every `detector-interval-ms` over the peer's shared
//! channel ([`crate::transport::Peers`]); a probe received or answered counts as a sign of
//! life. A peer silent for `detector-timeout-ms` is declared dead, once, and the node's driver
//! starts elections in the groups that peer led. A peer seen again — or seen with a new
//! incarnation, i.e. restarted — is declared up, and the driver heartbeats the groups this
//! node leads that have a replica there, so those replicas learn their leader at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::metrics as m;
use crate::timing::RaftTiming;

/// A change in a peer broker's liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    Up(u64),
    Down(u64),
}

struct PeerState {
    last_heard: Instant,
    incarnation: u64,
    alive: bool,
    /// When it was last found up (first heard, back from the dead, or restarted).
    up_since: Instant,
    /// Groups whose core stopped on that broker, as of its last probe answer.
    stopped: Vec<u64>,
}

pub(crate) struct Detector {
    broker_id: u64,
    timing: RaftTiming,
    peers: Mutex<HashMap<u64, PeerState>>,
    events: mpsc::UnboundedSender<PeerEvent>,
    /// Groups whose core stopped on this broker (answered to probes).
    local_stopped: Mutex<Vec<u64>>,
    /// Groups stopped or deleted here on purpose; announced like stopped ones until
    /// created again, so their followers do not wait on a leader that is gone.
    local_removed: Mutex<std::collections::BTreeSet<u64>>,
}

impl Detector {
    pub fn new(
        broker_id: u64,
        timing: RaftTiming,
    ) -> (Detector, mpsc::UnboundedReceiver<PeerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Detector {
                broker_id,
                timing,
                peers: Mutex::new(HashMap::new()),
                events: tx,
                local_stopped: Mutex::new(Vec::new()),
                local_removed: Mutex::new(std::collections::BTreeSet::new()),
            },
            rx,
        )
    }

    /// Starts watching `broker` (no-op if already watched). It counts as alive until it has
    /// been silent for the detector timeout.
    pub fn watch(&self, broker: u64) {
        if broker == self.broker_id {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(broker).or_insert(PeerState {
            last_heard: Instant::now(),
            incarnation: 0,
            alive: true,
            up_since: Instant::now(),
            stopped: Vec::new(),
        });
    }

    /// Publishes the groups whose core stopped on this broker (sorted).
    pub fn set_local_stopped(&self, groups: Vec<u64>) {
        *self.local_stopped.lock().unwrap_or_else(|p| p.into_inner()) = groups;
    }

    /// Groups whose core stopped, or that were stopped or deleted, on this broker (sorted).
    pub fn local_stopped(&self) -> Vec<u64> {
        let mut out = self.local_stopped.lock().unwrap_or_else(|p| p.into_inner()).clone();
        out.extend(self.local_removed.lock().unwrap_or_else(|p| p.into_inner()).iter());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Marks `group` as no longer hosted here (or hosted again, `removed == false`).
    pub fn set_removed(&self, group: u64, removed: bool) {
        let mut set = self.local_removed.lock().unwrap_or_else(|p| p.into_inner());
        if removed {
            set.insert(group);
        } else {
            set.remove(&group);
        }
    }

    /// Records which groups' cores stopped on `broker` (from its probe answer).
    pub fn record_stopped(&self, broker: u64, mut groups: Vec<u64>) {
        groups.sort_unstable();
        if !groups.is_empty() {
            tracing::debug!(peer = broker, ?groups, "peer reports stopped groups");
        }
        if let Some(p) = self.peers.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&broker) {
            p.stopped = groups;
        }
    }

    /// Whether `group`'s core stopped on `broker` (so it leads nothing there).
    pub fn is_stopped(&self, broker: u64, group: u64) -> bool {
        if broker == self.broker_id {
            return self.local_stopped().binary_search(&group).is_ok();
        }
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .is_some_and(|p| p.stopped.binary_search(&group).is_ok())
    }

    /// The detector timeout.
    pub fn timeout(&self) -> std::time::Duration {
        self.timing.detector_timeout()
    }

    /// Records a sign of life of `broker` in its `incarnation`.
    pub fn heard_from(&self, broker: u64, incarnation: u64) {
        if broker == self.broker_id {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let p = peers.entry(broker).or_insert(PeerState {
            last_heard: Instant::now(),
            incarnation: 0,
            alive: false,
            up_since: Instant::now(),
            stopped: Vec::new(),
        });
        p.last_heard = Instant::now();
        let restarted = p.incarnation != incarnation;
        if restarted && p.incarnation != 0 && p.alive {
            // It died and came back between two probes: its leaderships are gone too.
            let _ = self.events.send(PeerEvent::Down(broker));
        }
        if !p.alive || restarted {
            p.alive = true;
            p.incarnation = incarnation;
            p.up_since = Instant::now();
            metrics::gauge!(m::DETECTOR_PEER_ALIVE, "peer" => broker.to_string()).set(1.0);
            tracing::info!(peer = broker, incarnation, "peer broker is up");
            let _ = self.events.send(PeerEvent::Up(broker));
        }
    }

    /// Records traffic from `broker` (a request or an answer): a sign of life that does not
    /// tell its incarnation. A busy link is never declared dead for slow probes.
    pub fn touch(&self, broker: u64) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get_mut(&broker)
            && p.alive
        {
            p.last_heard = Instant::now();
        }
    }

    /// Declares dead every peer silent for longer than the timeout. Called every interval.
    pub fn check(&self) {
        let timeout = self.timing.detector_timeout();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for (&broker, p) in peers.iter_mut() {
            if p.alive && p.last_heard.elapsed() > timeout {
                p.alive = false;
                metrics::gauge!(m::DETECTOR_PEER_ALIVE, "peer" => broker.to_string()).set(0.0);
                metrics::counter!(m::DETECTOR_PEER_DOWN, "peer" => broker.to_string()).increment(1);
                tracing::warn!(
                    peer = broker,
                    silent_ms = p.last_heard.elapsed().as_millis() as u64,
                    "peer broker is dead"
                );
                let _ = self.events.send(PeerEvent::Down(broker));
            }
        }
    }

    /// Whether `broker` is alive as far as this node can tell: heard from within the timeout
    /// (judged now, not at the last check). This node always is; a broker never watched
    /// counts as alive.
    /// When `broker` was last found up (after being dead or restarting); `None` for this
    /// node and brokers never heard from.
    pub fn up_since(&self, broker: u64) -> Option<Instant> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&broker).filter(|p| p.alive).map(|p| p.up_since)
    }

    pub fn is_alive(&self, broker: u64) -> bool {
        if broker == self.broker_id {
            return true;
        }
        let timeout = self.timing.detector_timeout();
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .is_none_or(|p| p.alive && p.last_heard.elapsed() <= timeout)
    }
}
