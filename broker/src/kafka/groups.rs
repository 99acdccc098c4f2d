//! Consumer groups over Kafka's classic protocol: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch — served by the same coordinators as
//! rafka's own groups, with the same committed offsets.
//!
//! Authorization as in Kafka: FindCoordinator needs Describe on the group; joining, syncing,
//! heartbeats, leaving and commits need Read on it (commits also Read on each topic);
//! OffsetFetch needs Describe on the group and on each topic (others are left out, or
//! answered TOPIC_AUTHORIZATION_FAILED when named).

use bytes::Bytes;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::FindCoordinatorResponse;
use kafka_protocol::messages::HeartbeatRequest;
use kafka_protocol::messages::HeartbeatResponse;
use kafka_protocol::messages::JoinGroupRequest;
use kafka_protocol::messages::JoinGroupResponse;
use kafka_protocol::messages::LeaveGroupRequest;
use kafka_protocol::messages::LeaveGroupResponse;
use kafka_protocol::messages::OffsetCommitRequest;
use kafka_protocol::messages::OffsetCommitResponse;
use kafka_protocol::messages::OffsetFetchRequest;
use kafka_protocol::messages::OffsetFetchResponse;
use kafka_protocol::messages::SyncGroupRequest;
use kafka_protocol::messages::SyncGroupResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::OffsetCommitResponsePartition;
use kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponsePartition;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponsePartitions;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseTopic;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseTopics;
use kafka_protocol::protocol::StrBytes;
use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_proto::groups::offsets_partition;

use super::controller;
use super::errors;
use super::metadata::address_for;
use super::metadata::node_id;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::error::Result;
use crate::group::classic::Join;
use crate::group::classic_ops::Leaving;
use crate::service::acl;
use crate::service::groups as svc;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// `Ok` if `caller` may Read `group` (join it, commit its offsets).
fn read_group(b: &Broker, caller: &Caller, group: &str) -> Result<()> {
    acl::authorize(b, caller, Operation::Read, Resource::group(group))
}

/// Where `group`'s coordinator is: the leader of its `__consumer_offsets` partition.
async fn locate(b: &Broker, group: &str) -> Result<(u64, String)> {
    crate::group::coordinator::validate_group_id(group)?;
    let md = controller::metadata(b, &[OFFSETS_TOPIC.to_string()]).await?;
    let offsets = md.topics.into_iter().find_map(|(_, t)| t.ok()).ok_or_else(|| {
        Error::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC} is not created yet"))
    })?;
    let p = offsets_partition(group, offsets.partitions.len() as u32) as usize;
    let leader = offsets.partitions.get(p).and_then(|p| p.leader).ok_or_else(|| {
        Error::CoordinatorNotAvailable(format!("{OFFSETS_TOPIC} partition {p} has no leader"))
    })?;
    let address = md
        .brokers
        .iter()
        .find(|x| x.broker_id == leader)
        .map(|x| x.address.clone())
        .ok_or_else(|| Error::CoordinatorNotAvailable(format!("broker {leader} is unknown")))?;
    Ok((leader, address))
}

