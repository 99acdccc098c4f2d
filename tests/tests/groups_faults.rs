//! Acceptance: consumer groups under faults.
//!
//! - `committed_offsets_survive_coordinator_failover_and_full_restart`: offsets (with their
//!   metadata and commit times) read from the new coordinator after the old one is killed
//!   with SIGKILL, and after every broker is killed and restarted, are the ones committed.
//! - `killed_consumers_redeliver_only_after_their_last_commit`: consumers that commit after
//!   processing each batch are killed mid-stream and replaced; every record is delivered, a
//!   record is delivered again only at or after the last offset its first consumer
//!   committed, and the final committed offsets are the partitions' ends.
//! - `a_member_holding_revoked_partitions_is_fenced_before_they_move`: a member that never
//!   gives up revoked partitions keeps them — nobody else is given them — until the
//!   rebalance timeout fences it; then they move and the group settles.
//!
//! Knobs: `RAFKA_TEST_RECORDS` (records per partition in the consuming test, default 500).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::time::Duration;

use rafka_proto::ErrorExt;
use rafka_proto::v1::CommittedOffset;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::client::HasError;
use rafka_tests::groups::ConsumeLog;
use rafka_tests::groups::ConsumeOptions;
use rafka_tests::groups::GroupsClient;
use rafka_tests::groups::MemberOptions;
use rafka_tests::groups::Owners;
use rafka_tests::groups::SimMember;
use rafka_tests::groups::Tp;
use rafka_tests::groups::groups_toml;
use rafka_tests::groups::offset;
use rafka_tests::poll;
use rafka_tests::produced::Produced;
use rafka_tests::records;
use rafka_tests::wait::env_u64;
use rafka_tests::wait::test_timeout;

const SESSION_MS: u64 = 3_000;

async fn start() -> Cluster {
    let extra_toml = groups_toml(4, 3, SESSION_MS);
    Cluster::start_with(ClusterOptions { brokers: 3, extra_toml, ..Default::default() }).await
}

/// What must survive of a committed offset: offset, metadata and commit time.
fn essence(offsets: &BTreeMap<Tp, CommittedOffset>) -> BTreeMap<Tp, (i64, String, i64)> {
    offsets
        .iter()
        .map(|(tp, o)| (tp.clone(), (o.offset, o.metadata.clone(), o.commit_timestamp)))
        .collect()
}

