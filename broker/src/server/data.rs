//! The `Data` service: produce, fetch, subscribe, offset lookups, producer ids.
//!
//! Authorization: produce needs Write on the topic, fetch and subscribe Read, offset lookups
//! Describe, producer ids IdempotentWrite on the cluster (or Write on some topic). A call
//! refused is `PERMISSION_DENIED`; on a produce stream, where one message must not end the
//! others, the refused message's answer carries `AUTHORIZATION_FAILED`.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::data_server::Data;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use super::auth::authorize;
use super::auth::caller;
use super::code_of;
use super::controller_to_forward;
use super::forward;
use super::proto_error;
use super::to_proto;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::metrics as m;
use crate::partition::OffsetSpec;
use crate::partition::ReadResult;
use crate::service::acl;
use crate::service::data as svc;

/// Requests of one produce stream admitted and not yet answered, at most: half wait in the
/// channel between the reader and the answers, half replicate in the answers' buffer.
const STREAM_PIPELINE: usize = 64;

/// The tonic `Data` service.
pub struct DataService {
    pub broker: Arc<Broker>,
}

/// A refused fetch. OFFSET_OUT_OF_RANGE carries the range the replica judged against;
/// every other refusal says nothing of the log (-1), never a made-up 0.
fn fetch_error(e: &Error) -> v1::FetchResponse {
    let w = e.watermarks();
    v1::FetchResponse {
        error: Some(to_proto(e)),
        high_watermark: w.map_or(-1, |w| w.high_watermark),
        log_start_offset: w.map_or(-1, |w| w.log_start_offset),
        batches: Vec::new(),
    }
}

fn fetch_response(r: ReadResult) -> v1::FetchResponse {
    v1::FetchResponse {
        error: Some(v1::Error::none()),
        high_watermark: r.high_watermark,
        log_start_offset: r.log_start_offset,
        batches: r
            .batches
            .into_iter()
            .map(|b| v1::FetchedBatch { base_offset: b.base_offset, batch: b.batch })
            .collect(),
    }
}

fn produce_request(req: v1::ProduceRequest) -> svc::Produce {
    let acks = match v1::Acks::try_from(req.acks) {
        Ok(v1::Acks::All) => svc::Acks::All,
        Ok(v1::Acks::None) => svc::Acks::None,
        Err(_) => svc::Acks::Unknown(req.acks),
    };
    svc::Produce {
        topic: req.topic,
        partition: req.partition,
        batch: req.batch,
        acks,
        timeout: (req.timeout_ms != 0).then(|| Duration::from_millis(req.timeout_ms as u64)),
    }
}

fn produce_response(r: &Result<svc::Produced, Error>) -> v1::ProduceResponse {
    let (base_offset, log_start_offset) =
        r.as_ref().map_or((-1, -1), |p| (p.base_offset, p.log_start_offset));
    v1::ProduceResponse { error: Some(proto_error(r)), base_offset, log_start_offset }
}

/// Serves one `ProduceStream`: a reader task admits each request (proposes its batch) before
/// it reads the next, so batches keep the stream's order in their partitions; the answers
/// come out in request order while up to [`STREAM_PIPELINE`] replicate at once. The reader
/// ends with the client's half of the stream, or when the answers are no longer wanted (the
/// call or its connection is gone).
fn produce_stream(
    b: Arc<Broker>,
    caller: Caller,
    mut input: Streaming<v1::ProduceRequest>,
) -> BoxStream<'static, Result<v1::ProduceResponse, Status>> {
    type Answer = BoxFuture<'static, Result<v1::ProduceResponse, Status>>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Answer>(STREAM_PIPELINE / 2);
    // Under the replicas' waiters, which stop after the Raft node: while the broker hands
    // its leaderships over the stream goes on, and requests get NOT_LEADER naming the new
    // leader — the producer moves there at once instead of reconnecting here. Stopping ends
    // the stream once the answers already admitted are out.
    let tasks = b.replicas().waiters().clone();
    tasks.spawn("produce stream", async move {
        loop {
            let req = match input.message().await {
                Ok(Some(req)) => req,
                Ok(None) => return,
                Err(status) => {
                    let _ = tx.send(futures::future::ready(Err(status)).boxed()).await;
                    return;
                }
            };
            // Room first: nothing is admitted that could not be answered.
            let Ok(slot) = tx.reserve().await else { return };
            let started = Instant::now();
            let allowed =
                acl::authorize(&b, &caller, Operation::Write, Resource::topic(&req.topic));
            let admitted = match allowed {
                Ok(()) => svc::admit(&b, produce_request(req)).await,
                Err(e) => Err(e),
            };
            let answer = match admitted {
                Ok(admitted) => async move {
                    let r = admitted.finish().await;
                    m::request("produce", code_of(&r), started);
                    Ok(produce_response(&r))
                }
                .boxed(),
                Err(e) => {
                    let r = Err(e);
                    m::request("produce", code_of(&r), started);
                    futures::future::ready(Ok(produce_response(&r))).boxed()
                }
            };
            slot.send(answer);
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) })
        .buffered(STREAM_PIPELINE / 2)
        .boxed()
}

