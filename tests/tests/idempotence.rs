//! Acceptance: idempotent producers on a three-broker cluster.
//!
//! - A batch whose answer the producer never saw (answered and lost, or in flight when the
//!   leader was killed) and that is retried at the next leader is stored exactly once, and
//!   the retry is answered with the offset where it is stored.
//! - A sequence gap is refused with `OUT_OF_ORDER_SEQUENCE`.
//! - After a re-init under the same producer name, the old epoch gets `PRODUCER_FENCED`.

use std::time::Duration;

use bytes::Bytes;
use rafka_proto::ErrorExt;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::ProduceRequest;
use rafka_tests::Cluster;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::code_of;
use rafka_tests::poll;
use rafka_tests::records;
use rafka_tests::records::Sequencer;
use rafka_tests::records::value_record;
use rafka_tests::wait::test_timeout;

fn recs(prefix: &str, range: std::ops::Range<usize>) -> Vec<NewRecord> {
    let ts = records::now_ms();
    range.map(|i| value_record(format!("{prefix}-{i}"), ts + i as i64)).collect()
}

fn values(records: &[rafka_tests::FetchedRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(r.value_bytes()).into_owned()).collect()
}

/// Offers `batch` to whichever broker leads the partition now, with acks=none, until one
/// accepts it for replication; returns that broker's id.
async fn offer_to_leader(client: &TestClient, cluster: &Cluster, topic: &str, batch: Bytes) -> u64 {
    let what = format!("the leader of {topic}/0 accepts a batch with acks=none");
    poll(&what, Duration::from_secs(30), || async {
        let (id, addr) = client.leader(topic, 0).await?;
        let req = ProduceRequest {
            topic: topic.into(),
            partition: 0,
            acks: Acks::None as i32,
            batch: batch.clone(),
            ..Default::default()
        };
        let resp = client.produce_at(&addr, req).await?;
        let e = resp.error.unwrap_or_else(rafka_proto::v1::Error::none);
        anyhow::ensure!(e.is_ok(), "broker {id}: {:?}: {}", e.error_code(), e.message);
        anyhow::ensure!(
            cluster.id_of(&addr) == Some(id),
            "leader address {addr} is not broker {id}"
        );
        Ok::<_, anyhow::Error>(id)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batch_is_stored_once_across_leader_changes() {
    const TOPIC: &str = "idem";
    let mut cluster = Cluster::start(3).await;
    bounded("retried_batch_is_stored_once", test_timeout(Duration::from_secs(120)), async {
        let client = cluster.client();
        let minute = Duration::from_secs(60);
        client.must_create_topic(TOPIC, 1, 3).await;
        let (id, epoch) = client.must_init_producer("").await;
        let mut producer = Sequencer::new(id, epoch);

        // 1. Answered, but the answer is "lost": the leader dies, the producer retries at the
        //    new leader, which must find the batch its predecessor committed.
        let first = producer.batch(0, &recs("a", 0..10), Compression::Lz4);
        let offset_a = client.must_produce(TOPIC, 0, first.clone(), Acks::All).await;
        let (old, _) = client.leader(TOPIC, 0).await.unwrap();
        cluster.must_kill(old);
        client.wait_for_leader(TOPIC, 0, minute, |l| l != old).await.unwrap();
        let retried = client.must_produce(TOPIC, 0, first.clone(), Acks::All).await;
        assert_eq!(retried, offset_a, "a retry of a committed batch must get its original offset");
        cluster.must_restart(old, minute).await;

        // 2. In flight: the leader accepted the batch (acks=none) and is killed at once, so
        //    the batch may or may not have been committed. The retry settles it either way.
        let second = producer.batch(0, &recs("b", 10..20), Compression::None);
        let old = offer_to_leader(&client, &cluster, TOPIC, second.clone()).await;
        cluster.must_kill(old);
        client.wait_for_leader(TOPIC, 0, minute, |l| l != old).await.unwrap();
        let offset_b = client.must_produce(TOPIC, 0, second.clone(), Acks::All).await;
        cluster.must_restart(old, minute).await;

        let batches = client.fetch_batches(TOPIC, 0, 0).await.unwrap();
        for (name, bytes, offset) in [("first", &first, offset_a), ("second", &second, offset_b)] {
            let copies: Vec<i64> = batches
                .iter()
                .filter(|b| records::same_batch(&b.batch, bytes))
                .map(|b| b.base_offset)
                .collect();
            assert_eq!(
                copies,
                vec![offset],
                "{name} batch: stored at {copies:?}, answered {offset}"
            );
        }
        assert_eq!(batches.len(), 2, "the partition holds only the two batches");
        let all = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let want: Vec<String> =
            (0..10).map(|i| format!("a-{i}")).chain((10..20).map(|i| format!("b-{i}"))).collect();
        assert_eq!(values(&all), want, "records of the partition");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_gap_is_out_of_order() {
    const TOPIC: &str = "gap";
    let cluster = Cluster::start(3).await;
    bounded("sequence_gap_is_out_of_order", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 3).await;
        let (id, epoch) = client.must_init_producer("").await;

        let b0 = records::batch(&recs("x", 0..5), Some((id, epoch, 0)), Compression::None);
        assert_eq!(client.must_produce(TOPIC, 0, b0, Acks::All).await, 0);
        // The next sequence is 5; 10 leaves a gap.
        let gap = records::batch(&recs("gap", 10..15), Some((id, epoch, 10)), Compression::None);
        let resp = client.produce(TOPIC, 0, gap, Acks::All).await.unwrap();
        assert_eq!(code_of(&resp), ErrorCode::OutOfOrderSequence, "sequence gap: {resp:?}");
        let b1 = records::batch(&recs("x", 5..10), Some((id, epoch, 5)), Compression::None);
        assert_eq!(client.must_produce(TOPIC, 0, b1, Acks::All).await, 5, "after the refusal");

        let all = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let want: Vec<String> = (0..10).map(|i| format!("x-{i}")).collect();
        assert_eq!(values(&all), want, "the refused batch left no trace");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_epoch_is_fenced_after_reinit() {
    const TOPIC: &str = "fence";
    let cluster = Cluster::start(3).await;
    bounded("old_epoch_is_fenced_after_reinit", test_timeout(Duration::from_secs(90)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 3).await;
        let (id, old_epoch) = client.must_init_producer("fence-me").await;
        let b = records::batch(&recs("old", 0..3), Some((id, old_epoch, 0)), Compression::None);
        assert_eq!(client.must_produce(TOPIC, 0, b, Acks::All).await, 0);

        let (same_id, new_epoch) = client.must_init_producer("fence-me").await;
        assert_eq!(same_id, id, "re-init under the same name keeps the producer id");
        assert!(new_epoch > old_epoch, "re-init bumps the epoch: {old_epoch} -> {new_epoch}");
        let (other, _) = client.must_init_producer("someone-else").await;
        assert_ne!(other, id, "another name gets another producer id");

        // A new epoch starts its sequences at 0.
        let b = records::batch(&recs("new", 0..3), Some((id, new_epoch, 0)), Compression::None);
        assert_eq!(client.must_produce(TOPIC, 0, b, Acks::All).await, 3);
        let zombie =
            records::batch(&recs("old", 3..6), Some((id, old_epoch, 3)), Compression::None);
        let resp = client.produce(TOPIC, 0, zombie, Acks::All).await.unwrap();
        assert_eq!(code_of(&resp), ErrorCode::ProducerFenced, "old epoch after re-init: {resp:?}");

        let all = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let want = ["old-0", "old-1", "old-2", "new-0", "new-1", "new-2"];
        assert_eq!(values(&all), want, "the fenced batch left no trace");
    })
    .await;
}

/// `ProduceStream`: 40 idempotent batches of one partition written back to back on one
/// stream (plus a refused request and a duplicate among them) are admitted in stream order,
/// answered in that order, and stored once each in order — several batches of the partition
/// in flight at once without OUT_OF_ORDER_SEQUENCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_stream_keeps_its_order_while_batches_replicate_together() {
    const TOPIC: &str = "streamed";
    const BATCHES: usize = 40;
    let cluster = Cluster::start(3).await;
    bounded("produce stream order", test_timeout(Duration::from_secs(120)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 3).await;
        let (id, epoch) = client.must_init_producer("").await;
        let mut producer = Sequencer::new(id, epoch);
        let batches: Vec<Bytes> = (0..BATCHES)
            .map(|b| producer.batch(0, &recs(&format!("b{b}"), 0..5), Compression::None))
            .collect();
        let request = |topic: &str, batch: &Bytes| ProduceRequest {
            topic: topic.into(),
            partition: 0,
            acks: Acks::All as i32,
            batch: batch.clone(),
            ..Default::default()
        };
        let mut requests: Vec<ProduceRequest> = batches.iter().map(|b| request(TOPIC, b)).collect();
        // A refusal in the middle is answered in its place and breaks nothing after it.
        requests.insert(BATCHES / 2, request("no-such-topic", &batches[0]));
        // A retry of batch 3 is answered with where batch 3 is stored.
        requests.push(request(TOPIC, &batches[3]));
        let sent = requests.len();

        let (_, addr) = client.leader(TOPIC, 0).await.unwrap();
        let mut data = client.data_at(&addr).unwrap();
        let answers = data
            .produce_stream(futures::stream::iter(requests))
            .await
            .expect("the stream opens")
            .into_inner();
        let answers: Vec<_> = futures::StreamExt::collect::<Vec<_>>(answers).await;
        assert_eq!(answers.len(), sent, "one answer per request");
        let answers: Vec<_> = answers.into_iter().map(|a| a.expect("an answer")).collect();
        let mut offsets = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            if i == BATCHES / 2 {
                assert_eq!(code_of(a), ErrorCode::UnknownTopic, "request {i}: {a:?}");
                continue;
            }
            assert_eq!(code_of(a), ErrorCode::None, "request {i}: {a:?}");
            offsets.push(a.base_offset);
        }
        let duplicate = offsets.pop().unwrap();
        let want: Vec<i64> = (0..BATCHES as i64).map(|b| b * 5).collect();
        assert_eq!(offsets, want, "batches stored in stream order, answered in that order");
        assert_eq!(duplicate, 15, "the retry of batch 3 gets its original offset");

        let all = client.fetch_all(TOPIC, 0, 0).await.unwrap();
        let want: Vec<String> =
            (0..BATCHES).flat_map(|b| (0..5).map(move |i| format!("b{b}-{i}"))).collect();
        assert_eq!(values(&all), want, "each batch once, in order");
    })
    .await;
}
