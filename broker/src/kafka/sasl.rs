//! Who a Kafka connection is ([`Session`]) and SASL on it: SaslHandshake 0 (raw tokens
//! after it) and 1, SaslAuthenticate 0-2 with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, checked against the SCRAM
//! credentials of the controller state.
//!
//! A connection with a verified client certificate (mTLS) is its certificate's principal
//! from the start. Otherwise, with `[auth] enabled`, it may send only ApiVersions and the
//! SASL requests until it has authenticated; anything else closes it, as Kafka does. A failed
//! authentication is answered with SASL_AUTHENTICATION_FAILED, then the connection closes.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::SaslAuthenticateRequest;
use kafka_protocol::messages::SaslAuthenticateResponse;
use kafka_protocol::messages::SaslHandshakeRequest;
use kafka_protocol::messages::SaslHandshakeResponse;
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::acl::Caller;
use crate::auth::ANONYMOUS;
use crate::auth::Mechanism;
use crate::auth::plain;
use crate::auth::scram::ServerExchange;
use crate::broker::Broker;
use crate::tls::stream::PeerInfo;

/// One Kafka connection's identity and SASL progress.
#[derive(Debug)]
pub struct Session {
    /// The client's address, for logs.
    pub peer: String,
    /// The client's IP address, as ACLs name hosts.
    host: Arc<str>,
    /// Whether the connection is a TLS session.
    pub tls: bool,
    /// The named listener the connection came in on; `None`: the internal one.
    pub listener: Option<Arc<str>>,
    /// `User:<name>` once known (mTLS or SASL).
    pub principal: Option<Arc<str>>,
    /// The connection closes once the answers queued so far are written.
    pub closing: bool,
    /// The connection is a broker's (its certificate names a broker principal).
    broker: bool,
    state: State,
    /// SaslHandshake 0 chose the mechanism: raw tokens follow.
    raw: bool,
}

#[derive(Debug)]
enum State {
    /// No mechanism chosen.
    Idle,
    /// SaslHandshake chose this mechanism; SaslAuthenticate comes next.
    Chosen(Mechanism),
    /// A SCRAM exchange waits for client-final.
    Scram(Box<ServerExchange>),
    /// Authenticated with SASL (no second authentication on a connection).
    Done,
}

impl Session {
    /// The session of a connection the handshake (if any) described as `info`.
    pub fn new(b: &Broker, info: &PeerInfo) -> Session {
        let broker = b.config().auth.enabled
            && (info.broker
                || info.principal.as_ref().is_some_and(|p| crate::service::users::is_broker(b, p)));
        Session {
            broker,
            peer: info.addr.map(|a| a.to_string()).unwrap_or_default(),
            host: Caller::new(Arc::from(ANONYMOUS), info.addr).host,
            tls: info.tls,
            listener: info.listener.clone(),
            principal: info.principal.clone(),
            closing: false,
            state: State::Idle,
            raw: false,
        }
    }

    /// Whether a request of `key` may be served now: with authentication on, only the
    /// requests that lead to it until the connection has a principal.
    pub fn admits(&self, b: &Broker, key: ApiKey) -> bool {
        !b.config().auth.enabled
            || self.principal.is_some()
            || matches!(key, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    }

    /// Who makes this connection's requests, for authorization (`User:ANONYMOUS` until
    /// it authenticates, which with authentication on it must before any is served).
    pub fn caller(&self) -> Caller {
        let principal = self.principal.clone().unwrap_or_else(|| Arc::from(ANONYMOUS));
        Caller { principal, host: self.host.clone(), broker: self.broker }
    }

    /// The mechanisms offered on this connection: PLAIN only over TLS unless allowed.
    fn mechanisms(&self, b: &Broker) -> Vec<Mechanism> {
        let auth = &b.config().auth;
        let plain_ok = self.tls || auth.plain_without_tls;
        auth.mechanisms().into_iter().filter(|m| *m != Mechanism::Plain || plain_ok).collect()
    }
}

/// SaslHandshake: chooses the mechanism. After version 0 the exchange continues in raw
/// size-prefixed tokens ([`raw_token`]); after version 1 in SaslAuthenticate requests.
pub fn handshake(
    b: &Broker,
    s: &mut Session,
    req: SaslHandshakeRequest,
    version: i16,
) -> SaslHandshakeResponse {
    let offered = s.mechanisms(b);
    let names = offered.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
    let resp = SaslHandshakeResponse::default().with_mechanisms(names);
    if !matches!(s.state, State::Idle) {
        s.closing = true;
        return resp.with_error_code(errors::ILLEGAL_SASL_STATE);
    }
    match Mechanism::from_name(req.mechanism.as_str()).filter(|m| offered.contains(m)) {
        Some(m) => {
            s.state = State::Chosen(m);
            s.raw = version == 0;
            resp.with_error_code(errors::NONE)
        }
        None => {
            failed(s, req.mechanism.as_str(), "", "mechanism not offered");
            resp.with_error_code(errors::UNSUPPORTED_SASL_MECHANISM)
        }
    }
}

/// SaslAuthenticate: one step of the chosen mechanism.
pub fn authenticate(
    b: &Broker,
    s: &mut Session,
    req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    if s.raw || matches!(s.state, State::Idle | State::Done) {
        s.closing = true;
        return SaslAuthenticateResponse::default()
            .with_error_code(errors::ILLEGAL_SASL_STATE)
            .with_error_message(Some(StrBytes::from_static_str(
                "SaslAuthenticate without a SaslHandshake 1 before it",
            )));
    }
    match step(b, s, &req.auth_bytes) {
        Ok(bytes) => {
            SaslAuthenticateResponse::default().with_error_code(errors::NONE).with_auth_bytes(bytes)
        }
        Err(m) => SaslAuthenticateResponse::default()
            .with_error_code(errors::SASL_AUTHENTICATION_FAILED)
            .with_error_message(Some(StrBytes::from(format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                m.name()
            )))),
    }
}

