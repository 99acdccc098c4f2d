//! What only the controller leader answers (metadata, topic creation, producer ids), asked
//! from whichever broker a Kafka client is connected to: answered here when this broker
//! leads the controller, else asked of the leader over its gRPC services (marked forwarded,
//! so it answers itself), as rafka's own clients would.

use std::time::Duration;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::data_client::DataClient;
use tonic::Request;

use crate::broker::Broker;
use crate::broker::FORWARDED_HEADER;
use crate::controller::plan::NewTopic;
use crate::error::Error;
use crate::error::Result;
use crate::remote::from_wire;
use crate::service::admin as svc;

/// Bound on one call to the controller leader.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The controller leader's address, unless this broker is it.
fn leader_elsewhere(b: &Broker) -> Result<Option<String>> {
    if b.controller().is_leader() {
        return Ok(None);
    }
    match b.controller().leader() {
        Some((_, addr)) => Ok(Some(addr)),
        None => Err(b.controller().not_controller()),
    }
}

fn forwarded<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    req
}

async fn call<T>(
    addr: &str,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let resp = tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| Error::TimedOut(format!("controller leader at {addr}: timed out")))?
        .map_err(|s| Error::NotController {
            message: format!("controller leader at {addr}: {}", s.message()),
            leader: None,
        })?;
    Ok(resp.into_inner())
}

fn check(error: Option<v1::Error>) -> Result<()> {
    let e = error.unwrap_or_else(v1::Error::none);
    match e.error_code() {
        ErrorCode::None => Ok(()),
        _ => Err(from_wire(&e)),
    }
}

/// Brokers and topics (every topic when `topics` is empty), as the controller leader knows
/// them.
pub async fn metadata(b: &Broker, topics: &[String]) -> Result<svc::Metadata> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::metadata(b, topics);
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let req = forwarded(v1::MetadataRequest { topics: topics.to_vec() });
    let resp = call(&addr, client.metadata(req)).await?;
    check(resp.error)?;
    Ok(svc::Metadata {
        brokers: resp.brokers.into_iter().map(broker_info).collect(),
        topics: resp
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.clone();
                let result = check(t.error).map(|()| svc::TopicMetadata {
                    name: t.name,
                    topic_id: t.topic_id,
                    internal: t.internal,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| svc::PartitionInfo {
                            partition: p.partition,
                            leader: p.leader,
                            replicas: p.replicas,
                            in_sync: p.in_sync,
                            high_watermark: p.high_watermark,
                            log_start_offset: p.log_start_offset,
                            target_replicas: p.target_replicas,
                            leader_epoch: p.leader_epoch,
                        })
                        .collect(),
                });
                (name, result)
            })
            .collect(),
        controller_id: resp.controller_id.unwrap_or(0),
        cluster_id: resp.cluster_id,
    })
}

/// Creates a topic; returns its id.
pub async fn create_topic(b: &Broker, req: NewTopic) -> Result<u64> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::create_topic(b, req).await;
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let req = forwarded(v1::CreateTopicRequest {
        name: req.name,
        partitions: req.partitions,
        replication_factor: req.replication_factor,
        configs: req.configs.into_iter().collect(),
    });
    let resp = call(&addr, client.create_topic(req)).await?;
    check(resp.error)?;
    Ok(resp.topic_id)
}

/// A fresh producer id and epoch (named producers are the transactions' business).
pub async fn init_producer(b: &Broker) -> Result<(i64, i32)> {
    let Some(addr) = leader_elsewhere(b)? else {
        return crate::service::data::init_producer(b, String::new()).await;
    };
    let mut client = DataClient::new(b.channel(&addr)?);
    let req = forwarded(v1::InitProducerRequest { producer_name: String::new() });
    let resp = call(&addr, client.init_producer(req)).await?;
    check(resp.error)?;
    Ok((resp.producer_id, resp.producer_epoch))
}

/// Deletes a user topic.
pub async fn delete_topic(b: &Broker, name: String) -> Result<()> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::delete_topic(b, name).await;
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let resp = call(&addr, client.delete_topic(forwarded(v1::DeleteTopicRequest { name }))).await?;
    check(resp.error)
}

/// Grows a topic to `total` partitions.
pub async fn create_partitions(b: &Broker, name: String, total: u32) -> Result<()> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::create_partitions(b, name, total).await;
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let req = forwarded(v1::CreatePartitionsRequest { name, total_count: total });
    check(call(&addr, client.create_partitions(req)).await?.error)
}

/// Replaces a topic's config overrides.
pub async fn alter_topic_config(
    b: &Broker,
    name: String,
    configs: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::alter_topic_config(b, name, configs).await;
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let req =
        forwarded(v1::AlterTopicConfigRequest { name, configs: configs.into_iter().collect() });
    check(call(&addr, client.alter_topic_config(req)).await?.error)
}

/// The cluster id, controller and brokers.
pub async fn describe_cluster(b: &Broker) -> Result<svc::ClusterDescription> {
    let Some(addr) = leader_elsewhere(b)? else {
        return svc::describe_cluster(b);
    };
    let mut client = AdminClient::new(b.channel(&addr)?);
    let resp =
        call(&addr, client.describe_cluster(forwarded(v1::DescribeClusterRequest {}))).await?;
    check(resp.error)?;
    Ok(svc::ClusterDescription {
        cluster_id: resp.cluster_id,
        controller_id: resp.controller_id.unwrap_or(0),
        brokers: resp.brokers.into_iter().map(broker_info).collect(),
        batch_format: resp.batch_format,
        decommissioned: resp.decommissioned,
        controller_voters: resp.controller_voters,
    })
}

fn broker_info(b: v1::BrokerInfo) -> svc::BrokerInfo {
    svc::BrokerInfo {
        broker_id: b.broker_id,
        address: b.address,
        rack: b.rack,
        alive: b.alive,
        batch_format: b.batch_format,
        draining: b.draining,
        replicas: b.replicas,
    }
}
