//! The `Admin` service. Every broker answers: the controller leader itself, any other broker
//! by forwarding the request to it once (marked with [`FORWARDED_HEADER`]).

use std::sync::Arc;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::admin_server::Admin;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::broker::Broker;
use crate::broker::FORWARDED_HEADER;
use crate::controller::Command;
use crate::controller::Outcome;
use crate::controller::placement;
use crate::controller::state::TopicRecord;
use crate::error::Error;
use crate::error::Result;
use crate::error::proto_error;
use crate::topic::MAX_PARTITIONS;
use crate::topic::TopicConfig;
use crate::topic::validate_name;

/// The tonic `Admin` service.
pub struct AdminService {
    pub broker: Arc<Broker>,
}

/// Runs the request here on the controller leader; elsewhere forwards it to the leader (or
/// answers `NOT_CONTROLLER` when there is none, or the request was already forwarded once).
macro_rules! on_controller {
    ($self:ident, $req:ident, $method:ident, $resp:ident) => {{
        let b = &$self.broker;
        if !b.is_controller() {
            let leader = b.controller_leader();
            return match leader {
                Some((_, addr)) if $req.metadata().get(FORWARDED_HEADER).is_none() => {
                    let ch = b.channel(&addr).map_err(|e| Status::unavailable(e.message))?;
                    let mut fwd = Request::new($req.into_inner());
                    fwd.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
                    AdminClient::new(ch).$method(fwd).await
                }
                #[allow(clippy::needless_update)]
                _ => Ok(Response::new(v1::$resp {
                    error: Some(b.not_controller().to_proto()),
                    ..Default::default()
                })),
            };
        }
        $req.into_inner()
    }};
}

