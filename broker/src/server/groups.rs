//! The `Groups` service: consumer-group membership and offsets.

use std::sync::Arc;
use std::time::Instant;

use rafka_proto::v1;
use rafka_proto::v1::groups_server::Groups;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::auth::authorize;
use super::auth::caller;
use super::code_of;
use super::forwarded;
use super::proto_error;
use super::to_proto;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::group::classic::Phase;
use crate::group::coordinator::HeartbeatRequest;
use crate::group::state::Assignment;
use crate::group::store::StoredOffset;
use crate::kafka::group_admin::consumer_member;
use crate::metrics as m;
use crate::service::acl;
use crate::service::groups as svc;

/// The tonic `Groups` service.
pub struct GroupsService {
    pub broker: Arc<Broker>,
}

fn to_assignment(parts: Vec<v1::TopicPartitions>) -> Assignment {
    svc::assignment(parts.into_iter().map(|tp| (tp.topic, tp.partitions)))
}

fn from_assignment(a: &Assignment) -> Vec<v1::TopicPartitions> {
    a.iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(t, p)| v1::TopicPartitions {
            topic: t.clone(),
            partitions: p.iter().copied().collect(),
        })
        .collect()
}

fn committed(topic: String, partition: u32, o: Option<StoredOffset>) -> v1::CommittedOffset {
    v1::CommittedOffset {
        topic,
        partition,
        offset: o.as_ref().map_or(-1, |o| o.offset),
        commit_timestamp: o.as_ref().map_or(-1, |o| o.commit_ms),
        metadata: o.map(|o| o.metadata).unwrap_or_default(),
    }
}

fn describe_response(d: svc::GroupDescription) -> v1::DescribeGroupResponse {
    let mut out = describe_consumer(&d);
    if let Some((phase, g)) = &d.classic {
        out.protocol = "classic".into();
        out.protocol_type = g.protocol_type.clone();
        out.state = match phase {
            Phase::Empty => "empty",
            Phase::Stable => "stable",
            Phase::PreparingRebalance | Phase::CompletingRebalance => "rebalancing",
        }
        .into();
        out.group_epoch = g.generation;
        out.assignment_epoch = g.generation;
        out.assignor = g.protocol.clone();
        out.members = g
            .members
            .values()
            .map(|m| {
                let (subscribed, assigned) = if g.protocol_type == "consumer" {
                    consumer_member(m, &g.protocol)
                } else {
                    Default::default()
                };
                v1::GroupMember {
                    member_id: m.member_id.clone(),
                    member_epoch: g.generation,
                    client_id: m.client_id.clone(),
                    subscribed_topics: subscribed,
                    assignment: from_assignment(&assigned),
                    group_instance_id: m.group_instance_id.clone(),
                    client_host: m.client_host.clone(),
                    ..Default::default()
                }
            })
            .collect();
    }
    out
}

/// The description of a group of the consumer protocol (and the offsets of any group).
fn describe_consumer(d: &svc::GroupDescription) -> v1::DescribeGroupResponse {
    let state = &d.state;
    let members = state
        .members
        .values()
        .map(|m| v1::GroupMember {
            member_id: m.member_id.clone(),
            member_epoch: m.member_epoch,
            client_id: m.client_id.clone(),
            subscribed_topics: m.subscribed.iter().cloned().collect(),
            assignment: from_assignment(&m.assigned),
            pending_revocation: from_assignment(&m.pending_revocation),
            target_assignment: state
                .target
                .get(&m.member_id)
                .map(from_assignment)
                .unwrap_or_default(),
            subscribed_regex: m.subscribed_regex.clone(),
            ..Default::default()
        })
        .collect();
    let offsets = d
        .offsets
        .iter()
        .cloned()
        .map(|o| v1::PartitionLag {
            lag: o.lag(),
            topic: o.topic,
            partition: o.partition,
            committed_offset: o.committed.offset,
            high_watermark: o.high_watermark,
            metadata: o.committed.metadata,
            commit_timestamp: o.committed.commit_ms,
        })
        .collect();
    let (broker_id, address) = d.coordinator.clone();
    v1::DescribeGroupResponse {
        error: None,
        group_id: d.group_id.clone(),
        state: state.state_name().to_string(),
        group_epoch: state.group_epoch,
        assignment_epoch: state.assignment_epoch,
        assignor: state.assignor.clone(),
        members,
        offsets,
        coordinator: Some(v1::LeaderHint { broker_id, address }),
        protocol: "consumer".into(),
        protocol_type: String::new(),
    }
}

fn reset_to(spec: Option<v1::ResetSpec>) -> Option<svc::ResetTo> {
    use v1::reset_spec::Spec;
    Some(match spec?.spec? {
        Spec::Earliest(_) => svc::ResetTo::Earliest,
        Spec::Latest(_) => svc::ResetTo::Latest,
        Spec::Timestamp(ts) => svc::ResetTo::Timestamp(ts),
        Spec::Offset(o) => svc::ResetTo::Offset(o),
    })
}

