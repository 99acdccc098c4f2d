//! The `Data` service: produce, fetch, subscribe, offset lookups, producer ids. Handlers
//! decode, call the partition, encode; refusals are `ErrorCode`s in the response.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures::stream::BoxStream;
use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::data_server::Data;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::broker::Broker;
use crate::controller::Command;
use crate::controller::Outcome;
use crate::error::Error;
use crate::error::Result;
use crate::error::proto_error;
use crate::metrics as m;

/// Longest produce timeout a client may ask for.
const MAX_PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest fetch long-poll.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Largest fetch response a client may ask for.
const MAX_FETCH_BYTES: usize = 64 << 20;

/// The tonic `Data` service.
pub struct DataService {
    pub broker: Arc<Broker>,
}

/// A refused fetch. OFFSET_OUT_OF_RANGE carries the range the replica judged against;
/// every other refusal says nothing of the log (-1), never a made-up 0.
fn fetch_error(e: &Error) -> v1::FetchResponse {
    let w = e.watermarks;
    v1::FetchResponse {
        error: Some(e.to_proto()),
        high_watermark: w.map_or(-1, |w| w.high_watermark),
        log_start_offset: w.map_or(-1, |w| w.log_start_offset),
        batches: Vec::new(),
    }
}

fn code_of<T>(r: &Result<T>) -> ErrorCode {
    r.as_ref().err().map_or(ErrorCode::None, |e| e.code)
}

impl DataService {
    fn available(&self) -> Result<()> {
        if self.broker.is_stopping() {
            return Err(Error::new(ErrorCode::BrokerNotAvailable, "broker is shutting down"));
        }
        Ok(())
    }

    async fn produce(&self, req: v1::ProduceRequest) -> Result<(i64, i64)> {
        self.available()?;
        let (t, p) = self.broker.route(&req.topic, req.partition)?;
        let cfg = self.broker.topic_config(&t);
        let info =
            rafka_proto::batch::validate_records(&req.batch, cfg.max_message_bytes as usize)?;
        let acks = v1::Acks::try_from(req.acks).map_err(|_| {
            Error::new(ErrorCode::InvalidRequest, format!("unknown acks value {}", req.acks))
        })?;
        let timeout = match req.timeout_ms {
            0 => Duration::from_millis(self.broker.config.request_timeout_ms),
            ms => Duration::from_millis(ms as u64).min(MAX_PRODUCE_TIMEOUT),
        };
        let bytes = req.batch.len() as u64;
        let base = p.produce(info, req.batch, acks == v1::Acks::All, timeout).await?;
        metrics::counter!(m::PRODUCE_BYTES).increment(bytes);
        metrics::counter!(m::PRODUCE_RECORDS).increment(info.record_count as u64);
        Ok((base, p.log_start_offset()))
    }

    async fn fetch(&self, req: &v1::FetchRequest) -> Result<v1::FetchResponse> {
        self.fetch_next(req).await.map(|(resp, _)| resp)
    }

