//! Acceptance: partition membership changes on a live cluster.
//!
//! - `reassignment_moves_a_partition_and_deletes_the_old_copy`: four brokers; a partition is
//!   moved off its leader's broker while a producer writes. The move completes, the new
//!   broker leads (preferred leader), every new replica holds byte-identical batches, no
//!   acknowledged record is lost, and the old broker deletes its copy.
//! - `a_broker_with_a_wiped_disk_rejoins_as_a_new_replica`: a follower's data directory is
//!   deleted while it is down. It comes back with a new incarnation, its lost replica is
//!   replaced by a fresh one that catches up, and then it is a voter: with the other
//!   follower down, acks=all writes still succeed.
//! - `a_new_replica_of_a_purged_log_installs_a_snapshot_even_after_crashing_there`: retention
//!   purged the head of the log, so a replica added by a move must install the snapshot at
//!   the retention point; it aborts at the `snapshot-install` crash point the first time
//!   (needs the `failpoints` build), restarts, installs it, and then holds the leader's
//!   retained records.
//! - `transfer_leadership_moves_the_leader`: leadership goes to the named replica and stays.
//! - `bad_reassignments_are_refused_and_change_nothing`: unknown topics and partitions,
//!   empty, duplicate or unknown brokers, a second move while one is under way, and a
//!   leadership transfer to a non-replica each get their code; the metadata is unchanged.

use std::collections::BTreeSet;
use std::time::Duration;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::ListOffsetsRequest;
use rafka_proto::v1::OffsetSpec;
use rafka_proto::v1::PartitionInfo;
use rafka_proto::v1::ReassignPartitionRequest;
use rafka_proto::v1::TransferLeadershipRequest;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::chaos::verify::follower_fetch;
use rafka_tests::poll;
use rafka_tests::produced::Produced;
use rafka_tests::records;
use rafka_tests::wait::test_timeout;

/// Leadership returns to the preferred replica within half a second in these tests.
const FAST_BALANCE: &str = "leader-balance-interval-ms = 500\n";

async fn start(brokers: usize) -> Cluster {
    Cluster::start_with(ClusterOptions {
        brokers,
        extra_toml: FAST_BALANCE.into(),
        ..Default::default()
    })
    .await
}

async fn info(client: &TestClient, topic: &str, partition: u32) -> anyhow::Result<PartitionInfo> {
    let md = client.metadata(&[topic]).await?;
    md.topics
        .iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{topic}/{partition} not in metadata"))
}

async fn reassign(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    brokers: &[u64],
) -> (ErrorCode, String) {
    let req =
        ReassignPartitionRequest { topic: topic.into(), partition, brokers: brokers.to_vec() };
    let resp = cluster.broker(1).admin_client().reassign_partition(req).await.unwrap();
    let e = resp.into_inner().error.unwrap_or_default();
    (e.error_code(), e.message)
}

async fn transfer(cluster: &Cluster, topic: &str, partition: u32, broker: u64) -> ErrorCode {
    let req = TransferLeadershipRequest { topic: topic.into(), partition, broker };
    let resp = cluster.broker(2).admin_client().transfer_leadership(req).await.unwrap();
    resp.into_inner().error.unwrap_or_default().error_code()
}

/// Waits until the partition's replicas are exactly `brokers` (in order), no move is under
/// way, and every one of them is in sync.
async fn wait_settled(client: &TestClient, topic: &str, brokers: &[u64], timeout: Duration) {
    let want: BTreeSet<u64> = brokers.iter().copied().collect();
    poll("the reassignment to complete", timeout, || async {
        let p = info(client, topic, 0).await?;
        let in_sync: BTreeSet<u64> = p.in_sync.iter().copied().collect();
        if p.replicas == brokers && p.target_replicas.is_empty() && in_sync == want {
            Ok(())
        } else {
            anyhow::bail!(
                "replicas {:?}, target {:?}, in sync {:?}",
                p.replicas,
                p.target_replicas,
                p.in_sync
            )
        }
    })
    .await
    .unwrap();
}

/// Batches `(base offset, CRC32C)` of broker `addr`'s copy, once it has reached `hw`.
async fn replica_copy(
    client: &TestClient,
    addr: &str,
    topic: &str,
    hw: i64,
    timeout: Duration,
) -> Vec<(i64, u32)> {
    replica_copy_from(client, addr, topic, 0, hw, timeout).await
}

