//! In-process fake brokers for unit tests of [`crate::TestClient`]: a gRPC server whose every
//! method is one closure over (method path, request bytes), so the client's routing,
//! redirects, retries and batch checks are tested without the real broker. The fake does not
//! implement the generated service traits, so new RPCs in the contract do not break it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rafka_proto::ErrorExt;
use rafka_proto::v1::BrokerInfo;
use rafka_proto::v1::Error;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::FetchResponse;
use rafka_proto::v1::FetchedBatch;
use rafka_proto::v1::LeaderHint;
use rafka_proto::v1::MetadataRequest;
use rafka_proto::v1::MetadataResponse;
use rafka_proto::v1::PartitionInfo;
use rafka_proto::v1::ProduceRequest;
use rafka_proto::v1::ProduceResponse;
use rafka_proto::v1::TopicMetadata;
use tonic::Status;
use tonic::codegen::BoxFuture;
use tonic::codegen::Context;
use tonic::codegen::Poll;
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::server::UnaryService;
use tonic::transport::server::TcpIncoming;

use crate::TestClient;
use crate::raw::BytesCodec;
use crate::records;

/// Answers one request: `(method path, request message) -> response message`.
type Handler = Arc<dyn Fn(&str, Bytes) -> Result<Bytes, Status> + Send + Sync>;

/// Serves every method of one gRPC service (`rafka.v1.Data` or `rafka.v1.Admin`).
#[derive(Clone)]
struct FakeService<const ADMIN: bool> {
    handler: Handler,
}

impl<const ADMIN: bool> NamedService for FakeService<ADMIN> {
    const NAME: &'static str = if ADMIN { "rafka.v1.Admin" } else { "rafka.v1.Data" };
}

struct Unary {
    path: String,
    handler: Handler,
}

impl UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let r = (self.handler)(&self.path, request.into_inner());
        Box::pin(async move { r.map(tonic::Response::new) })
    }
}

impl<const ADMIN: bool> Service<http::Request<tonic::body::Body>> for FakeService<ADMIN> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let unary = Unary { path: req.uri().path().to_string(), handler: self.handler.clone() };
        Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).unary(unary, req).await) })
    }
}

/// A running fake broker; stops when dropped.
pub(crate) struct FakeBroker {
    pub(crate) addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeBroker {
    /// Serves `handler` on a fresh loopback port.
    pub(crate) async fn start(
        handler: impl Fn(&str, Bytes) -> Result<Bytes, Status> + Send + Sync + 'static,
    ) -> FakeBroker {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(FakeService::<false> { handler: handler.clone() })
            .add_service(FakeService::<true> { handler });
        tokio::spawn(router.serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = stopped.await;
        }));
        FakeBroker { addr, _stop: stop }
    }
}

fn encode(m: &impl Message) -> Result<Bytes, Status> {
    Ok(m.encode_to_vec().into())
}

/// Metadata naming broker 1 at `leader` and broker 2 at `other`, topic `t` with one
/// partition led by broker 1; any other topic is unknown.
fn metadata(req: Bytes, leader: SocketAddr, other: SocketAddr) -> Result<Bytes, Status> {
    let req = MetadataRequest::decode(req).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let topics = req
        .topics
        .iter()
        .map(|name| match name.as_str() {
            "t" => TopicMetadata {
                error: None,
                name: name.clone(),
                topic_id: 1,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    leader: Some(1),
                    replicas: vec![1, 2],
                    ..Default::default()
                }],
                internal: false,
            },
            _ => TopicMetadata {
                error: Some(Error::new(ErrorCode::UnknownTopic, "no such topic")),
                name: name.clone(),
                ..Default::default()
            },
        })
        .collect();
    let broker = |id, a: SocketAddr| BrokerInfo {
        broker_id: id,
        address: a.to_string(),
        rack: None,
        alive: true,
        batch_format: 0,
        ..Default::default()
    };
    encode(&MetadataResponse {
        error: None,
        brokers: vec![broker(1, leader), broker(2, other)],
        topics,
        controller_id: Some(1),
        cluster_id: "fake".into(),
    })
}

