//! gRPC services: one file per RPC family. Handlers decode, call the domain, encode.

pub mod admin;
pub mod data;
pub mod groups;

use std::sync::Arc;

use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::broker::Broker;
use crate::internal;

/// The brokers' internal service (heartbeats to the controller leader).
pub struct InternalService {
    pub broker: Arc<Broker>,
}

#[tonic::async_trait]
impl internal::internal_server::Internal for InternalService {
    async fn broker_heartbeat(
        &self,
        req: Request<internal::BrokerHeartbeatRequest>,
    ) -> Result<Response<internal::BrokerHeartbeatResponse>, Status> {
        Ok(Response::new(crate::tasks::handle_heartbeat(&self.broker, req.into_inner())))
    }

    async fn probe_membership(
        &self,
        req: Request<internal::ProbeMembershipRequest>,
    ) -> Result<Response<internal::ProbeMembershipResponse>, Status> {
        Ok(Response::new(crate::membership::answer_probe(&self.broker, req.into_inner())))
    }
}