    /// Fetch, and the offset after the last batch returned.
    async fn fetch_next(&self, req: &v1::FetchRequest) -> Result<(v1::FetchResponse, i64)> {
        self.available()?;
        let (_, p) = self.broker.route(&req.topic, req.partition)?;
        if req.offset < 0 {
            return Err(Error::new(
                ErrorCode::OffsetOutOfRange,
                format!("{}: negative offset {}", p.name, req.offset),
            ));
        }
        let max_bytes = match req.max_bytes {
            0 => self.broker.config.fetch_max_bytes as usize,
            n => (n as usize).min(MAX_FETCH_BYTES),
        };
        let wait = Duration::from_millis(req.max_wait_ms as u64).min(MAX_FETCH_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let mut r = p.read(req.offset, max_bytes, wait, req.allow_follower).await?;
        // min_bytes: keep waiting (up to max_wait) until that much is there to return.
        loop {
            let bytes: usize = r.batches.iter().map(|b| b.batch.len()).sum();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if bytes >= req.min_bytes as usize || bytes >= max_bytes || left.is_zero() {
                break;
            }
            if !p.wait_high_watermark_above(r.high_watermark, left).await {
                break;
            }
            r = p.read(req.offset, max_bytes, Duration::ZERO, req.allow_follower).await?;
        }
        let bytes: usize = r.batches.iter().map(|b| b.batch.len()).sum();
        metrics::counter!(m::FETCH_BYTES).increment(bytes as u64);
        let resp = v1::FetchResponse {
            error: Some(v1::Error::none()),
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            batches: r
                .batches
                .into_iter()
                .map(|b| v1::FetchedBatch { base_offset: b.base_offset, batch: b.batch })
                .collect(),
        };
        Ok((resp, r.next_offset))
    }

    async fn list_offsets(&self, req: &v1::ListOffsetsRequest) -> Result<(i64, i64)> {
        self.available()?;
        let (_, p) = self.broker.route(&req.topic, req.partition)?;
        let Some(spec) = req.spec.as_ref().and_then(|s| s.spec.as_ref()) else {
            return Err(Error::new(ErrorCode::InvalidRequest, "ListOffsets without a spec"));
        };
        p.list_offset(spec, req.allow_follower).await
    }
}

#[tonic::async_trait]
impl Data for DataService {
    #[tracing::instrument(skip_all, fields(topic = %req.get_ref().topic, partition = req.get_ref().partition))]
    async fn produce(
        &self,
        req: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        let started = Instant::now();
        let r = DataService::produce(self, req.into_inner()).await;
        m::request("produce", code_of(&r), started);
        let (base_offset, log_start_offset) = *r.as_ref().unwrap_or(&(-1, -1));
        Ok(Response::new(v1::ProduceResponse {
            error: Some(proto_error(&r)),
            base_offset,
            log_start_offset,
        }))
    }

    #[tracing::instrument(skip_all, fields(topic = %req.get_ref().topic, partition = req.get_ref().partition))]
    async fn fetch(
        &self,
        req: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let started = Instant::now();
        let r = DataService::fetch(self, req.get_ref()).await;
        m::request("fetch", code_of(&r), started);
        Ok(Response::new(r.unwrap_or_else(|e| fetch_error(&e))))
    }

    type SubscribeStream = BoxStream<'static, Result<v1::FetchResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let svc = DataService { broker: self.broker.clone() };
        tokio::spawn(async move {
            let mut offset = req.offset;
            loop {
                let fetch = v1::FetchRequest {
                    topic: req.topic.clone(),
                    partition: req.partition,
                    offset,
                    max_bytes: req.max_bytes,
                    max_wait_ms: 1000,
                    min_bytes: 0,
                    allow_follower: false,
                };
                let r = svc.fetch_next(&fetch).await;
                let (resp, done) = match r {
                    Ok((resp, _)) if resp.batches.is_empty() => {
                        if tx.is_closed() {
                            return;
                        }
                        continue;
                    }
                    Ok((resp, next)) => {
                        offset = next.max(offset);
                        (resp, false)
                    }
                    Err(e) => (fetch_error(&e), true),
                };
                if tx.send(Ok(resp)).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        req: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        let started = Instant::now();
        let r = DataService::list_offsets(self, req.get_ref()).await;
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
        let b = &self.broker;
        if !b.is_controller() {
            if let Some((_, addr)) = b.controller_leader()
                && req.metadata().get(crate::broker::FORWARDED_HEADER).is_none()
            {
                let ch = b.channel(&addr).map_err(|e| Status::unavailable(e.message))?;
                let mut fwd = Request::new(req.into_inner());
                fwd.metadata_mut()
                    .insert(crate::broker::FORWARDED_HEADER, "1".parse().expect("ascii"));
                return v1::data_client::DataClient::new(ch).init_producer(fwd).await;
            }
            return Ok(Response::new(v1::InitProducerResponse {
                error: Some(b.not_controller().to_proto()),
                producer_id: -1,
                producer_epoch: -1,
            }));
        }
        let name = req.into_inner().producer_name;
        let r = match b.propose(Command::InitProducer { name }).await {
            Ok(Outcome::Producer { id, epoch }) => Ok((id, epoch)),
            Ok(other) => {
                Err(Error::new(ErrorCode::Unknown, format!("unexpected outcome {other:?}")))
            }
            Err(e) => Err(e),
        };
        let (producer_id, producer_epoch) = *r.as_ref().unwrap_or(&(-1, -1));
        Ok(Response::new(v1::InitProducerResponse {
            error: Some(proto_error(&r)),
            producer_id,
            producer_epoch,
        }))
    }
}