/// Two fake brokers: broker 1 (per the metadata, the leader of `t`/0) answers produce and
/// fetch with `NOT_LEADER` pointing at broker 2; broker 2 runs `serve` for them. Returns the
/// brokers (1, 2) and the requests broker 2 saw.
async fn leader_moved(
    serve: impl Fn(&str, Bytes) -> Result<Bytes, Status> + Send + Sync + 'static,
) -> (FakeBroker, FakeBroker, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let two = FakeBroker::start(move |path, req| {
        log.lock().unwrap().push(path.to_string());
        serve(path, req)
    })
    .await;
    let two_addr = two.addr;
    // Broker 1 needs its own address for the metadata: bind first, learn it, then serve.
    let one_addr = Arc::new(Mutex::new(None::<SocketAddr>));
    let own = one_addr.clone();
    let one = FakeBroker::start(move |path, req| {
        let me = own.lock().unwrap().expect("address set before use");
        let hint = Some(LeaderHint { broker_id: 2, address: two_addr.to_string() });
        match path {
            "/rafka.v1.Admin/Metadata" => metadata(req, me, two_addr),
            "/rafka.v1.Data/Produce" => encode(&ProduceResponse {
                error: Some(Error::not_leader(hint)),
                base_offset: -1,
                log_start_offset: 0,
            }),
            "/rafka.v1.Data/Fetch" => encode(&FetchResponse {
                error: Some(Error::not_leader(hint)),
                ..Default::default()
            }),
            _ => Err(Status::unimplemented(path.to_string())),
        }
    })
    .await;
    *one_addr.lock().unwrap() = Some(one.addr);
    (one, two, seen)
}

fn produce_answer(code: ErrorCode, base_offset: i64) -> Result<Bytes, Status> {
    encode(&ProduceResponse { error: Some(Error::new(code, "")), base_offset, log_start_offset: 0 })
}

#[tokio::test]
async fn produce_follows_the_leader_hint_and_retries_retriable_codes() {
    let calls = Arc::new(Mutex::new(0));
    let n = calls.clone();
    let (one, _two, seen) = leader_moved(move |path, req| {
        assert_eq!(path, "/rafka.v1.Data/Produce");
        let req = ProduceRequest::decode(req).unwrap();
        assert_eq!((req.topic.as_str(), req.partition), ("t", 0));
        let mut n = n.lock().unwrap();
        *n += 1;
        match *n {
            1 => produce_answer(ErrorCode::LeaderNotAvailable, -1),
            2 => Err(Status::unavailable("connection reset")),
            _ => produce_answer(ErrorCode::None, 42),
        }
    })
    .await;
    let client = TestClient::new([one.addr]);
    let batch = records::values_batch(&["v"], 1);
    let offset = client.must_produce("t", 0, batch, rafka_proto::v1::Acks::All).await;
    assert_eq!(offset, 42);
    assert_eq!(*calls.lock().unwrap(), 3, "two retries at the leader");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn fatal_codes_are_returned_at_once_and_unknown_topics_go_to_any_broker() {
    let fake = FakeBroker::start(|path, req| match path {
        "/rafka.v1.Admin/Metadata" => {
            let unused: SocketAddr = "127.0.0.1:1".parse().unwrap();
            metadata(req, unused, unused)
        }
        "/rafka.v1.Data/Produce" => produce_answer(ErrorCode::UnknownTopic, -1),
        _ => Err(Status::unimplemented(path.to_string())),
    })
    .await;
    let client = TestClient::new([fake.addr]);
    let batch = records::values_batch(&["v"], 1);
    let resp = client.produce("missing", 0, batch, rafka_proto::v1::Acks::All).await.unwrap();
    assert_eq!(crate::client::code_of(&resp), ErrorCode::UnknownTopic);
}

#[tokio::test]
async fn retriable_answers_until_the_deadline_give_a_clear_error() {
    let (one, _two, _) = leader_moved(|_, _| produce_answer(ErrorCode::RequestTimedOut, -1)).await;
    let client = TestClient::new([one.addr]).with_timeout(Duration::from_millis(500));
    let batch = records::values_batch(&["v"], 1);
    let err = client.produce("t", 0, batch, rafka_proto::v1::Acks::All).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("gave up") && text.contains("RequestTimedOut"), "{text}");
}