/// [`replica_copy`] of the batches from the one holding `from`.
async fn replica_copy_from(
    client: &TestClient,
    addr: &str,
    topic: &str,
    from: i64,
    hw: i64,
    timeout: Duration,
) -> Vec<(i64, u32)> {
    poll(&format!("the copy at {addr} reaching {hw}"), timeout, || async {
        let (at, _) = follower_fetch(client, addr, topic, 0, from).await?;
        if at >= hw { Ok(()) } else { anyhow::bail!("at {at}") }
    })
    .await
    .unwrap();
    let mut out = Vec::new();
    let mut next = from;
    while next < hw {
        let (_, batches) = follower_fetch(client, addr, topic, 0, next).await.unwrap();
        assert!(!batches.is_empty(), "{addr}: nothing at {next} below {hw}");
        for b in batches.into_iter().filter(|b| b.base_offset < hw) {
            let count = rafka_proto::batch::validate(&b.batch, usize::MAX).unwrap().records_count;
            out.push((b.base_offset, crc32c::crc32c(&b.batch)));
            next = b.base_offset + i64::from(count);
        }
    }
    out
}

fn stored_groups(cluster: &Cluster, broker: u64) -> BTreeSet<String> {
    let dir = cluster.broker(broker).data_dir().join("groups");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// Every record value of partition 0, from offset 0.
async fn values(client: &TestClient, topic: &str) -> Vec<String> {
    let records = client.fetch_all(topic, 0, 0).await.unwrap();
    records.iter().map(|r| String::from_utf8_lossy(r.value_bytes()).into_owned()).collect()
}

async fn produce_values(client: &TestClient, topic: &str, tag: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..n {
        let v = format!("{tag}-{i}");
        let batch = records::values_batch(&[v.as_str()], records::now_ms());
        client.must_produce(topic, 0, batch, Acks::All).await;
        sent.push(v);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_moves_a_partition_and_deletes_the_old_copy() {
    let limit = test_timeout(Duration::from_secs(240));
    let cluster = start(4).await;
    bounded("reassignment", limit, async {
        let client = cluster.client();
        let t = Duration::from_secs(60);
        client.must_create_topic("moved", 1, 3).await;
        let before = info(&client, "moved", 0).await.unwrap();
        let leader = before.leader.unwrap();
        let spare = (1..=4).find(|b| !before.replicas.contains(b)).unwrap();
        let mut sent = produce_values(&client, "moved", "before", 40).await;
        let groups_before = stored_groups(&cluster, leader);

        // Off the leader's broker, onto the spare one, which becomes the preferred leader.
        let mut target = vec![spare];
        target.extend(before.replicas.iter().filter(|b| **b != leader));
        let writer = {
            let client = client.clone();
            tokio::spawn(async move { produce_values(&client, "moved", "during", 60).await })
        };
        assert_eq!(reassign(&cluster, "moved", 0, &target).await.0, ErrorCode::None);
        sent.extend(writer.await.unwrap());
        wait_settled(&client, "moved", &target, t).await;
        client.wait_for_leader("moved", 0, t, |l| l == spare).await.unwrap();
        sent.extend(produce_values(&client, "moved", "after", 20).await);

        // Every acknowledged record, once, in order.
        let got = values(&client, "moved").await;
        assert_eq!(got, sent);
        // Every replica holds the same bytes.
        let hw = got.len() as i64;
        let mut copies = Vec::new();
        for b in &target {
            let addr = cluster.broker(*b).addr().to_string();
            copies.push(replica_copy(&client, &addr, "moved", hw, t).await);
        }
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "replicas differ: {copies:?}");
        // The old leader deleted its copy (and only that one).
        poll("the old copy to be deleted", t, || async {
            let gone: Vec<_> =
                groups_before.difference(&stored_groups(&cluster, leader)).cloned().collect();
            if gone.len() == 1 { Ok(()) } else { anyhow::bail!("deleted {gone:?}") }
        })
        .await
        .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_a_wiped_disk_rejoins_as_a_new_replica() {
    let limit = test_timeout(Duration::from_secs(240));
    let mut cluster = start(3).await;
    bounded("wiped disk", limit, async {
        let client = cluster.client();
        let t = Duration::from_secs(90);
        client.must_create_topic("wiped", 1, 3).await;
        let leader = info(&client, "wiped", 0).await.unwrap().leader.unwrap();
        let victim = (1..=3).find(|b| *b != leader).unwrap();
        let other = (1..=3).find(|b| *b != leader && *b != victim).unwrap();
        let mut sent = produce_values(&client, "wiped", "before", 40).await;
        let incarnation = cluster.broker(victim).data_dir().join("incarnation");
        let old = std::fs::read(&incarnation).unwrap();

        cluster.must_kill(victim);
        std::fs::remove_dir_all(cluster.broker(victim).data_dir()).unwrap();
        sent.extend(produce_values(&client, "wiped", "down", 20).await);
        cluster.must_restart(victim, t).await;
        assert_ne!(std::fs::read(&incarnation).unwrap(), old, "a new incarnation");

        let replicas = info(&client, "wiped", 0).await.unwrap().replicas;
        wait_settled(&client, "wiped", &replicas, t).await;
        let hw = sent.len() as i64;
        let leader_addr = cluster.broker(leader).addr().to_string();
        let victim_addr = cluster.broker(victim).addr().to_string();
        let on_leader = replica_copy(&client, &leader_addr, "wiped", hw, t).await;
        let on_victim = replica_copy(&client, &victim_addr, "wiped", hw, t).await;
        assert_eq!(on_victim, on_leader, "the new replica's copy differs from the leader's");

        // The new replica votes: with the other follower down, writes still commit.
        cluster.must_kill(other);
        sent.extend(produce_values(&client, "wiped", "after", 10).await);
        let got = values(&client, "wiped").await;
        assert_eq!(got, sent);
    })
    .await;
}

/// The first offset broker `addr`'s own copy still holds.
async fn earliest_at(client: &TestClient, addr: &str, topic: &str) -> anyhow::Result<i64> {
    let req = ListOffsetsRequest {
        topic: topic.into(),
        partition: 0,
        spec: Some(OffsetSpec { spec: Some(Spec::Earliest(true)) }),
        allow_follower: true,
    };
    let resp = client.data_at(addr)?.list_offsets(req).await?.into_inner();
    let e = resp.error.unwrap_or_default();
    anyhow::ensure!(e.is_ok(), "{:?}: {}", e.error_code(), e.message);
    Ok(resp.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_of_a_purged_log_installs_a_snapshot_even_after_crashing_there() {
    let limit = test_timeout(Duration::from_secs(240));
    let mut cluster = Cluster::start_with(ClusterOptions {
        brokers: 4,
        extra_toml: format!(
            "{FAST_BALANCE}retention-check-interval-ms = 200\n[log]\nsegment-bytes = 65536\n"
        ),
        ..Default::default()
    })
    .await;
    bounded("snapshot install", limit, async {
        let client = cluster.client();
        let t = Duration::from_secs(90);
        client.must_create_topic_with("purged", 1, 3, &[("retention.bytes", "100000")]).await;
        let before = info(&client, "purged", 0).await.unwrap();
        let spare = (1..=4).find(|b| !before.replicas.contains(b)).unwrap();
        // About 512 KiB in 64 KiB segments: retention purges the head of the log.
        let mut sent = Produced::default();
        sent.append(&client, "purged", 0, 128, (4, 1000), records::now_ms()).await;
        poll("retention to purge the leader's log", t, || async {
            let p = info(&client, "purged", 0).await?;
            if p.log_start_offset > 0 { Ok(()) } else { anyhow::bail!("log start 0") }
        })
        .await
        .unwrap();

        cluster.broker(spare).arm_crash_point("snapshot-install", "1*return").await.unwrap();
        let mut target = before.replicas.clone();
        target[2] = spare;
        assert_eq!(reassign(&cluster, "purged", 0, &target).await.0, ErrorCode::None);
        poll("the new replica to crash installing the snapshot", t, || {
            let running = cluster.broker_mut(spare).is_running();
            async move { if running { Err("still running") } else { Ok(()) } }
        })
        .await
        .unwrap();
        cluster.must_restart(spare, t).await;
        wait_settled(&client, "purged", &target, t).await;

        let hw = sent.end();
        let leader = client.wait_for_leader("purged", 0, t, |_| true).await.unwrap().0;
        let leader_addr = cluster.broker(leader).addr().to_string();
        let spare_addr = cluster.broker(spare).addr().to_string();
        let spare_start = earliest_at(&client, &spare_addr, "purged").await.unwrap();
        let leader_start = earliest_at(&client, &leader_addr, "purged").await.unwrap();
        assert!(spare_start > 0, "the new replica copied the whole log instead of a snapshot");
        let from = spare_start.max(leader_start);
        let on_spare = replica_copy_from(&client, &spare_addr, "purged", from, hw, t).await;
        let on_leader = replica_copy_from(&client, &leader_addr, "purged", from, hw, t).await;
        assert!(!on_spare.is_empty());
        assert_eq!(on_spare, on_leader, "the new replica's retained log differs");
        let got = client.fetch_all("purged", 0, leader_start).await.unwrap();
        sent.check_from(&got, leader_start, "after the move");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leadership_moves_the_leader() {
    let limit = test_timeout(Duration::from_secs(180));
    let cluster = start(3).await;
    bounded("transfer leadership", limit, async {
        let client = cluster.client();
        let t = Duration::from_secs(60);
        client.must_create_topic("led", 1, 3).await;
        produce_values(&client, "led", "x", 5).await;
        let before = info(&client, "led", 0).await.unwrap();
        let leader = before.leader.unwrap();
        let to = *before.replicas.iter().find(|b| **b != leader).unwrap();
        assert_eq!(transfer(&cluster, "led", 0, to).await, ErrorCode::None);
        client.wait_for_leader("led", 0, t, |l| l == to).await.unwrap();
        let after = info(&client, "led", 0).await.unwrap();
        assert_eq!(after.replicas[0], to, "the new leader is the preferred replica");
        let mut a: Vec<u64> = after.replicas.clone();
        let mut b: Vec<u64> = before.replicas.clone();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "the replica set is unchanged");
        produce_values(&client, "led", "y", 5).await;
        assert_eq!(client.fetch_all("led", 0, 0).await.unwrap().len(), 10);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reassignments_are_refused_and_change_nothing() {
    let limit = test_timeout(Duration::from_secs(240));
    let mut cluster = start(3).await;
    bounded("bad reassignments", limit, async {
        let client = cluster.client();
        let t = Duration::from_secs(60);
        client.must_create_topic("kept", 1, 2).await;
        let before = info(&client, "kept", 0).await.unwrap();
        let outsider = (1..=3).find(|b| !before.replicas.contains(b)).unwrap();
        let cases: Vec<(&str, u32, Vec<u64>, ErrorCode)> = vec![
            ("nope", 0, vec![1, 2], ErrorCode::UnknownTopic),
            ("bad/name", 0, vec![1, 2], ErrorCode::InvalidTopic),
            ("kept", 7, vec![1, 2], ErrorCode::UnknownPartition),
            ("kept", 0, vec![], ErrorCode::InvalidReplicationFactor),
            ("kept", 0, vec![1, 1], ErrorCode::InvalidReplicationFactor),
            ("kept", 0, vec![1, 99], ErrorCode::InvalidReplicationFactor),
        ];
        for (topic, partition, brokers, code) in cases {
            let (got, message) = reassign(&cluster, topic, partition, &brokers).await;
            assert_eq!(got, code, "{topic}/{partition} to {brokers:?}: {message}");
            assert!(!message.is_empty(), "{topic}/{partition} to {brokers:?}: no message");
        }
        assert_eq!(transfer(&cluster, "kept", 0, outsider).await, ErrorCode::InvalidRequest);
        assert_eq!(transfer(&cluster, "kept", 9, 1).await, ErrorCode::UnknownPartition);
        let now = info(&client, "kept", 0).await.unwrap();
        assert_eq!((now.replicas, now.target_replicas), (before.replicas.clone(), vec![]));

        // A move to a broker that is down stays under way; a second one is refused.
        cluster.must_kill(outsider);
        let target = vec![before.replicas[0], outsider];
        assert_eq!(reassign(&cluster, "kept", 0, &target).await.0, ErrorCode::None);
        let (code, _) = reassign(&cluster, "kept", 0, &before.replicas).await;
        assert_eq!(code, ErrorCode::ReassignmentInProgress);
        assert_eq!(transfer(&cluster, "kept", 0, before.replicas[1]).await, code);
        // Writes go on meanwhile, and the move completes once the broker is back.
        produce_values(&client, "kept", "x", 5).await;
        cluster.must_restart(outsider, t).await;
        wait_settled(&client, "kept", &target, t).await;
        assert_eq!(client.fetch_all("kept", 0, 0).await.unwrap().len(), 5);
    })
    .await;
}
