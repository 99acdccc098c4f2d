//! Configs: DescribeConfigs 1-4 (every config with its value and where it comes from,
//! defaults included), AlterConfigs 0-2 (replaces a topic's overrides) and
//! IncrementalAlterConfigs 0-1 (sets or deletes single overrides).
//!
//! Topics have three configs a client may override (`retention.ms`, `retention.bytes`,
//! `max.message.bytes`); the others listed are what rafka does for every topic and are
//! read-only. Broker configs come from the broker's config file and are read-only.
//! Configs are described from this broker's copy of the controller state; changes are made
//! by the controller leader.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use kafka_protocol::messages::AlterConfigsRequest;
use kafka_protocol::messages::AlterConfigsResponse;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::DescribeConfigsResponse;
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::IncrementalAlterConfigsResponse;
use kafka_protocol::messages::alter_configs_response;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym;
use kafka_protocol::messages::incremental_alter_configs_response;
use kafka_protocol::protocol::StrBytes;

use super::controller;
use super::errors;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::error::Result;
use crate::service::acl;
use crate::service::admin as svc;
use crate::topic::TopicConfig;

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's config sources.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types.
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;
const BOOLEAN: i8 = 1;

/// Kafka's IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;

/// One config as DescribeConfigs (and CreateTopics v5+) list it.
pub struct Entry {
    pub name: &'static str,
    pub value: String,
    pub read_only: bool,
    pub source: i8,
    config_type: i8,
    doc: &'static str,
    /// The broker config it defaults to, if any.
    broker_name: Option<&'static str>,
    /// The broker default's value, for synonyms.
    default: String,
}

