//! Acceptance: consumer groups through the public `Groups` service.
//!
//! - `members_never_share_a_partition_and_dead_members_expire`: three members split twelve
//!   partitions exactly; a fourth joins and one leaves while every member's owned set is
//!   sampled continuously (never a partition with two owners), ending balanced; a member
//!   killed without leaving is removed after the session timeout and its partitions move.
//! - `topic_deletion_and_new_partitions_trigger_reassignment`: deleting a subscribed topic
//!   and adding partitions to one each trigger a new assignment.
//! - `commits_and_group_errors_are_precise`: stale-epoch commits, resets of an active group,
//!   unknown and invalid group ids, unknown topics and negative offsets are refused with
//!   their codes and change nothing.
//! - `reset_delete_list_and_not_coordinator_hints`: ResetOffsets to earliest, latest,
//!   timestamp and offset; DeleteGroup; ListGroups over every coordinator; a non-coordinator
//!   answers NOT_COORDINATOR naming the coordinator.
//! - `lag_is_exported_per_partition`: `rafka_group_lag_records` and DescribeGroup agree.
//!
//! Fault tests (coordinator kill, full restart, consumers killed mid-stream) are in
//! `groups_faults.rs`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use std::time::Instant;

use rafka_proto::ErrorExt;
use rafka_proto::groups::offsets_partition;
use rafka_proto::v1::Acks;
use rafka_proto::v1::CreatePartitionsRequest;
use rafka_proto::v1::DeleteTopicRequest;
use rafka_proto::v1::DescribeGroupResponse;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchOffsetsRequest;
use rafka_proto::v1::GroupHeartbeatRequest;
use rafka_proto::v1::ResetOffsetsRequest;
use rafka_proto::v1::ResetSpec;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::reset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::HasError;
use rafka_tests::groups::GroupsClient;
use rafka_tests::groups::MemberOptions;
use rafka_tests::groups::Owners;
use rafka_tests::groups::OwnershipWatch;
use rafka_tests::groups::SimMember;
use rafka_tests::groups::Tp;
use rafka_tests::groups::all_partitions;
use rafka_tests::groups::by_partition;
use rafka_tests::groups::double_owned;
use rafka_tests::groups::flatten;
use rafka_tests::groups::groups_toml;
use rafka_tests::groups::metric_value;
use rafka_tests::groups::offset;
use rafka_tests::http::http_get;
use rafka_tests::poll;
use rafka_tests::records;
use rafka_tests::wait::test_timeout;
use tonic::transport::Channel;

/// Members expire after three silent seconds (heartbeats every 300 ms).
const SESSION_MS: u64 = 3_000;
/// `__consumer_offsets` partitions in these clusters.
const OFFSETS_PARTITIONS: u32 = 4;

async fn start(brokers: usize) -> Cluster {
    let rf = brokers.min(3) as u32;
    let extra_toml = groups_toml(OFFSETS_PARTITIONS, rf, SESSION_MS);
    Cluster::start_with(ClusterOptions { brokers, extra_toml, ..Default::default() }).await
}

/// A member of `group` subscribed to `topics`, with clients whose calls end well within a
/// session.
fn member(
    cluster: &Cluster,
    owners: &Owners,
    group: &str,
    name: &str,
    topics: &[&str],
) -> SimMember {
    let short = Duration::from_secs(2);
    let groups = GroupsClient::new(cluster.addrs()).with_timeout(short).with_attempt_timeout(short);
    let data = cluster.client().with_timeout(short).with_attempt_timeout(short);
    SimMember::spawn(groups, data, owners.clone(), MemberOptions::new(group, name, topics))
}

/// Panics with `what` and the answer's error unless it is `want`.
fn expect_code(what: &str, resp: &impl HasError, want: ErrorCode) {
    let e = resp.error();
    assert_eq!(e.error_code(), want, "{what}: {:?}: {}", e.error_code(), e.message);
}