/// FindCoordinator (group coordinators only: transactions are not served).
pub async fn find_coordinator(
    b: &Broker,
    caller: &Caller,
    listener: Option<&str>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut found = Vec::new();
    for key in keys {
        let r = if req.key_type != 0 {
            Err(Error::InvalidRequest(format!(
                "coordinator key type {} is not served",
                req.key_type
            )))
        } else {
            match acl::authorize(b, caller, Operation::Describe, Resource::group(&key)) {
                Ok(()) => locate(b, &key).await,
                Err(e) => Err(e),
            }
        };
        found.push((key, r));
    }
    if version >= 4 {
        let coordinators = found
            .into_iter()
            .map(|(key, r)| {
                let c = Coordinator::default().with_key(s(key));
                match r {
                    Ok((id, addr)) => {
                        let (host, port) = address_for(b, listener, id, &addr);
                        c.with_node_id(node_id(id)).with_host(s(host)).with_port(port)
                    }
                    Err(e) => c
                        .with_error_code(errors::code(&e))
                        .with_error_message(Some(s(e.to_string())))
                        .with_node_id(BrokerId(-1)),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (_, r) = found.pop().expect("one key");
    let out = FindCoordinatorResponse::default();
    match r {
        Ok((id, addr)) => {
            let (host, port) = address_for(b, listener, id, &addr);
            out.with_node_id(node_id(id)).with_host(s(host)).with_port(port)
        }
        Err(e) => {
            let out = out.with_error_code(errors::code(&e)).with_node_id(BrokerId(-1));
            if version >= 1 { out.with_error_message(Some(s(e.to_string()))) } else { out }
        }
    }
}

/// JoinGroup: answered when the group's join phase ends.
pub async fn join_group(
    b: &Broker,
    caller: &Caller,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    let join = Join {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: u32::try_from(req.session_timeout_ms).unwrap_or(0),
        // Version 0 has no rebalance timeout: the session timeout serves.
        rebalance_timeout_ms: u32::try_from(if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        })
        .unwrap_or(0),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
    };
    let member_id = join.member_id.clone();
    let r = async {
        read_group(b, caller, &group)?;
        let c = svc::coordinator_for(b, &group)?;
        c.classic_join(&group, join).await
    }
    .await;
    let out = JoinGroupResponse::default();
    match r {
        Ok(j) => {
            let members = j
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(if version >= 5 { instance.map(s) } else { None })
                        .with_metadata(Bytes::from(metadata))
                })
                .collect();
            let out = out
                .with_generation_id(j.generation)
                .with_protocol_name(Some(s(j.protocol)))
                .with_leader(s(j.leader))
                .with_member_id(s(j.member_id))
                .with_members(members);
            let out = if version >= 9 { out.with_skip_assignment(j.skip_assignment) } else { out };
            if version >= 7 { out.with_protocol_type(Some(s(j.protocol_type))) } else { out }
        }
        Err(e) => out
            .with_error_code(errors::code(&e))
            .with_generation_id(-1)
            .with_member_id(s(member_id))
            .with_protocol_name(if version >= 7 { None } else { Some(s("")) }),
    }
}

/// SyncGroup: the member's assignment.
pub async fn sync_group(
    b: &Broker,
    caller: &Caller,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    let assignments =
        req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.to_vec())).collect();
    let r = async {
        read_group(b, caller, &group)?;
        let c = svc::coordinator_for(b, &group)?;
        let a = c.classic_sync(&group, &req.member_id, req.generation_id, assignments).await?;
        Ok::<_, Error>((a, c.classic_view(&group)))
    }
    .await;
    let out = SyncGroupResponse::default();
    match r {
        Ok((a, view)) => {
            let out = out.with_assignment(Bytes::from(a));
            match (version >= 5, view) {
                (true, Some((_, g))) => out
                    .with_protocol_type(Some(s(g.protocol_type)))
                    .with_protocol_name(Some(s(g.protocol))),
                _ => out,
            }
        }
        Err(e) => out.with_error_code(errors::code(&e)),
    }
}

/// Heartbeat.
pub async fn heartbeat(b: &Broker, caller: &Caller, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    let r = async {
        read_group(b, caller, &group)?;
        let c = svc::coordinator_for(b, &group)?;
        c.classic_heartbeat(&group, &req.member_id, req.generation_id).await
    }
    .await;
    HeartbeatResponse::default().with_error_code(errors::code_of(&r))
}

