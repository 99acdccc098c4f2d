//! SCRAM users over Kafka's protocol: DescribeUserScramCredentials and
//! AlterUserScramCredentials (what `kafka-configs --alter --add-config SCRAM-SHA-256=...`,
//! confluent-kafka's and Java's admin clients send), answered on the controller leader. An
//! upsertion carries the salted password, never the password; the controller keeps the
//! SCRAM keys derived from it.
//!
//! Listing users needs Describe on the cluster, changing them Alter (superusers may).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use kafka_protocol::messages::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::AlterUserScramCredentialsResponse;
use kafka_protocol::messages::DescribeUserScramCredentialsRequest;
use kafka_protocol::messages::DescribeUserScramCredentialsResponse;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::CredentialInfo;
use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::protocol::StrBytes;

use super::errors;
use super::sasl::Session;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::auth::Hash;
use crate::auth::scram;
use crate::auth::scram::Credential;
use crate::broker::Broker;
use rafka_proto::v1;

/// One user's part of an alteration: mechanisms to delete, credentials to set.
type Change = (Vec<Hash>, BTreeMap<Hash, Credential>);

/// Kafka's UNACCEPTABLE_CREDENTIAL.
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from(s.into()))
}

/// Why a request about users is refused as a whole: no `op` on the cluster.
fn refusal(b: &Broker, session: &Session, op: Operation) -> Option<(i16, String)> {
    let e = crate::service::acl::authorize(b, &session.caller(), op, Resource::cluster()).err()?;
    Some((errors::code(&e), e.to_string()))
}

