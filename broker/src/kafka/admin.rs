//! Topic administration and the cluster's description: CreateTopics, DeleteTopics,
//! CreatePartitions and DescribeCluster, carried out by the controller leader (asked from
//! whichever broker the client is connected to). `validate_only` requests are checked
//! against this broker's copy of the controller state and change nothing.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::CreatePartitionsRequest;
use kafka_protocol::messages::CreatePartitionsResponse;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::CreateTopicsResponse;
use kafka_protocol::messages::DeleteTopicsRequest;
use kafka_protocol::messages::DeleteTopicsResponse;
use kafka_protocol::messages::DescribeClusterRequest;
use kafka_protocol::messages::DescribeClusterResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicConfigs;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::configs;
use super::controller;
use super::errors;
use super::metadata::address_for;
use super::metadata::node_id;
use super::metadata::topic_uuid;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::controller::plan::NewTopic;
use crate::error::Error;
use crate::error::Result;
use crate::service::acl;
use crate::service::admin as svc;
use crate::topic::TopicConfig;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// A refusal's code and message, as admin responses carry them.
fn refusal(e: &Error) -> (i16, Option<StrBytes>) {
    (errors::code(e), Some(s(e.to_string())))
}

/// Names that occur more than once in one request: each such entry is refused (as Kafka
/// does), since which one would win is not defined.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut dup = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            dup.insert(n.to_string());
        }
    }
    dup
}

/// The topic `t` asks for, with Kafka's -1 meaning the broker default.
fn new_topic(b: &Broker, t: &CreatableTopic) -> Result<NewTopic> {
    if !t.assignments.is_empty() {
        return Err(Error::InvalidRequest(
            "manual replica assignments are not supported: rafka places replicas itself \
             (move them afterwards with `rafka topic reassign`)"
                .into(),
        ));
    }
    let partitions = match t.num_partitions {
        -1 => b.config().topic_defaults.partitions,
        n if n > 0 => n as u32,
        n => {
            return Err(Error::InvalidPartitions(format!(
                "the number of partitions must be positive or -1 (the default), got {n}"
            )));
        }
    };
    let replication_factor = match t.replication_factor {
        -1 => 0,
        n if n > 0 => n as u32,
        n => {
            return Err(Error::InvalidReplicationFactor(format!(
                "the replication factor must be positive or -1 (the default), got {n}"
            )));
        }
    };
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        // A null value leaves the config at its default.
        if let Some(v) = &c.value {
            configs.insert(c.name.to_string(), v.to_string());
        }
    }
    Ok(NewTopic { name: t.name.0.to_string(), partitions, replication_factor, configs })
}