/// Whether the next bytes from the client are a raw SASL token (after SaslHandshake 0).
pub fn expects_raw_token(s: &Session) -> bool {
    s.raw && matches!(s.state, State::Chosen(_) | State::Scram(_))
}

/// One raw token after SaslHandshake 0: the answer token, size-prefixed; `None` when the
/// authentication failed (the connection then closes without an answer, as in Kafka).
pub fn raw_token(b: &Broker, s: &mut Session, token: &[u8]) -> Option<Bytes> {
    let reply = step(b, s, token).ok()?;
    let mut framed = Vec::with_capacity(4 + reply.len());
    framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
    framed.extend_from_slice(&reply);
    Some(Bytes::from(framed))
}

/// Largest SASL token read (Kafka's default `sasl.server.max.receive.size`).
pub const MAX_TOKEN: usize = 512 * 1024;

/// One step of the chosen mechanism: the token to answer, or the mechanism that failed (the
/// failure is counted and logged, and the connection closes after the answer).
fn step(b: &Broker, s: &mut Session, token: &[u8]) -> Result<Bytes, Mechanism> {
    let state = std::mem::replace(&mut s.state, State::Done);
    let outcome: Result<Bytes, (Mechanism, String, String)> = match state {
        State::Chosen(Mechanism::Plain) => match plain::parse(token) {
            Err(why) => Err((Mechanism::Plain, String::new(), why.to_string())),
            Ok((user, password)) => {
                let controller = b.controller().state();
                // Any of the user's credentials tells the password.
                let ok = controller.users.get(&user).is_some_and(|creds| {
                    creds.iter().next().is_some_and(|(h, c)| c.verify_password(*h, &password))
                });
                if ok {
                    s.principal = Some(Arc::from(format!("User:{user}")));
                    s.broker = false;
                    Ok(Bytes::new())
                } else {
                    Err((Mechanism::Plain, user, "invalid credentials".into()))
                }
            }
        },
        State::Chosen(m) => {
            let hash = m.scram().expect("a SCRAM mechanism");
            let controller = b.controller().state();
            let lookup = |u: &str| controller.users.get(u).and_then(|c| c.get(&hash)).cloned();
            match ServerExchange::start(hash, token, lookup) {
                Ok((exchange, first)) => {
                    s.state = State::Scram(Box::new(exchange));
                    Ok(Bytes::from(first))
                }
                Err(e) => Err((m, String::new(), e.to_string())),
            }
        }
        State::Scram(exchange) => {
            let user = exchange.user().to_string();
            let m = match exchange.hash() {
                crate::auth::Hash::Sha256 => Mechanism::ScramSha256,
                crate::auth::Hash::Sha512 => Mechanism::ScramSha512,
            };
            match exchange.finish(token) {
                Ok(last) => {
                    s.principal = Some(Arc::from(format!("User:{user}")));
                    s.broker = false;
                    Ok(Bytes::from(last))
                }
                Err(e) => Err((m, user, e.to_string())),
            }
        }
        State::Idle | State::Done => {
            Err((Mechanism::Plain, String::new(), "no mechanism chosen".into()))
        }
    };
    outcome.map_err(|(m, user, why)| {
        failed(s, m.name(), &user, &why);
        m
    })
}

/// Counts and logs a failed authentication, then closes the connection.
fn failed(s: &mut Session, mechanism: &str, user: &str, why: &str) {
    s.closing = true;
    crate::metrics::auth_failed("kafka");
    crate::telemetry::rate_limited_info(&format!(
        "authentication failed: peer {} user {:?} mechanism {mechanism}: {why}",
        s.peer, user
    ));
}