/// DescribeUserScramCredentials 0: the mechanisms and iteration counts of each user (asked
/// of the controller leader when this broker is not it).
pub async fn describe(
    b: &Broker,
    session: &Session,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let resp = DescribeUserScramCredentialsResponse::default();
    if let Some((code, message)) = refusal(b, session, Operation::Describe) {
        return resp.with_error_code(code).with_error_message(text(message));
    }
    let known = match b.controller().is_leader() {
        true => crate::service::users::list(b),
        false => crate::remote::list_users(b).await,
    };
    let known = match known {
        Ok(k) => k,
        Err(e) => {
            return resp.with_error_code(errors::code(&e)).with_error_message(text(e.to_string()));
        }
    };
    let names: Vec<String> = match &req.users {
        None => known.keys().cloned().collect(),
        Some(users) => users.iter().map(|u| u.name.to_string()).collect(),
    };
    let mut seen = BTreeSet::new();
    let repeated: BTreeSet<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
    let mut done = BTreeSet::new();
    let results = names
        .iter()
        .filter(|n| done.insert(*n))
        .map(|name| {
            let out = DescribeUserScramCredentialsResult::default()
                .with_user(StrBytes::from(name.clone()));
            if repeated.contains(name) {
                return out
                    .with_error_code(errors::DUPLICATE_RESOURCE)
                    .with_error_message(text(format!("user {name} is asked for more than once")));
            }
            match known.get(name) {
                None => out.with_error_code(errors::RESOURCE_NOT_FOUND).with_error_message(text(
                    format!("attempt to describe a user credential that does not exist: {name}"),
                )),
                Some(creds) => out.with_credential_infos(
                    creds
                        .iter()
                        .map(|(h, iterations)| {
                            CredentialInfo::default()
                                .with_mechanism(h.kafka_type())
                                .with_iterations(*iterations as i32)
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    resp.with_results(results)
}

/// AlterUserScramCredentials 0: deletions and upsertions, one controller command per user.
pub async fn alter(
    b: &Broker,
    session: &Session,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut users: BTreeMap<String, Result<Change, (i16, String)>> = BTreeMap::new();
    let names = req.deletions.iter().map(|d| &d.name).chain(req.upsertions.iter().map(|u| &u.name));
    for name in names {
        users.entry(name.to_string()).or_insert_with(|| Ok(Default::default()));
    }
    let refused = refusal(b, session, Operation::Alter);
    let state = b.controller().state();
    let fail = |users: &mut BTreeMap<_, Result<_, _>>, name: &str, code: i16, why: String| {
        let entry: &mut Result<_, (i16, String)> = users.get_mut(name).expect("listed");
        if entry.is_ok() {
            *entry = Err((code, why));
        }
    };
    for d in &req.deletions {
        let name = d.name.to_string();
        match Hash::from_kafka_type(d.mechanism) {
            None => fail(
                &mut users,
                &name,
                errors::UNSUPPORTED_SASL_MECHANISM,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            ),
            Some(h) if !state.users.get(&name).is_some_and(|c| c.contains_key(&h)) => fail(
                &mut users,
                &name,
                errors::RESOURCE_NOT_FOUND,
                format!(
                    "attempt to delete a user credential that does not exist: {name} {}",
                    h.mechanism()
                ),
            ),
            Some(h) => {
                if let Some(Ok((del, _))) = users.get_mut(&name) {
                    del.push(h);
                }
            }
        }
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        let Some(h) = Hash::from_kafka_type(u.mechanism) else {
            fail(
                &mut users,
                &name,
                errors::UNSUPPORTED_SASL_MECHANISM,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            );
            continue;
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
            let why = format!(
                "iterations must be {}..={}, got {}",
                scram::MIN_ITERATIONS,
                scram::MAX_ITERATIONS,
                u.iterations
            );
            fail(&mut users, &name, UNACCEPTABLE_CREDENTIAL, why);
            continue;
        }
        if name.is_empty() || u.salt.is_empty() || u.salted_password.is_empty() {
            fail(
                &mut users,
                &name,
                UNACCEPTABLE_CREDENTIAL,
                "empty user name, salt or salted password".into(),
            );
            continue;
        }
        let credential = Credential::from_salted(h, &u.salted_password, &u.salt, iterations);
        if let Some(Ok((del, set))) = users.get_mut(&name) {
            if del.contains(&h) || set.contains_key(&h) {
                let why = format!("{name} {} is changed twice in one request", h.mechanism());
                fail(&mut users, &name, errors::DUPLICATE_RESOURCE, why);
                continue;
            }
            set.insert(h, credential);
        }
    }
    let mut results = Vec::with_capacity(users.len());
    for (name, change) in users {
        let out =
            AlterUserScramCredentialsResult::default().with_user(StrBytes::from(name.clone()));
        let outcome = match (&refused, change) {
            (Some((code, why)), _) => Err((*code, why.clone())),
            (None, Err(e)) => Err(e),
            (None, Ok((deletions, upsertions))) => {
                apply(b, &name, deletions, upsertions, &req).await
            }
        };
        results.push(match outcome {
            Ok(()) => out.with_error_code(errors::NONE),
            Err((code, why)) => out.with_error_code(code).with_error_message(text(why)),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Applies one user's change: here on the controller leader, else forwarded to it with the
/// request's own salted passwords.
async fn apply(
    b: &Broker,
    user: &str,
    delete: Vec<Hash>,
    set: BTreeMap<Hash, Credential>,
    req: &AlterUserScramCredentialsRequest,
) -> Result<(), (i16, String)> {
    let failed = |e: crate::error::Error| (errors::code(&e), e.to_string());
    if b.controller().is_leader() {
        let change = crate::service::users::Change { delete, set };
        return crate::service::users::alter(b, user, change).await.map_err(failed);
    }
    let v1_mechanism = |m: i8| match Hash::from_kafka_type(m) {
        Some(Hash::Sha512) => v1::ScramMechanism::ScramSha512 as i32,
        _ => v1::ScramMechanism::ScramSha256 as i32,
    };
    let forwarded = v1::AlterUsersRequest {
        upsertions: req
            .upsertions
            .iter()
            .filter(|u| u.name.as_str() == user)
            .map(|u| v1::ScramUpsertion {
                user: user.to_string(),
                mechanism: v1_mechanism(u.mechanism),
                iterations: u.iterations.max(0) as u32,
                salt: u.salt.clone(),
                salted_password: u.salted_password.clone(),
            })
            .collect(),
        deletions: req
            .deletions
            .iter()
            .filter(|d| d.name.as_str() == user)
            .map(|d| v1::ScramDeletion {
                user: user.to_string(),
                mechanism: v1_mechanism(d.mechanism),
            })
            .collect(),
    };
    crate::remote::alter_users(b, forwarded).await.map_err(failed)
}
