//! Authorization of every client request, and the ACLs themselves: listed from this
//! broker's copy of the controller state, created and deleted on the controller leader.
//!
//! Nothing is checked while `[auth] enabled` is off (every caller is `User:ANONYMOUS`).
//! With it on, superusers (`[auth] superusers`) and brokers pass every check; everyone else
//! needs an ACL (see [`crate::acl`] for how one decides). Every wire handler calls
//! [`authorize`] (or [`allows`] where Kafka filters silently, as Metadata does) before it
//! touches anything.

use crate::acl;
use crate::acl::Acl;
use crate::acl::AclFilter;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::acl::ResourceType;
use crate::broker::Broker;
use crate::controller::Command;
use crate::error::Error;
use crate::error::Result;

/// Whether `caller` skips the ACLs: authentication off, a superuser, or a broker (proved by
/// its connection: a broker certificate or the cluster secret, never a password).
pub fn unchecked(b: &Broker, caller: &Caller) -> bool {
    let auth = &b.config().auth;
    !auth.enabled
        || caller.broker
        || caller
            .principal
            .strip_prefix("User:")
            .is_some_and(|u| auth.superusers.iter().any(|s| s == u))
}

/// Whether `caller` may do `op` on `resource` (not counted or logged: for what is filtered
/// out silently, as Metadata leaves out topics the caller may not describe).
pub fn allows(b: &Broker, caller: &Caller, op: Operation, resource: Resource<'_>) -> bool {
    unchecked(b, caller) || acl::allows(&b.controller().state().acls, caller, op, &resource)
}

/// `Ok` if `caller` may do `op` on `resource`, else [`Error::AuthorizationFailed`] —
/// counted in `rafka_broker_authorization_denials_total` and logged (rate-limited).
pub fn authorize(b: &Broker, caller: &Caller, op: Operation, resource: Resource<'_>) -> Result<()> {
    if allows(b, caller, op, resource) {
        return Ok(());
    }
    Err(denied(caller, op, resource))
}

/// The refusal of `op` on `resource` to `caller`, counted and logged.
pub fn denied(caller: &Caller, op: Operation, resource: Resource<'_>) -> Error {
    let kind = match resource.kind {
        ResourceType::Topic => "topic",
        ResourceType::Group => "group",
        ResourceType::Cluster => "cluster",
        ResourceType::TransactionalId => "transactional_id",
    };
    crate::metrics::denied(kind);
    let what = format!("{} may not {op:?} {kind} {}", caller.principal, resource.name);
    crate::telemetry::rate_limited_info(&format!("denied: {what} (from {})", caller.host));
    Error::AuthorizationFailed {
        resource: resource.kind,
        message: format!("not authorized: {what}"),
    }
}

/// Whether `caller` may produce idempotently: IdempotentWrite on the cluster, or Write on
/// some topic (as Kafka allows since 2.8).
pub fn allows_idempotent_write(b: &Broker, caller: &Caller) -> bool {
    let acls = &b.controller().state().acls;
    unchecked(b, caller)
        || acl::allows(acls, caller, Operation::IdempotentWrite, &Resource::cluster())
        || acl::allows_some(acls, caller, Operation::Write, ResourceType::Topic)
}

/// The ACLs `filter` selects, from this broker's copy of the controller state.
pub fn list(b: &Broker, filter: &AclFilter) -> Vec<Acl> {
    let filter = canonical_filter(filter);
    filter.select(&b.controller().state().acls).into_iter().cloned().collect()
}

/// Stores `acls` (on the controller leader, asked over gRPC from any other broker). All
/// are checked before any is stored.
pub async fn create(b: &Broker, acls: Vec<Acl>) -> Result<()> {
    security_enabled(b)?;
    let acls: Vec<Acl> = acls.into_iter().map(canonical).collect();
    if let Some((a, why)) = acls.iter().find_map(|a| a.invalid().map(|w| (a, w))) {
        return Err(Error::InvalidRequest(format!("invalid ACL {a}: {why}")));
    }
    if acls.is_empty() {
        return Ok(());
    }
    if !b.controller().is_leader() {
        return crate::remote::create_acls(b, &acls).await;
    }
    for a in &acls {
        tracing::info!("ACL created: {a}");
    }
    b.controller().propose(Command::CreateAcls { acls }).await?;
    Ok(())
}

/// Deletes the ACLs each filter selects (on the controller leader, asked over gRPC from
/// any other broker); what each deleted.
pub async fn delete(b: &Broker, filters: &[AclFilter]) -> Result<Vec<Vec<Acl>>> {
    security_enabled(b)?;
    if !b.controller().is_leader() {
        return crate::remote::delete_acls(b, filters).await;
    }
    let state = b.controller().state();
    let matched: Vec<Vec<Acl>> = filters
        .iter()
        .map(|f| canonical_filter(f).select(&state.acls).into_iter().cloned().collect())
        .collect();
    let mut all: Vec<Acl> = matched.iter().flatten().cloned().collect();
    all.sort();
    all.dedup();
    if !all.is_empty() {
        for a in &all {
            tracing::info!("ACL deleted: {a}");
        }
        b.controller().propose(Command::DeleteAcls { acls: all }).await?;
    }
    Ok(matched)
}

/// ACLs are changed only while authentication is on (Kafka answers SECURITY_DISABLED
/// without an authorizer): on an open cluster anyone could otherwise plant ACLs that take
/// effect once it is switched on.
fn security_enabled(b: &Broker) -> Result<()> {
    if b.config().auth.enabled {
        return Ok(());
    }
    Err(Error::SecurityDisabled(
        "ACLs apply only with authentication on ([auth] enabled); none were changed".into(),
    ))
}

/// `f` with its host written as ACLs' hosts are.
fn canonical_filter(f: &AclFilter) -> AclFilter {
    AclFilter { host: f.host.as_deref().map(crate::acl::canonical_host), ..f.clone() }
}

/// `a` with its host written as the caller's host is (IPv4-mapped IPv6 as IPv4).
fn canonical(mut a: Acl) -> Acl {
    a.host = crate::acl::canonical_host(&a.host);
    a
}
