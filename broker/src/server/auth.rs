//! Authentication of gRPC calls to the client services (`Data`, `Admin`, `Groups`): a user
//! and password in the `authorization` header (`Basic base64(user:password)`, checked against
//! the same SCRAM credentials as Kafka's SASL, once per connection while they stay the same),
//! or the connection's verified client certificate. The caller (principal and host) goes
//! into the request's extensions ([`Caller`]), where the handlers' [`authorize`] finds it.
//! With `[auth] enabled` off, every call is `User:ANONYMOUS` and the header is not read.

use std::sync::Arc;

use base64::Engine;
use tonic::Request;
use tonic::Status;

use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::auth::ANONYMOUS;
use crate::broker::Broker;
use crate::service::acl;
use crate::tls::stream::PeerInfo;

/// The principal of a connection that proved the cluster secret (and has no certificate).
pub const SECRET_BROKER: &str = "User:rafka-broker";

/// The header carrying a user and password.
pub const AUTHORIZATION: &str = "authorization";

/// The headers a broker forwarding a client's call names the client with (its principal,
/// binary metadata as principals may be any UTF-8, and its host), so the receiving broker
/// authorizes the client rather than the broker. Honoured only from brokers.
pub const ON_BEHALF_PRINCIPAL: &str = "rafka-on-behalf-principal-bin";
pub const ON_BEHALF_HOST: &str = "rafka-on-behalf-host";

/// `PERMISSION_DENIED` unless the caller of `req` may do `op` on `resource`.
pub fn authorize<T>(
    b: &Broker,
    req: &Request<T>,
    op: Operation,
    resource: Resource<'_>,
) -> Result<(), Status> {
    let anonymous;
    let caller = match req.extensions().get::<Caller>() {
        Some(c) => c,
        None => {
            anonymous = Caller::new(Arc::from(ANONYMOUS), None);
            &anonymous
        }
    };
    acl::authorize(b, caller, op, resource).map_err(|e| Status::permission_denied(e.to_string()))
}

/// The caller of `req` (`User:ANONYMOUS` if the interceptor did not run).
pub fn caller<T>(req: &Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller::new(Arc::from(ANONYMOUS), None))
}

/// The interceptor of the brokers' own services (Raft transport, heartbeats, probes): with
/// authentication on, only a connection whose client certificate names a broker principal
/// (`[auth] broker-principals`, by default this broker's own) may call them.
pub fn brokers_only(
    b: Arc<Broker>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |req: Request<()>| {
        if !b.config().auth.enabled {
            return Ok(req);
        }
        let info = req.extensions().get::<PeerInfo>();
        let peer = info.and_then(|i| i.addr).map(|a| a.to_string()).unwrap_or_default();
        if info.is_some_and(|i| i.broker) {
            return Ok(req);
        }
        match info.and_then(|i| i.principal.clone()) {
            Some(p) if crate::service::users::is_broker(&b, &p) => Ok(req),
            Some(p) => {
                crate::metrics::denied("broker");
                crate::telemetry::rate_limited_info(&format!(
                    "denied: peer {peer} principal {p}: not a broker, made a broker-only call"
                ));
                Err(Status::permission_denied(format!(
                    "{p} is not a broker: only brokers may make this call"
                )))
            }
            None => {
                crate::metrics::auth_failed("grpc");
                Err(Status::unauthenticated(
                    "only brokers may make this call, with their client certificate",
                ))
            }
        }
    }
}

