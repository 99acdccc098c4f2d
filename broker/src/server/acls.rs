//! The `Admin` service's ACL calls, once the caller is authorized and the request is on the
//! controller leader: translation to and from [`crate::service::acl`].

use rafka_proto::v1;

use super::proto_error;
use crate::acl::wire;
use crate::broker::Broker;
use crate::error::Error;
use crate::error::Result;
use crate::service::acl;

/// CreateAcls: every ACL valid, then all stored.
pub async fn create(b: &Broker, req: v1::CreateAclsRequest) -> v1::CreateAclsResponse {
    let r = async {
        leader(b)?;
        let acls = req
            .acls
            .into_iter()
            .map(wire::from_proto)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::InvalidRequest)?;
        acl::create(b, acls).await
    }
    .await;
    v1::CreateAclsResponse { error: Some(proto_error(&r)) }
}

/// ListAcls: the ACLs the filter selects.
pub fn list(b: &Broker, req: v1::ListAclsRequest) -> v1::ListAclsResponse {
    let r =
        leader(b).and_then(|()| filter(req.filter.unwrap_or_default())).map(|f| acl::list(b, &f));
    let error = Some(proto_error(&r));
    let acls = r.unwrap_or_default().iter().map(wire::to_proto).collect();
    v1::ListAclsResponse { error, acls }
}

/// DeleteAcls: what each filter deleted.
pub async fn delete(b: &Broker, req: v1::DeleteAclsRequest) -> v1::DeleteAclsResponse {
    let r = async {
        leader(b)?;
        let filters = req.filters.into_iter().map(filter).collect::<Result<Vec<_>>>()?;
        acl::delete(b, &filters).await
    }
    .await;
    let error = Some(proto_error(&r));
    let results = r
        .unwrap_or_default()
        .into_iter()
        .map(|acls| v1::DeletedAcls { acls: acls.iter().map(wire::to_proto).collect() })
        .collect();
    v1::DeleteAclsResponse { error, results }
}

fn filter(f: v1::AclFilter) -> Result<crate::acl::AclFilter> {
    wire::filter_from_proto(f).map_err(Error::InvalidRequest)
}

/// Refuses on any broker but the controller leader: a forwarded request is not forwarded
/// again (two brokers with stale views must not pass it back and forth).
fn leader(b: &Broker) -> Result<()> {
    if b.controller().is_leader() { Ok(()) } else { Err(b.controller().not_controller()) }
}
