//! Group administration: DescribeGroups 0-5 and DeleteGroups 0-2 (answered by a group's
//! coordinator) and ListGroups 0-4 (each broker lists the groups it coordinates; admin
//! clients ask every broker). Groups of both protocols are shown: classic groups as they
//! are, groups of the consumer protocol (KIP-848, rafka's own) with protocol type
//! `consumer` and their members' subscriptions and assignments encoded as Kafka's consumer
//! protocol encodes them.

use bytes::Bytes;
use bytes::BytesMut;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::messages::DeleteGroupsRequest;
use kafka_protocol::messages::DeleteGroupsResponse;
use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::DescribeGroupsResponse;
use kafka_protocol::messages::GroupId;
use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::messages::ListGroupsResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::Message;
use kafka_protocol::protocol::StrBytes;

use super::errors;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Result;
use crate::group::classic::ClassicMember;
use crate::group::classic::Phase;
use crate::group::state::Assignment;
use crate::group::state::GroupState;
use crate::service::acl;
use crate::service::groups as svc;

/// The protocol type of consumer groups.
const CONSUMER: &str = "consumer";

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Kafka's name of a consumer-protocol group's state.
pub(super) fn consumer_state(g: &GroupState) -> &'static str {
    match g.state_name() {
        "empty" => "Empty",
        "reconciling" => "Reconciling",
        _ => "Stable",
    }
}

/// A group as ListGroups shows it: (protocol type, state).
fn listed(c: &crate::group::coordinator::Coordinator, group: &str) -> Option<(String, String)> {
    if let Some((phase, g)) = c.classic_view(group) {
        return Some((g.protocol_type, phase.name().to_string()));
    }
    let g = c.state(group)?;
    Some((CONSUMER.to_string(), consumer_state(&g).to_string()))
}

/// ListGroups 0-4: the groups this broker coordinates (in the states asked for, v4+).
///
/// A caller sees the groups it may Describe (all of them with Describe on the cluster).
pub fn list_groups(b: &Broker, caller: &Caller, req: ListGroupsRequest) -> ListGroupsResponse {
    let all = acl::allows(b, caller, Operation::Describe, Resource::cluster());
    let visible = |g: &str| all || acl::allows(b, caller, Operation::Describe, Resource::group(g));
    let mut groups = Vec::new();
    for c in b.replicas().coordinators() {
        if !c.group.is_leader() || !c.group.is_leader_ready() {
            continue;
        }
        let mut names: Vec<String> = c.groups().into_iter().map(|(name, _)| name).collect();
        names.extend(c.classic_groups());
        names.sort();
        names.dedup();
        for name in names {
            let Some((protocol_type, state)) = listed(&c, &name) else { continue };
            if !visible(&name) {
                continue;
            }
            let wanted = req.states_filter.is_empty()
                || req.states_filter.iter().any(|f| f.eq_ignore_ascii_case(&state));
            if wanted {
                groups.push(
                    ListedGroup::default()
                        .with_group_id(GroupId(s(name)))
                        .with_protocol_type(s(protocol_type))
                        .with_group_state(s(state)),
                );
            }
        }
    }
    ListGroupsResponse::default().with_error_code(errors::NONE).with_groups(groups)
}

