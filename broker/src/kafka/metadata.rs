//! Metadata: brokers at their advertised addresses, topics with their partitions' leaders
//! (and leader epochs: the Raft term), replicas and in-sync replicas; unknown topics a
//! client asks for are created when it allows it and `auto-create-topics` is on (and the
//! caller may Create topics). As in Kafka, a caller sees only the topics it may Describe:
//! others are left out of "every topic", and answered TOPIC_AUTHORIZATION_FAILED when named
//! (whether they exist or not).

use std::collections::BTreeMap;

use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::controller;
use super::errors;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::controller::plan::NewTopic;
use crate::error::Error;
use crate::service::acl;
use crate::service::admin as svc;

/// Kafka's node id of a broker (rafka's ids are u64; Kafka's are int32).
pub fn node_id(broker: u64) -> BrokerId {
    BrokerId(i32::try_from(broker).unwrap_or(-1))
}

/// `host:port` split for Kafka (the port is 0 when missing or not a number).
pub fn host_port(address: &str) -> (String, i32) {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (host.to_string(), port.parse().unwrap_or(0))
        }
        None => (address.to_string(), 0),
    }
}

/// Where a client of the named `listener` (`None`: the internal one) reaches broker `id`,
/// whose internal address is `internal`, split for Kafka.
pub fn address_for(b: &Broker, listener: Option<&str>, id: u64, internal: &str) -> (String, i32) {
    let Some(name) = listener else { return host_port(internal) };
    if id == b.id() {
        return host_port(b.address_on(Some(name)));
    }
    match b.state().brokers.get(&id) {
        Some(record) => host_port(record.address_on(Some(name))),
        None => host_port(internal),
    }
}

/// A stable, non-zero topic UUID: the cluster id's hash and the topic's id, which is never
/// reused within a cluster.
pub fn topic_uuid(cluster_id: &str, topic_id: u64) -> Uuid {
    let high = u64::from(crc32c::crc32c(cluster_id.as_bytes())) << 32 | 0x5241_464b;
    Uuid::from_u64_pair(high, topic_id)
}