/// CreateTopics 2-7.
///
/// Each topic needs Create on the cluster or on the topic.
pub async fn create_topics(
    b: &Broker,
    caller: &Caller,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let dup = duplicates(req.topics.iter().map(|t| t.name.0.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let out = CreatableTopicResult::default().with_name(t.name.clone());
        let created = if dup.contains(&name) {
            Err(Error::InvalidRequest(format!("topic {name} appears more than once")))
        } else if !acl::allows(b, caller, Operation::Create, Resource::cluster()) {
            match acl::authorize(b, caller, Operation::Create, Resource::topic(&name)) {
                Ok(()) => create_one(b, t, req.validate_only).await,
                Err(e) => Err(e),
            }
        } else {
            create_one(b, t, req.validate_only).await
        };
        let out = match created {
            Ok((topic_id, partitions, rf, overrides)) => {
                let out = out
                    .with_topic_id(topic_id)
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(rf as i16);
                if version >= 5 {
                    out.with_configs(Some(created_configs(b, &overrides)))
                } else {
                    out
                }
            }
            Err(e) => {
                let (code, message) = refusal(&e);
                out.with_error_code(code)
                    .with_error_message(message)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        };
        results.push(out);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Creates (or only checks) one topic: its UUID (nil when only checked), partitions,
/// replication factor and config overrides.
async fn create_one(
    b: &Broker,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<(Uuid, u32, u32, BTreeMap<String, String>)> {
    let new = new_topic(b, t)?;
    let overrides = new.configs.clone();
    let name = new.name.clone();
    let check = NewTopic {
        name: new.name.clone(),
        partitions: new.partitions,
        replication_factor: new.replication_factor,
        configs: new.configs.clone(),
    };
    let (partitions, rf) = svc::validate_new_topic(b, check)?;
    if validate_only {
        return Ok((Uuid::nil(), partitions, rf, overrides));
    }
    let id = controller::create_topic(b, new).await?;
    tracing::info!(topic = %name, "topic created by a Kafka client");
    Ok((topic_uuid(&b.state().cluster_id, id), partitions, rf, overrides))
}

/// The configs of a topic just created, as CreateTopics v5+ lists them.
fn created_configs(b: &Broker, overrides: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    let Ok(effective) = TopicConfig::resolve(&b.config().topic_defaults, overrides) else {
        return Vec::new();
    };
    configs::topic_entries(b, &effective, overrides)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(s(e.name))
                .with_value(Some(s(e.value)))
                .with_read_only(e.read_only)
                .with_config_source(e.source)
        })
        .collect()
}

/// DeleteTopics 1-6 (version 6 names topics by name or by id).
///
/// Each topic needs Delete on it.
pub async fn delete_topics(
    b: &Broker,
    caller: &Caller,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // (name, id) of every topic asked for; a topic given by id is looked up here.
    let asked: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let state = b.state();
    let mut responses = Vec::with_capacity(asked.len());
    for (name, id) in asked {
        let name = name.or_else(|| {
            state
                .topics
                .values()
                .find(|t| topic_uuid(&state.cluster_id, t.id) == id)
                .map(|t| t.name.clone())
        });
        let id = match name.as_ref().and_then(|n| state.topics.get(n)) {
            Some(t) if id.is_nil() => topic_uuid(&state.cluster_id, t.id),
            _ => id,
        };
        // A topic named by id that the caller may not describe stays unnamed (its name is
        // not revealed), as in Kafka.
        let by_id = !id.is_nil()
            && version >= 6
            && req.topics.iter().any(|t| t.topic_id == id && t.name.is_none());
        let hidden = by_id
            && name
                .as_ref()
                .is_some_and(|n| !acl::allows(b, caller, Operation::Describe, Resource::topic(n)));
        if hidden {
            let n = name.clone().unwrap_or_default();
            let e = acl::denied(caller, Operation::Describe, Resource::topic(&n));
            let out =
                DeletableTopicResult::default().with_topic_id(id).with_error_code(errors::code(&e));
            responses.push(out);
            continue;
        }
        let r = match &name {
            Some(n) => match acl::authorize(b, caller, Operation::Delete, Resource::topic(n)) {
                Ok(()) => controller::delete_topic(b, n.clone()).await,
                Err(e) => Err(e),
            },
            None if id.is_nil() => {
                Err(Error::InvalidRequest("a topic needs a name or an id".into()))
            }
            None => Err(Error::UnknownTopic(format!("no topic has the id {id}"))),
        };
        if r.is_ok() {
            tracing::info!(
                topic = name.as_deref().unwrap_or_default(),
                "topic deleted by a Kafka client"
            );
        }
        let out = DeletableTopicResult::default()
            .with_name(name.map(|n| TopicName(s(n))))
            .with_topic_id(id);
        responses.push(match r {
            Ok(()) => out,
            Err(e) => {
                let (code, message) = refusal(&e);
                let out = out.with_error_code(code);
                if version >= 5 { out.with_error_message(message) } else { out }
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions 0-3.
///
/// Each topic needs Alter on it.
pub async fn create_partitions(
    b: &Broker,
    caller: &Caller,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let dup = duplicates(req.topics.iter().map(|t| t.name.0.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let r = if dup.contains(&name) {
            Err(Error::InvalidRequest(format!("topic {name} appears more than once")))
        } else if let Err(e) = acl::authorize(b, caller, Operation::Alter, Resource::topic(&name)) {
            Err(e)
        } else if t.assignments.is_some() {
            Err(Error::InvalidRequest(
                "manual replica assignments are not supported: rafka places replicas itself".into(),
            ))
        } else if t.count < 1 {
            Err(Error::InvalidPartitions(format!(
                "the new count must be positive, got {}",
                t.count
            )))
        } else {
            let total = t.count as u32;
            match svc::validate_partitions(b, name.clone(), total) {
                Ok(()) if req.validate_only => Ok(()),
                Ok(()) => controller::create_partitions(b, name, total).await,
                Err(e) => Err(e),
            }
        };
        let out = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match r {
            Ok(()) => out,
            Err(e) => {
                let (code, message) = refusal(&e);
                out.with_error_code(code).with_error_message(message)
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// DescribeCluster 0-1 (brokers only: controllers are not separate nodes in rafka).
pub async fn describe_cluster(
    b: &Broker,
    listener: Option<&str>,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let out = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_authorized_operations(i32::MIN);
    if req.endpoint_type != 1 {
        return out.with_error_code(errors::UNSUPPORTED_ENDPOINT_TYPE).with_error_message(Some(s(
            format!(
                "endpoint type {} is not served: rafka has brokers only (type 1)",
                req.endpoint_type
            ),
        )));
    }
    match controller::describe_cluster(b).await {
        Ok(c) => {
            let brokers = c
                .brokers
                .iter()
                .filter(|x| x.alive)
                .map(|x| {
                    let (host, port) = address_for(b, listener, x.broker_id, &x.address);
                    DescribeClusterBroker::default()
                        .with_broker_id(node_id(x.broker_id))
                        .with_host(s(host))
                        .with_port(port)
                        .with_rack(x.rack.clone().map(s))
                })
                .collect();
            out.with_cluster_id(s(c.cluster_id))
                .with_controller_id(node_id(c.controller_id))
                .with_brokers(brokers)
        }
        Err(e) => {
            let (code, message) = refusal(&e);
            out.with_error_code(code).with_error_message(message).with_controller_id(BrokerId(-1))
        }
    }
}