impl AdminService {
    async fn add_partitions(&self, req: v1::CreatePartitionsRequest) -> Result<()> {
        let b = &self.broker;
        validate_name(&req.name, true)?;
        let state = b.state();
        let Some(t) = state.topics.get(&req.name) else {
            return Err(Error::new(
                ErrorCode::UnknownTopic,
                format!("topic {} does not exist", req.name),
            ));
        };
        if t.internal {
            return Err(Error::new(
                ErrorCode::InvalidTopic,
                format!("{} is internal: its partition count is fixed", req.name),
            ));
        }
        let current = t.partitions.len() as u32;
        if req.total_count <= current || req.total_count > MAX_PARTITIONS {
            return Err(Error::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "topic {} has {current} partitions; the new count must be above it and at \
                     most {MAX_PARTITIONS}, got {}",
                    req.name, req.total_count
                ),
            ));
        }
        let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
        let live: Vec<u64> = state.brokers.keys().copied().filter(|id| b.is_alive(*id)).collect();
        if rf > live.len() {
            return Err(Error::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "{rf} replicas per partition need {rf} live brokers; {} are alive",
                    live.len()
                ),
            ));
        }
        let placement = placement::place(&state, &live, req.total_count - current, rf);
        b.propose(Command::CreatePartitions { name: req.name, placement }).await.map(|_| ())
    }

    async fn create_topic(&self, req: v1::CreateTopicRequest) -> Result<u64> {
        let b = &self.broker;
        validate_name(&req.name, false)?;
        if req.partitions == 0 || req.partitions > MAX_PARTITIONS {
            return Err(Error::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
                    req.partitions
                ),
            ));
        }
        let configs = req.configs.into_iter().collect();
        TopicConfig::resolve(&b.config.topic_defaults, &configs)?;
        let state = b.state();
        if state.topics.contains_key(&req.name) {
            return Err(Error::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic {} already exists", req.name),
            ));
        }
        let live: Vec<u64> = state.brokers.keys().copied().filter(|id| b.is_alive(*id)).collect();
        // The default is capped by the brokers the cluster has (registered or founding), not
        // by those alive right now: a topic created while a broker restarts must not end up
        // with fewer replicas for good.
        let founding = b.config.initial_cluster().map_or(1, |c| c.len());
        let brokers = state.brokers.len().max(founding);
        let rf = match req.replication_factor {
            0 => (b.config.topic_defaults.replication_factor as usize).min(brokers).max(1),
            n => n as usize,
        };
        if rf > brokers {
            return Err(Error::new(
                ErrorCode::InvalidReplicationFactor,
                format!("replication factor {rf} exceeds the {brokers} brokers of the cluster"),
            ));
        }
        if rf > live.len() {
            return Err(Error::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "replication factor {rf} needs {rf} live brokers; {} are alive",
                    live.len()
                ),
            ));
        }
        let placement = placement::place(&state, &live, req.partitions, rf);
        match b
            .propose(Command::CreateTopic { name: req.name, placement, configs, internal: false })
            .await?
        {
            Outcome::TopicCreated { topic_id } => Ok(topic_id),
            other => Err(Error::new(ErrorCode::Unknown, format!("unexpected outcome {other:?}"))),
        }
    }

    /// What the controller leader knows of a partition's replicas and leader.
    fn partition_info(&self, t: &TopicRecord, i: usize) -> v1::PartitionInfo {
        let b = &self.broker;
        let p = &t.partitions[i];
        let replicas: Vec<u64> = p.replicas.iter().map(|r| r.broker).collect();
        let live = b.live.partition(p.group).filter(|l| b.is_alive(l.leader));
        v1::PartitionInfo {
            partition: i as u32,
            leader: live.as_ref().map(|l| l.leader),
            replicas,
            in_sync: live.as_ref().map(|l| l.in_sync.clone()).unwrap_or_default(),
            high_watermark: live.as_ref().map_or(-1, |l| l.high_watermark),
            log_start_offset: live.as_ref().map_or(-1, |l| l.log_start_offset),
            target_replicas: p.target.iter().flatten().map(|r| r.broker).collect(),
        }
    }

    async fn reassign(&self, topic: String, partition: u32, brokers: Vec<u64>) -> Result<()> {
        validate_name(&topic, true)?;
        self.broker
            .propose(Command::ReassignPartition { name: topic, partition, brokers })
            .await
            .map(|_| ())
    }

    /// Moves `broker` to the front of the replicas: the leader hands leadership to it once it
    /// is caught up (preferred-leader balancing).
    async fn transfer(&self, req: v1::TransferLeadershipRequest) -> Result<()> {
        let (t, _) = self.broker.lookup(&req.topic, req.partition)?;
        let p = &t.partitions[req.partition as usize];
        if p.target.is_some() {
            return Err(Error::new(
                ErrorCode::ReassignmentInProgress,
                format!("{}-{} is being reassigned", req.topic, req.partition),
            ));
        }
        let mut brokers: Vec<u64> = p.replicas.iter().map(|r| r.broker).collect();
        let Some(at) = brokers.iter().position(|b| *b == req.broker) else {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "broker {} is not a replica of {}-{} (replicas {brokers:?})",
                    req.broker, req.topic, req.partition
                ),
            ));
        };
        let to = brokers.remove(at);
        brokers.insert(0, to);
        self.reassign(req.topic, req.partition, brokers).await
    }

    fn brokers(&self) -> Vec<v1::BrokerInfo> {
        let b = &self.broker;
        b.state()
            .brokers
            .values()
            .map(|r| v1::BrokerInfo {
                broker_id: r.id,
                address: r.address.clone(),
                rack: r.rack.clone(),
                alive: b.is_alive(r.id),
            })
            .collect()
    }

    fn topic_metadata(&self, t: &TopicRecord) -> v1::TopicMetadata {
        v1::TopicMetadata {
            error: Some(v1::Error::none()),
            name: t.name.clone(),
            topic_id: t.id,
            partitions: (0..t.partitions.len()).map(|i| self.partition_info(t, i)).collect(),
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        req: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let req = on_controller!(self, req, create_topic, CreateTopicResponse);
        let name = req.name.clone();
        let r = AdminService::create_topic(self, req).await;
        if r.is_ok() {
            tracing::info!(topic = %name, "topic created");
        }
        Ok(Response::new(v1::CreateTopicResponse {
            error: Some(proto_error(&r)),
            topic_id: *r.as_ref().unwrap_or(&0),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let req = on_controller!(self, req, delete_topic, DeleteTopicResponse);
        let r = match validate_name(&req.name, true) {
            Ok(()) if req.name.starts_with("__") => Err(Error::new(
                ErrorCode::InvalidTopic,
                format!("{} is an internal topic and cannot be deleted", req.name),
            )),
            Ok(()) => self
                .broker
                .propose(Command::DeleteTopic { name: req.name.clone() })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if r.is_ok() {
            tracing::info!(topic = %req.name, "topic deleted");
        }
        Ok(Response::new(v1::DeleteTopicResponse { error: Some(proto_error(&r)) }))
    }

    async fn list_topics(
        &self,
        req: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let req = on_controller!(self, req, list_topics, ListTopicsResponse);
        let topics = self
            .broker
            .state()
            .topics
            .values()
            .filter(|t| req.include_internal || !t.internal)
            .map(|t| v1::TopicListing {
                name: t.name.clone(),
                topic_id: t.id,
                partitions: t.partitions.len() as u32,
                internal: t.internal,
            })
            .collect();
        Ok(Response::new(v1::ListTopicsResponse { error: Some(v1::Error::none()), topics }))
    }

    async fn describe_topic(
        &self,
        req: Request<v1::DescribeTopicRequest>,
    ) -> Result<Response<v1::DescribeTopicResponse>, Status> {
        let req = on_controller!(self, req, describe_topic, DescribeTopicResponse);
        let state = self.broker.state();
        let Some(t) = state.topics.get(&req.name) else {
            let e =
                Error::new(ErrorCode::UnknownTopic, format!("topic {} does not exist", req.name));
            return Ok(Response::new(v1::DescribeTopicResponse {
                error: Some(e.to_proto()),
                ..Default::default()
            }));
        };
        let md = self.topic_metadata(t);
        Ok(Response::new(v1::DescribeTopicResponse {
            error: Some(v1::Error::none()),
            name: t.name.clone(),
            topic_id: t.id,
            partitions: md.partitions,
            configs: self.broker.topic_config(t).to_map().into_iter().collect(),
        }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<v1::AlterTopicConfigRequest>,
    ) -> Result<Response<v1::AlterTopicConfigResponse>, Status> {
        let req = on_controller!(self, req, alter_topic_config, AlterTopicConfigResponse);
        let configs = req.configs.into_iter().collect();
        let r = match TopicConfig::resolve(&self.broker.config.topic_defaults, &configs) {
            Ok(_) => self
                .broker
                .propose(Command::AlterTopicConfig { name: req.name, configs })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        Ok(Response::new(v1::AlterTopicConfigResponse { error: Some(proto_error(&r)) }))
    }

    async fn create_partitions(
        &self,
        req: Request<v1::CreatePartitionsRequest>,
    ) -> Result<Response<v1::CreatePartitionsResponse>, Status> {
        let req = on_controller!(self, req, create_partitions, CreatePartitionsResponse);
        let r = self.add_partitions(req).await;
        Ok(Response::new(v1::CreatePartitionsResponse { error: Some(proto_error(&r)) }))
    }

    async fn metadata(
        &self,
        req: Request<v1::MetadataRequest>,
    ) -> Result<Response<v1::MetadataResponse>, Status> {
        let req = on_controller!(self, req, metadata, MetadataResponse);
        let state = self.broker.state();
        let topics = if req.topics.is_empty() {
            state.topics.values().map(|t| self.topic_metadata(t)).collect()
        } else {
            req.topics
                .iter()
                .map(|name| match state.topics.get(name) {
                    Some(t) => self.topic_metadata(t),
                    None => v1::TopicMetadata {
                        error: Some(
                            Error::new(
                                ErrorCode::UnknownTopic,
                                format!("topic {name} does not exist"),
                            )
                            .to_proto(),
                        ),
                        name: name.clone(),
                        ..Default::default()
                    },
                })
                .collect()
        };
        Ok(Response::new(v1::MetadataResponse {
            error: Some(v1::Error::none()),
            brokers: self.brokers(),
            topics,
            controller_id: Some(self.broker.id),
        }))
    }

    async fn describe_cluster(
        &self,
        req: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        let _req = on_controller!(self, req, describe_cluster, DescribeClusterResponse);
        Ok(Response::new(v1::DescribeClusterResponse {
            error: Some(v1::Error::none()),
            cluster_id: self.broker.state().cluster_id.clone(),
            controller_id: Some(self.broker.id),
            brokers: self.brokers(),
        }))
    }

    async fn reassign_partition(
        &self,
        req: Request<v1::ReassignPartitionRequest>,
    ) -> Result<Response<v1::ReassignPartitionResponse>, Status> {
        let req = on_controller!(self, req, reassign_partition, ReassignPartitionResponse);
        let r = self.reassign(req.topic, req.partition, req.brokers).await;
        Ok(Response::new(v1::ReassignPartitionResponse { error: Some(proto_error(&r)) }))
    }

    async fn transfer_leadership(
        &self,
        req: Request<v1::TransferLeadershipRequest>,
    ) -> Result<Response<v1::TransferLeadershipResponse>, Status> {
        let req = on_controller!(self, req, transfer_leadership, TransferLeadershipResponse);
        let r = self.transfer(req).await;
        Ok(Response::new(v1::TransferLeadershipResponse { error: Some(proto_error(&r)) }))
    }
}