#[tokio::test]
async fn dead_bootstrap_brokers_are_skipped() {
    let fake = FakeBroker::start(|path, req| match path {
        "/rafka.v1.Admin/Metadata" => {
            let unused: SocketAddr = "127.0.0.1:1".parse().unwrap();
            metadata(req, unused, unused)
        }
        _ => Err(Status::unimplemented(path.to_string())),
    })
    .await;
    let dead = crate::ports::ReservedPort::new().unwrap().release();
    let client = TestClient::new([dead, fake.addr, dead]);
    for _ in 0..4 {
        let md = client.metadata(&["t"]).await.unwrap();
        assert_eq!(md.topics[0].partitions[0].leader, Some(1));
    }
}

/// A fetch answer with the given batches (base offset, values) and high watermark 5.
fn fetch_answer(batches: &[(i64, &[&str])]) -> Result<Bytes, Status> {
    encode(&FetchResponse {
        error: None,
        high_watermark: 5,
        log_start_offset: 0,
        batches: batches
            .iter()
            .map(|(base, values)| FetchedBatch {
                base_offset: *base,
                batch: records::at_offset(&records::values_batch(values, 100 + base), *base),
            })
            .collect(),
    })
}

#[tokio::test]
async fn fetch_all_skips_below_the_offset_and_reads_to_the_high_watermark() {
    let (one, _two, _) = leader_moved(|_, req| {
        let req = FetchRequest::decode(req).unwrap();
        match req.offset {
            0..=2 => fetch_answer(&[(0, &["a", "b", "c"])]),
            3 | 4 => fetch_answer(&[(3, &["d", "e"])]),
            o => panic!("fetch past the high watermark at {o}"),
        }
    })
    .await;
    let client = TestClient::new([one.addr]);
    let got = client.fetch_all("t", 0, 1).await.unwrap();
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    let values: Vec<&[u8]> = got.iter().map(|r| r.value_bytes()).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
    assert_eq!(values, vec![&b"b"[..], b"c", b"d", b"e"]);
    assert_eq!(got[0].timestamp, 101);
}

#[tokio::test]
async fn fetch_all_refuses_gaps_and_corrupt_batches() {
    let (one, _two, _) = leader_moved(|_, req| match FetchRequest::decode(req).unwrap().offset {
        0 => fetch_answer(&[(0, &["a", "b"]), (3, &["d", "e"])]),
        _ => fetch_answer(&[]),
    })
    .await;
    let client = TestClient::new([one.addr]);
    let err = format!("{:#}", client.fetch_all("t", 0, 0).await.unwrap_err());
    assert!(err.contains("expected the batch holding offset 2"), "{err}");

    let (one, _two, _) = leader_moved(|_, _| {
        let mut batch = records::values_batch(&["a"], 1).to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        encode(&FetchResponse {
            error: None,
            high_watermark: 1,
            log_start_offset: 0,
            batches: vec![FetchedBatch { base_offset: 0, batch: batch.into() }],
        })
    })
    .await;
    let client = TestClient::new([one.addr]);
    let err = format!("{:#}", client.fetch_all("t", 0, 0).await.unwrap_err());
    assert!(err.contains("checksum"), "{err}");
}

#[tokio::test]
async fn raw_unary_passes_bytes_both_ways() {
    let fake = FakeBroker::start(|path, req| {
        assert_eq!(path, "/rafka.v1.Data/Produce");
        let mut v = req.to_vec();
        v.reverse();
        Ok(v.into())
    })
    .await;
    let timeout = Duration::from_secs(5);
    let body = Bytes::from_static(b"\x01\x02\xff");
    let r = crate::raw::raw_unary(fake.addr, "/rafka.v1.Data/Produce", body.clone(), timeout);
    assert_eq!(&r.await.unwrap()[..], b"\xff\x02\x01");
    let r = crate::raw::raw_unary(fake.addr, "/rafka.v1.Nope/Produce", body, timeout).await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unimplemented);
}