/// DescribeGroups 0-5. An unknown group is described as `Dead` without members, as Kafka
/// does before version 6.
pub async fn describe_groups(
    b: &Broker,
    caller: &Caller,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let out =
            DescribedGroup::default().with_group_id(g.clone()).with_authorized_operations(i32::MIN);
        let allowed = acl::authorize(b, caller, Operation::Describe, Resource::group(&g.0));
        let r = match allowed {
            Ok(()) => describe_one(b, g.0.as_str()).await,
            Err(e) => Err(e),
        };
        groups.push(match r {
            Ok(d) => d.with_group_id(g.clone()).with_authorized_operations(i32::MIN),
            Err(e) => {
                out.with_error_code(errors::code(&e)).with_error_message(Some(s(e.to_string())))
            }
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

async fn describe_one(b: &Broker, group: &str) -> Result<DescribedGroup> {
    let c = svc::coordinator_for(b, group)?;
    c.term().await?;
    if let Some((phase, g)) = c.classic_view(group) {
        // Members' protocol metadata and assignments are shown once a generation completes.
        let members = g
            .members
            .values()
            .map(|m| {
                let (metadata, assignment) = match phase {
                    Phase::Stable => {
                        (Bytes::from(m.metadata(&g.protocol)), Bytes::from(m.assignment.clone()))
                    }
                    _ => (Bytes::new(), Bytes::new()),
                };
                DescribedGroupMember::default()
                    .with_member_id(s(m.member_id.clone()))
                    .with_group_instance_id(m.group_instance_id.clone().map(s))
                    .with_client_id(s(m.client_id.clone()))
                    .with_client_host(s(m.client_host.clone()))
                    .with_member_metadata(metadata)
                    .with_member_assignment(assignment)
            })
            .collect();
        let protocol = if phase == Phase::Stable { g.protocol.clone() } else { String::new() };
        return Ok(DescribedGroup::default()
            .with_group_state(s(phase.name()))
            .with_protocol_type(s(g.protocol_type))
            .with_protocol_data(s(protocol))
            .with_members(members));
    }
    let Some(g) = c.state(group) else {
        return Ok(DescribedGroup::default().with_group_state(s("Dead")));
    };
    let members = g
        .members
        .values()
        .map(|m| {
            let subscription = ConsumerProtocolSubscription::default()
                .with_topics(m.subscribed.iter().cloned().map(s).collect());
            DescribedGroupMember::default()
                .with_member_id(s(m.member_id.clone()))
                .with_client_id(s(m.client_id.clone()))
                .with_member_metadata(encoded(&subscription))
                .with_member_assignment(encoded(&assignment(&m.assigned)))
        })
        .collect();
    Ok(DescribedGroup::default()
        .with_group_state(s(consumer_state(&g)))
        .with_protocol_type(s(CONSUMER))
        .with_protocol_data(s(g.assignor.clone()))
        .with_members(members))
}

fn assignment(a: &Assignment) -> ConsumerProtocolAssignment {
    let partitions = a
        .iter()
        .map(|(topic, parts)| {
            TopicPartition::default()
                .with_topic(TopicName(s(topic.clone())))
                .with_partitions(parts.iter().map(|&p| p as i32).collect())
        })
        .collect();
    ConsumerProtocolAssignment::default().with_assigned_partitions(partitions)
}

/// A consumer-protocol message as members exchange it: version 0, then the body.
fn encoded(m: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    match m.encode(&mut buf, 0) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

/// A classic member's subscribed topics and assignment, when its group uses Kafka's
/// consumer protocol (protocol type `consumer`); empty if they do not decode.
pub fn consumer_member(m: &ClassicMember, protocol: &str) -> (Vec<String>, Assignment) {
    let topics = decoded::<ConsumerProtocolSubscription>(&m.metadata(protocol))
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default();
    let mut assignment = Assignment::new();
    if let Some(a) = decoded::<ConsumerProtocolAssignment>(&m.assignment) {
        for tp in a.assigned_partitions {
            let set = assignment.entry(tp.topic.0.to_string()).or_default();
            set.extend(tp.partitions.iter().filter_map(|&p| u32::try_from(p).ok()));
        }
    }
    (topics, assignment)
}

/// A consumer-protocol message: its version, then the body of that version.
fn decoded<T: Decodable + Message>(bytes: &[u8]) -> Option<T> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = buf.split_to(2);
    // Members may use versions newer than the library knows; it reads their known prefix.
    let version = version.clamp(0, T::VERSIONS.max);
    std::panic::catch_unwind(move || T::decode(&mut buf, version).ok()).ok().flatten()
}

/// DeleteGroups 0-2: groups without members, with their committed offsets.
pub async fn delete_groups(
    b: &Broker,
    caller: &Caller,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in &req.groups_names {
        let r = match acl::authorize(b, caller, Operation::Delete, Resource::group(&g.0)) {
            Ok(()) => svc::delete(b, g.0.as_str()).await,
            Err(e) => Err(e),
        };
        if r.is_ok() {
            tracing::info!(group = %g.0.as_str(), "group deleted by a Kafka client");
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(errors::code_of(&r)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_consumer_members_are_decoded() {
        let subscription =
            ConsumerProtocolSubscription::default().with_topics(vec![s("a"), s("b")]);
        let a = Assignment::from([
            ("a".to_string(), [0u32, 2].into()),
            ("b".to_string(), [1u32].into()),
        ]);
        let member = ClassicMember {
            protocols: vec![("range".into(), encoded(&subscription).to_vec())],
            assignment: encoded(&assignment(&a)).to_vec(),
            ..Default::default()
        };
        assert_eq!(consumer_member(&member, "range"), (vec!["a".into(), "b".into()], a));
        // Another protocol's metadata, or bytes that are not the consumer protocol.
        let junk = ClassicMember {
            protocols: vec![("x".into(), vec![0, 0, 0xff, 0xff, 0xff])],
            assignment: vec![0xff],
            ..Default::default()
        };
        assert_eq!(consumer_member(&junk, "range"), (vec![], Assignment::new()));
        assert_eq!(consumer_member(&junk, "x"), (vec![], Assignment::new()));
    }
}
