//! The gRPC services, one file per RPC family: each handler translates the protobuf request
//! into a call of the service layer ([`crate::service`]) and its result back. Refusals are
//! `ErrorCode`s in the response; a broker that is not the controller leader forwards admin
//! requests to it once (marked with [`FORWARDED_HEADER`]).

mod acls;
pub mod admin;
pub mod auth;
pub mod data;
pub mod groups;

use std::sync::Arc;

use rafka_proto::ErrorCode;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::broker::Broker;
use crate::broker::FORWARDED_HEADER;
use crate::error::Error;
use crate::error::Result;
use crate::internal;
use rafka_proto::ErrorExt;
use rafka_proto::v1;

/// The brokers' internal service (heartbeats to the controller leader, membership probes).
pub struct InternalService {
    pub broker: Arc<Broker>,
}

#[tonic::async_trait]
impl internal::internal_server::Internal for InternalService {
    async fn broker_heartbeat(
        &self,
        req: Request<internal::BrokerHeartbeatRequest>,
    ) -> Result<Response<internal::BrokerHeartbeatResponse>, Status> {
        Ok(Response::new(crate::heartbeat::handle(&self.broker, req.into_inner())))
    }

    async fn probe_membership(
        &self,
        req: Request<internal::ProbeMembershipRequest>,
    ) -> Result<Response<internal::ProbeMembershipResponse>, Status> {
        Ok(Response::new(crate::bootstrap::answer_probe(&self.broker, req.into_inner())))
    }
}

/// Whether another broker forwarded this request (it must be answered here, not forwarded
/// again).
pub fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().get(FORWARDED_HEADER).is_some()
}

/// Where to forward a request that only the controller leader answers: its address, when
/// this broker is not it, knows it, and the request was not forwarded already.
pub fn controller_to_forward<T>(b: &Broker, req: &Request<T>) -> Option<String> {
    if b.controller().is_leader() || forwarded(req) {
        return None;
    }
    b.controller().leader().map(|(_, addr)| addr)
}

/// `req` marked as forwarded, for the channel to `addr`.
pub fn forward<T>(
    b: &Broker,
    addr: &str,
    req: Request<T>,
) -> Result<(tonic::transport::Channel, Request<T>), Status> {
    // Not reaching the controller leader is a transient condition for the client.
    let ch = b.channel(addr).map_err(|e| Status::unavailable(e.to_string()))?;
    let caller = req.extensions().get::<crate::acl::Caller>().cloned();
    let mut fwd = Request::new(req.into_inner());
    fwd.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    // This broker authenticated the client; the controller leader authenticates this broker
    // (by its certificate) and authorizes the client it names.
    if let Some(c) = caller.filter(|c| !c.broker) {
        auth::name_on_behalf(&mut fwd, &c);
    }
    Ok((ch, fwd))
}

/// The wire code of a result.
pub fn code_of<T>(r: &Result<T>) -> ErrorCode {
    r.as_ref().err().map_or(ErrorCode::None, |e| e.code())
}

/// The wire form of a refusal: its code, message and where to ask instead.
pub fn to_proto(e: &Error) -> v1::Error {
    let mut out = v1::Error::new(e.code(), e.to_string());
    out.leader =
        e.leader().map(|l| v1::LeaderHint { broker_id: l.broker_id, address: l.address.clone() });
    out
}

/// The wire `Error` of a result: `NONE` for Ok.
pub fn proto_error<T>(r: &Result<T>) -> v1::Error {
    match r {
        Ok(_) => v1::Error::none(),
        Err(e) => to_proto(e),
    }
}

/// A gRPC status for an error that ends a call without a response message (forwarding a
/// request failed before any answer): retriable refusals are `UNAVAILABLE`.
pub fn status(e: &Error) -> Status {
    let message = e.to_string();
    match e {
        e if e.code().is_retriable() => Status::unavailable(message),
        Error::Storage(_) | Error::Internal(_) => Status::internal(message),
        _ => Status::invalid_argument(message),
    }
}