/// The partitions DescribeGroup shows each member owning, by member id.
fn described_assignment(d: &DescribeGroupResponse) -> BTreeMap<String, BTreeSet<Tp>> {
    d.members.iter().map(|m| (m.member_id.clone(), flatten(&m.assignment))).collect()
}

/// Waits until exactly `members` own `all` between them, each partition once, balanced
/// (sizes differ by at most one), with DescribeGroup stable and agreeing with every member.
async fn wait_converged(
    groups: &GroupsClient,
    group: &str,
    members: &BTreeMap<String, SimMember>,
    all: &BTreeSet<Tp>,
    timeout: Duration,
) -> DescribeGroupResponse {
    let what = format!("{} members of {group} converge on {} partitions", members.len(), all.len());
    poll(&what, timeout, || async {
        let mut union = BTreeSet::new();
        let mut sizes = Vec::new();
        for (name, m) in members {
            let s = m.state();
            anyhow::ensure!(s.epoch > 0, "{name} has not joined: {s:?}");
            sizes.push(s.owned.len());
            for tp in &s.owned {
                anyhow::ensure!(union.insert(tp.clone()), "{tp:?} owned twice (again by {name})");
            }
        }
        anyhow::ensure!(&union == all, "owned {union:?}");
        let (min, max) = (sizes.iter().min().copied(), sizes.iter().max().copied());
        anyhow::ensure!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "unbalanced: {sizes:?}");

        let d = groups.describe(group).await?;
        anyhow::ensure!(d.error().is_ok(), "describe: {:?}", d.error());
        anyhow::ensure!(d.state == "stable", "state {:?}", d.state);
        anyhow::ensure!(d.members.len() == members.len(), "{} members described", d.members.len());
        let described = described_assignment(&d);
        for m in &d.members {
            anyhow::ensure!(
                m.pending_revocation.is_empty(),
                "{} has revocations pending",
                m.member_id
            );
            anyhow::ensure!(
                flatten(&m.target_assignment) == flatten(&m.assignment),
                "{} not at its target",
                m.member_id
            );
        }
        for (name, m) in members {
            let s = m.state();
            let theirs = described.get(&s.member_id);
            anyhow::ensure!(
                theirs == Some(&s.owned),
                "{name}: owns {:?}, described {theirs:?}",
                s.owned
            );
        }
        Ok::<_, anyhow::Error>(d)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Leaves the group with every member, checking each leave is acknowledged.
async fn leave_all(members: BTreeMap<String, SimMember>) {
    for (name, m) in members {
        m.leave().await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_never_share_a_partition_and_dead_members_expire() {
    const GROUP: &str = "balance";
    const TOPIC: &str = "events";
    const PARTITIONS: u32 = 12;
    let cluster = start(3).await;
    let limit = test_timeout(Duration::from_secs(180));
    bounded("members_never_share_a_partition_and_dead_members_expire", limit, async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, PARTITIONS, 3).await;
        let groups = GroupsClient::new(cluster.addrs());
        let owners = Owners::default();
        let all = all_partitions(TOPIC, PARTITIONS);
        let converge = Duration::from_secs(45);

        let watch = OwnershipWatch::start(owners.clone(), Duration::from_millis(2));
        let mut members = BTreeMap::new();
        for name in ["m1", "m2", "m3"] {
            members.insert(name.to_string(), member(&cluster, &owners, GROUP, name, &[TOPIC]));
        }
        wait_converged(&groups, GROUP, &members, &all, converge).await;

        // A fourth joins and the first leaves: partitions move while sampled continuously.
        members.insert("m4".into(), member(&cluster, &owners, GROUP, "m4", &[TOPIC]));
        let m1 = members.remove("m1").unwrap();
        m1.leave().await.unwrap_or_else(|e| panic!("{e:#}"));
        wait_converged(&groups, GROUP, &members, &all, converge).await;
        for (name, m) in &members {
            assert_eq!(
                m.owned().len(),
                4,
                "{name}: balanced is 4 of 12 each: {:?}",
                owners.snapshot()
            );
        }
        let (samples, violations) = watch.stop().await;
        assert!(violations.is_empty(), "partitions with two owners: {violations:#?}");
        assert!(samples >= 50, "only {samples} ownership samples taken");
        eprintln!("no double ownership in {samples} samples");

        // A member killed without leaving stays until its session times out.
        let m2 = members.remove("m2").unwrap();
        let (m2_id, m2_owned) = (m2.state().member_id, m2.owned());
        let killed = Instant::now();
        m2.kill();
        let d = groups.must_describe(GROUP).await;
        if killed.elapsed() < Duration::from_millis(SESSION_MS / 2) {
            assert!(
                d.members.iter().any(|m| m.member_id == m2_id),
                "the killed member was removed {:?} after the kill, before its session timed out",
                killed.elapsed()
            );
        }
        poll("the killed member is removed", Duration::from_secs(30), || async {
            let d = groups.describe(GROUP).await?;
            let listed = d.members.iter().any(|m| m.member_id == m2_id);
            if listed { Err(anyhow::anyhow!("still listed")) } else { Ok(()) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let removed_after = killed.elapsed();
        assert!(
            removed_after >= Duration::from_millis(SESSION_MS * 2 / 3),
            "removed {removed_after:?} after the kill; the session timeout is {SESSION_MS} ms"
        );
        wait_converged(&groups, GROUP, &members, &all, converge).await;
        let snap = owners.snapshot();
        assert!(double_owned(&snap).is_empty(), "{snap:?}");
        for tp in &m2_owned {
            assert!(
                members.values().any(|m| m.owned().contains(tp)),
                "{tp:?} of the killed member is not reassigned: {snap:?}"
            );
        }
        eprintln!("killed member removed {removed_after:?} after the kill");
        leave_all(members).await;
        poll("the group is empty", Duration::from_secs(20), || async {
            let d = groups.describe(GROUP).await?;
            if d.members.is_empty() && d.state == "empty" {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{} members, state {:?}", d.members.len(), d.state))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_deletion_and_new_partitions_trigger_reassignment() {
    const GROUP: &str = "two-topics";
    let cluster = start(1).await;
    bounded("topic_deletion_and_new_partitions", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic("keep", 3, 1).await;
        client.must_create_topic("doomed", 3, 1).await;
        let groups = GroupsClient::new(cluster.addrs());
        let owners = Owners::default();
        let mut members = BTreeMap::new();
        for name in ["a", "b"] {
            let m = member(&cluster, &owners, GROUP, name, &["keep", "doomed"]);
            members.insert(name.to_string(), m);
        }
        let both: BTreeSet<Tp> =
            all_partitions("keep", 3).into_iter().chain(all_partitions("doomed", 3)).collect();
        let converge = Duration::from_secs(30);
        wait_converged(&groups, GROUP, &members, &both, converge).await;

        let d = groups.must_describe(GROUP).await;
        let epoch = d.group_epoch;
        must_admin(&client, "delete topic doomed", |mut admin| async move {
            let req = DeleteTopicRequest { name: "doomed".into() };
            admin.delete_topic(req).await.map(|r| r.into_inner().error)
        })
        .await;
        let d =
            wait_converged(&groups, GROUP, &members, &all_partitions("keep", 3), converge).await;
        assert!(
            d.group_epoch > epoch,
            "group epoch {} after the deletion, {epoch} before",
            d.group_epoch
        );

        // New partitions of a subscribed topic are assigned too.
        let epoch = d.group_epoch;
        must_admin(&client, "grow keep to 5 partitions", |mut admin| async move {
            let req = CreatePartitionsRequest { name: "keep".into(), total_count: 5 };
            admin.create_partitions(req).await.map(|r| r.into_inner().error)
        })
        .await;
        client.wait_for_leaders("keep", 5, converge).await.unwrap_or_else(|e| panic!("{e:#}"));
        let d =
            wait_converged(&groups, GROUP, &members, &all_partitions("keep", 5), converge).await;
        assert!(
            d.group_epoch > epoch,
            "group epoch {} after new partitions, {epoch} before",
            d.group_epoch
        );
        leave_all(members).await;
    })
    .await;
}

/// Runs an Admin request at every broker in turn until one answers with success; a fatal
/// code fails the test.
async fn must_admin<F, Fut>(client: &TestClient, what: &str, call: F)
where
    F: Fn(AdminClient<Channel>) -> Fut,
    Fut: Future<Output = Result<Option<rafka_proto::v1::Error>, tonic::Status>>,
{
    let addrs: Vec<String> =
        client.metadata(&[]).await.unwrap().brokers.iter().map(|b| b.address.clone()).collect();
    poll(what, Duration::from_secs(30), || async {
        let mut last = anyhow::anyhow!("no broker");
        for addr in &addrs {
            match call(client.admin_at(addr)?).await {
                Ok(e) => {
                    let e = e.unwrap_or_else(rafka_proto::v1::Error::none);
                    if e.is_ok() {
                        return Ok(());
                    }
                    assert!(e.error_code().is_retriable(), "{what}: {e:?}");
                    last = anyhow::anyhow!("{addr}: {e:?}");
                }
                Err(s) => last = anyhow::anyhow!("{addr}: {s}"),
            }
        }
        Err(last)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_and_group_errors_are_precise() {
    const GROUP: &str = "precise";
    const TOPIC: &str = "e";
    let cluster = start(1).await;
    bounded("commits_and_group_errors_are_precise", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 2, 1).await;
        for p in 0..2 {
            let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
            client
                .must_produce(
                    TOPIC,
                    p,
                    records::values_batch(&values, records::now_ms()),
                    Acks::All,
                )
                .await;
        }
        let groups = GroupsClient::new(cluster.addrs());
        let owners = Owners::default();

        // A stale member epoch: a joins alone, b joins and a's epoch moves on.
        let a = member(&cluster, &owners, GROUP, "a", &[TOPIC]);
        let first = a
            .wait_for("a owns both partitions", Duration::from_secs(30), |s| s.owned.len() == 2)
            .await;
        let mut members = BTreeMap::new();
        members.insert("a".to_string(), a);
        members.insert("b".to_string(), member(&cluster, &owners, GROUP, "b", &[TOPIC]));
        wait_converged(
            &groups,
            GROUP,
            &members,
            &all_partitions(TOPIC, 2),
            Duration::from_secs(30),
        )
        .await;
        let a = &members["a"];
        let now = a.state();
        assert!(
            now.epoch > first.epoch,
            "a's epoch {} did not move on from {}",
            now.epoch,
            first.epoch
        );
        assert_eq!(now.member_id, first.member_id);
        let tp = now.owned.iter().next().unwrap().clone();
        groups
            .must_commit(
                GROUP,
                Some((now.member_id.as_str(), now.epoch)),
                vec![offset(&tp.0, tp.1, 5, "five")],
            )
            .await;
        let stale = GroupsClient::commit_request(
            GROUP,
            Some((now.member_id.as_str(), first.epoch)),
            vec![offset(&tp.0, tp.1, 7, "seven")],
        );
        let resp = groups.commit(stale).await.unwrap();
        expect_code("commit with a stale epoch", &resp, ErrorCode::StaleMemberEpoch);
        let committed = groups.must_fetch_offsets(GROUP).await;
        let got = committed.get(&tp).map(|o| (o.offset, o.metadata.as_str()));
        assert_eq!(got, Some((5, "five")), "after the stale commit: {committed:?}");

        // Resetting or deleting a group with members is refused.
        let reset = ResetOffsetsRequest {
            group_id: GROUP.into(),
            topic: TOPIC.into(),
            spec: Some(ResetSpec { spec: Some(Spec::Earliest(true)) }),
            ..Default::default()
        };
        let resp = groups.reset_offsets(reset).await.unwrap();
        expect_code("reset offsets of an active group", &resp, ErrorCode::GroupNotEmpty);
        assert_eq!(
            groups.must_fetch_offsets(GROUP).await,
            committed,
            "offsets after the refused reset"
        );
        let resp = groups.delete_group(GROUP).await.unwrap();
        expect_code("delete an active group", &resp, ErrorCode::GroupNotEmpty);

        // Protocol mistakes of a member.
        let join =
            |group: &str, member_id: &str, epoch: i32, assignor: &str| GroupHeartbeatRequest {
                group_id: group.into(),
                member_id: member_id.into(),
                member_epoch: epoch,
                subscribed_topics: vec![TOPIC.into()],
                server_assignor: assignor.into(),
                client_id: "manual".into(),
                ..Default::default()
            };
        let resp = groups.heartbeat(join(GROUP, "", 0, "roundrobin")).await.unwrap();
        expect_code("join asking for an unknown assignor", &resp, ErrorCode::UnsupportedAssignor);
        let resp = groups.heartbeat(join(GROUP, "ghost", 3, "")).await.unwrap();
        expect_code("heartbeat of a member that never joined", &resp, ErrorCode::UnknownMemberId);

        // Unknown groups are named in the error.
        let unknown = "no-such-group";
        let all = BTreeSet::new();
        let resp = groups.fetch_offsets(unknown, &all).await.unwrap();
        expect_code("fetch offsets of an unknown group", &resp, ErrorCode::GroupIdNotFound);
        assert!(resp.error().message.contains(unknown), "message {:?}", resp.error().message);
        let resp = groups.describe(unknown).await.unwrap();
        expect_code("describe an unknown group", &resp, ErrorCode::GroupIdNotFound);
        assert!(resp.error().message.contains(unknown), "message {:?}", resp.error().message);
        let resp = groups.delete_group(unknown).await.unwrap();
        expect_code("delete an unknown group", &resp, ErrorCode::GroupIdNotFound);
        assert!(resp.error().message.contains(unknown), "message {:?}", resp.error().message);

        // Invalid group ids: empty and 256 bytes; 255 bytes is fine.
        for bad in [String::new(), "x".repeat(256)] {
            let what = |op: &str| format!("{op} with a group id of {} bytes", bad.len());
            let resp = groups.fetch_offsets(&bad, &all).await.unwrap();
            expect_code(&what("fetch offsets"), &resp, ErrorCode::InvalidGroupId);
            let resp = groups.describe(&bad).await.unwrap();
            expect_code(&what("describe"), &resp, ErrorCode::InvalidGroupId);
            let commit = GroupsClient::commit_request(&bad, None, vec![offset(TOPIC, 0, 1, "")]);
            let resp = groups.commit(commit).await.unwrap();
            expect_code(&what("commit"), &resp, ErrorCode::InvalidGroupId);
            let resp = groups.heartbeat(join(&bad, "", 0, "")).await.unwrap();
            expect_code(&what("join"), &resp, ErrorCode::InvalidGroupId);
        }
        let longest = "y".repeat(255);
        groups.must_commit(&longest, None, vec![offset(TOPIC, 0, 1, "")]).await;

        // A commit naming an unknown topic commits nothing, and a negative offset is refused.
        let solo = "solo";
        groups.must_commit(solo, None, vec![offset(TOPIC, 0, 3, "three")]).await;
        let before = groups.must_fetch_offsets(solo).await;
        let mixed = GroupsClient::commit_request(
            solo,
            None,
            vec![offset(TOPIC, 1, 4, "four"), offset("no-such-topic", 0, 1, "")],
        );
        let resp = groups.commit(mixed).await.unwrap();
        expect_code("commit to an unknown topic", &resp, ErrorCode::UnknownTopic);
        let resp = groups
            .commit(GroupsClient::commit_request(solo, None, vec![offset(TOPIC, 0, -5, "")]))
            .await
            .unwrap();
        expect_code("commit of a negative offset", &resp, ErrorCode::InvalidRequest);
        assert_eq!(groups.must_fetch_offsets(solo).await, before, "offsets after refused commits");
        let resp = groups.fetch_offsets(solo, &all_partitions(TOPIC, 2)).await.unwrap();
        expect_code("fetch offsets of both partitions", &resp, ErrorCode::None);
        let got = by_partition(&resp.offsets);
        let p1 = got.get(&(TOPIC.to_string(), 1)).map(|o| o.offset);
        assert_eq!(p1, Some(-1), "partition 1 after the refused commit: {got:?}");

        leave_all(members).await;
    })
    .await;
}

/// Resets `group`'s offsets of `topic` and checks that the answer and FetchOffsets agree
/// with `want` (by partition); with `dry_run`, that the committed offsets did not move.
async fn must_reset(
    groups: &GroupsClient,
    group: &str,
    topic: &str,
    partitions: &[u32],
    spec: Spec,
    want: &BTreeMap<u32, i64>,
) {
    let before = groups.fetch_offsets(group, &BTreeSet::new()).await.unwrap();
    for dry_run in [true, false] {
        let req = ResetOffsetsRequest {
            group_id: group.into(),
            topic: topic.into(),
            partitions: partitions.to_vec(),
            spec: Some(ResetSpec { spec: Some(spec) }),
            dry_run,
        };
        let resp = groups.reset_offsets(req).await.unwrap();
        expect_code(&format!("reset to {spec:?} (dry run {dry_run})"), &resp, ErrorCode::None);
        let got: BTreeMap<u32, i64> =
            resp.offsets.iter().map(|o| (o.partition, o.offset)).collect();
        assert_eq!(&got, want, "reset to {spec:?} (dry run {dry_run}): answered offsets");
        let now = groups.fetch_offsets(group, &BTreeSet::new()).await.unwrap();
        if dry_run {
            assert_eq!(now.offsets, before.offsets, "a dry run to {spec:?} changed the offsets");
        } else {
            let committed = by_partition(&now.offsets);
            for (p, o) in want {
                let c = committed.get(&(topic.to_string(), *p)).map(|c| c.offset);
                assert_eq!(c, Some(*o), "partition {p} after the reset to {spec:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_delete_list_and_not_coordinator_hints() {
    const TOPIC: &str = "r";
    const GROUP: &str = "resettable";
    let cluster = start(3).await;
    bounded(
        "reset_delete_list_and_not_coordinator_hints",
        test_timeout(Duration::from_secs(120)),
        async {
            let client = cluster.client();
            client.must_create_topic(TOPIC, 2, 3).await;
            // Partition 0: offsets 0..5 stamped base.., 5..10 stamped base+100..; partition 1:
            // three records stamped base...
            let base = records::now_ms() - 60_000;
            let vals = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>();
            client.must_produce(TOPIC, 0, records::values_batch(&vals(5), base), Acks::All).await;
            client
                .must_produce(TOPIC, 0, records::values_batch(&vals(5), base + 100), Acks::All)
                .await;
            client.must_produce(TOPIC, 1, records::values_batch(&vals(3), base), Acks::All).await;
            let groups = GroupsClient::new(cluster.addrs());

            let at = |p0: i64, p1: i64| BTreeMap::from([(0, p0), (1, p1)]);
            must_reset(&groups, GROUP, TOPIC, &[], Spec::Latest(true), &at(10, 3)).await;
            must_reset(&groups, GROUP, TOPIC, &[], Spec::Earliest(true), &at(0, 0)).await;
            must_reset(&groups, GROUP, TOPIC, &[], Spec::Timestamp(base + 102), &at(7, 3)).await;
            must_reset(&groups, GROUP, TOPIC, &[0], Spec::Offset(4), &BTreeMap::from([(0, 4)]))
                .await;
            let committed = groups.must_fetch_offsets(GROUP).await;
            assert_eq!(
                committed.get(&(TOPIC.to_string(), 1)).map(|o| o.offset),
                Some(3),
                "{committed:?}"
            );
            let req = ResetOffsetsRequest {
                group_id: GROUP.into(),
                topic: TOPIC.into(),
                partitions: vec![0],
                spec: Some(ResetSpec { spec: Some(Spec::Offset(11)) }),
                dry_run: false,
            };
            let resp = groups.reset_offsets(req).await.unwrap();
            expect_code("reset past the high watermark", &resp, ErrorCode::OffsetOutOfRange);
            assert_eq!(
                groups.must_fetch_offsets(GROUP).await,
                committed,
                "after the refused reset"
            );

            // DeleteGroup of an empty group removes its offsets.
            expect_code(
                "delete an empty group",
                &groups.delete_group(GROUP).await.unwrap(),
                ErrorCode::None,
            );
            let resp = groups.fetch_offsets(GROUP, &BTreeSet::new()).await.unwrap();
            expect_code("fetch offsets of a deleted group", &resp, ErrorCode::GroupIdNotFound);

            // One group per __consumer_offsets partition, so that every coordinator holds one.
            let mut listed_groups: BTreeMap<u32, String> = BTreeMap::new();
            for i in 0.. {
                let g = format!("listed-{i}");
                listed_groups.entry(offsets_partition(&g, OFFSETS_PARTITIONS)).or_insert(g);
                if listed_groups.len() == OFFSETS_PARTITIONS as usize {
                    break;
                }
            }
            for g in listed_groups.values() {
                groups.must_commit(g, None, vec![offset(TOPIC, 0, 1, "")]).await;
            }
            poll(
                "ListGroups shows every group with its coordinator",
                Duration::from_secs(30),
                || async {
                    let list = groups.list_groups().await?;
                    anyhow::ensure!(list.error().is_ok(), "{:?}", list.error());
                    let shown: BTreeMap<&str, u64> =
                        list.groups.iter().map(|g| (g.group_id.as_str(), g.coordinator)).collect();
                    anyhow::ensure!(!shown.contains_key(GROUP), "the deleted group is listed");
                    let mut coordinators = BTreeSet::new();
                    for g in listed_groups.values() {
                        let (id, _) = groups.coordinator_of(g).await?;
                        coordinators.insert(id);
                        anyhow::ensure!(
                            shown.get(g.as_str()) == Some(&id),
                            "{g}: {:?}, coordinator {id}",
                            shown.get(g.as_str())
                        );
                    }
                    anyhow::ensure!(
                        coordinators.len() >= 2,
                        "every group on coordinator(s) {coordinators:?}"
                    );
                    Ok::<_, anyhow::Error>(())
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));

            // A broker that is not the coordinator says so and names it.
            let group = listed_groups.values().next().unwrap().clone();
            poll(
                "NOT_COORDINATOR with the coordinator's address",
                Duration::from_secs(30),
                || async {
                    let (id, addr) = groups.coordinator_of(&group).await?;
                    let other = cluster.ids().into_iter().find(|&b| b != id).unwrap();
                    let mut raw = groups.groups_at(&cluster.broker(other).addr().to_string())?;
                    let req = FetchOffsetsRequest { group_id: group.clone(), partitions: vec![] };
                    let fetch = raw.fetch_offsets(req).await?.into_inner().error;
                    let describe = raw
                        .describe_group(rafka_proto::v1::DescribeGroupRequest {
                            group_id: group.clone(),
                        })
                        .await?
                        .into_inner()
                        .error;
                    let commit = raw
                        .commit_offsets(GroupsClient::commit_request(
                            &group,
                            None,
                            vec![offset(TOPIC, 0, 2, "")],
                        ))
                        .await?
                        .into_inner()
                        .error;
                    for (rpc, e) in
                        [("fetch offsets", fetch), ("describe", describe), ("commit", commit)]
                    {
                        let e = e.unwrap_or_else(rafka_proto::v1::Error::none);
                        anyhow::ensure!(
                            e.error_code() == ErrorCode::NotCoordinator,
                            "{rpc} at broker {other}: {e:?}"
                        );
                        let hint = e.leader.as_ref().map(|l| (l.broker_id, l.address.as_str()));
                        anyhow::ensure!(
                            hint == Some((id, addr.as_str())),
                            "{rpc} at broker {other}: hint {hint:?}, coordinator {id} at {addr}"
                        );
                    }
                    Ok::<_, anyhow::Error>(())
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
            let kept = groups.must_fetch_offsets(&group).await;
            let p0 = kept.get(&(TOPIC.to_string(), 0)).map(|o| o.offset);
            assert_eq!(
                p0,
                Some(1),
                "a commit refused with NOT_COORDINATOR changed {group}: {kept:?}"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_is_exported_per_partition() {
    const TOPIC: &str = "lagged";
    const GROUP: &str = "laggard";
    let cluster = start(1).await;
    bounded("lag_is_exported_per_partition", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 2, 1).await;
        let produce = |p: u32, n: usize| {
            let values: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
            let client = client.clone();
            async move {
                client
                    .must_produce(
                        TOPIC,
                        p,
                        records::values_batch(&values, records::now_ms()),
                        Acks::All,
                    )
                    .await
            }
        };
        for _ in 0..3 {
            produce(0, 10).await;
        }
        produce(1, 5).await;
        let groups = GroupsClient::new(cluster.addrs());
        groups
            .must_commit(GROUP, None, vec![offset(TOPIC, 0, 12, ""), offset(TOPIC, 1, 5, "")])
            .await;
        let (coordinator, _) = groups.must_coordinator_of(GROUP).await;
        let http = cluster.broker(coordinator).http_addr();

        for (end, lag0) in [(30, 18.0), (40, 28.0)] {
            if end == 40 {
                produce(0, 10).await;
            }
            poll(
                &format!("lag {lag0} on partition 0 in /metrics"),
                Duration::from_secs(30),
                || async {
                    let (code, body) = http_get(http, "/metrics", Duration::from_secs(5)).await?;
                    anyhow::ensure!(code == 200, "GET /metrics: HTTP {code}");
                    let at = |name: &str, p: &str| {
                        metric_value(
                            &body,
                            name,
                            &[("group", GROUP), ("topic", TOPIC), ("partition", p)],
                        )
                    };
                    let got = (
                        at("rafka_group_lag_records", "0"),
                        at("rafka_group_committed_offset", "0"),
                        at("rafka_group_lag_records", "1"),
                    );
                    anyhow::ensure!(
                        got == (Some(lag0), Some(12.0), Some(0.0)),
                        "lag p0, committed p0, lag p1: {got:?}"
                    );
                    Ok::<_, anyhow::Error>(())
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
            let d = groups.must_describe(GROUP).await;
            let p0 = d
                .offsets
                .iter()
                .find(|o| o.topic == TOPIC && o.partition == 0)
                .expect("partition 0 in DescribeGroup");
            assert_eq!(
                (p0.committed_offset, p0.high_watermark, p0.lag),
                (12, end, end - 12),
                "{p0:?}"
            );
            let p1 = d
                .offsets
                .iter()
                .find(|o| o.topic == TOPIC && o.partition == 1)
                .expect("partition 1 in DescribeGroup");
            assert_eq!((p1.committed_offset, p1.high_watermark, p1.lag), (5, 5, 0), "{p1:?}");
        }
    })
    .await;
}
