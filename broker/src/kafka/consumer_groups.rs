//! Consumer groups over Kafka's consumer protocol (KIP-848): ConsumerGroupHeartbeat 0-1 and
//! ConsumerGroupDescribe 0-1, served by the same coordinators and server-side assignors as
//! rafka's own group heartbeats.
//!
//! Kafka's heartbeat sends a field only when it changed (null: as before); rafka's takes the
//! member's whole subscription and owned partitions each time, so the fields left out are
//! filled from the member's replicated state. A regex subscription is resolved here against
//! the user topics at every heartbeat (fully matched, as Kafka matches it), so topics created
//! later join the subscription within a heartbeat interval. Partitions are named by topic
//! UUID on this protocol. Static membership (`instance_id`) is not kept: a static member's
//! leave (epoch -2) leaves like any other.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use kafka_protocol::messages::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::ConsumerGroupDescribeResponse;
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::ConsumerGroupHeartbeatResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::errors;
use super::metadata::topic_uuid;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::error::Result;
use crate::group::coordinator::HeartbeatRequest;
use crate::group::state::Assignment;
use crate::group::state::GroupState;
use crate::group::state::LEAVE_EPOCH;
use crate::group::state::Member;
use crate::service::acl;
use crate::service::groups as svc;

/// Longest regex a member may subscribe with (it is replicated group state).
const MAX_REGEX_BYTES: usize = 1024;
/// Kafka's epoch of a static member leaving for good.
const STATIC_LEAVE_EPOCH: i32 = -2;
/// Kafka's member type of a consumer-protocol member (ConsumerGroupDescribe v1).
const CONSUMER_MEMBER: i8 = 1;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Topic names and UUIDs of the cluster's user topics.
struct Topics {
    by_id: BTreeMap<Uuid, String>,
    by_name: BTreeMap<String, Uuid>,
}

impl Topics {
    fn of(b: &Broker) -> Topics {
        let state = b.state();
        let mut t = Topics { by_id: BTreeMap::new(), by_name: BTreeMap::new() };
        for topic in state.topics.values().filter(|t| !t.internal) {
            let id = topic_uuid(&state.cluster_id, topic.id);
            t.by_id.insert(id, topic.name.clone());
            t.by_name.insert(topic.name.clone(), id);
        }
        t
    }

    fn id(&self, name: &str) -> Uuid {
        self.by_name.get(name).copied().unwrap_or_default()
    }
}

/// The topics `regex` matches in full, or `INVALID_REGULAR_EXPRESSION`.
fn resolve_regex(regex: &str, topics: &Topics) -> std::result::Result<BTreeSet<String>, String> {
    if regex.len() > MAX_REGEX_BYTES {
        return Err(format!("a regex of {} bytes exceeds {MAX_REGEX_BYTES}", regex.len()));
    }
    let re = regex::Regex::new(&format!("^(?:{regex})$"))
        .map_err(|e| format!("subscribed regex {regex:?}: {e}"))?;
    Ok(topics.by_name.keys().filter(|t| re.is_match(t)).cloned().collect())
}

/// ConsumerGroupHeartbeat 0-1.
pub async fn heartbeat(
    b: &Broker,
    caller: &Caller,
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
) -> ConsumerGroupHeartbeatResponse {
    if let Err(e) = acl::authorize(b, caller, Operation::Read, Resource::group(&req.group_id.0)) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(errors::code(&e))
            .with_error_message(Some(s(e.to_string())))
            .with_member_epoch(-1);
    }
    let leaving = req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH;
    let epoch = req.member_epoch;
    match beat(b, caller, req, client_id).await {
        Ok((member_id, member_epoch, assignment, interval)) => {
            let out = ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(s(member_id)))
                .with_member_epoch(if leaving { epoch } else { member_epoch })
                .with_heartbeat_interval_ms(interval);
            match assignment {
                Some(a) if !leaving => out.with_assignment(Some(a)),
                _ => out,
            }
        }
        Err(Refusal { code, message }) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s(message)))
            .with_member_epoch(-1),
    }
}

/// A refusal with Kafka's code.
struct Refusal {
    code: i16,
    message: String,
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal { code: errors::code(&e), message: e.to_string() }
    }
}

