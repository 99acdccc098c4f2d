//! The `Admin` service. Every broker answers: the controller leader itself, any other broker
//! by forwarding the request to it once.

use std::collections::BTreeMap;
use std::sync::Arc;

use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::admin_client::AdminClient;
use rafka_proto::v1::admin_server::Admin;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::auth::authorize;
use super::auth::caller;
use super::controller_to_forward;
use super::forward;
use super::proto_error;
use super::to_proto;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::auth::Hash;
use crate::broker::Broker;
use crate::error::Error;
use crate::service::acl;
use crate::service::admin as svc;
use crate::service::users;

/// The tonic `Admin` service.
pub struct AdminService {
    pub broker: Arc<Broker>,
}

/// Forwards the request to the controller leader when this broker should (see
/// [`controller_to_forward`]); otherwise evaluates to the request's message.
macro_rules! forward_to_controller {
    ($self:ident, $req:ident, $method:ident) => {{
        if let Some(addr) = controller_to_forward(&$self.broker, &$req) {
            let (ch, fwd) = forward(&$self.broker, &addr, $req)?;
            return AdminClient::new(ch).$method(fwd).await;
        }
        $req.into_inner()
    }};
}

/// The named listener `req` came in on (`None`: the internal one).
fn listener_of<T>(req: &Request<T>) -> Option<Arc<str>> {
    req.extensions().get::<crate::tls::stream::PeerInfo>().and_then(|i| i.listener.clone())
}

/// Shows `brokers` at their addresses on the named `listener`, as this broker's copy of the
/// controller state knows them (a forwarded answer carries internal addresses).
fn on_listener(b: &Broker, listener: Option<&str>, brokers: &mut [v1::BrokerInfo]) {
    let Some(name) = listener else { return };
    let state = b.state();
    for info in brokers {
        if let Some(record) = state.brokers.get(&info.broker_id) {
            info.address = record.address_on(Some(name)).to_string();
        } else if info.broker_id == b.id() {
            info.address = b.address_on(Some(name)).to_string();
        }
    }
}

fn broker_info(b: svc::BrokerInfo) -> v1::BrokerInfo {
    v1::BrokerInfo {
        broker_id: b.broker_id,
        address: b.address,
        rack: b.rack,
        alive: b.alive,
        batch_format: b.batch_format,
        draining: b.draining,
        replicas: b.replicas,
    }
}

fn partition_info(p: svc::PartitionInfo) -> v1::PartitionInfo {
    v1::PartitionInfo {
        partition: p.partition,
        leader: p.leader,
        replicas: p.replicas,
        in_sync: p.in_sync,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        target_replicas: p.target_replicas,
        leader_epoch: p.leader_epoch,
    }
}

