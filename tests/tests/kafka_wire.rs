//! Kafka requests sent as a client encodes them, for what no client shows directly: a
//! Produce (v10+) or Fetch (v12) sent to a broker that does not lead the partition names
//! the leader and its epoch (KIP-951); a Produce carrying two batches for one partition
//! is refused as Kafka refuses it, storing nothing; and Produce requests pipelined on one
//! connection are written in the order sent and answered in that order.

use std::time::Duration;

use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::protocol::StrBytes;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::kafka::call;
use rafka_tests::records;
use rafka_tests::wait::poll;
use rafka_tests::wait::test_timeout;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const INVALID_RECORD: i16 = 87;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn produce(topic: &str, records: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(records)),
        ]),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdirected_requests_name_the_leader() {
    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(180));
    bounded("misdirected_requests_name_the_leader", limit, async {
        let client = cluster.client();
        client.must_create_topic("hint", 1, 3).await;
        client.wait_for_leaders("hint", 1, Duration::from_secs(60)).await.unwrap();
        let (leader, leader_addr) = client.leader("hint", 0).await.unwrap();
        let follower = cluster.brokers().iter().find(|b| b.id() != leader).unwrap().addr();
        let md = client.metadata(&["hint"]).await.unwrap();
        let epoch = md.topics[0].partitions[0].leader_epoch;
        assert!(epoch > 0, "a leader epoch: {epoch}");
        let batch = records::values_batch(&["x"], records::now_ms());

        // Produce v11 to a follower: NOT_LEADER_OR_FOLLOWER with the leader, its epoch and
        // its endpoint (the follower may take a moment to learn the leader).
        let resp: ProduceResponse =
            poll("a produce answer naming the leader", Duration::from_secs(30), || {
                let req = produce("hint", batch.clone());
                async move {
                    let r: ProduceResponse = call(follower, 11, &req).await?;
                    let p = &r.responses[0].partition_responses[0];
                    anyhow::ensure!(
                        p.current_leader.leader_id.0 >= 0,
                        "no leader named yet: {r:?}"
                    );
                    Ok(r)
                }
            })
            .await
            .unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER, "{resp:?}");
        assert_eq!(p.current_leader.leader_id, BrokerId(leader as i32), "{resp:?}");
        assert_eq!(p.current_leader.leader_epoch, epoch, "{resp:?}");
        let port: i32 = leader_addr.rsplit_once(':').unwrap().1.parse().unwrap();
        assert_eq!(resp.node_endpoints.len(), 1, "{resp:?}");
        assert_eq!(resp.node_endpoints[0].node_id, BrokerId(leader as i32));
        assert_eq!(resp.node_endpoints[0].port, port);

        // Fetch v12 to the follower: the same hint.
        let fetch = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default().with_topic(name("hint")).with_partitions(
                vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ],
            )]);
        let resp: FetchResponse = call(follower, 12, &fetch).await.unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER, "{resp:?}");
        assert_eq!(p.current_leader.leader_id, BrokerId(leader as i32), "{resp:?}");
        assert_eq!(p.current_leader.leader_epoch, epoch, "{resp:?}");

        // The leader itself takes the batch.
        let leader_sock = cluster.broker(leader).addr();
        let resp: ProduceResponse = call(leader_sock, 11, &produce("hint", batch)).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0), "{resp:?}");
        assert!(resp.node_endpoints.is_empty(), "{resp:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batches_for_one_partition_are_refused() {
    let cluster = Cluster::start(1).await;
    let limit = test_timeout(Duration::from_secs(120));
    bounded("two_batches_for_one_partition_are_refused", limit, async {
        let client = cluster.client();
        client.must_create_topic("one", 1, 1).await;
        let addr = cluster.broker(1).addr();
        let a = records::values_batch(&["a"], records::now_ms());
        let b = records::values_batch(&["b"], records::now_ms());
        let two = bytes::Bytes::from([a.to_vec(), b.to_vec()].concat());
        let resp: ProduceResponse = call(addr, 11, &produce("one", two)).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, INVALID_RECORD, "{resp:?}");
        let message = p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(message.contains("more than one record batch"), "{message}");
        // Nothing stored; one batch is taken.
        let resp: ProduceResponse = call(addr, 11, &produce("one", a)).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0), "{resp:?}");
        assert_eq!(client.fetch_all("one", 0, 0).await.unwrap().len(), 1);
    })
    .await;
}

/// An idempotent producer's batches, sent back to back on one connection without waiting:
/// every one is accepted (no OUT_OF_ORDER_SEQUENCE), the answers come in request order with
/// increasing offsets, and the log holds the batches in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_keep_their_order() {
    use kafka_protocol::messages::InitProducerIdRequest;
    use kafka_protocol::messages::InitProducerIdResponse;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::protocol::Encodable;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;

    let cluster = Cluster::start(3).await;
    let limit = test_timeout(Duration::from_secs(180));
    bounded("pipelined_produces_keep_their_order", limit, async {
        let client = cluster.client();
        client.must_create_topic("piped", 1, 3).await;
        client.wait_for_leaders("piped", 1, Duration::from_secs(60)).await.unwrap();
        let (leader, _) = client.leader("piped", 0).await.unwrap();
        let addr = cluster.broker(leader).addr();
        let init: InitProducerIdResponse =
            call(addr, 4, &InitProducerIdRequest::default().with_transactional_id(None))
                .await
                .unwrap();
        assert_eq!(init.error_code, 0, "{init:?}");
        let (pid, epoch) = (init.producer_id.0, i32::from(init.producer_epoch));

        const N: i32 = 40;
        let mut wire = Vec::new();
        for i in 0..N {
            let recs = [records::value_record(format!("v{i}"), records::now_ms())];
            let batch =
                records::batch(&recs, Some((pid, epoch, i)), rafka_proto::batch::Compression::None);
            let header = RequestHeader::default()
                .with_request_api_key(0)
                .with_request_api_version(9)
                .with_correlation_id(i);
            let mut buf = bytes::BytesMut::new();
            header.encode(&mut buf, 2).unwrap();
            produce("piped", batch).encode(&mut buf, 9).unwrap();
            wire.extend_from_slice(&(buf.len() as i32).to_be_bytes());
            wire.extend_from_slice(&buf);
        }
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(&wire).await.unwrap();
        let mut offsets = Vec::new();
        for i in 0..N {
            let mut size = [0u8; 4];
            sock.read_exact(&mut size).await.unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
            sock.read_exact(&mut body).await.unwrap();
            let mut body = bytes::Bytes::from(body);
            let h = ResponseHeader::decode(&mut body, 1).unwrap();
            assert_eq!(h.correlation_id, i, "answers in request order");
            let r = ProduceResponse::decode(&mut body, 9).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "batch {i}: {r:?}");
            offsets.push(p.base_offset);
        }
        assert_eq!(offsets, (0..i64::from(N)).collect::<Vec<_>>(), "written in the order sent");
        let values: Vec<String> = client
            .fetch_all("piped", 0, 0)
            .await
            .unwrap()
            .iter()
            .map(|r| String::from_utf8(r.value_bytes().to_vec()).unwrap())
            .collect();
        assert_eq!(values, (0..N).map(|i| format!("v{i}")).collect::<Vec<_>>());
    })
    .await;
}
