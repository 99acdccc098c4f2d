//! The node's driver: heartbeats and elections for every hosted group, so that openraft's
//! per-group tick can stay off (the way CockroachDB quiesces idle
//! ranges).
//!
//! - Every heartbeat interval, a leader with something to tell its followers (entries not yet
//!   committed, a commit index they have not seen, a follower behind) sends one heartbeat.
//!   An idle group sends nothing: its followers keep trusting the leader as long as the
//!   failure detector holds the leader's broker alive.
//! - When the detector declares a broker dead, the surviving voters of every group it led
//!   campaign at once, provided this node can reach a quorum of the group's brokers — a node
//!   cut off from the majority does not bump terms. Survivors are ranked per group (a hash,
//!   so leaderships spread) and campaign a jitter window apart, the first within half a
//!   window, with a real vote that voters grant despite the dead leader's lease when their
//!   own detector agrees it is dead. A later campaign is called off if this replica's term
//!   moved meanwhile (it voted for an earlier one), so it does not depose the first.
//! - A voter whose leader is dead keeps campaigning every detector timeout until a leader
//!   is found; one whose leader is unknown or was never heard from since this replica (or
//!   the leader's broker) restarted campaigns with pre-vote after a random election timeout
//!   — or at once when it is the group's sole voter, which no one else can lead.
//!   A live leader refuses such pre-votes and heartbeats the candidate (see `group.rs`).
//! - When a broker comes (back) up, the groups led here that have a replica there heartbeat
//!   at once, so a restarted replica learns its leader before its election timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::detector::Detector;
use crate::detector::PeerEvent;
use crate::metrics as m;
use crate::timing::RaftTiming;
use crate::transport::Brief;
use crate::transport::GroupRpc;
use crate::transport::GroupStatus;
use crate::transport::Groups;
use crate::transport::Peers;
use crate::types::GroupId;

#[derive(Default)]
struct Tracked {
    /// (last log index, committed) at the last heartbeat this leader sent.
    sent: Option<(Option<u64>, Option<u64>)>,
    /// When a voter without a healthy leader campaigns next.
    campaign_at: Option<Instant>,
    /// Last values exported as metrics: (leader, term, committed, applied).
    exported: Option<(bool, u64, Option<u64>, Option<u64>)>,
    /// Scan that last saw the group (groups gone are dropped).
    generation: u64,
}

pub(crate) struct Driver {
    pub timing: RaftTiming,
    pub groups: Arc<Groups>,
    pub detector: Arc<Detector>,
    pub peers: Arc<Peers>,
    pub generation: u64,
}

impl Driver {
    fn hosted(&self) -> Vec<Arc<dyn GroupRpc>> {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(groups.len());
        out.extend(groups.values().cloned());
        out
    }

    /// When this replica should campaign: the surviving voters of a group are ranked by a
    /// hash of (group, replica), the same on every node, and campaign one jitter window
    /// apart, so two survivors rarely split the vote, and new leaderships spread over the
    /// brokers.
    fn campaign_delay(&self, group: GroupId, s: &GroupStatus) -> std::time::Duration {
        let mut live: Vec<u64> = s
            .voters
            .iter()
            .filter(|(_, b)| self.detector.is_alive(*b))
            .map(|(r, _)| mix(group, *r))
            .collect();
        live.sort_unstable();
        let me = mix(group, s.replica);
        let rank = live.iter().position(|&h| h == me).unwrap_or(live.len()) as u32;
        let window = std::time::Duration::from_millis(self.timing.election_jitter_ms);
        window * rank + self.timing.election_jitter() / 2
    }

    /// Whether this node can reach a majority of `voter_brokers` (counting itself).
    fn quorum_reachable(&self, s: &GroupStatus) -> bool {
        let alive = s.voter_brokers.iter().filter(|&&b| self.detector.is_alive(b)).count();
        alive * 2 > s.voter_brokers.len()
    }

    pub async fn run(mut self, mut events: mpsc::UnboundedReceiver<PeerEvent>) {
        let mut detector_tick = tokio::time::interval(self.timing.detector_interval());
        let mut group_tick = tokio::time::interval(self.timing.heartbeat_interval());
        detector_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        group_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tracked: HashMap<GroupId, Tracked> = HashMap::new();
        loop {
            tokio::select! {
                _ = detector_tick.tick() => self.detector.check(),
                ev = events.recv() => match ev {
                    Some(PeerEvent::Down(b)) => self.peer_down(b, &mut tracked),
                    Some(PeerEvent::Up(b)) => self.peer_up(b),
                    None => return,
                },
                _ = group_tick.tick() => self.scan(&mut tracked),
            }
        }
    }

    fn peer_down(&self, broker: u64, tracked: &mut HashMap<GroupId, Tracked>) {
        let mut n = 0;
        for g in self.hosted() {
            let s = g.status();
            if s.is_leader || !s.is_voter || !s.running {
                continue;
            }
            let led_by_dead = matches!(s.leader, Some((_, Some(b))) if b == broker);
            if led_by_dead {
                g.forget_leader();
            }
            if led_by_dead && self.quorum_reachable(&s) {
                g.trigger_elect(self.campaign_delay(g.group_id(), &s), false);
                tracked.entry(g.group_id()).or_default().campaign_at =
                    Some(Instant::now() + self.timing.detector_timeout());
                n += 1;
            }
        }
        if n > 0 {
            metrics::counter!(m::DRIVER_ELECTIONS, "cause" => "peer_down").increment(n);
            tracing::info!(
                peer = broker,
                groups = n,
                "peer dead: campaigning in the groups it led"
            );
        }
    }

