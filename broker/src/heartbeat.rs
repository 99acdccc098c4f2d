//! Broker heartbeats: every broker tells the controller leader, every half second, that it
//! is alive and what it leads (term, in-sync replicas, offsets, settled voters); the
//! controller leader records that in its live view and acts on it — registering brokers and
//! new incarnations, completing reassignments, swapping a replaced broker's controller
//! replica, creating `__consumer_offsets` once enough brokers are up.

use std::sync::Arc;
use std::time::Duration;

use rafka_raft::App;
use rafka_raft::Group;
use rafka_raft::StateMachine;

use crate::auth::scram;
use crate::auth::scram::Credential;
use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::plan;
use crate::internal;
use crate::reassign;
use crate::supervisor::TaskKey;

/// Entries a follower may trail the leader by and still count as in sync.
const IN_SYNC_MAX_LAG: u64 = 1000;
/// How often a broker heartbeats.
const INTERVAL: Duration = Duration::from_millis(500);
/// How often a broker looks for a change of the leaderships it holds between heartbeats.
const LEADERSHIP_POLL: Duration = Duration::from_millis(50);

/// Sends a heartbeat to the controller leader every [`INTERVAL`], until shutdown.
pub async fn run(b: Arc<Broker>) {
    loop {
        let req = internal::BrokerHeartbeatRequest {
            broker_id: b.id(),
            address: b.address().to_string(),
            rack: b.config().rack.clone(),
            leading: leading(&b),
            incarnation: b.incarnation(),
            controller_replica: b.controller().replica_id(),
            batch_format: b.batch_format_supported(),
            listeners: b.listeners().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            catching_up: catching_up(&b),
        };
        if b.controller().is_leader() {
            handle(&b, req);
        } else {
            // Without a known leader (a replica that is not a member yet learns of none),
            // every broker it knows of is told — the founding ones, those it joins through,
            // the registered ones; those not leading ignore it.
            let targets: Vec<String> = match b.controller().leader() {
                Some((_, addr)) => vec![addr],
                None => {
                    let mut all: std::collections::BTreeSet<String> = b
                        .config()
                        .initial_cluster()
                        .map(|c| {
                            c.into_iter().filter(|(id, _)| *id != b.id()).map(|(_, a)| a).collect()
                        })
                        .unwrap_or_default();
                    all.extend(b.config().join_addrs().unwrap_or_default());
                    let state = b.state();
                    all.extend(
                        state
                            .brokers
                            .values()
                            .filter(|r| r.id != b.id())
                            .map(|r| r.address.clone()),
                    );
                    all.remove(b.address());
                    all.into_iter().collect()
                }
            };
            for addr in targets {
                let Ok(ch) = b.channel(&addr) else { continue };
                let mut client = internal::internal_client::InternalClient::new(ch);
                let sent = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.broker_heartbeat(req.clone()),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::debug!("heartbeat to the controller at {addr} failed: {sent:?}");
                }
            }
        }
        next_beat(&b).await;
    }
}

/// Waits out [`INTERVAL`], or less when a leadership here changes: the controller then
/// learns of a new leader (and Metadata shows it) within [`LEADERSHIP_POLL`], not a whole
/// interval later — what clients following metadata wait for after a hand-over.
async fn next_beat(b: &Broker) {
    let led = |b: &Broker| -> Vec<u64> {
        let replicas = b.replicas();
        let mut ids: Vec<u64> = replicas
            .partitions()
            .iter()
            .map(|p| &p.group)
            .filter(|g| g.is_leader_ready())
            .map(|g| g.id())
            .collect();
        ids.extend(
            replicas
                .coordinators()
                .iter()
                .filter(|c| c.group.is_leader_ready())
                .map(|c| c.group.id()),
        );
        ids
    };
    let before = led(b);
    let deadline = tokio::time::Instant::now() + INTERVAL;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(LEADERSHIP_POLL.min(deadline - tokio::time::Instant::now())).await;
        if led(b) != before {
            return;
        }
    }
}

/// Groups assigned here whose replica is not caught up yet (see the request's field).
fn catching_up(b: &Broker) -> Vec<u64> {
    let replicas = b.replicas();
    let state = b.state();
    let mut out = Vec::new();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        let Some(r) = p.assigned(b.id()) else { continue };
        if !b.is_current(&r) {
            continue;
        }
        let behind = match (replicas.partition(p.group), replicas.coordinator(p.group)) {
            (Some(part), _) => part.group.is_catching_up(),
            (None, Some(c)) => c.group.is_catching_up(),
            (None, None) => true,
        };
        if behind {
            out.push(p.group);
        }
    }
    out
}