/// The member's id, epoch, assignment and heartbeat interval.
async fn beat(
    b: &Broker,
    caller: &Caller,
    req: ConsumerGroupHeartbeatRequest,
    client_id: &str,
) -> std::result::Result<(String, i32, Option<hb::Assignment>, i32), Refusal> {
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let leaving = req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH;
    let member_epoch = if leaving { LEAVE_EPOCH } else { req.member_epoch };
    let topics = Topics::of(b);
    // What the member told the coordinator before, for the fields it leaves out.
    let known: Option<Member> = if member_id.is_empty() || member_epoch == 0 {
        None
    } else {
        let c = svc::coordinator_for(b, &group)?;
        c.state(&group).and_then(|g| g.members.get(&member_id).cloned())
    };
    let regex = match req.subscribed_topic_regex.as_ref().map(|r| r.to_string()) {
        Some(r) if r.is_empty() => None,
        Some(r) => Some(r),
        None if req.subscribed_topic_names.is_some() => None,
        None => known.as_ref().and_then(|m| m.subscribed_regex.clone()),
    };
    let names: Option<BTreeSet<String>> = req
        .subscribed_topic_names
        .as_ref()
        .map(|names| names.iter().map(|n| n.0.to_string()).collect());
    // As Kafka: a named topic the caller may not describe is refused; a regex matches only
    // the topics it may.
    for name in names.iter().flatten() {
        acl::authorize(b, caller, Operation::Describe, Resource::topic(name))?;
    }
    let subscribed = match (&regex, names) {
        (Some(r), names) => {
            let mut matched = resolve_regex(r, &topics)
                .map_err(|message| Refusal { code: errors::INVALID_REGULAR_EXPRESSION, message })?;
            matched.retain(|t| acl::allows(b, caller, Operation::Describe, Resource::topic(t)));
            matched.extend(names.unwrap_or_default());
            matched
        }
        (None, Some(names)) => names,
        (None, None) => match &known {
            Some(m) => m.subscribed.clone(),
            None if leaving => BTreeSet::new(),
            None => {
                return Err(Error::InvalidRequest(
                    "a joining member must send SubscribedTopicNames or SubscribedTopicRegex"
                        .into(),
                )
                .into());
            }
        },
    };
    let owned: Assignment = match &req.topic_partitions {
        Some(parts) => {
            let mut owned = Assignment::new();
            for tp in parts {
                // A topic deleted meanwhile is no longer owned.
                let Some(name) = topics.by_id.get(&tp.topic_id) else { continue };
                let set = owned.entry(name.clone()).or_default();
                for &p in &tp.partitions {
                    let p = u32::try_from(p).map_err(|_| {
                        Refusal::from(Error::InvalidRequest(format!("partition {p} is negative")))
                    })?;
                    set.insert(p);
                }
            }
            owned
        }
        None => known.as_ref().map_or_else(Assignment::new, |m| {
            let mut owned = m.assigned.clone();
            for (t, parts) in &m.pending_revocation {
                owned.entry(t.clone()).or_default().extend(parts);
            }
            owned
        }),
    };
    let assignor = match &req.server_assignor {
        Some(a) => a.to_string(),
        None => known.as_ref().map(|m| m.assignor.clone()).unwrap_or_default(),
    };
    let request = HeartbeatRequest {
        group,
        member_id,
        member_epoch,
        subscribed,
        subscribed_regex: regex,
        owned,
        assignor,
        client_id: client_id.to_string(),
    };
    let h = svc::heartbeat(b, request).await?;
    let assignment = hb::Assignment::default().with_topic_partitions(
        h.reply
            .assignment
            .iter()
            .map(|(t, parts)| {
                hb::TopicPartitions::default()
                    .with_topic_id(topics.id(t))
                    .with_partitions(parts.iter().map(|&p| p as i32).collect())
            })
            .collect(),
    );
    let interval = i32::try_from(h.heartbeat_interval_ms).unwrap_or(i32::MAX);
    Ok((h.reply.member_id, h.reply.member_epoch, Some(assignment), interval))
}