/// The leader of a partition this broker was asked about but does not lead, as a replica
/// hosted here knows it: (node id, leader epoch, host, port, rack). `None` when no replica
/// here knows a leader (the client then refreshes its metadata).
pub fn current_leader(
    b: &Broker,
    listener: Option<&str>,
    topic: &str,
    partition: u32,
) -> Option<(BrokerId, i32, String, i32, Option<String>)> {
    let (_, group) = b.lookup(topic, partition).ok()?;
    let replica = b.replicas().partition(group)?;
    let (_, node) = replica.group.leader()?;
    if node.broker_id == b.id() {
        return None;
    }
    let epoch = crate::partition::leader_epoch(replica.group.current_term());
    let state = b.state();
    let record = state.brokers.get(&node.broker_id)?;
    let (host, port) = host_port(record.address_on(listener));
    Some((node_id(node.broker_id), epoch, host, port, record.rack.clone()))
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Answers `req` (of `version`) for a client of the named `listener`.
pub async fn handle(
    b: &Broker,
    caller: &Caller,
    listener: Option<&str>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // Version 0 asks for every topic with an empty list; later versions with a null one.
    let names: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name).map(|n| n.0.to_string()).collect()),
    };
    let asked = names.clone().unwrap_or_default();
    let mut md = match controller::metadata(b, &asked).await {
        Ok(md) => md,
        Err(e) => return failed(b, listener, &e, &asked),
    };
    // Versions before 4 cannot say no, and imply yes (as in Kafka).
    let allow = version < 4 || req.allow_auto_topic_creation;
    if allow && b.config().auto_create_topics && names.is_some() {
        let mut created = false;
        for (name, t) in &md.topics {
            let describable = acl::allows(b, caller, Operation::Describe, Resource::topic(name));
            if !matches!(t, Err(Error::UnknownTopic(_)))
                || !describable
                || !may_create(b, caller, name)
            {
                continue;
            }
            let new = NewTopic {
                name: name.clone(),
                partitions: b.config().topic_defaults.partitions,
                replication_factor: 0,
                configs: BTreeMap::new(),
            };
            match controller::create_topic(b, new).await {
                Ok(_) | Err(Error::TopicAlreadyExists(_)) => created = true,
                Err(e) => tracing::debug!(topic = %name, "auto-creating a topic: {e}"),
            }
        }
        if created && let Ok(again) = controller::metadata(b, &asked).await {
            md = again;
        }
        // Kafka tells a client that may not create a topic so, rather than let it wait.
        for (name, t) in &mut md.topics {
            if matches!(t, Err(Error::UnknownTopic(_))) && !may_create(b, caller, name) {
                *t = Err(acl::denied(caller, Operation::Create, Resource::topic(name)));
            }
        }
    }
    let named = names.is_some();
    md.topics.retain_mut(|(name, t)| {
        if acl::allows(b, caller, Operation::Describe, Resource::topic(name)) {
            return true;
        }
        if named {
            *t = Err(acl::denied(caller, Operation::Describe, Resource::topic(name)));
        }
        named
    });
    let alive: Vec<&svc::BrokerInfo> = md.brokers.iter().filter(|b| b.alive).collect();
    let broker = b;
    let brokers = alive
        .iter()
        .map(|b| {
            let (host, port) = address_for(broker, listener, b.broker_id, &b.address);
            MetadataResponseBroker::default()
                .with_node_id(node_id(b.broker_id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    let is_alive = |id: u64| alive.iter().any(|b| b.broker_id == id);
    let topics =
        md.topics.into_iter().map(|(name, t)| topic(&md.cluster_id, name, t, &is_alive)).collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(md.cluster_id.clone())))
        .with_controller_id(node_id(md.controller_id))
        .with_topics(topics)
}

/// Whether `caller` may create the topic `name`: Create on the cluster or on the topic.
fn may_create(b: &Broker, caller: &Caller, name: &str) -> bool {
    acl::allows(b, caller, Operation::Create, Resource::cluster())
        || acl::allows(b, caller, Operation::Create, Resource::topic(name))
}

fn topic(
    cluster_id: &str,
    name: String,
    t: Result<svc::TopicMetadata, Error>,
    is_alive: &dyn Fn(u64) -> bool,
) -> MetadataResponseTopic {
    let out = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name))));
    let t = match t {
        Ok(t) => t,
        Err(e) => return out.with_error_code(errors::code(&e)),
    };
    let partitions: Vec<MetadataResponsePartition> = t
        .partitions
        .iter()
        .map(|p| {
            let ids = |v: &[u64]| v.iter().map(|&b| node_id(b)).collect::<Vec<_>>();
            let offline: Vec<u64> = p.replicas.iter().copied().filter(|&r| !is_alive(r)).collect();
            let (error, leader) = match p.leader {
                Some(l) => (errors::NONE, node_id(l)),
                None => (errors::LEADER_NOT_AVAILABLE, BrokerId(-1)),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.partition as i32)
                .with_leader_id(leader)
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.in_sync))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    out.with_error_code(errors::NONE)
        .with_topic_id(topic_uuid(cluster_id, t.topic_id))
        .with_is_internal(t.internal)
        .with_partitions(partitions)
}

/// No controller leader to ask: this broker alone, and every asked topic refused with the
/// (retriable) reason, so the client asks again.
fn failed(b: &Broker, listener: Option<&str>, e: &Error, asked: &[String]) -> MetadataResponse {
    tracing::debug!("Kafka metadata: {e}");
    let (host, port) = host_port(b.address_on(listener));
    let me = MetadataResponseBroker::default()
        .with_node_id(node_id(b.id()))
        .with_host(str_bytes(host))
        .with_port(port);
    let code = match e {
        Error::NotController { .. } | Error::TimedOut(_) => errors::LEADER_NOT_AVAILABLE,
        e => errors::code(e),
    };
    let topics = asked
        .iter()
        .map(|n| {
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(n.clone()))))
                .with_error_code(code)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![me])
        .with_controller_id(BrokerId(-1))
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ids() {
        assert_eq!(host_port("127.0.0.1:9092"), ("127.0.0.1".to_string(), 9092));
        assert_eq!(host_port("[::1]:9093"), ("::1".to_string(), 9093));
        assert_eq!(host_port("broker-1.svc:x"), ("broker-1.svc".to_string(), 0));
        assert_eq!(node_id(3), BrokerId(3));
        assert_eq!(node_id(u64::MAX), BrokerId(-1));
        let a = topic_uuid("c1", 7);
        assert_eq!(a, topic_uuid("c1", 7), "stable");
        assert_ne!(a, topic_uuid("c1", 8));
        assert_ne!(a, topic_uuid("c2", 7));
        assert!(!a.is_nil());
    }
}