/// Waits until FetchOffsets (routed to whichever broker coordinates now) returns `want`.
async fn wait_offsets(
    groups: &GroupsClient,
    group: &str,
    want: &BTreeMap<Tp, (i64, String, i64)>,
    what: &str,
) {
    poll(what, Duration::from_secs(60), || async {
        let resp = groups.fetch_offsets(group, &BTreeSet::new()).await?;
        anyhow::ensure!(resp.error().is_ok(), "{:?}", resp.error());
        let got = essence(&rafka_tests::groups::by_partition(&resp.offsets));
        anyhow::ensure!(&got == want, "got {got:?}");
        Ok::<_, anyhow::Error>(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_survive_coordinator_failover_and_full_restart() {
    const TOPIC: &str = "ledger";
    const GROUP: &str = "durable";
    let mut cluster = start().await;
    let limit = test_timeout(Duration::from_secs(180));
    bounded("committed_offsets_survive_coordinator_failover_and_full_restart", limit, async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 4, 3).await;
        let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        for p in 0..4 {
            client
                .must_produce(
                    TOPIC,
                    p,
                    records::values_batch(&values, records::now_ms()),
                    rafka_proto::v1::Acks::All,
                )
                .await;
        }
        let groups = GroupsClient::new(cluster.addrs());
        let offsets = (0..4)
            .map(|p| offset(TOPIC, p, 3 + 5 * i64::from(p), &format!("meta of {p}")))
            .collect();
        groups.must_commit(GROUP, None, offsets).await;
        // A second commit of one partition: the newest must win everywhere.
        groups.must_commit(GROUP, None, vec![offset(TOPIC, 0, 4, "meta of 0, again")]).await;
        let committed = essence(&groups.must_fetch_offsets(GROUP).await);
        assert_eq!(committed.len(), 4, "{committed:?}");
        assert_eq!(committed[&(TOPIC.to_string(), 0)].0, 4);
        assert!(committed.values().all(|(_, _, ts)| *ts > 0), "commit timestamps: {committed:?}");

        let (victim, _) = groups.must_coordinator_of(GROUP).await;
        cluster.must_kill(victim);
        eprintln!("killed broker {victim}, the coordinator of {GROUP}");
        let (successor, _) = poll("a new coordinator", Duration::from_secs(30), || async {
            let (id, addr) = groups.coordinator_of(GROUP).await?;
            if id == victim {
                Err(anyhow::anyhow!("still broker {victim}"))
            } else {
                Ok((id, addr))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        wait_offsets(&groups, GROUP, &committed, &format!("offsets from coordinator {successor}"))
            .await;
        let d = groups.must_describe(GROUP).await;
        assert_eq!(
            d.coordinator.as_ref().map(|c| c.broker_id),
            Some(successor),
            "DescribeGroup's coordinator"
        );

        // The new coordinator commits too; that must survive the restart as well.
        groups.must_commit(GROUP, None, vec![offset(TOPIC, 1, 9, "after the failover")]).await;
        let committed = essence(&groups.must_fetch_offsets(GROUP).await);
        let p1 = &committed[&(TOPIC.to_string(), 1)];
        assert_eq!((p1.0, p1.1.as_str()), (9, "after the failover"), "{committed:?}");

        cluster.must_restart(victim, Duration::from_secs(60)).await;
        for id in cluster.ids() {
            cluster.must_kill(id);
        }
        cluster.must_start_stopped();
        cluster.must_wait_ready(Duration::from_secs(60)).await;
        eprintln!("restarted every broker");
        wait_offsets(&groups, GROUP, &committed, "offsets after a full restart").await;
    })
    .await;
}

/// A consuming member with clients that give up well within a session.
fn consumer(
    cluster: &Cluster,
    owners: &Owners,
    log: &ConsumeLog,
    group: &str,
    name: &str,
    topic: &str,
) -> SimMember {
    let short = Duration::from_secs(2);
    let groups = GroupsClient::new(cluster.addrs()).with_timeout(short).with_attempt_timeout(short);
    let data = cluster.client().with_timeout(short).with_attempt_timeout(short);
    let mut opts = MemberOptions::new(group, name, &[topic]);
    opts.consume =
        Some(ConsumeOptions { log: log.clone(), process_delay: Duration::from_millis(20) });
    SimMember::spawn(groups, data, owners.clone(), opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_consumers_redeliver_only_after_their_last_commit() {
    const TOPIC: &str = "stream";
    const GROUP: &str = "consumers";
    const PARTITIONS: u32 = 4;
    let per_partition = env_u64("RAFKA_TEST_RECORDS", 500) as usize;
    assert!(per_partition >= 100, "RAFKA_TEST_RECORDS too small to kill consumers mid-stream");
    let cluster = start().await;
    let limit = test_timeout(Duration::from_secs(240));
    bounded("killed_consumers_redeliver_only_after_their_last_commit", limit, async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, PARTITIONS, 3).await;
        for p in 0..PARTITIONS {
            let mut sent = Produced::default();
            sent.append(&client, TOPIC, p, per_partition / 10, (10, 40), records::now_ms()).await;
        }
        let end = (per_partition / 10 * 10) as i64;
        let total = end as usize * PARTITIONS as usize;
        let groups = GroupsClient::new(cluster.addrs());
        let owners = Owners::default();
        let log = ConsumeLog::default();

        let mut members: BTreeMap<String, SimMember> = BTreeMap::new();
        for name in ["c1", "c2", "c3"] {
            members.insert(name.into(), consumer(&cluster, &owners, &log, GROUP, name, TOPIC));
        }
        let mut victims = Vec::new();
        for (victim, replacement, at) in [("c2", "c4", total / 4), ("c1", "c5", total / 2)] {
            // Kill mid-stream, and only once the victim has a commit to be held to.
            let what = format!("{at} records delivered and a commit by {victim}");
            poll(&what, Duration::from_secs(60), || async {
                let n = log.delivered();
                let committed = log.commits().iter().any(|c| c.member == victim);
                if n >= at && committed {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("{n} delivered, {victim} committed: {committed}"))
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
            let m = members.remove(victim).unwrap();
            let owned = m.owned();
            m.kill();
            let delivered = log.delivered();
            eprintln!("killed {victim} owning {owned:?} after {delivered} of {total} deliveries");
            assert!(delivered < total, "consumption finished before {victim} was killed");
            victims.push(victim);
            let fresh = consumer(&cluster, &owners, &log, GROUP, replacement, TOPIC);
            members.insert(replacement.into(), fresh);
        }

        poll("every partition committed to its end", Duration::from_secs(120), || async {
            let resp = groups.fetch_offsets(GROUP, &BTreeSet::new()).await?;
            anyhow::ensure!(resp.error().is_ok(), "{:?}", resp.error());
            let got: BTreeMap<u32, i64> =
                resp.offsets.iter().map(|o| (o.partition, o.offset)).collect();
            let want: BTreeMap<u32, i64> = (0..PARTITIONS).map(|p| (p, end)).collect();
            anyhow::ensure!(got == want, "committed {got:?}, {} delivered", log.delivered());
            Ok::<_, anyhow::Error>(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        for (name, m) in members {
            m.leave().await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        let committed = groups.must_fetch_offsets(GROUP).await;
        for p in 0..PARTITIONS {
            let c = committed.get(&(TOPIC.to_string(), p)).map(|o| o.offset);
            assert_eq!(c, Some(end), "final committed offset of partition {p}");
        }

        // The last offset each member committed, per partition (commits only move forward).
        let mut last_commit: HashMap<(String, Tp), i64> = HashMap::new();
        for c in log.commits() {
            let e = last_commit.entry((c.member, c.tp)).or_insert(c.offset);
            *e = (*e).max(c.offset);
        }
        let mut first: HashMap<(Tp, i64), String> = HashMap::new();
        let mut redelivered = 0;
        for d in log.deliveries() {
            match first.get(&(d.tp.clone(), d.offset)) {
                None => {
                    first.insert((d.tp, d.offset), d.member);
                }
                Some(by) => {
                    redelivered += 1;
                    let c = last_commit.get(&(by.clone(), d.tp.clone())).copied().unwrap_or(0);
                    assert!(
                        d.offset >= c,
                        "{:?} offset {} went to {by}, which committed {c}, and again to {}",
                        d.tp,
                        d.offset,
                        d.member
                    );
                }
            }
        }
        for p in 0..PARTITIONS {
            let tp = (TOPIC.to_string(), p);
            let missing: Vec<i64> =
                (0..end).filter(|o| !first.contains_key(&(tp.clone(), *o))).collect();
            assert!(missing.is_empty(), "partition {p}: never delivered: {missing:?}");
        }
        eprintln!("{total} records, {redelivered} redelivered after killing {victims:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_holding_revoked_partitions_is_fenced_before_they_move() {
    const GROUP: &str = "stubborn";
    const TOPIC: &str = "held";
    let extra_toml = groups_toml(2, 1, SESSION_MS)
        .replace("rebalance-timeout-ms = 10000", "rebalance-timeout-ms = 1500");
    let cluster =
        Cluster::start_with(ClusterOptions { brokers: 1, extra_toml, ..Default::default() }).await;
    bounded("stubborn member", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 4, 1).await;
        let short = Duration::from_secs(2);
        let spawn = |name: &str, hold_revoked: bool, owners: &Owners| {
            let groups =
                GroupsClient::new(cluster.addrs()).with_timeout(short).with_attempt_timeout(short);
            let data = cluster.client().with_timeout(short).with_attempt_timeout(short);
            let opts = MemberOptions { hold_revoked, ..MemberOptions::new(GROUP, name, &[TOPIC]) };
            SimMember::spawn(groups, data, owners.clone(), opts)
        };
        let owners = Owners::default();
        let watch =
            rafka_tests::groups::OwnershipWatch::start(owners.clone(), Duration::from_millis(2));
        let stubborn = spawn("stubborn", true, &owners);
        stubborn
            .wait_for("stubborn owns all 4", Duration::from_secs(30), |s| s.owned.len() == 4)
            .await;
        let polite = spawn("polite", false, &owners);
        // Two of the stubborn member's partitions are revoked and it never lets go: they move
        // only once it is fenced (its next heartbeat after the rebalance timeout) and rejoins.
        polite
            .wait_for("polite gets partitions", Duration::from_secs(30), |s| s.owned.len() == 2)
            .await;
        let fenced = stubborn.state().last_error.unwrap_or_default();
        assert!(
            fenced.contains("FencedMemberEpoch"),
            "the stubborn member must have been fenced before its partitions moved; last \
             error: {fenced:?}"
        );
        let (samples, violations) = watch.stop().await;
        assert!(
            violations.is_empty(),
            "{} of {samples} samples: {violations:#?}",
            violations.len()
        );
        for m in [stubborn, polite] {
            m.leave().await.unwrap_or_else(|e| panic!("{e:#}"));
        }
    })
    .await;
}