/// What this broker leads, for the controller.
fn leading(b: &Broker) -> Vec<internal::PartitionReport> {
    let replicas = b.replicas();
    let mut out: Vec<_> = replicas
        .partitions()
        .iter()
        .filter_map(|p| report(b, &p.group, || (p.applied().high_watermark, p.log_start_offset())))
        .collect();
    // Offsets partitions hold no records: they report leadership only.
    out.extend(replicas.coordinators().iter().filter_map(|c| report(b, &c.group, || (0, 0))));
    out
}

/// The leader's report of one group; `None` on a follower, and on a new leader until it has
/// applied an entry of its term (its high watermark may trail the previous leader's until
/// then, and metadata must not show a watermark going back). `offsets` gives the high
/// watermark and log start offset, read once the leader is known ready.
fn report<A: App, S: StateMachine<A>>(
    b: &Broker,
    group: &Group<A, S>,
    offsets: impl FnOnce() -> (i64, i64),
) -> Option<internal::PartitionReport> {
    if !group.is_leader_ready() {
        return None;
    }
    let (high_watermark, log_start_offset) = offsets();
    let status = group.status();
    Some(internal::PartitionReport {
        group: group.id(),
        term: status.term,
        in_sync: status.in_sync_brokers(b.id(), IN_SYNC_MAX_LAG),
        high_watermark,
        log_start_offset,
        voters: reassign::reported_voters(group),
    })
}

/// The controller leader's side of a heartbeat.
pub fn handle(
    b: &Arc<Broker>,
    req: internal::BrokerHeartbeatRequest,
) -> internal::BrokerHeartbeatResponse {
    if !b.controller().is_leader() {
        return internal::BrokerHeartbeatResponse {
            accepted: false,
            message: format!("broker {} is not the controller leader", b.id()),
        };
    }
    let state = b.state();
    let heard = plan::heartbeat(&state, &req);
    b.live().report(req.broker_id, heard.leading, req.catching_up.iter().copied().collect());
    for (group, voters, name) in heard.complete {
        propose(
            b,
            TaskKey::CompleteReassignment(group),
            Command::CompleteReassignment { group, voters },
            format!("{name}: reassignment complete"),
        );
    }
    if let Some(finalize @ Command::FinalizeBatchFormat { format }) = heard.finalize {
        let done = format!("partition batches are written in format {format} now");
        propose(b, TaskKey::FinalizeBatchFormat, finalize, done);
    }
    if let Some(register) = heard.register {
        let done = format!("broker {} registered at {}", req.broker_id, req.address);
        propose(b, TaskKey::RegisterBroker(req.broker_id), register, done);
    }
    let founding = b.founding_brokers();
    let live = b.live_brokers(&state);
    if let Some(create) = plan::offsets_topic(&state, &live, founding, &b.config().groups) {
        let done = format!("created {}", rafka_proto::groups::OFFSETS_TOPIC);
        propose(b, TaskKey::CreateOffsetsTopic, create, done);
    }
    crate::scale::step(b, &state, &live);
    if let Some((user, password)) = b.bootstrap_user()
        && !state.users.contains_key(user)
    {
        let credentials = crate::auth::Hash::ALL
            .into_iter()
            .map(|h| (h, Credential::from_password(h, password, scram::MIN_ITERATIONS)))
            .collect();
        let cmd =
            Command::SetScramCredentials { user: user.to_string(), credentials, if_absent: true };
        propose(b, TaskKey::BootstrapUser, cmd, format!("created the bootstrap user {user}"));
    }
    internal::BrokerHeartbeatResponse { accepted: true, message: String::new() }
}

/// Proposes `cmd` in the background, at most one per `key` at a time; logs `done` at info
/// once it is committed.
fn propose(b: &Arc<Broker>, key: TaskKey, cmd: Command, done: String) {
    let this = b.clone();
    b.tasks().spawn_keyed(key, "controller proposal", async move {
        match this.controller().propose(cmd).await {
            Ok(_) => tracing::info!("{done}"),
            Err(e) => tracing::debug!(?key, "proposal failed, retried on a later heartbeat: {e}"),
        }
    });
}