fn topic_metadata(name: String, t: crate::error::Result<svc::TopicMetadata>) -> v1::TopicMetadata {
    match t {
        Ok(t) => v1::TopicMetadata {
            error: Some(v1::Error::none()),
            name: t.name,
            topic_id: t.topic_id,
            partitions: t.partitions.into_iter().map(partition_info).collect(),
            internal: t.internal,
        },
        Err(e) => v1::TopicMetadata { error: Some(to_proto(&e)), name, ..Default::default() },
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        req: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let b = &self.broker;
        if !acl::allows(b, &caller(&req), Operation::Create, Resource::cluster()) {
            authorize(b, &req, Operation::Create, Resource::topic(&req.get_ref().name))?;
        }
        let req = forward_to_controller!(self, req, create_topic);
        let new = svc::NewTopic {
            name: req.name,
            partitions: req.partitions,
            replication_factor: req.replication_factor,
            configs: req.configs.into_iter().collect(),
        };
        let r = svc::create_topic(&self.broker, new).await;
        Ok(Response::new(v1::CreateTopicResponse {
            error: Some(proto_error(&r)),
            topic_id: *r.as_ref().unwrap_or(&0),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        authorize(&self.broker, &req, Operation::Delete, Resource::topic(&req.get_ref().name))?;
        let req = forward_to_controller!(self, req, delete_topic);
        let r = svc::delete_topic(&self.broker, req.name).await;
        Ok(Response::new(v1::DeleteTopicResponse { error: Some(proto_error(&r)) }))
    }

    async fn list_topics(
        &self,
        req: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let who = caller(&req);
        let req = forward_to_controller!(self, req, list_topics);
        let r = svc::list_topics(&self.broker, req.include_internal);
        let describable =
            |t: &str| acl::allows(&self.broker, &who, Operation::Describe, Resource::topic(t));
        let error = Some(proto_error(&r));
        let topics = r
            .unwrap_or_default()
            .into_iter()
            .filter(|t| describable(&t.name))
            .map(|t| v1::TopicListing {
                name: t.name,
                topic_id: t.topic_id,
                partitions: t.partitions,
                internal: t.internal,
            })
            .collect();
        Ok(Response::new(v1::ListTopicsResponse { error, topics }))
    }

    async fn describe_topic(
        &self,
        req: Request<v1::DescribeTopicRequest>,
    ) -> Result<Response<v1::DescribeTopicResponse>, Status> {
        authorize(&self.broker, &req, Operation::Describe, Resource::topic(&req.get_ref().name))?;
        let req = forward_to_controller!(self, req, describe_topic);
        Ok(Response::new(match svc::describe_topic(&self.broker, &req.name) {
            Ok(d) => v1::DescribeTopicResponse {
                error: Some(v1::Error::none()),
                name: d.topic.name,
                topic_id: d.topic.topic_id,
                partitions: d.topic.partitions.into_iter().map(partition_info).collect(),
                configs: d.configs.into_iter().collect(),
            },
            Err(e) => v1::DescribeTopicResponse { error: Some(to_proto(&e)), ..Default::default() },
        }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<v1::AlterTopicConfigRequest>,
    ) -> Result<Response<v1::AlterTopicConfigResponse>, Status> {
        let topic = Resource::topic(&req.get_ref().name);
        authorize(&self.broker, &req, Operation::AlterConfigs, topic)?;
        let req = forward_to_controller!(self, req, alter_topic_config);
        let configs = req.configs.into_iter().collect();
        let r = svc::alter_topic_config(&self.broker, req.name, configs).await;
        Ok(Response::new(v1::AlterTopicConfigResponse { error: Some(proto_error(&r)) }))
    }

    async fn create_partitions(
        &self,
        req: Request<v1::CreatePartitionsRequest>,
    ) -> Result<Response<v1::CreatePartitionsResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::topic(&req.get_ref().name))?;
        let req = forward_to_controller!(self, req, create_partitions);
        let r = svc::create_partitions(&self.broker, req.name, req.total_count).await;
        Ok(Response::new(v1::CreatePartitionsResponse { error: Some(proto_error(&r)) }))
    }

    async fn metadata(
        &self,
        req: Request<v1::MetadataRequest>,
    ) -> Result<Response<v1::MetadataResponse>, Status> {
        let who = caller(&req);
        let listener = listener_of(&req);
        if let Some(addr) = controller_to_forward(&self.broker, &req) {
            let (ch, fwd) = forward(&self.broker, &addr, req)?;
            let mut resp = AdminClient::new(ch).metadata(fwd).await?;
            on_listener(&self.broker, listener.as_deref(), &mut resp.get_mut().brokers);
            return Ok(resp);
        }
        let req = req.into_inner();
        let mut resp = Response::new(match svc::metadata(&self.broker, &req.topics) {
            Ok(mut md) => v1::MetadataResponse {
                topics: {
                    visible_topics(&self.broker, &who, &mut md.topics, !req.topics.is_empty());
                    md.topics.into_iter().map(|(n, t)| topic_metadata(n, t)).collect()
                },
                error: Some(v1::Error::none()),
                brokers: md.brokers.into_iter().map(broker_info).collect(),
                controller_id: Some(md.controller_id),
                cluster_id: md.cluster_id,
            },
            Err(e) => v1::MetadataResponse { error: Some(to_proto(&e)), ..Default::default() },
        });
        on_listener(&self.broker, listener.as_deref(), &mut resp.get_mut().brokers);
        Ok(resp)
    }

    async fn describe_cluster(
        &self,
        req: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        let listener = listener_of(&req);
        if let Some(addr) = controller_to_forward(&self.broker, &req) {
            let (ch, fwd) = forward(&self.broker, &addr, req)?;
            let mut resp = AdminClient::new(ch).describe_cluster(fwd).await?;
            on_listener(&self.broker, listener.as_deref(), &mut resp.get_mut().brokers);
            return Ok(resp);
        }
        let mut resp = Response::new(match svc::describe_cluster(&self.broker) {
            Ok(c) => v1::DescribeClusterResponse {
                error: Some(v1::Error::none()),
                cluster_id: c.cluster_id,
                controller_id: Some(c.controller_id),
                brokers: c.brokers.into_iter().map(broker_info).collect(),
                batch_format: c.batch_format,
                decommissioned: c.decommissioned,
                controller_voters: c.controller_voters,
            },
            Err(e) => {
                v1::DescribeClusterResponse { error: Some(to_proto(&e)), ..Default::default() }
            }
        });
        on_listener(&self.broker, listener.as_deref(), &mut resp.get_mut().brokers);
        Ok(resp)
    }

    async fn reassign_partition(
        &self,
        req: Request<v1::ReassignPartitionRequest>,
    ) -> Result<Response<v1::ReassignPartitionResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, reassign_partition);
        let r = svc::reassign(&self.broker, req.topic, req.partition, req.brokers).await;
        Ok(Response::new(v1::ReassignPartitionResponse { error: Some(proto_error(&r)) }))
    }

    async fn decommission_broker(
        &self,
        req: Request<v1::DecommissionBrokerRequest>,
    ) -> Result<Response<v1::DecommissionBrokerResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, decommission_broker);
        let r = svc::decommission(&self.broker, req.broker_id).await;
        Ok(Response::new(v1::DecommissionBrokerResponse { error: Some(proto_error(&r)) }))
    }

    async fn rebalance(
        &self,
        req: Request<v1::RebalanceRequest>,
    ) -> Result<Response<v1::RebalanceResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let _req = forward_to_controller!(self, req, rebalance);
        let r = svc::rebalance(&self.broker).await;
        let (started, moving) = r.as_ref().copied().unwrap_or((0, 0));
        Ok(Response::new(v1::RebalanceResponse { error: Some(proto_error(&r)), started, moving }))
    }

    async fn transfer_leadership(
        &self,
        req: Request<v1::TransferLeadershipRequest>,
    ) -> Result<Response<v1::TransferLeadershipResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, transfer_leadership);
        let r = svc::transfer_leadership(&self.broker, req.topic, req.partition, req.broker).await;
        Ok(Response::new(v1::TransferLeadershipResponse { error: Some(proto_error(&r)) }))
    }

    async fn create_acls(
        &self,
        req: Request<v1::CreateAclsRequest>,
    ) -> Result<Response<v1::CreateAclsResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, create_acls);
        Ok(Response::new(super::acls::create(&self.broker, req).await))
    }

    async fn list_acls(
        &self,
        req: Request<v1::ListAclsRequest>,
    ) -> Result<Response<v1::ListAclsResponse>, Status> {
        authorize(&self.broker, &req, Operation::Describe, Resource::cluster())?;
        // From the controller leader, so a client sees the ACLs it just changed.
        let req = forward_to_controller!(self, req, list_acls);
        Ok(Response::new(super::acls::list(&self.broker, req)))
    }

    async fn delete_acls(
        &self,
        req: Request<v1::DeleteAclsRequest>,
    ) -> Result<Response<v1::DeleteAclsResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, delete_acls);
        Ok(Response::new(super::acls::delete(&self.broker, req).await))
    }

    async fn alter_users(
        &self,
        req: Request<v1::AlterUsersRequest>,
    ) -> Result<Response<v1::AlterUsersResponse>, Status> {
        authorize(&self.broker, &req, Operation::Alter, Resource::cluster())?;
        let req = forward_to_controller!(self, req, alter_users);
        let r = alter_users(&self.broker, req).await;
        Ok(Response::new(v1::AlterUsersResponse { error: Some(proto_error(&r)) }))
    }

    async fn list_users(
        &self,
        req: Request<v1::ListUsersRequest>,
    ) -> Result<Response<v1::ListUsersResponse>, Status> {
        authorize(&self.broker, &req, Operation::Describe, Resource::cluster())?;
        let _ = forward_to_controller!(self, req, list_users);
        let r = users::list(&self.broker);
        let error = Some(proto_error(&r));
        let users = r
            .unwrap_or_default()
            .into_iter()
            .map(|(user, creds)| v1::UserListing {
                user,
                mechanisms: creds.iter().map(|(h, _)| mechanism(*h) as i32).collect(),
                iterations: creds.iter().map(|(_, i)| *i).collect(),
            })
            .collect();
        Ok(Response::new(v1::ListUsersResponse { error, users }))
    }
}

