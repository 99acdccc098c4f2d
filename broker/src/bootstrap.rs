//! How a broker comes up: its data directory's incarnation, and its controller replica —
//! reopened from disk, founded with the other founding brokers, or created under a new id
//! when the broker was a member but lost its disk.
//!
//! Incarnations: a broker's data directory holds `incarnation`, a random id drawn when the
//! directory is created. The broker heartbeats it; the controller stamps every replica with
//! the incarnation of its broker at assignment. A broker hosts only replicas of its own
//! incarnation, so a broker that lost its disk never rejoins a group under a replica id whose
//! votes and acknowledged entries it forgot (that could elect a leader without committed
//! entries). On a new incarnation the controller swaps each lost replica for a fresh one on
//! the same broker, which joins as a learner like any moved replica.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rafka_raft::ReplicaNode;

use crate::broker::Broker;
use crate::controller::CONTROLLER_GROUP;
use crate::error::Error;
use crate::error::Result;
use crate::internal;
use crate::replicas::initialize_when_quiet;

/// Controller replica ids of brokers that replaced their disk have this bit set (founding
/// replicas use the broker id, partition replicas count up from 2^32).
const REPLACEMENT_CONTROLLER_REPLICA: u64 = 1 << 63;

/// Reads this data directory's incarnation, drawing and durably storing one if it is new.
pub fn load_incarnation(data_dir: &Path) -> Result<u64> {
    let path = data_dir.join("incarnation");
    let storage = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    match rafka_raft::durable::read_state_file(&path).map_err(storage)? {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::Storage(format!("{} is corrupt: it must hold one integer", path.display()))
            }),
        None => {
            let id = rand::random::<u64>().max(1);
            rafka_raft::durable::write_state_file(&path, format!("{id}\n").as_bytes())
                .map_err(storage)?;
            tracing::info!(incarnation = id, "new data directory");
            Ok(id)
        }
    }
}

/// Opens a broker: its data directory, Raft node and, when the disk or the cluster says so
/// without asking anyone, its controller replica. Otherwise [`join_controller`] decides once
/// the gRPC server runs (peers probe each other).
pub async fn open(
    config: crate::config::BrokerConfig,
    tasks: crate::supervisor::Supervisor,
    waiters: crate::supervisor::Supervisor,
) -> Result<Arc<Broker>> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::Storage(format!("{}: {e}", config.data_dir.display())))?;
    // With `lazy-io`, first undo what the last crash left without a directory fsync.
    rafka_raft::durable::init(&config.data_dir)
        .map_err(|e| Error::Storage(format!("{}: {e}", config.data_dir.display())))?;
    let incarnation = load_incarnation(&config.data_dir)?;
    let founders = config.initial_cluster().map_err(|e| Error::InvalidConfig(e.to_string()))?.len();
    let joining = !config.join_addrs().map_err(|e| Error::InvalidConfig(e.to_string()))?.is_empty();
    let b = Arc::new(Broker::open(config, incarnation, tasks, waiters).await?);
    let runtime = b.node().log_runtime();
    let stored =
        runtime.stored_replica(CONTROLLER_GROUP).map_err(|e| Error::from_raft("controller", e))?;
    let has_log = runtime
        .stored_groups()
        .map_err(|e| Error::from_raft("controller", e))?
        .contains(&CONTROLLER_GROUP);
    match (stored, has_log) {
        (Some(replica), _) => create_controller(&b, replica, false).await?,
        // A data directory from before replica ids were stored.
        (None, true) => create_controller(&b, b.id(), false).await?,
        (None, false) if founders == 1 && !joining => create_controller(&b, b.id(), true).await?,
        (None, false) => {}
    }
    Ok(b)
}

/// Creates this broker's controller replica as `replica`; a founding replica (`found`)
/// initialises the group with the founding brokers: the lowest id at once, the others if it
/// still has no log after two election timeouts.
async fn create_controller(b: &Broker, replica: u64, found: bool) -> Result<()> {
    let group = b.controller().create_replica(b.node(), replica).await?;
    if found {
        let cluster =
            b.config().initial_cluster().map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let members: BTreeMap<u64, ReplicaNode> = cluster
            .iter()
            .map(|(id, addr)| (*id, ReplicaNode { broker_id: *id, addr: addr.clone() }))
            .collect();
        let first = cluster.keys().next() == Some(&b.id());
        let delay = if first {
            Duration::ZERO
        } else {
            Duration::from_millis(b.config().raft.election_timeout_max_ms * 2)
        };
        initialize_when_quiet(b.tasks(), group, delay, members, "controller");
    }
    Ok(())
}

