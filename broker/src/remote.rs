//! Calls this broker makes to other brokers on a client's behalf (over their public gRPC
//! services): offset lookups on a partition's leader wherever it is, the group listings
//! of every broker, and Kafka's user and ACL changes that reached a broker other than the
//! controller leader.

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use tonic::Request;

use crate::broker::Broker;
use crate::broker::FORWARDED_HEADER;
use crate::controller::state::BrokerRecord;
use crate::error::Error;
use crate::error::Leader;
use crate::error::Result;
use crate::group::GroupListing;
use crate::partition::OffsetSpec;

/// Hops a forwarded offset lookup may take following leader hints.
const MAX_HOPS: usize = 3;
/// Bound on one forwarded offset lookup.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// ListOffsets of any partition: answered by the local replica if it leads, else by the
/// leader (following `NOT_LEADER` hints).
pub async fn list_offsets(
    b: &Broker,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
) -> Result<(i64, i64)> {
    let mut addr = match b.route(topic, partition) {
        Ok((_, p)) if p.group.is_leader() => return p.list_offset(spec, false).await,
        Ok((_, p)) => p.group.leader().map(|(_, n)| n.addr),
        Err(Error::NotLeader { leader, .. }) => Some(leader.address),
        Err(e) => return Err(e),
    };
    let what = format!("{topic}-{partition}");
    let spec = match spec {
        OffsetSpec::Earliest => v1::offset_spec::Spec::Earliest(true),
        OffsetSpec::Latest => v1::offset_spec::Spec::Latest(true),
        OffsetSpec::Timestamp(ts) => v1::offset_spec::Spec::Timestamp(ts),
        // Only Kafka's ListOffsets asks for it, of the partition's own leader.
        OffsetSpec::MaxTimestamp => {
            return Err(Error::InvalidRequest(format!("{what}: max timestamp of a remote leader")));
        }
    };
    for _ in 0..MAX_HOPS {
        let Some(a) = addr.take() else { break };
        let mut client = v1::data_client::DataClient::new(b.channel(&a)?);
        let req = v1::ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec: Some(v1::OffsetSpec { spec: Some(spec) }),
            allow_follower: false,
        };
        let resp = tokio::time::timeout(CALL_TIMEOUT, client.list_offsets(req))
            .await
            .map_err(|_| Error::TimedOut(format!("{what}: leader at {a}: timed out")))?
            .map_err(|s| Error::LeaderNotAvailable(format!("{what}: leader at {a}: {s}")))?;
        let resp = resp.into_inner();
        let err = resp.error.unwrap_or_else(v1::Error::none);
        match err.error_code() {
            ErrorCode::None => return Ok((resp.offset, resp.timestamp)),
            ErrorCode::NotLeader => addr = err.leader.map(|l| l.address),
            _ => return Err(from_wire(&err)),
        }
    }
    Err(Error::not_leader(&what, None))
}

/// The groups `broker` coordinates (it answers for itself only: the call is marked
/// forwarded).
pub async fn list_groups(b: &Broker, broker: &BrokerRecord) -> Result<Vec<GroupListing>> {
    let mut req = Request::new(v1::ListGroupsRequest {});
    req.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    let mut client = v1::groups_client::GroupsClient::new(b.channel(&broker.address)?);
    // Bounded by the channel's request timeout, as any other forwarded call.
    let resp = tokio::time::timeout(
        std::time::Duration::from_millis(b.config().request_timeout_ms),
        client.list_groups(req),
    )
    .await;
    let resp = match resp {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => {
            return Err(Error::CoordinatorNotAvailable(format!(
                "broker {} did not list its groups: {}",
                broker.id,
                s.message()
            )));
        }
        Err(_) => {
            return Err(Error::CoordinatorNotAvailable(format!(
                "broker {} did not list its groups in time",
                broker.id
            )));
        }
    };
    if let Some(e) = resp.error.filter(|e| !e.is_ok()) {
        return Err(from_wire(&v1::Error {
            message: format!("broker {}: {}", broker.id, e.message),
            ..e
        }));
    }
    Ok(resp
        .groups
        .into_iter()
        .map(|g| GroupListing {
            group_id: g.group_id,
            state: g.state,
            members: g.members,
            coordinator: g.coordinator,
        })
        .collect())
}