/// Leaves out of `topics` those `caller` may not describe; with `named`, answers them
/// `AUTHORIZATION_FAILED` instead.
fn visible_topics(
    b: &Broker,
    caller: &Caller,
    topics: &mut Vec<(String, crate::error::Result<svc::TopicMetadata>)>,
    named: bool,
) {
    topics.retain_mut(|(name, t)| {
        if acl::allows(b, caller, Operation::Describe, Resource::topic(name)) {
            return true;
        }
        if named {
            *t = Err(acl::denied(caller, Operation::Describe, Resource::topic(name)));
        }
        named
    });
}

fn mechanism(h: Hash) -> v1::ScramMechanism {
    match h {
        Hash::Sha256 => v1::ScramMechanism::ScramSha256,
        Hash::Sha512 => v1::ScramMechanism::ScramSha512,
    }
}

fn hash_of(m: i32) -> crate::error::Result<Hash> {
    match v1::ScramMechanism::try_from(m) {
        Ok(v1::ScramMechanism::ScramSha256) => Ok(Hash::Sha256),
        Ok(v1::ScramMechanism::ScramSha512) => Ok(Hash::Sha512),
        _ => Err(Error::InvalidRequest(format!("unknown SCRAM mechanism {m}"))),
    }
}

/// Groups the request by user, then applies each user's change.
async fn alter_users(b: &Broker, req: v1::AlterUsersRequest) -> crate::error::Result<()> {
    let mut changes: BTreeMap<String, users::Change> = BTreeMap::new();
    for d in req.deletions {
        changes.entry(d.user).or_default().delete.push(hash_of(d.mechanism)?);
    }
    for u in req.upsertions {
        let hash = hash_of(u.mechanism)?;
        changes.entry(u.user).or_default().set_salted(
            hash,
            u.iterations,
            &u.salt,
            &u.salted_password,
        )?;
    }
    for (user, change) in changes {
        users::alter(b, &user, change).await?;
    }
    Ok(())
}