/// What this broker's controller replica tells a founding broker probing on an empty disk.
pub fn answer_probe(
    b: &Broker,
    req: internal::ProbeMembershipRequest,
) -> internal::ProbeMembershipResponse {
    let registered = b.state().brokers.contains_key(&req.broker_id);
    let current = match b.controller().group() {
        // No controller log here either: nothing to know.
        None => true,
        Some(c) => {
            let s = c.status();
            match s.last_log_index {
                None => true,
                Some(_) => {
                    s.leader.is_some()
                        && s.last_applied.map(|l| l.index) >= s.committed.map(|l| l.index)
                }
            }
        }
    };
    internal::ProbeMembershipResponse { registered, current }
}

/// A founding broker on an empty data directory decides its controller replica: if any
/// peer's controller knows it, its disk was replaced and it joins under a fresh replica id
/// (the controller leader adds it as a learner and swaps it for the lost voter); if a
/// majority of the founding brokers (itself included) answer, currently, that it never
/// registered, it founds the cluster under its broker id. Otherwise it asks again.
pub async fn join_controller(b: Arc<Broker>) {
    if b.controller().group().is_some() {
        return;
    }
    match b.config().join_addrs() {
        Ok(addrs) if !addrs.is_empty() => return join_cluster(b, addrs).await,
        Ok(_) => {}
        Err(e) => {
            tracing::error!("cannot join the cluster: {e}");
            return;
        }
    }
    let peers: Vec<String> = match b.config().initial_cluster() {
        Ok(c) => c.into_iter().filter(|(id, _)| *id != b.id()).map(|(_, a)| a).collect(),
        Err(e) => {
            tracing::error!("cannot join the controller: {e}");
            return;
        }
    };
    let founders = peers.len() + 1;
    let majority = founders / 2 + 1;
    loop {
        let answers = futures::future::join_all(peers.iter().map(|addr| probe(&b, addr))).await;
        let answers: Vec<_> = answers.into_iter().flatten().collect();
        let replacement = answers.iter().any(|a| a.registered);
        let never = answers.iter().filter(|a| a.current && !a.registered).count();
        let decided = if replacement {
            let replica = REPLACEMENT_CONTROLLER_REPLICA | (b.incarnation() >> 1);
            tracing::warn!(
                replica,
                "this broker was a cluster member but its data directory is new: joining the \
                 controller as a new replica"
            );
            create_controller(&b, replica, false).await
        } else if 1 + never >= majority {
            tracing::info!("founding the controller group");
            create_controller(&b, b.id(), true).await
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        if let Err(e) = decided {
            tracing::error!("cannot create the controller replica: {e}");
        }
        return;
    }
}

/// A broker that is not a founding member, on its first start (`join`): asks the brokers it
/// was given for the cluster (any of them answers, forwarding to the controller leader),
/// learns its brokers as peers, and creates its controller replica under a fresh id. Its
/// heartbeats then register it, and the controller leader adds that replica as a learner.
async fn join_cluster(b: Arc<Broker>, addrs: Vec<String>) {
    use rafka_proto::v1;
    loop {
        for addr in &addrs {
            let Ok(ch) = b.channel(addr) else { continue };
            let mut admin = v1::admin_client::AdminClient::new(ch);
            let asked = admin.describe_cluster(v1::DescribeClusterRequest {});
            let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), asked).await else {
                continue;
            };
            let resp = resp.into_inner();
            if resp.error.as_ref().is_some_and(|e| e.code != 0) || resp.cluster_id.is_empty() {
                continue;
            }
            for peer in resp.brokers.iter().filter(|p| p.broker_id != b.id()) {
                if let Err(e) = b.node().add_peer(peer.broker_id, &peer.address) {
                    tracing::warn!(peer = peer.broker_id, "peer {}: {e}", peer.address);
                }
            }
            let replica = REPLACEMENT_CONTROLLER_REPLICA | (b.incarnation() >> 1);
            tracing::info!(
                cluster = %resp.cluster_id,
                through = %addr,
                replica,
                "joining the cluster as a new broker"
            );
            if let Err(e) = create_controller(&b, replica, false).await {
                tracing::error!("cannot create the controller replica: {e}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn probe(b: &Broker, addr: &str) -> Option<internal::ProbeMembershipResponse> {
    let ch = b.channel(addr).ok()?;
    let mut client = internal::internal_client::InternalClient::new(ch);
    let req = internal::ProbeMembershipRequest { broker_id: b.id() };
    let answer = tokio::time::timeout(Duration::from_secs(1), client.probe_membership(req)).await;
    answer.ok()?.ok().map(|r| r.into_inner())
}