#[tonic::async_trait]
impl Groups for GroupsService {
    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn group_heartbeat(
        &self,
        req: Request<v1::GroupHeartbeatRequest>,
    ) -> Result<Response<v1::GroupHeartbeatResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Read, Resource::group(&req.get_ref().group_id))?;
        for topic in &req.get_ref().subscribed_topics {
            authorize(&self.broker, &req, Operation::Describe, Resource::topic(topic))?;
        }
        let req = req.into_inner();
        let hb = HeartbeatRequest {
            group: req.group_id,
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            subscribed: svc::subscriptions(req.subscribed_topics),
            subscribed_regex: None,
            owned: to_assignment(req.owned_partitions),
            assignor: req.server_assignor,
            client_id: req.client_id,
        };
        let r = svc::heartbeat(&self.broker, hb).await;
        m::request("group_heartbeat", code_of(&r), started);
        Ok(Response::new(match r {
            Ok(h) => v1::GroupHeartbeatResponse {
                error: None,
                member_id: h.reply.member_id,
                member_epoch: h.reply.member_epoch,
                heartbeat_interval_ms: h.heartbeat_interval_ms as i32,
                assignment: from_assignment(&h.reply.assignment),
                session_timeout_ms: h.session_timeout_ms as i32,
            },
            Err(e) => {
                v1::GroupHeartbeatResponse { error: Some(to_proto(&e)), ..Default::default() }
            }
        }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn commit_offsets(
        &self,
        req: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Read, Resource::group(&req.get_ref().group_id))?;
        for o in &req.get_ref().offsets {
            authorize(&self.broker, &req, Operation::Read, Resource::topic(&o.topic))?;
        }
        let req = req.into_inner();
        let offsets = req
            .offsets
            .into_iter()
            .map(|o| svc::CommitOffset {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            })
            .collect();
        let r = svc::commit(&self.broker, &req.group_id, &req.member_id, req.member_epoch, offsets)
            .await;
        m::request("commit_offsets", code_of(&r), started);
        Ok(Response::new(v1::CommitOffsetsResponse { error: Some(proto_error(&r)) }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn fetch_offsets(
        &self,
        req: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        let started = Instant::now();
        let group = Resource::group(&req.get_ref().group_id);
        authorize(&self.broker, &req, Operation::Describe, group)?;
        for tp in &req.get_ref().partitions {
            authorize(&self.broker, &req, Operation::Describe, Resource::topic(&tp.topic))?;
        }
        let who = caller(&req);
        let req = req.into_inner();
        let partitions: Vec<(String, Vec<u32>)> =
            req.partitions.into_iter().map(|tp| (tp.topic, tp.partitions)).collect();
        let r = svc::fetch_offsets(&self.broker, &req.group_id, &partitions).await;
        m::request("fetch_offsets", code_of(&r), started);
        let error = Some(proto_error(&r));
        // Asked for every topic: those the caller may not describe are left out.
        let describable =
            |t: &str| acl::allows(&self.broker, &who, Operation::Describe, Resource::topic(t));
        let offsets = r
            .unwrap_or_default()
            .into_iter()
            .filter(|((t, _), _)| describable(t))
            .map(|((t, p), o)| committed(t, p, o))
            .collect();
        Ok(Response::new(v1::FetchOffsetsResponse { error, offsets }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn describe_group(
        &self,
        req: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        let started = Instant::now();
        let group = Resource::group(&req.get_ref().group_id);
        authorize(&self.broker, &req, Operation::Describe, group)?;
        let who = caller(&req);
        let r = svc::describe(&self.broker, &req.get_ref().group_id).await.map(|mut d| {
            // Offsets and lag only of the topics the caller may describe.
            let b = &self.broker;
            d.offsets
                .retain(|o| acl::allows(b, &who, Operation::Describe, Resource::topic(&o.topic)));
            d
        });
        m::request("describe_group", code_of(&r), started);
        Ok(Response::new(r.map_or_else(
            |e| v1::DescribeGroupResponse { error: Some(to_proto(&e)), ..Default::default() },
            describe_response,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn list_groups(
        &self,
        req: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let started = Instant::now();
        let who = caller(&req);
        let b = &self.broker;
        let all = acl::allows(b, &who, Operation::Describe, Resource::cluster());
        let visible =
            |g: &str| all || acl::allows(b, &who, Operation::Describe, Resource::group(g));
        let r = svc::list(&self.broker, forwarded(&req)).await;
        m::request("list_groups", code_of(&r), started);
        let error = Some(proto_error(&r));
        let groups = r
            .unwrap_or_default()
            .into_iter()
            .filter(|g| visible(&g.group_id))
            .map(|g| v1::GroupListing {
                group_id: g.group_id,
                state: g.state,
                members: g.members,
                coordinator: g.coordinator,
            })
            .collect();
        Ok(Response::new(v1::ListGroupsResponse { error, groups }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn delete_group(
        &self,
        req: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Delete, Resource::group(&req.get_ref().group_id))?;
        let r = svc::delete(&self.broker, &req.get_ref().group_id).await;
        m::request("delete_group", code_of(&r), started);
        Ok(Response::new(v1::DeleteGroupResponse { error: Some(proto_error(&r)) }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn reset_offsets(
        &self,
        req: Request<v1::ResetOffsetsRequest>,
    ) -> Result<Response<v1::ResetOffsetsResponse>, Status> {
        let started = Instant::now();
        authorize(&self.broker, &req, Operation::Read, Resource::group(&req.get_ref().group_id))?;
        authorize(&self.broker, &req, Operation::Read, Resource::topic(&req.get_ref().topic))?;
        let req = req.into_inner();
        let to = reset_to(req.spec);
        let r =
            svc::reset(&self.broker, &req.group_id, &req.topic, &req.partitions, to, req.dry_run)
                .await;
        m::request("reset_offsets", code_of(&r), started);
        let error = Some(proto_error(&r));
        let offsets = r
            .unwrap_or_default()
            .into_iter()
            .map(|o| committed(o.topic, o.partition, Some(o.value)))
            .collect();
        Ok(Response::new(v1::ResetOffsetsResponse { error, offsets }))
    }
}