/// Every config of a topic with `effective` values and `overrides`.
pub fn topic_entries(
    b: &Broker,
    effective: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<Entry> {
    let defaults = TopicConfig::from_defaults(&b.config().topic_defaults);
    let log = &b.config().log;
    let alterable = |name: &'static str, broker: &'static str, t, doc, v: String, d: String| {
        let source =
            if overrides.contains_key(name) { DYNAMIC_TOPIC_CONFIG } else { DEFAULT_CONFIG };
        Entry {
            name,
            value: v,
            read_only: false,
            source,
            config_type: t,
            doc,
            broker_name: Some(broker),
            default: d,
        }
    };
    let fixed = |name: &'static str, broker: Option<&'static str>, t, doc, v: String| Entry {
        name,
        value: v.clone(),
        read_only: true,
        source: DEFAULT_CONFIG,
        config_type: t,
        doc,
        broker_name: broker,
        default: v,
    };
    vec![
        fixed(
            "cleanup.policy",
            None,
            LIST,
            "Old segments are deleted (compaction is not offered).",
            "delete".into(),
        ),
        fixed(
            "compression.type",
            None,
            STRING,
            "Batches are stored as the producer compressed them.",
            "producer".into(),
        ),
        alterable(
            "max.message.bytes",
            "message.max.bytes",
            INT,
            "Largest record batch a producer may send.",
            effective.max_message_bytes.to_string(),
            defaults.max_message_bytes.to_string(),
        ),
        fixed(
            "message.timestamp.type",
            None,
            STRING,
            "Records keep the producer's timestamps.",
            "CreateTime".into(),
        ),
        alterable(
            "retention.bytes",
            "log.retention.bytes",
            LONG,
            "Size of a partition past which its oldest closed segments are deleted (-1: unlimited).",
            effective.retention_bytes.to_string(),
            defaults.retention_bytes.to_string(),
        ),
        alterable(
            "retention.ms",
            "log.retention.ms",
            LONG,
            "Age after which closed segments are deleted (-1: unlimited).",
            effective.retention_ms.to_string(),
            defaults.retention_ms.to_string(),
        ),
        fixed(
            "segment.bytes",
            Some("log.segment.bytes"),
            INT,
            "Segment size: broker-wide in rafka ([log] segment-bytes).",
            log.segment_bytes.to_string(),
        ),
        fixed(
            "segment.ms",
            Some("log.roll.ms"),
            LONG,
            "Segment roll time: broker-wide in rafka ([log] segment-ms).",
            log.segment_ms.to_string(),
        ),
    ]
}

/// This broker's configs, under Kafka's names where Kafka has one.
fn broker_entries(b: &Broker) -> Vec<Entry> {
    let c = b.config();
    let d = &c.topic_defaults;
    let entry = |name: &'static str, t, doc, v: String| Entry {
        name,
        value: v.clone(),
        read_only: true,
        source: STATIC_BROKER_CONFIG,
        config_type: t,
        doc,
        broker_name: None,
        default: v,
    };
    vec![
        entry(
            "auto.create.topics.enable",
            BOOLEAN,
            "Metadata requests create unknown topics.",
            c.auto_create_topics.to_string(),
        ),
        entry("broker.id", INT, "This broker's id.", c.node_id.to_string()),
        entry(
            "default.replication.factor",
            INT,
            "Replicas of a new topic's partitions.",
            d.replication_factor.to_string(),
        ),
        entry(
            "log.retention.bytes",
            LONG,
            "Default retention.bytes.",
            d.retention_bytes.to_string(),
        ),
        entry("log.retention.ms", LONG, "Default retention.ms.", d.retention_ms.to_string()),
        entry("log.roll.ms", LONG, "Segment roll time.", c.log.segment_ms.to_string()),
        entry("log.segment.bytes", INT, "Segment size.", c.log.segment_bytes.to_string()),
        entry(
            "message.max.bytes",
            INT,
            "Default max.message.bytes.",
            d.max_message_bytes.to_string(),
        ),
        entry("num.partitions", INT, "Partitions of a new topic.", d.partitions.to_string()),
    ]
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// The entries of one resource, or why it cannot be described.
fn resource_entries(b: &Broker, resource_type: i8, name: &str) -> Result<Vec<Entry>> {
    match resource_type {
        TOPIC => {
            let state = b.state();
            let t = state
                .topics
                .get(name)
                .ok_or_else(|| Error::UnknownTopic(format!("topic {name} does not exist")))?;
            Ok(topic_entries(b, &b.topic_config(t), &t.configs))
        }
        BROKER => {
            check_broker(b, name)?;
            Ok(broker_entries(b))
        }
        other => Err(Error::InvalidRequest(format!(
            "resource type {other} is not served (topics: 2, brokers: 4)"
        ))),
    }
}

/// A broker resource must name this broker (or be empty: the cluster-wide defaults, which
/// are this broker's).
fn check_broker(b: &Broker, name: &str) -> Result<()> {
    if name.is_empty() || name == b.id().to_string() {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "broker {} was asked about broker {name:?}: send it to that broker",
            b.id()
        )))
    }
}