/// LeaveGroup: one member (versions 0-2) or several (3+, by member or instance id).
pub async fn leave_group(
    b: &Broker,
    caller: &Caller,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    let leaving: Vec<Leaving> = if version >= 3 {
        req.members
            .iter()
            .map(|m| Leaving {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![Leaving { member_id: req.member_id.to_string(), group_instance_id: None }]
    };
    let r = async {
        read_group(b, caller, &group)?;
        let c = svc::coordinator_for(b, &group)?;
        c.classic_leave(&group, &leaving).await
    }
    .await;
    let out = LeaveGroupResponse::default();
    match r {
        Err(e) => out.with_error_code(errors::code(&e)),
        Ok(each) if version < 3 => out.with_error_code(errors::code_of(&each[0])),
        Ok(each) => out.with_members(
            leaving
                .into_iter()
                .zip(each)
                .map(|(l, r)| {
                    MemberResponse::default()
                        .with_member_id(s(l.member_id))
                        .with_group_instance_id(l.group_instance_id.map(s))
                        .with_error_code(errors::code_of(&r))
                })
                .collect(),
        ),
    }
}

/// OffsetCommit: all partitions in one replicated commit, so all get the same outcome.
pub async fn offset_commit(
    b: &Broker,
    caller: &Caller,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let mut offsets = Vec::new();
    let mut bad_partition = None;
    let group_denied = read_group(b, caller, &group).err();
    // Topics the caller may not read: their partitions are not committed.
    let mut denied_topics = std::collections::BTreeMap::new();
    for t in &req.topics {
        if group_denied.is_some() {
            break;
        }
        let topic = Resource::topic(&t.name.0);
        if let Err(e) = acl::authorize(b, caller, Operation::Read, topic) {
            denied_topics.insert(t.name.0.to_string(), errors::code(&e));
            continue;
        }
        for p in &t.partitions {
            match u32::try_from(p.partition_index) {
                Ok(partition) => offsets.push(svc::CommitOffset {
                    topic: t.name.0.to_string(),
                    partition,
                    offset: p.committed_offset,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                }),
                Err(_) => bad_partition = Some(p.partition_index),
            }
        }
    }
    let r = match (group_denied, bad_partition) {
        (Some(e), _) => Err(e),
        (None, Some(p)) => Err(Error::UnknownPartition(format!("no partition {p}"))),
        (None, None) if offsets.is_empty() && !denied_topics.is_empty() => Ok(()),
        (None, None) => {
            svc::commit(b, &group, &req.member_id, req.generation_id_or_member_epoch, offsets).await
        }
    };
    let code = errors::code_of(&r);
    if let Err(e) = &r {
        tracing::debug!(group = %group, "Kafka offset commit refused: {e}");
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let code = denied_topics.get(t.name.0.as_str()).copied().unwrap_or(code);
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// One group's committed offsets, as `(topic, [(partition, offset, metadata)], code)`; a
/// group without commits has none (-1), as in Kafka. `code` is the topic's partitions'
/// error: TOPIC_AUTHORIZATION_FAILED for a named topic the caller may not describe (one not
/// named is left out).
async fn fetch_one(
    b: &Broker,
    caller: &Caller,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<(i32, i64, String)>, i16)>> {
    acl::authorize(b, caller, Operation::Describe, Resource::group(group))?;
    let describable = |t: &str| acl::allows(b, caller, Operation::Describe, Resource::topic(t));
    let asked = asked.map(|topics| {
        topics
            .into_iter()
            .map(|(t, ps)| {
                let code = match describable(&t) {
                    true => errors::NONE,
                    false => {
                        errors::code(&acl::denied(caller, Operation::Describe, Resource::topic(&t)))
                    }
                };
                (t, ps, code)
            })
            .collect::<Vec<_>>()
    });
    let wanted: Vec<(String, Vec<u32>)> = asked
        .iter()
        .flatten()
        .filter(|(_, _, code)| *code == errors::NONE)
        .map(|(t, ps, _)| (t.clone(), ps.iter().filter_map(|p| u32::try_from(*p).ok()).collect()))
        .collect();
    if asked.is_some() && wanted.is_empty() {
        // Nothing the caller may see was asked for.
        let asked = asked.into_iter().flatten();
        return Ok(asked
            .map(|(t, ps, code)| (t, ps.iter().map(|&p| (p, -1, String::new())).collect(), code))
            .collect());
    }
    let committed = match svc::fetch_offsets(b, group, &wanted).await {
        Ok(c) => c,
        Err(Error::GroupIdNotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let lookup = |t: &str, p: i32| {
        committed
            .iter()
            .find(|((ct, cp), _)| ct == t && i64::from(*cp) == i64::from(p))
            .and_then(|(_, o)| o.as_ref())
            .map_or((-1, String::new()), |o| (o.offset, o.metadata.clone()))
    };
    Ok(match asked {
        Some(asked) => asked
            .into_iter()
            .map(|(t, ps, code)| {
                let parts = ps
                    .iter()
                    .map(|&p| match code {
                        errors::NONE => {
                            let (o, m) = lookup(&t, p);
                            (p, o, m)
                        }
                        _ => (p, -1, String::new()),
                    })
                    .collect();
                (t, parts, code)
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, i64, String)>> =
                Default::default();
            for ((t, p), o) in &committed {
                if let Some(o) = o
                    && describable(t)
                {
                    by_topic.entry(t.clone()).or_default().push((
                        *p as i32,
                        o.offset,
                        o.metadata.clone(),
                    ));
                }
            }
            by_topic.into_iter().map(|(t, parts)| (t, parts, errors::NONE)).collect()
        }
    })
}

/// OffsetFetch: one group (versions 1-7) or several (8+).
pub async fn offset_fetch(
    b: &Broker,
    caller: &Caller,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        let asked = req.topics.map(|ts| {
            ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect()
        });
        let r = fetch_one(b, caller, &req.group_id.0, asked).await;
        let out = OffsetFetchResponse::default();
        return match r {
            Ok(topics) => out.with_topics(
                topics
                    .into_iter()
                    .map(|(t, parts, code)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, m)| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(s(m)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Err(e) if version >= 2 => out.with_error_code(errors::code(&e)),
            Err(_) => out,
        };
    }
    let mut groups = Vec::new();
    for g in req.groups {
        let asked = g.topics.map(|ts| {
            ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect()
        });
        let out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        groups.push(match fetch_one(b, caller, &g.group_id.0, asked).await {
            Ok(topics) => out.with_topics(
                topics
                    .into_iter()
                    .map(|(t, parts, code)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(s(m)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Err(e) => out.with_error_code(errors::code(&e)),
        });
    }
    OffsetFetchResponse::default().with_groups(groups)
}