    fn peer_up(&self, broker: u64) {
        for g in self.hosted() {
            let s = g.status();
            if s.is_leader && s.replica_brokers.contains(&broker) {
                g.trigger_heartbeat();
            }
        }
    }

    fn scan(&mut self, tracked: &mut HashMap<GroupId, Tracked>) {
        let hosted = self.hosted();
        let now = Instant::now();
        self.generation += 1;
        let generation = self.generation;
        let mut heartbeats = 0u64;
        let mut campaigns = 0u64;
        let mut leaders = 0u64;
        let mut stopped = Vec::new();
        for g in &hosted {
            let id = g.group_id();
            let b = g.brief();
            let t = tracked.entry(id).or_default();
            t.generation = generation;
            export(id, g.as_ref(), &b, t);
            if !b.running {
                stopped.push(id);
                continue;
            }
            if b.is_leader {
                leaders += 1;
                t.campaign_at = None;
                let state = (b.last_log_index, b.committed);
                let pending = b.committed < b.last_log_index || b.lagging;
                if pending || t.sent != Some(state) {
                    g.trigger_heartbeat();
                    t.sent = Some(state);
                    heartbeats += 1;
                }
                continue;
            }
            t.sent = None;
            if !b.is_voter {
                t.campaign_at = None;
                continue;
            }
            if let Some(lb) = b.leader_broker
                && !self.peers.contains(lb)
            {
                // A follower learns its membership from the log and sends nothing to its
                // leader, so nothing else would start watching the leader's broker.
                for (broker, addr) in g.status().members {
                    if !self.peers.contains(broker) {
                        let _ = self.peers.get(broker, &addr);
                    }
                }
            }
            let leader_dead = b
                .leader_broker
                .is_some_and(|lb| !self.detector.is_alive(lb) || self.detector.is_stopped(lb, id));
            if b.leader_broker.is_some() && !leader_dead && g.heard_leader() {
                t.campaign_at = None;
                continue;
            }
            // A dead leader is replaced at once (and retried every detector timeout); a leader
            // never heard from, or none at all, after an election timeout — except by a sole
            // voter, which no one else can lead (a restarted single-replica group would stay
            // unavailable for an election timeout otherwise).
            let retry = if leader_dead {
                self.timing.detector_timeout()
            } else {
                self.timing.election_timeout()
            };
            match t.campaign_at {
                None if leader_dead || b.sole_voter => t.campaign_at = Some(now),
                None => t.campaign_at = Some(now + retry),
                Some(_) => {}
            }
            if t.campaign_at.is_some_and(|at| now >= at) {
                let s = g.status();
                if self.quorum_reachable(&s) {
                    // With the leader dead, a pre-vote would only wait out its lease on the
                    // other voters; they check the death themselves before granting.
                    g.trigger_elect(self.campaign_delay(id, &s), !leader_dead);
                    campaigns += 1;
                }
                t.campaign_at = Some(now + retry);
            }
        }
        tracked.retain(|_, t| t.generation == generation);
        stopped.sort_unstable();
        self.detector.set_local_stopped(stopped);
        metrics::gauge!(m::DRIVER_GROUPS).set(hosted.len() as f64);
        metrics::gauge!(m::DRIVER_LEADERS).set(leaders as f64);
        metrics::counter!(m::DRIVER_HEARTBEATS).increment(heartbeats);
        if campaigns > 0 {
            metrics::counter!(m::DRIVER_ELECTIONS, "cause" => "no_leader").increment(campaigns);
        }
    }
}

/// A well-spread 64-bit hash of (group, replica) (splitmix64's finalizer).
fn mix(group: GroupId, replica: u64) -> u64 {
    let mut z = group.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ replica;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-group metrics, exported only when they change (10,000 idle groups cost nothing here).
fn export(id: GroupId, g: &dyn GroupRpc, b: &Brief, t: &mut Tracked) {
    let now = (b.is_leader, b.term, b.committed, b.applied);
    if t.exported == Some(now) && !b.lagging {
        return;
    }
    let group = id.to_string();
    if t.exported != Some(now) {
        metrics::gauge!(m::GROUP_ROLE, "group" => group.clone()).set(if b.is_leader {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(m::GROUP_TERM, "group" => group.clone()).set(b.term as f64);
        metrics::gauge!(m::GROUP_COMMIT_INDEX, "group" => group.clone())
            .set(b.committed.map_or(-1.0, |c| c as f64));
        metrics::gauge!(m::GROUP_APPLIED_INDEX, "group" => group.clone())
            .set(b.applied.map_or(-1.0, |c| c as f64));
        t.exported = Some(now);
    }
    if b.is_leader {
        for (follower, lag) in g.status().follower_lag {
            metrics::gauge!(m::GROUP_FOLLOWER_LAG, "group" => group.clone(), "follower" => follower.to_string())
                .set(lag as f64);
        }
    }
}