/// `Ok` if `caller` may do `op` to the configs of the resource (a topic, else the cluster:
/// brokers' configs are the cluster's, as in Kafka).
fn authorize_configs(
    b: &Broker,
    caller: &Caller,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Result<()> {
    let resource = if resource_type == TOPIC { Resource::topic(name) } else { Resource::cluster() };
    acl::authorize(b, caller, op, resource)
}

/// DescribeConfigs 1-4 (DescribeConfigs on each topic, or on the cluster for brokers).
pub fn describe_configs(
    b: &Broker,
    caller: &Caller,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let op = Operation::DescribeConfigs;
            let entries = match authorize_configs(b, caller, op, r.resource_type, &name)
                .and_then(|()| resource_entries(b, r.resource_type, &name))
            {
                Ok(e) => e,
                Err(e) => {
                    return out
                        .with_error_code(errors::code(&e))
                        .with_error_message(Some(s(e.to_string())));
                }
            };
            let wanted: Option<BTreeSet<String>> =
                r.configuration_keys.as_ref().map(|k| k.iter().map(|k| k.to_string()).collect());
            let configs = entries
                .into_iter()
                .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(e.name)))
                .map(|e| described(e, req.include_synonyms, req.include_documentation))
                .collect();
            out.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn described(e: Entry, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let mut syn = Vec::new();
    if synonyms {
        if e.source == DYNAMIC_TOPIC_CONFIG {
            syn.push(
                DescribeConfigsSynonym::default()
                    .with_name(s(e.name))
                    .with_value(Some(s(e.value.clone())))
                    .with_source(DYNAMIC_TOPIC_CONFIG),
            );
        }
        if let Some(broker) = e.broker_name {
            syn.push(
                DescribeConfigsSynonym::default()
                    .with_name(s(broker))
                    .with_value(Some(s(e.default.clone())))
                    .with_source(DEFAULT_CONFIG),
            );
        }
    }
    DescribeConfigsResourceResult::default()
        .with_name(s(e.name))
        .with_value(Some(s(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_synonyms(syn)
        .with_config_type(e.config_type)
        .with_documentation(documentation.then(|| s(e.doc)))
}

/// Replaces (or, with `validate_only`, checks) `name`'s overrides with `configs`.
async fn replace(
    b: &Broker,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<()> {
    match resource_type {
        TOPIC => {}
        BROKER => {
            check_broker(b, name)?;
            return Err(Error::InvalidRequest(
                "broker configs are read from the broker's config file; they cannot be altered \
                 at run time"
                    .into(),
            ));
        }
        other => {
            return Err(Error::InvalidRequest(format!(
                "resource type {other} is not served (topics: 2, brokers: 4)"
            )));
        }
    }
    if validate_only {
        return svc::validate_topic_config(b, name, &configs);
    }
    TopicConfig::resolve(&b.config().topic_defaults, &configs)?;
    controller::alter_topic_config(b, name.to_string(), configs).await?;
    tracing::info!(topic = %name, "topic configs altered by a Kafka client");
    Ok(())
}

/// Duplicate names within one resource are refused, as Kafka does.
fn no_duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(Error::InvalidRequest(format!("config {n} appears more than once")));
        }
    }
    Ok(())
}

/// AlterConfigs 0-2: each topic's overrides become exactly the configs given (null values
/// left out). Needs AlterConfigs on the topic.
pub async fn alter_configs(
    b: &Broker,
    caller: &Caller,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let name = r.resource_name.to_string();
        let op = Operation::AlterConfigs;
        let outcome = match authorize_configs(b, caller, op, r.resource_type, &name)
            .and_then(|()| no_duplicates(r.configs.iter().map(|c| c.name.as_str())))
        {
            Ok(()) => {
                let configs = r
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                replace(b, r.resource_type, &name, configs, req.validate_only).await
            }
            Err(e) => Err(e),
        };
        let out = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => out,
            Err(e) => {
                out.with_error_code(errors::code(&e)).with_error_message(Some(s(e.to_string())))
            }
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs 0-1: SET and DELETE single overrides of a topic (APPEND and
/// SUBTRACT apply to list configs, and no alterable topic config is a list). Needs
/// AlterConfigs on the topic.
pub async fn incremental_alter_configs(
    b: &Broker,
    caller: &Caller,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let name = r.resource_name.to_string();
        let outcome = async {
            authorize_configs(b, caller, Operation::AlterConfigs, r.resource_type, &name)?;
            no_duplicates(r.configs.iter().map(|c| c.name.as_str()))?;
            let mut configs = if r.resource_type == TOPIC {
                let state = b.state();
                let t = state
                    .topics
                    .get(&name)
                    .ok_or_else(|| Error::UnknownTopic(format!("topic {name} does not exist")))?;
                t.configs.clone()
            } else {
                BTreeMap::new()
            };
            for c in &r.configs {
                let key = c.name.to_string();
                match (c.config_operation, &c.value) {
                    (SET, Some(v)) => {
                        configs.insert(key, v.to_string());
                    }
                    (SET, None) | (DELETE, _) => {
                        configs.remove(&key);
                    }
                    (op @ (2 | 3), _) => {
                        return Err(Error::InvalidConfig(format!(
                            "config {key}: {} applies to list configs; {key} is not one",
                            if op == 2 { "APPEND" } else { "SUBTRACT" }
                        )));
                    }
                    (op, _) => {
                        return Err(Error::InvalidRequest(format!(
                            "config {key}: unknown operation {op}"
                        )));
                    }
                }
            }
            replace(b, r.resource_type, &name, configs, req.validate_only).await
        }
        .await;
        let out = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => out,
            Err(e) => {
                out.with_error_code(errors::code(&e)).with_error_message(Some(s(e.to_string())))
            }
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