/// The interceptor of the client services.
pub fn interceptor(
    b: Arc<Broker>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |mut req: Request<()>| {
        let principal = authenticate(&b, &req)?;
        let info = req.extensions().get::<PeerInfo>();
        let addr = info.and_then(|i| i.addr);
        let mut caller = Caller::new(principal, addr);
        // A broker by its connection only (certificate or cluster secret), never by a user
        // name that happens to equal a broker's principal.
        let by_connection = req.metadata().get(AUTHORIZATION).is_none();
        caller.broker = b.config().auth.enabled
            && by_connection
            && (info.is_some_and(|i| i.broker)
                || crate::service::users::is_broker(&b, &caller.principal));
        let caller = match on_behalf(&req) {
            Some(client) if caller.broker => client,
            _ => caller,
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The client a forwarding broker names in `req`, if any.
fn on_behalf<T>(req: &Request<T>) -> Option<Caller> {
    let principal = req.metadata().get_bin(ON_BEHALF_PRINCIPAL)?.to_bytes().ok()?;
    let principal = std::str::from_utf8(&principal).ok()?;
    let host = req.metadata().get(ON_BEHALF_HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    Some(Caller { principal: Arc::from(principal), host: Arc::from(host), broker: false })
}

/// Names `caller` in a request a broker forwards for it.
pub fn name_on_behalf<T>(fwd: &mut Request<T>, caller: &Caller) {
    let principal = tonic::metadata::MetadataValue::from_bytes(caller.principal.as_bytes());
    fwd.metadata_mut().insert_bin(ON_BEHALF_PRINCIPAL, principal);
    if let Ok(host) = caller.host.parse() {
        fwd.metadata_mut().insert(ON_BEHALF_HOST, host);
    }
}

fn authenticate(b: &Broker, req: &Request<()>) -> Result<Arc<str>, Status> {
    if !b.config().auth.enabled {
        return Ok(Arc::from(ANONYMOUS));
    }
    let info = req.extensions().get::<PeerInfo>();
    let peer = info.and_then(|i| i.addr).map(|a| a.to_string()).unwrap_or_default();
    match req.metadata().get(AUTHORIZATION) {
        Some(header) => login(b, info, header.as_bytes()).map_err(|(user, why)| {
            crate::metrics::auth_failed("grpc");
            crate::telemetry::rate_limited_info(&format!(
                "authentication failed: peer {peer} user {user:?} (gRPC): {why}"
            ));
            Status::unauthenticated(format!("authentication failed: {why}"))
        }),
        None => match info.and_then(|i| i.principal.clone()) {
            Some(p) => Ok(p),
            None if info.is_some_and(|i| i.broker) => Ok(Arc::from(SECRET_BROKER)),
            None => {
                crate::metrics::auth_failed("grpc");
                crate::telemetry::rate_limited_info(&format!(
                    "authentication failed: peer {peer} (gRPC): no credentials"
                ));
                Err(Status::unauthenticated(
                    "authentication is required: give a user and password (rafka --user NAME \
                     --password-file FILE) or a client certificate",
                ))
            }
        },
    }
}

/// Checks `Basic base64(user:password)`; the user, or (user, why) when refused.
fn login(b: &Broker, info: Option<&PeerInfo>, header: &[u8]) -> Result<Arc<str>, (String, String)> {
    let refuse = |user: &str, why: &str| (user.to_string(), why.to_string());
    let encoded =
        header.strip_prefix(b"Basic ").ok_or_else(|| refuse("", "not Basic credentials"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| refuse("", "credentials are not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| refuse("", "credentials are not UTF-8"))?;
    let (user, password) =
        text.split_once(':').ok_or_else(|| refuse("", "expected user:password"))?;
    let state = b.controller().state();
    let credential =
        |u: &str| state.users.get(u).and_then(|c| c.iter().next()).map(|(h, c)| (*h, c.clone()));
    if let Some(cache) = info.map(|i| &i.logins)
        && let Some(known) = cache.get(header, |u| credential(u).map(|(_, c)| c))
        && known == user
    {
        return Ok(Arc::from(format!("User:{user}")));
    }
    match credential(user) {
        Some((hash, c)) if c.verify_password(hash, password) => {
            if let Some(i) = info {
                i.logins.put(header, user, c);
            }
            Ok(Arc::from(format!("User:{user}")))
        }
        _ => Err(refuse(user, "invalid user or password")),
    }
}