/// ConsumerGroupDescribe 0-1. A classic group, or none, is GROUP_ID_NOT_FOUND (as Kafka
/// answers: it is not a consumer-protocol group).
pub async fn describe(
    b: &Broker,
    caller: &Caller,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let topics = Topics::of(b);
    let mut groups = Vec::with_capacity(req.group_ids.len());
    for g in &req.group_ids {
        let out = describe::DescribedGroup::default()
            .with_group_id(g.clone())
            .with_authorized_operations(i32::MIN);
        let allowed = acl::authorize(b, caller, Operation::Describe, Resource::group(&g.0));
        let r = match allowed {
            Ok(()) => describe_one(b, g.0.as_str()).await,
            Err(e) => Err(e),
        };
        groups.push(match r {
            Ok(state) => described(out, &state, &topics),
            Err(e) => out
                .with_error_code(errors::code(&e))
                .with_error_message(Some(s(e.to_string())))
                .with_group_state(s("Dead")),
        });
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

async fn describe_one(b: &Broker, group: &str) -> Result<std::sync::Arc<GroupState>> {
    let c = svc::coordinator_for(b, group)?;
    c.term().await?;
    let not_found =
        || Error::GroupIdNotFound(format!("group {group:?} is not a consumer-protocol group"));
    if c.classic_view(group).is_some_and(|(_, g)| !g.members.is_empty()) {
        return Err(not_found());
    }
    c.state(group).ok_or_else(not_found)
}

fn described(
    out: describe::DescribedGroup,
    g: &GroupState,
    topics: &Topics,
) -> describe::DescribedGroup {
    let assignment = |a: &Assignment| {
        describe::Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(t, parts)| {
                    describe::TopicPartitions::default()
                        .with_topic_id(topics.id(t))
                        .with_topic_name(TopicName(s(t.clone())))
                        .with_partitions(parts.iter().map(|&p| p as i32).collect())
                })
                .collect(),
        )
    };
    let empty = Assignment::new();
    let members = g
        .members
        .values()
        .map(|m| {
            describe::Member::default()
                .with_member_id(s(m.member_id.clone()))
                .with_member_epoch(m.member_epoch)
                .with_client_id(s(m.client_id.clone()))
                .with_subscribed_topic_names(
                    m.subscribed.iter().map(|t| TopicName(s(t.clone()))).collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_regex.clone().map(s))
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(g.target.get(&m.member_id).unwrap_or(&empty)))
                .with_member_type(CONSUMER_MEMBER)
        })
        .collect();
    out.with_group_state(s(super::group_admin::consumer_state(g)))
        .with_group_epoch(g.group_epoch)
        .with_assignment_epoch(g.assignment_epoch)
        .with_assignor_name(s(if g.assignor.is_empty() {
            crate::group::state::DEFAULT_ASSIGNOR.to_string()
        } else {
            g.assignor.clone()
        }))
        .with_members(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Topics {
        let mut t = Topics { by_id: BTreeMap::new(), by_name: BTreeMap::new() };
        for (i, n) in names.iter().enumerate() {
            let id = topic_uuid("c", i as u64 + 1);
            t.by_id.insert(id, n.to_string());
            t.by_name.insert(n.to_string(), id);
        }
        t
    }

    #[test]
    fn regexes_match_whole_topic_names() {
        let t = topics(&["orders", "orders-eu", "audit.orders", "payments"]);
        let got = |r: &str| resolve_regex(r, &t).unwrap().into_iter().collect::<Vec<_>>();
        assert_eq!(got("orders.*"), ["orders", "orders-eu"], "anchored at the start");
        assert_eq!(got("orders"), ["orders"], "and at the end");
        assert_eq!(got("(^orders$|^pay.*$)"), ["orders", "payments"], "as librdkafka sends it");
        assert_eq!(got(".*orders.*"), ["audit.orders", "orders", "orders-eu"]);
        assert!(got("nothing").is_empty());
        assert!(resolve_regex("orders(", &t).unwrap_err().contains("orders("));
        assert!(resolve_regex(&"a".repeat(MAX_REGEX_BYTES + 1), &t).is_err());
    }
}
