//! The tonic service of the Raft transport: routes every request to its group.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use super::GroupRpc;
use crate::detector::Detector;
use crate::metrics as m;
use crate::types::GroupId;
use crate::wire::pb;
use crate::wire::pb::raft_transport_server::RaftTransport;

/// Groups hosted by a node, by id.
pub(crate) type Groups = RwLock<HashMap<GroupId, Arc<dyn GroupRpc>>>;

/// The Raft transport's gRPC service of one node. Serve it with
/// [`crate::RaftNode::transport_service`] on a server shared with other services, or let
/// [`crate::RaftNode::start`] serve it on its own listener.
#[derive(Clone)]
pub struct TransportService {
    pub(crate) groups: Arc<Groups>,
    pub(crate) detector: Arc<Detector>,
    pub(crate) broker_id: u64,
    pub(crate) incarnation: u64,
    /// How long one group may take to answer its heartbeat in a batch: a slow group must
    /// not hold up the answers of every other group on the link.
    pub(crate) heartbeat_deadline: std::time::Duration,
}

impl TransportService {
    fn group(&self, address: Option<&pb::Address>) -> Result<Arc<dyn GroupRpc>, Status> {
        let Some(a) = address else {
            return Err(Status::invalid_argument("request without an address"));
        };
        self.detector.touch(a.from_broker);
        let g = self.groups.read().unwrap_or_else(|p| p.into_inner()).get(&a.group).cloned();
        let g = g.ok_or_else(|| {
            Status::not_found(format!(
                "group {} is not hosted on broker {}",
                a.group, self.broker_id
            ))
        })?;
        super::check_target(g.as_ref(), Some(a))?;
        Ok(g)
    }
}

fn served(rpc: &'static str, started: Instant) {
    metrics::counter!(m::TRANSPORT_SERVED, "rpc" => rpc).increment(1);
    metrics::histogram!(m::TRANSPORT_SERVE_SECONDS, "rpc" => rpc)
        .record(started.elapsed().as_secs_f64());
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    type AppendStream = BoxStream<'static, Result<pb::AppendResponse, Status>>;

    async fn append(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        let mut input = request.into_inner();
        let Some(first) = input.message().await? else {
            return Ok(Response::new(futures::stream::empty().boxed()));
        };
        let g = self.group(first.address.as_ref())?;
        metrics::counter!(m::TRANSPORT_SERVED, "rpc" => "append_stream").increment(1);
        let detector = self.detector.clone();
        let from = first.address.as_ref().map_or(0, |a| a.from_broker);
        let input = input.inspect(move |_| detector.touch(from));
        Ok(Response::new(g.append_stream(first, input.boxed())))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatBatch>,
    ) -> Result<Response<pb::HeartbeatBatchResponse>, Status> {
        let started = Instant::now();
        let batch = request.into_inner();
        metrics::histogram!(m::TRANSPORT_HEARTBEAT_BATCH).record(batch.heartbeats.len() as f64);
        let deadline = self.heartbeat_deadline;
        let calls = batch.heartbeats.into_iter().map(|hb| {
            let g = self.group(hb.address.as_ref());
            async move {
                match g {
                    Ok(g) => match tokio::time::timeout(deadline, g.heartbeat(hb)).await {
                        Ok(resp) => resp,
                        Err(_) => crate::wire::append_error_to_pb("heartbeat timed out".into()),
                    },
                    Err(status) => crate::wire::append_error_to_pb(status.message().to_string()),
                }
            }
        });
        let responses = futures::future::join_all(calls).await;
        served("heartbeat", started);
        Ok(Response::new(pb::HeartbeatBatchResponse { responses }))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let resp = self.group(req.address.as_ref())?.vote(req).await?;
        served("vote", started);
        Ok(Response::new(resp))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let resp = self.group(req.address.as_ref())?.install_snapshot(req).await?;
        served("install_snapshot", started);
        Ok(Response::new(resp))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let resp = self.group(req.address.as_ref())?.transfer_leader(req).await?;
        served("transfer_leader", started);
        Ok(Response::new(resp))
    }

    async fn probe(
        &self,
        request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let req = request.into_inner();
        self.detector.heard_from(req.broker_id, req.incarnation);
        Ok(Response::new(pb::ProbeResponse {
            broker_id: self.broker_id,
            incarnation: self.incarnation,
            stopped_groups: self.detector.local_stopped(),
        }))
    }
}