/// A refusal another broker answered with, as this broker's error.
pub fn from_wire(e: &v1::Error) -> Error {
    let leader = e.leader.clone().map(|l| Leader { broker_id: l.broker_id, address: l.address });
    let message = e.message.clone();
    match (e.error_code(), leader) {
        (ErrorCode::NotLeader, Some(leader)) => Error::NotLeader { message, leader },
        (ErrorCode::NotLeader, None) => Error::LeaderNotAvailable(message),
        (ErrorCode::NotCoordinator, Some(coordinator)) => {
            Error::NotCoordinator { message, coordinator }
        }
        (ErrorCode::NotCoordinator, None) => Error::CoordinatorNotAvailable(message),
        (ErrorCode::NotController, leader) => Error::NotController { message, leader },
        (code, _) => Error::from_code(code, message),
    }
}

/// Calls the controller leader's `Admin` service with `req` marked forwarded (it answers
/// itself); a transport failure is `NOT_CONTROLLER` (retriable), a refusal in the response
/// its error.
async fn on_controller_leader<T, R, F>(b: &Broker, req: T, call: F) -> Result<R>
where
    F: AsyncFnOnce(
        v1::admin_client::AdminClient<tonic::transport::Channel>,
        Request<T>,
    ) -> std::result::Result<tonic::Response<R>, tonic::Status>,
    R: HasWireError,
{
    let Some((_, addr)) = b.controller().leader() else {
        return Err(b.controller().not_controller());
    };
    let mut req = Request::new(req);
    req.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    let client = v1::admin_client::AdminClient::new(b.channel(&addr)?);
    let resp = call(client, req)
        .await
        .map_err(|s| Error::NotController {
            message: format!("controller leader at {addr}: {s}"),
            leader: None,
        })?
        .into_inner();
    match resp.wire_error() {
        Some(e) if e.error_code() != ErrorCode::None => Err(from_wire(e)),
        _ => Ok(resp),
    }
}

/// Responses with an `error` field.
trait HasWireError {
    fn wire_error(&self) -> Option<&v1::Error>;
}

/// Implements [`HasWireError`] for responses whose field is named `error`.
macro_rules! has_wire_error {
    ($($t:ty),*) => {$(
        impl HasWireError for $t {
            fn wire_error(&self) -> Option<&v1::Error> {
                self.error.as_ref()
            }
        }
    )*};
}

has_wire_error!(
    v1::ListUsersResponse,
    v1::AlterUsersResponse,
    v1::CreateAclsResponse,
    v1::DeleteAclsResponse
);

/// Users and their credentials' (hash, iterations), from the controller leader.
pub async fn list_users(
    b: &Broker,
) -> Result<std::collections::BTreeMap<String, Vec<(crate::auth::Hash, u32)>>> {
    let resp =
        on_controller_leader(b, v1::ListUsersRequest {}, async |mut c, r| c.list_users(r).await)
            .await?;
    let hash = |m: i32| match v1::ScramMechanism::try_from(m) {
        Ok(v1::ScramMechanism::ScramSha256) => Some(crate::auth::Hash::Sha256),
        Ok(v1::ScramMechanism::ScramSha512) => Some(crate::auth::Hash::Sha512),
        _ => None,
    };
    Ok(resp
        .users
        .into_iter()
        .map(|u| {
            let creds = u.mechanisms.iter().zip(&u.iterations);
            (u.user, creds.filter_map(|(m, i)| Some((hash(*m)?, *i))).collect())
        })
        .collect())
}

/// Applies `req` on the controller leader.
pub async fn alter_users(b: &Broker, req: v1::AlterUsersRequest) -> Result<()> {
    on_controller_leader(b, req, async |mut c, r| c.alter_users(r).await).await.map(|_| ())
}

/// Stores `acls` on the controller leader.
pub async fn create_acls(b: &Broker, acls: &[crate::acl::Acl]) -> Result<()> {
    let req = v1::CreateAclsRequest { acls: acls.iter().map(crate::acl::wire::to_proto).collect() };
    on_controller_leader(b, req, async |mut c, r| c.create_acls(r).await).await.map(|_| ())
}

/// Deletes what `filters` select on the controller leader; what each deleted.
pub async fn delete_acls(
    b: &Broker,
    filters: &[crate::acl::AclFilter],
) -> Result<Vec<Vec<crate::acl::Acl>>> {
    let filters = filters.iter().map(crate::acl::wire::filter_to_proto).collect();
    let req = v1::DeleteAclsRequest { filters };
    let resp = on_controller_leader(b, req, async |mut c, r| c.delete_acls(r).await).await?;
    resp.results
        .into_iter()
        .map(|r| r.acls.into_iter().map(crate::acl::wire::from_proto).collect())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Internal(format!("the controller leader answered an ACL: {e}")))
}