fn fetch_request(req: &v1::FetchRequest) -> svc::Fetch {
    svc::Fetch {
        topic: req.topic.clone(),
        partition: req.partition,
        offset: req.offset,
        max_bytes: req.max_bytes,
        max_wait: Duration::from_millis(req.max_wait_ms as u64),
        min_bytes: req.min_bytes,
        allow_follower: req.allow_follower,
    }
}

fn offset_spec(spec: Option<v1::OffsetSpec>) -> Option<OffsetSpec> {
    Some(match spec?.spec? {
        v1::offset_spec::Spec::Earliest(_) => OffsetSpec::Earliest,
        v1::offset_spec::Spec::Latest(_) => OffsetSpec::Latest,
        v1::offset_spec::Spec::Timestamp(ts) => OffsetSpec::Timestamp(ts),
    })
}

#[tonic::async_trait]
impl Data for DataService {
    #[tracing::instrument(skip_all, fields(topic = %req.get_ref().topic, partition = req.get_ref().partition))]
    async fn produce(
        &self,
        req: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Write, Resource::topic(&req.get_ref().topic))?;
        let r = svc::produce(&self.broker, produce_request(req.into_inner())).await;
        m::request("produce", code_of(&r), started);
        Ok(Response::new(produce_response(&r)))
    }

    type ProduceStreamStream = BoxStream<'static, Result<v1::ProduceResponse, Status>>;

    async fn produce_stream(
        &self,
        req: Request<Streaming<v1::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let caller = caller(&req);
        Ok(Response::new(produce_stream(self.broker.clone(), caller, req.into_inner())))
    }

    #[tracing::instrument(skip_all, fields(topic = %req.get_ref().topic, partition = req.get_ref().partition))]
    async fn fetch(
        &self,
        req: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Read, Resource::topic(&req.get_ref().topic))?;
        let r = svc::fetch(&self.broker, &fetch_request(req.get_ref())).await;
        m::request("fetch", code_of(&r), started);
        Ok(Response::new(r.map_or_else(|e| fetch_error(&e), fetch_response)))
    }

    type SubscribeStream = BoxStream<'static, Result<v1::FetchResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        authorize(&self.broker, &req, Operation::Read, Resource::topic(&req.get_ref().topic))?;
        let req = req.into_inner();
        let reads = svc::subscribe(
            self.broker.clone(),
            req.topic,
            req.partition,
            req.offset,
            req.max_bytes,
        );
        let stream = reads.map(|r| Ok(r.map_or_else(|e| fetch_error(&e), fetch_response)));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        req: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Describe, Resource::topic(&req.get_ref().topic))?;
        let req = req.into_inner();
        let spec = offset_spec(req.spec);
        let r =
            svc::list_offsets(&self.broker, &req.topic, req.partition, spec, req.allow_follower)
                .await;
        m::request("list_offsets", code_of(&r), started);
        let (offset, timestamp) = *r.as_ref().unwrap_or(&(-1, -1));
        Ok(Response::new(v1::ListOffsetsResponse {
            error: Some(proto_error(&r)),
            offset,
            timestamp,
        }))
    }

    async fn init_producer(
        &self,
        req: Request<v1::InitProducerRequest>,
    ) -> Result<Response<v1::InitProducerResponse>, Status> {
        let who = caller(&req);
        if !acl::allows_idempotent_write(&self.broker, &who) {
            let e = acl::denied(&who, Operation::IdempotentWrite, Resource::cluster());
            return Err(Status::permission_denied(e.to_string()));
        }
        if let Some(addr) = controller_to_forward(&self.broker, &req) {
            let (ch, fwd) = forward(&self.broker, &addr, req)?;
            return v1::data_client::DataClient::new(ch).init_producer(fwd).await;
        }
        let r = svc::init_producer(&self.broker, req.into_inner().producer_name).await;
        let (producer_id, producer_epoch) = *r.as_ref().unwrap_or(&(-1, -1));
        Ok(Response::new(v1::InitProducerResponse {
            error: Some(proto_error(&r)),
            producer_id,
            producer_epoch,
        }))
    }
}
