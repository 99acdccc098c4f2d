//! Multi-raft replication over real gRPC: many groups on 3 nodes, leader failure, partitions,
//! a new replica joining after the log was purged, leadership transfer (and the old leader's
//! reads after it) and bad requests.
//!
//! Sizes: `RAFKA_TEST_GROUPS` (default 200) groups and `RAFKA_TEST_ENTRIES` (default 100)
//! entries per group in `many_groups_replicate_identically`; the long variant is
//! `RAFKA_TEST_ENTRIES=10000`.

mod cluster;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::RaftLogReader;
use rafka_raft::LogConfig;
use rafka_raft::RaftTiming;
use rafka_raft::wire::pb;
use rafka_raft::wire::pb::raft_transport_client::RaftTransportClient;

use cluster::Cluster;
use cluster::payload;
use cluster::replica_id;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes `n` entries to `g` through its current leader, `inflight` at a time; returns the
/// last log id.
async fn write_many(c: &Cluster, g: u64, from: u64, n: u64, len: usize) -> rafka_raft::LogId {
    let b = c.must_leader(g, SECS(20)).await;
    let group = c.node(b).group(g).unwrap();
    c.node(b)
        .run(move |_, _| async move {
            let mut inflight = FuturesUnordered::new();
            let mut last = None;
            let mut next = from;
            while next < from + n || !inflight.is_empty() {
                while next < from + n && inflight.len() < 16 {
                    let group = group.clone();
                    let i = next;
                    inflight.push(async move { group.write(payload(g, i, len)).await });
                    next += 1;
                }
                let (log_id, _) = inflight.next().await.unwrap().expect("write");
                last = last.max(Some(log_id));
            }
            last.unwrap()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_replicate_identically() {
    let groups = env_u64("RAFKA_TEST_GROUPS", 200);
    let entries = env_u64("RAFKA_TEST_ENTRIES", 100);
    let c = Cluster::start(3, LogConfig::default()).await;
    let started = Instant::now();
    for g in 1..=groups {
        // Founding replicas rotate over the brokers, so leadership is spread.
        let first = 1 + g % 3;
        let brokers = [first, 1 + first % 3, 1 + (first + 1) % 3];
        c.must_create_group(g, &brokers).await;
    }
    for g in 1..=groups {
        c.must_leader(g, SECS(30)).await;
    }
    eprintln!("{groups} groups created and led in {:?}", started.elapsed());

    let started = Instant::now();
    let writes: FuturesUnordered<_> = (1..=groups)
        .map(|g| {
            let c = &c;
            async move { (g, write_many(c, g, 0, entries, 100).await) }
        })
        .collect();
    let lasts: BTreeMap<u64, rafka_raft::LogId> = writes.collect().await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} entries written in {secs:.1}s ({:.0} entries/s)",
        groups * entries,
        (groups * entries) as f64 / secs
    );

    // Heartbeats of many groups bound for one peer travel together.
    let (mut heartbeats, mut rpcs) = (0, 0);
    for b in 1..=3 {
        let s = c.node(b).node.as_ref().unwrap().transport_stats();
        heartbeats += s.heartbeats;
        rpcs += s.heartbeat_rpcs;
    }
    eprintln!("{heartbeats} group heartbeats in {rpcs} RPCs");
    assert!(heartbeats > rpcs, "heartbeats were not coalesced: {heartbeats} in {rpcs} RPCs");

    for (&g, last) in &lasts {
        c.must_apply(g, last.index, SECS(60)).await;
        let applied = c.applied(g);
        assert_eq!(applied.len(), 3, "group {g}: three replicas");
        let leader_view = &applied[&c.must_leader(g, SECS(10)).await];
        assert_eq!(leader_view.entries, entries, "group {g}: every write applied once");
        for (b, a) in &applied {
            assert_eq!(a, leader_view, "group {g}: broker {b} applied a different state");
        }
        let logs = c.log_records(g, 0).await;
        let first = logs.values().next().unwrap();
        assert!(first.len() as u64 > entries, "group {g}: log holds the writes");
        for (b, records) in &logs {
            assert_eq!(records, first, "group {g}: broker {b} holds different log bytes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_node_fails_over_and_catches_up() {
    let groups = 30;
    let mut c = Cluster::start(3, LogConfig::default()).await;
    let mut replicas = BTreeMap::new();
    for g in 1..=groups {
        // Broker 1 founds, hence leads, every group.
        replicas.insert(g, c.must_create_group(g, &[1, 2, 3]).await);
    }
    for g in 1..=groups {
        assert_eq!(c.must_leader(g, SECS(20)).await, 1);
    }
    // Acknowledged writes, by group: (log id, payload number).
    let mut acked: BTreeMap<u64, Vec<(rafka_raft::LogId, u64)>> = BTreeMap::new();
    for g in 1..=groups {
        for i in 0..10 {
            let log_id = c.must_write(g, payload(g, i, 64), SECS(10)).await;
            acked.entry(g).or_default().push((log_id, i));
        }
    }

    let killed = Instant::now();
    c.kill(1);
    let mut failover = Vec::new();
    for g in 1..=groups {
        let b = c.must_leader(g, SECS(15)).await;
        assert_ne!(b, 1);
        failover.push(killed.elapsed());
    }
    eprintln!("all {groups} groups led again {:?} after the kill", killed.elapsed());

    // No acknowledged entry is lost or changed on the survivors.
    for g in 1..=groups {
        for b in [2, 3] {
            let group = c.node(b).group(g).unwrap();
            let entries = c
                .node(b)
                .run(move |_, _| async move { group.log().read(0, u64::MAX).await.unwrap() })
                .await;
            for (log_id, i) in &acked[&g] {
                let e = entries
                    .iter()
                    .find(|e| e.log_id == *log_id)
                    .unwrap_or_else(|| panic!("group {g}: broker {b} lost acked entry {log_id}"));
                match &e.payload {
                    rafka_raft::EntryPayload::Normal(d) => {
                        assert_eq!(d, &payload(g, *i, 64), "group {g}: entry {log_id} changed")
                    }
                    other => panic!("group {g}: entry {log_id} became {other:?}"),
                }
            }
        }
    }
    // Writes resume.
    let mut last = BTreeMap::new();
    for g in 1..=groups {
        last.insert(g, c.must_write(g, payload(g, 100, 64), SECS(10)).await);
    }

    // The killed node comes back and catches up.
    let back: Vec<_> = (1..=groups).map(|g| (g, replicas[&g][&1])).collect();
    c.restart(1, back).await;
    for g in 1..=groups {
        c.must_apply(g, last[&g].index, SECS(30)).await;
        let applied = c.applied(g);
        assert_eq!(applied.len(), 3);
        let first = applied.values().next().unwrap();
        assert_eq!(first.entries, 11, "group {g}");
        assert!(applied.values().all(|a| a == first), "group {g}: replicas differ: {applied:?}");
        let logs = c.log_records(g, 0).await;
        let first = logs.values().next().unwrap();
        assert!(logs.values().all(|l| l == first), "group {g}: log bytes differ after catch-up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_never_commits_and_replicas_converge_after_heal() {
    let groups = 8;
    let c = Cluster::start(3, LogConfig::default()).await;
    for g in 1..=groups {
        c.must_create_group(g, &[1, 2, 3]).await;
    }
    for g in 1..=groups {
        assert_eq!(c.must_leader(g, SECS(20)).await, 1);
        c.must_write(g, payload(g, 0, 64), SECS(10)).await;
    }
    let applied_before: BTreeMap<u64, _> =
        (1..=groups).map(|g| (g, c.applied(g)[&1].last_applied)).collect();

    // Cut node 1 (the leader of every group) from the others, both ways.
    c.node(1).node.as_ref().unwrap().set_partitioned([2, 3]);
    c.node(2).node.as_ref().unwrap().set_partitioned([1]);
    c.node(3).node.as_ref().unwrap().set_partitioned([1]);

    // The old leader accepts proposals but can never commit them.
    let mut minority = Vec::new();
    for g in 1..=groups {
        let group = c.node(1).group(g).unwrap();
        minority.push(
            c.node(1)
                .rt
                .as_ref()
                .unwrap()
                .spawn(async move { group.write(payload(g, 999, 64)).await }),
        );
    }
    // The majority elects new leaders and commits.
    let mut last = BTreeMap::new();
    for g in 1..=groups {
        last.insert(g, c.must_write_among(g, &[2, 3], payload(g, 1, 64), SECS(20)).await);
    }
    for g in 1..=groups {
        assert_eq!(
            c.applied(g)[&1].last_applied,
            applied_before[&g],
            "group {g}: the isolated minority applied something"
        );
    }

    // Heal: everyone converges on the majority's log.
    for b in 1..=3 {
        c.node(b).node.as_ref().unwrap().set_partitioned([]);
    }
    for g in 1..=groups {
        c.must_leader(g, SECS(20)).await;
        let tail = c.must_write(g, payload(g, 2, 64), SECS(20)).await;
        assert!(tail > last[&g]);
        c.must_apply(g, tail.index, SECS(20)).await;
        let applied = c.applied(g);
        let first = applied.values().next().unwrap();
        assert_eq!(first.entries, 3, "group {g}: only committed writes applied");
        assert!(applied.values().all(|a| a == first), "group {g}: replicas differ: {applied:?}");
        let logs = c.log_records(g, 0).await;
        let first = logs.values().next().unwrap();
        assert!(logs.values().all(|l| l == first), "group {g}: log bytes differ after heal");
    }
    for w in minority {
        let res = within("minority write resolves", SECS(20), w).await.unwrap();
        assert!(res.is_err(), "a write proposed on the isolated minority was acknowledged");
    }
}

use cluster::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_replica_installs_retention_snapshot_then_replicates() {
    let log_config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    let c = Cluster::start(4, log_config).await;
    let g = 7;
    let replicas = c.must_create_group(g, &[1, 2, 3]).await;
    let leader_b = c.must_leader(g, SECS(20)).await;
    write_many(&c, g, 0, 300, 200).await;
    let leader = c.node(leader_b).group(g).unwrap();
    // Retention point: here. Entries written after it stay in the log.
    leader.state_machine().lock().unwrap().checkpoint();
    let retention = leader.state_machine().lock().unwrap().state.last_applied.unwrap();
    write_many(&c, g, 300, 50, 200).await;

    let segments_before = leader.log().segment_count();
    let l = leader.clone();
    let snapshot = c
        .node(leader_b)
        .run(move |_, _| async move { l.compact(SECS(10)).await.unwrap() })
        .await
        .expect("a snapshot");
    assert_eq!(snapshot, retention, "snapshot is at the retention point, not the head");
    assert!(leader.log().segment_count() < segments_before, "purge deleted segments");
    assert_eq!(
        leader.raft_metrics().purged.map(|p| p.index),
        Some(retention.index),
        "purged exactly to the retention point"
    );

    // Broker 4 joins with an empty disk as a learner, then becomes a voter; broker 3 leaves.
    let new_replica = replica_id(g, 4, 0);
    c.create_group(4, g, new_replica).await;
    let node4 = c.node(4).replica_node();
    let l = leader.clone();
    let leaving = [1, 2, 3].into_iter().find(|&b| b != leader_b).unwrap();
    let old = replicas[&leaving];
    c.node(leader_b)
        .run(move |_, _| async move {
            l.add_learner(new_replica, node4).await.unwrap();
            l.promote([new_replica]).await.unwrap();
            l.remove_voters([old]).await.unwrap();
            // Replica ids are never reused.
            let err = l.add_learner(old, ReplicaNodeAlias::default()).await.unwrap_err();
            assert_eq!(err.code(), "MEMBERSHIP", "{err}");
        })
        .await;
    // The removed replica is deleted from its broker.
    c.node(leaving)
        .run(move |node, groups| async move {
            groups.lock().unwrap().remove(&g);
            node.delete_group(g, SECS(10)).await.unwrap();
            assert!(node.group_ids().is_empty());
        })
        .await;
    let last = write_many(&c, g, 350, 10, 200).await;
    c.must_apply(g, last.index, SECS(20)).await;

    let applied = c.applied(g);
    assert_eq!(applied[&4], applied[&leader_b], "the new replica's state equals the leader's");
    assert_eq!(applied[&4].entries, 360);
    let new_group = c.node(4).group(g).unwrap();
    let first_index = c
        .node(4)
        .run(move |_, _| async move {
            new_group.log().clone().try_get_log_entries(0..).await.unwrap()[0].log_id.index
        })
        .await;
    assert_eq!(
        first_index,
        retention.index + 1,
        "the new replica got the snapshot, not old entries"
    );
    let logs = c.log_records(g, retention.index + 1).await;
    assert_eq!(logs[&4], logs[&leader_b], "log bytes of the retained range equal the leader's");
    assert!(logs[&4].len() >= 60);
}

type ReplicaNodeAlias = rafka_raft::ReplicaNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfers_to_the_named_voter() {
    let c = Cluster::start(3, LogConfig::default()).await;
    let replicas = c.must_create_group(3, &[1, 2, 3]).await;
    assert_eq!(c.must_leader(3, SECS(20)).await, 1);
    c.must_write(3, payload(3, 0, 10), SECS(10)).await;
    let to = replicas[&3];
    let leader = c.node(1).group(3).unwrap();
    c.node(1)
        .run(move |_, _| async move { leader.transfer_leadership(to, SECS(10)).await.unwrap() })
        .await;
    assert_eq!(c.must_leader(3, SECS(10)).await, 3);
    // A follower refuses to transfer.
    let follower = c.node(2).group(3).unwrap();
    let err = c
        .node(2)
        .run(move |_, _| async move { follower.transfer_leadership(to, SECS(1)).await })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_LEADER");
    c.must_write(3, payload(3, 1, 10), SECS(10)).await;
}

/// Found by the fault suite as a stale read during a partition move: a leader that hands its
/// term to another replica must stop serving lease reads at once. The target campaigns
/// immediately and the voters grant it without waiting out the old leader's lease, so the
/// old leader's recent quorum acknowledgement no longer proves that no newer leader commits.
/// Here the new leader cannot reach the old one (when moved off the group it never would;
/// otherwise its first append deposes it): the old leader still believes it leads, with a
/// fresh lease, while the new leader commits past what it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_that_handed_off_its_term_refuses_reads() {
    // The read lease is half the failure detector's timeout: make it outlast the test, so
    // only the hand-off can void it.
    let timing = RaftTiming { detector_timeout_ms: 120_000, ..RaftTiming::loopback() };
    let c = Cluster::start_with(3, LogConfig::default(), timing).await;
    // On a loaded machine the old leader sometimes hears of the new term before the check
    // (then it is a follower and refuses reads anyway, but the case is not shown): the
    // setup is tried again on a new group, up to five times.
    for attempt in 0..5u64 {
        let gid = 4 + attempt;
        if stale_read_refused_after_hand_off(&c, gid).await {
            return;
        }
        eprintln!("attempt {attempt}: node 1 heard of the new term before the check; again");
    }
    panic!("in five attempts node 1 always heard of the new term before the check");
}

/// One run of the scenario above on group `gid`; `false` when its precondition did not hold
/// (node 1 heard of the new term), the network healed again.
async fn stale_read_refused_after_hand_off(c: &Cluster, gid: u64) -> bool {
    let replicas = c.must_create_group(gid, &[1, 2, 3]).await;
    assert_eq!(c.must_leader(gid, SECS(20)).await, 1);
    c.must_write(gid, payload(gid, 0, 10), SECS(10)).await;
    let old = c.node(1).group(gid).unwrap();
    let lease = |g: cluster::TestGroup| async move { g.confirm_read_lease().await };
    let g = old.clone();
    c.node(1).run(move |_, _| lease(g)).await.expect("the leader's lease before the hand-off");

    // Node 1 still reaches 2 and 3; they no longer reach it.
    c.node(2).node.as_ref().unwrap().set_partitioned([1]);
    c.node(3).node.as_ref().unwrap().set_partitioned([1]);
    let (g, to) = (old.clone(), replicas[&3]);
    // Node 1 never hears that the transfer succeeded: its wait would time out and it would
    // send the transfer again, whose answers could tell it of the new term. The wait is made
    // to outlast the test (left running), so that node 1 keeps believing it leads however
    // slow the machine is.
    let _transfer = c
        .node(1)
        .rt
        .as_ref()
        .expect("node 1 is up")
        .spawn(async move { g.transfer_leadership(to, SECS(120)).await });
    let newer = c.must_write_among(gid, &[3], payload(gid, 1, 10), SECS(20)).await;

    let heal = || {
        c.node(2).node.as_ref().unwrap().set_partitioned([]);
        c.node(3).node.as_ref().unwrap().set_partitioned([]);
    };
    if old.raft_metrics().state != openraft::ServerState::Leader {
        heal();
        return false;
    }
    let applied = old.state_machine().lock().unwrap().state.last_applied;
    assert!(applied < Some(newer), "node 1 applied {applied:?}, the new leader wrote {newer:?}");
    let g = old.clone();
    match c.node(1).run(move |_, _| lease(g)).await {
        Ok(()) => panic!(
            "the old leader confirmed a read at {applied:?} after handing its term over, while \
             the new leader committed {newer:?}: a stale read"
        ),
        // It names the replica it last handed over to: it sends the transfer again when it
        // hears of no successor, so that may be the other voter.
        Err(rafka_raft::Error::NotLeader { leader, .. }) => {
            let named = leader.map(|(id, _)| id);
            assert!(
                named.is_some_and(|id| id != replicas[&1]),
                "NOT_LEADER names another replica: {named:?}"
            );
        }
        Err(e) => panic!("expected NOT_LEADER naming another replica, got {e}"),
    }
    // Once it hears from the new leader it follows it.
    heal();
    let last = c.must_write(gid, payload(gid, 2, 10), SECS(20)).await;
    c.must_apply(gid, last.index, SECS(20)).await;
    assert_eq!(c.must_leader(gid, SECS(20)).await, 3);
    true
}

/// A transfer whose request never reaches its target must not strand the group: openraft
/// keeps a transferring leader from writing for the rest of its term, and its followers,
/// seeing its broker alive, elect no one else. Once its wait times out the leader sends the
/// transfer again, to the same target and then to the other voter. (Before, the group took
/// no write for over a minute here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_does_not_strand_the_group() {
    let c = Cluster::start(3, LogConfig::default()).await;
    let replicas = c.must_create_group(5, &[1, 2, 3]).await;
    assert_eq!(c.must_leader(5, SECS(20)).await, 1);
    c.must_write(5, payload(5, 0, 10), SECS(10)).await;
    let old = c.node(1).group(5).unwrap();
    let term = old.raft_metrics().current_term;
    // The transfer request to node 3 is lost.
    c.node(1).node.as_ref().unwrap().set_partitioned([3]);
    let (g, to) = (old.clone(), replicas[&3]);
    let res =
        c.node(1).run(move |_, _| async move { g.transfer_leadership(to, SECS(1)).await }).await;
    assert_eq!(res.map_err(|e| e.code()), Err("TIMEOUT"), "the transfer cannot have succeeded");
    // Well within any lease or election timeout: only a leader of a new term can write.
    let last = c.must_write(5, payload(5, 1, 10), SECS(10)).await;
    assert!(last.term > term, "written in a new term: {last:?}");
    c.must_apply(5, last.index, SECS(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transport_requests_get_clear_errors() {
    let c = Cluster::start(3, LogConfig::default()).await;
    let replicas = c.must_create_group(1, &[1, 2, 3]).await;
    c.must_leader(1, SECS(20)).await;
    let last = c.must_write(1, payload(1, 0, 10), SECS(10)).await;
    c.must_apply(1, last.index, SECS(10)).await;
    let before = c.applied(1);

    let addr = format!("http://{}", c.node(2).addr);
    let mut client = RaftTransportClient::connect(addr).await.unwrap();
    let vote = |target| pb::VoteRequest {
        address: Some(pb::Address { group: 1, target, from: 999, from_broker: 9 }),
        vote: Some(pb::Vote { term: 1, voted_for: 999, committed: false }),
        last_log_id: None,
        leadership_transfer: false,
        pre_vote: true,
    };
    // Unknown group.
    let mut req = vote(replicas[&2]);
    req.address.as_mut().unwrap().group = 424242;
    let err = client.vote(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("group 424242 is not hosted"), "{}", err.message());
    // Wrong replica (a stale or reused id).
    let err = client.vote(vote(replicas[&2] + 1)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{}", err.message());
    // Missing fields.
    let err = client.vote(pb::VoteRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut req = vote(replicas[&2]);
    req.vote = None;
    let err = client.vote(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // An entry of unknown kind, and an undecodable payload, in a heartbeat batch.
    let bad = |kind, payload: &'static [u8]| pb::AppendRequest {
        address: Some(pb::Address { group: 1, target: replicas[&2], from: 999, from_broker: 9 }),
        vote: Some(pb::Vote { term: 1, voted_for: 999, committed: true }),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![pb::Entry { term: 1, index: 1, kind, payload: payload.into() }],
    };
    let resp = client
        .heartbeat(pb::HeartbeatBatch { heartbeats: vec![bad(9, b""), bad(1, b"xy")] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.responses.len(), 2);
    for r in resp.responses {
        match r.result {
            Some(pb::append_response::Result::Error(msg)) => assert!(msg.contains("bad"), "{msg}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // Structurally wrong appends: a gap after prev_log_id, a term above the sender's vote.
    let mut gap = bad(1, b"");
    gap.prev_log_id = Some(pb::LogId { term: 1, index: 1 });
    gap.entries = vec![pb::Entry { term: 1, index: 5, kind: 0, payload: Default::default() }];
    let mut future = bad(1, b"");
    future.prev_log_id = Some(pb::LogId { term: 1, index: 1 });
    future.entries = vec![pb::Entry { term: 7, index: 2, kind: 0, payload: Default::default() }];
    let resp = client
        .heartbeat(pb::HeartbeatBatch { heartbeats: vec![gap, future] })
        .await
        .unwrap()
        .into_inner();
    for r in resp.responses {
        match r.result {
            Some(pb::append_response::Result::Error(msg)) => assert!(msg.contains("bad"), "{msg}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // Nothing changed and the group still works.
    assert_eq!(c.applied(1), before);
    let next = c.must_write(1, payload(1, 1, 10), SECS(10)).await;
    assert!(next > last);
    c.must_apply(1, next.index, SECS(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_group_sends_nothing_and_still_accepts_writes() {
    let c = Cluster::start(3, LogConfig::default()).await;
    c.must_create_group(5, &[1, 2, 3]).await;
    let b = c.must_leader(5, SECS(20)).await;
    let first = c.must_write(5, payload(5, 0, 10), SECS(10)).await;
    c.must_apply(5, first.index, SECS(10)).await;
    let leader = c.node(b).group(5).unwrap();
    // After the write, the leader tells its followers the commit index, then goes quiet.
    let stats = |c: &Cluster| -> Vec<rafka_raft::TransportStats> {
        (1..=3).map(|b| c.node(b).node.as_ref().unwrap().transport_stats()).collect()
    };
    let hb = Duration::from_millis(c.timing.heartbeat_interval_ms);
    let deadline = Instant::now() + SECS(10);
    loop {
        let was: Vec<u64> = stats(&c).iter().map(|s| s.heartbeats).collect();
        let until = Instant::now() + 2 * hb;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if stats(&c).iter().map(|s| s.heartbeats).collect::<Vec<_>>() == was {
            break;
        }
        assert!(Instant::now() < deadline, "the group never went quiet");
    }
    // Quiet means quiet: over a while, no node sends a single group heartbeat.
    let term = leader.raft_metrics().current_term;
    let before: Vec<_> =
        (1..=3).map(|b| c.node(b).node.as_ref().unwrap().transport_stats()).collect();
    let quiet_until = Instant::now() + Duration::from_millis(3 * c.timing.heartbeat_interval_ms);
    while Instant::now() < quiet_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for b in 1..=3u64 {
        let now = c.node(b).node.as_ref().unwrap().transport_stats();
        let was = before[(b - 1) as usize];
        assert_eq!(now.heartbeats, was.heartbeats, "broker {b} sent group heartbeats while idle");
        assert_eq!(now.rpcs - now.probes, was.rpcs - was.probes, "broker {b} sent RPCs while idle");
    }
    // The first write after the quiet period goes through (renewing the lease if it lapsed).
    let leader2 = leader.clone();
    let (next, _) = c
        .node(b)
        .run(move |_, _| async move { leader2.write(payload(5, 1, 10)).await })
        .await
        .expect("write to an idle group");
    assert_eq!(next.index, first.index + 1);
    assert_eq!(leader.raft_metrics().current_term, term, "no election happened");
    // So do membership changes (they renew the lease too).
    let l = leader.clone();
    let learner = replica_id(5, 1, 9);
    c.node(b)
        .run(move |_, _| async move {
            let err = l.promote([learner]).await.unwrap_err();
            assert_eq!(err.code(), "MEMBERSHIP", "{err}");
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_does_not_depose_idle_leaders() {
    let groups = 12;
    let mut c = Cluster::start(3, LogConfig::default()).await;
    let mut replicas = BTreeMap::new();
    for g in 1..=groups {
        // Brokers 1 and 2 found (and lead) the groups; broker 3 only follows.
        let founder = 1 + g % 2;
        replicas.insert(g, c.must_create_group(g, &[founder, 3 - founder, 3]).await);
    }
    let mut terms = BTreeMap::new();
    for g in 1..=groups {
        let b = c.must_leader(g, SECS(20)).await;
        let last = c.must_write(g, payload(g, 0, 10), SECS(10)).await;
        c.must_apply(g, last.index, SECS(10)).await;
        terms.insert(g, (b, c.node(b).group(g).unwrap().raft_metrics().current_term));
    }
    c.kill(3);
    let back: Vec<_> = (1..=groups).map(|g| (g, replicas[&g][&3])).collect();
    c.restart(3, back).await;
    // Well past the restarted replicas' election timeout: every group must still be led by
    // its old leader in its old term, and broker 3 must know that leader.
    let until = Instant::now() + Duration::from_millis(2 * c.timing.election_timeout_max_ms);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for g in 1..=groups {
        let (b, term) = terms[&g];
        assert_eq!(c.must_leader(g, SECS(10)).await, b, "group {g}: leadership moved");
        let m = c.node(b).group(g).unwrap().raft_metrics();
        assert_eq!(m.current_term, term, "group {g}: an election happened");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickly_restarted_leader_node_is_replaced_and_rejoins() {
    let groups = 10;
    let mut c = Cluster::start(3, LogConfig::default()).await;
    let mut replicas = BTreeMap::new();
    for g in 1..=groups {
        replicas.insert(g, c.must_create_group(g, &[1, 2, 3]).await);
    }
    for g in 1..=groups {
        assert_eq!(c.must_leader(g, SECS(20)).await, 1);
        c.must_write(g, payload(g, 0, 10), SECS(10)).await;
    }
    // Kill and restart at once: the restarted replicas do not restore their leadership;
    // the groups elect (the incarnation change tells the peers the old leader is gone).
    c.kill(1);
    let back: Vec<_> = (1..=groups).map(|g| (g, replicas[&g][&1])).collect();
    c.restart(1, back).await;
    for g in 1..=groups {
        let last = c.must_write(g, payload(g, 1, 10), SECS(20)).await;
        c.must_apply(g, last.index, SECS(20)).await;
        let applied = c.applied(g);
        let first = applied.values().next().unwrap();
        assert_eq!(first.entries, 2, "group {g}");
        assert!(applied.values().all(|a| a == first), "group {g}: replicas differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_leader_replica_hands_leadership_over() {
    let c = Cluster::start(3, LogConfig::default()).await;
    c.must_create_group(9, &[1, 2, 3]).await;
    assert_eq!(c.must_leader(9, SECS(20)).await, 1);
    c.must_write(9, payload(9, 0, 10), SECS(10)).await;
    c.node(1)
        .run(|node, groups| async move {
            groups.lock().unwrap().remove(&9);
            node.stop_group(9).await.unwrap();
            let err = node.stop_group(9).await.unwrap_err();
            assert_eq!(err.code(), "UNKNOWN_GROUP");
        })
        .await;
    // Brokers 2 and 3 carry on: a new leader takes writes.
    let last = c.must_write_among(9, &[2, 3], payload(9, 1, 10), SECS(10)).await;
    c.must_apply(9, last.index, SECS(10)).await;
    assert_eq!(c.applied(9).len(), 2);
    assert!(c.applied(9).values().all(|a| a.entries == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_core_stops_on_a_live_broker_is_replaced() {
    let c = Cluster::start(3, LogConfig::default()).await;
    c.must_create_group(4, &[1, 2, 3]).await;
    assert_eq!(c.must_leader(4, SECS(20)).await, 1);
    let first = c.must_write(4, payload(4, 0, 10), SECS(10)).await;
    c.must_apply(4, first.index, SECS(10)).await;
    // The leader's Raft core stops (as on a storage failure) while its broker stays up and
    // keeps answering probes; the group is idle, so nothing else would tell the followers.
    let leader = c.node(1).group(4).unwrap();
    c.node(1).run(move |_, _| async move { leader.stop_raft_core().await.unwrap() }).await;
    assert_eq!(c.node(1).group(4).unwrap().raft_metrics().state, openraft::ServerState::Shutdown);
    let next = c.must_write_among(4, &[2, 3], payload(4, 1, 10), SECS(20)).await;
    assert!(next > first);
    assert!(c.node(1).node.as_ref().unwrap().is_peer_alive(2), "broker 1 is up all along");
}
