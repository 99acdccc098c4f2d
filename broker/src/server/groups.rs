//! The `Groups` service: consumer-group membership and offsets. Handlers decode, find the
//! group's coordinator (`NOT_COORDINATOR` when it is another broker), call it, encode.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1;
use rafka_proto::v1::groups_client::GroupsClient;
use rafka_proto::v1::groups_server::Groups;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::broker::Broker;
use crate::broker::FORWARDED_HEADER;
use crate::error::Error;
use crate::error::Result;
use crate::error::proto_error;
use crate::group::coordinator::HeartbeatRequest;
use crate::group::coordinator::group_not_found;
use crate::group::coordinator::now_ms;
use crate::group::state::Assignment;
use crate::group::store::OffsetRecord;
use crate::group::store::StoredOffset;
use crate::group::tasks::topic_partitions;
use crate::metrics as m;

/// Longest metadata string stored with an offset.
const MAX_METADATA_BYTES: usize = 4096;

/// The tonic `Groups` service.
pub struct GroupsService {
    pub broker: Arc<Broker>,
}

fn code_of<T>(r: &Result<T>) -> ErrorCode {
    r.as_ref().err().map_or(ErrorCode::None, |e| e.code)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, message)
}

fn to_assignment(parts: &[v1::TopicPartitions]) -> Assignment {
    let mut a = Assignment::new();
    for tp in parts {
        a.entry(tp.topic.clone()).or_default().extend(tp.partitions.iter().copied());
    }
    a.retain(|_, p| !p.is_empty());
    a
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

fn committed(topic: &str, partition: u32, o: Option<&StoredOffset>) -> v1::CommittedOffset {
    v1::CommittedOffset {
        topic: topic.to_string(),
        partition,
        offset: o.map_or(-1, |o| o.offset),
        metadata: o.map(|o| o.metadata.clone()).unwrap_or_default(),
        commit_timestamp: o.map_or(-1, |o| o.commit_ms),
    }
}

/// Most topics one member may subscribe to, and most partitions it may report owning.
const MAX_SUBSCRIPTIONS: usize = 10_000;
const MAX_OWNED_PARTITIONS: usize = 100_000;
/// Longest member id, client id and assignor name.
const MAX_ID_BYTES: usize = 255;

/// Bounds on what one heartbeat may carry: its content becomes replicated group state.
fn check_heartbeat_sizes(req: &v1::GroupHeartbeatRequest) -> Result<()> {
    for (what, value) in [
        ("member id", &req.member_id),
        ("client id", &req.client_id),
        ("server assignor", &req.server_assignor),
    ] {
        if value.len() > MAX_ID_BYTES {
            return Err(invalid(format!("{what} of {} bytes exceeds {MAX_ID_BYTES}", value.len())));
        }
    }
    if req.subscribed_topics.len() > MAX_SUBSCRIPTIONS {
        return Err(invalid(format!(
            "{} subscribed topics exceed {MAX_SUBSCRIPTIONS}",
            req.subscribed_topics.len()
        )));
    }
    for t in &req.subscribed_topics {
        crate::topic::validate_name(t, false)?;
    }
    let owned: usize = req.owned_partitions.iter().map(|tp| tp.partitions.len().max(1)).sum();
    if owned > MAX_OWNED_PARTITIONS {
        return Err(invalid(format!("{owned} owned partitions exceed {MAX_OWNED_PARTITIONS}")));
    }
    Ok(())
}

impl GroupsService {
    fn available(&self) -> Result<()> {
        if self.broker.is_stopping() {
            return Err(Error::new(ErrorCode::BrokerNotAvailable, "broker is shutting down"));
        }
        Ok(())
    }

    /// Checks that `topic` is a user topic with `partition`; returns its partition count.
    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        let (t, _) = self.broker.lookup(topic, partition)?;
        if t.internal {
            return Err(Error::new(ErrorCode::InvalidTopic, format!("{topic} is internal")));
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        req: v1::GroupHeartbeatRequest,
    ) -> Result<v1::GroupHeartbeatResponse> {
        self.available()?;
        let b = &self.broker;
        let c = b.coordinator_for(&req.group_id)?;
        if req.member_epoch < -1 {
            return Err(invalid(format!("member epoch {} is below -1", req.member_epoch)));
        }
        check_heartbeat_sizes(&req)?;
        let topics = topic_partitions(&b.state());
        let hb = HeartbeatRequest {
            group: req.group_id,
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            subscribed: req.subscribed_topics.into_iter().collect::<BTreeSet<_>>(),
            owned: to_assignment(&req.owned_partitions),
            assignor: req.server_assignor,
            client_id: req.client_id,
        };
        let reply = c.heartbeat(hb, &topics).await?;
        let cfg = &b.config.groups;
        Ok(v1::GroupHeartbeatResponse {
            error: None,
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms as i32,
            assignment: from_assignment(&reply.assignment),
            session_timeout_ms: cfg.session_timeout_ms as i32,
        })
    }

    async fn commit(&self, req: v1::CommitOffsetsRequest) -> Result<()> {
        self.available()?;
        let c = self.broker.coordinator_for(&req.group_id)?;
        if req.offsets.is_empty() {
            return Err(invalid("CommitOffsets without offsets"));
        }
        if req.member_id.is_empty() != (req.member_epoch < 0) {
            return Err(invalid(
                "member id and epoch go together: a member id with its epoch, or an empty id \
                 with epoch -1",
            ));
        }
        let now = now_ms();
        let mut offsets = Vec::with_capacity(req.offsets.len());
        for o in req.offsets {
            self.check_partition(&o.topic, o.partition)?;
            if o.offset < 0 {
                return Err(invalid(format!(
                    "{}-{}: offset {} is negative",
                    o.topic, o.partition, o.offset
                )));
            }
            if o.metadata.len() > MAX_METADATA_BYTES {
                return Err(invalid(format!(
                    "{}-{}: metadata of {} bytes exceeds {MAX_METADATA_BYTES}",
                    o.topic,
                    o.partition,
                    o.metadata.len()
                )));
            }
            offsets.push(OffsetRecord {
                topic: o.topic,
                partition: o.partition,
                value: StoredOffset { offset: o.offset, metadata: o.metadata, commit_ms: now },
            });
        }
        c.commit(&req.group_id, &req.member_id, req.member_epoch, offsets).await
    }

    async fn fetch_offsets(
        &self,
        req: v1::FetchOffsetsRequest,
    ) -> Result<Vec<v1::CommittedOffset>> {
        self.available()?;
        let c = self.broker.coordinator_for(&req.group_id)?;
        c.term().await?;
        if c.state(&req.group_id).is_none() {
            return Err(group_not_found(&req.group_id));
        }
        let stored = c.offsets(&req.group_id)?;
        if req.partitions.is_empty() {
            return Ok(stored.iter().map(|((t, p), o)| committed(t, *p, Some(o))).collect());
        }
        let mut out = Vec::new();
        for tp in &req.partitions {
            for p in &tp.partitions {
                out.push(committed(&tp.topic, *p, stored.get(&(tp.topic.clone(), *p))));
            }
        }
        Ok(out)
    }

    async fn describe(&self, req: v1::DescribeGroupRequest) -> Result<v1::DescribeGroupResponse> {
        self.available()?;
        let b = &self.broker;
        let c = b.coordinator_for(&req.group_id)?;
        c.term().await?;
        let state = c.state(&req.group_id).ok_or_else(|| group_not_found(&req.group_id))?;
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
            })
            .collect();
        let mut offsets = Vec::new();
        for ((topic, partition), o) in c.offsets(&req.group_id)? {
            let hw = b
                .list_offset_anywhere(&topic, partition, v1::offset_spec::Spec::Latest(true))
                .await
                .map_or(-1, |(o, _)| o);
            offsets.push(v1::PartitionLag {
                topic,
                partition,
                committed_offset: o.offset,
                high_watermark: hw,
                lag: if hw < 0 { -1 } else { (hw - o.offset).max(0) },
                metadata: o.metadata,
                commit_timestamp: o.commit_ms,
            });
        }
        Ok(v1::DescribeGroupResponse {
            error: None,
            group_id: req.group_id,
            state: state.state_name().to_string(),
            group_epoch: state.group_epoch,
            assignment_epoch: state.assignment_epoch,
            assignor: state.assignor.clone(),
            members,
            offsets,
            coordinator: Some(v1::LeaderHint { broker_id: b.id, address: b.address.clone() }),
        })
    }

    /// Groups this broker coordinates.
    fn local_groups(&self) -> Vec<v1::GroupListing> {
        let b = &self.broker;
        let mut out = Vec::new();
        for c in b.coordinators() {
            if !c.group.is_leader() || !c.group.is_leader_ready() {
                continue;
            }
            for (group, state) in c.groups() {
                out.push(v1::GroupListing {
                    group_id: group,
                    state: state.state_name().to_string(),
                    members: state.members.len() as u32,
                    coordinator: b.id,
                });
            }
        }
        out
    }

    /// Every group: this broker's, and (unless the request was forwarded) every other live
    /// broker's.
    async fn list(&self, forwarded: bool) -> Result<Vec<v1::GroupListing>> {
        self.available()?;
        let b = &self.broker;
        let mut all: BTreeMap<String, v1::GroupListing> =
            self.local_groups().into_iter().map(|g| (g.group_id.clone(), g)).collect();
        if !forwarded {
            let state = b.state();
            for broker in state.brokers.values().filter(|x| x.id != b.id) {
                let mut req = Request::new(v1::ListGroupsRequest {});
                req.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
                let resp = GroupsClient::new(b.channel(&broker.address)?).list_groups(req).await;
                match resp.map(|r| r.into_inner()) {
                    Ok(r) if r.error.as_ref().is_none_or(|e| e.is_ok()) => {
                        all.extend(r.groups.into_iter().map(|g| (g.group_id.clone(), g)));
                    }
                    Ok(r) => {
                        let e = r.error.unwrap_or_default();
                        return Err(Error::new(
                            e.error_code(),
                            format!("broker {}: {}", broker.id, e.message),
                        ));
                    }
                    Err(s) if b.is_alive(broker.id) => {
                        return Err(Error::new(
                            ErrorCode::CoordinatorNotAvailable,
                            format!(
                                "broker {} did not list its groups: {}",
                                broker.id,
                                s.message()
                            ),
                        ));
                    }
                    // A dead broker coordinates nothing (its partitions have new leaders).
                    Err(_) => {}
                }
            }
        }
        Ok(all.into_values().collect())
    }

    async fn delete(&self, req: v1::DeleteGroupRequest) -> Result<()> {
        self.available()?;
        let c = self.broker.coordinator_for(&req.group_id)?;
        c.delete_group(&req.group_id).await
    }

    async fn reset(&self, req: v1::ResetOffsetsRequest) -> Result<Vec<v1::CommittedOffset>> {
        use v1::offset_spec::Spec;
        use v1::reset_spec::Spec as Reset;
        self.available()?;
        let b = &self.broker;
        let c = b.coordinator_for(&req.group_id)?;
        let Some(spec) = req.spec.and_then(|s| s.spec) else {
            return Err(invalid("ResetOffsets without a spec"));
        };
        let (t, _) = b.lookup(&req.topic, 0)?;
        if t.internal {
            return Err(Error::new(ErrorCode::InvalidTopic, format!("{} is internal", req.topic)));
        }
        if let Some(state) = c.state(&req.group_id)
            && !state.members.is_empty()
        {
            // Checked again under the group's lock when committing; this saves the lookups.
            return Err(Error::new(
                ErrorCode::GroupNotEmpty,
                format!(
                    "group {:?} has {} active members; stop them before resetting offsets",
                    req.group_id,
                    state.members.len()
                ),
            ));
        }
        let partitions: Vec<u32> = if req.partitions.is_empty() {
            (0..t.partitions.len() as u32).collect()
        } else {
            req.partitions.clone()
        };
        let now = now_ms();
        let mut records = Vec::with_capacity(partitions.len());
        for p in partitions {
            self.check_partition(&req.topic, p)?;
            let topic = &req.topic;
            let offset = match spec {
                Reset::Earliest(_) => {
                    b.list_offset_anywhere(topic, p, Spec::Earliest(true)).await?.0
                }
                Reset::Latest(_) => b.list_offset_anywhere(topic, p, Spec::Latest(true)).await?.0,
                Reset::Timestamp(ts) => {
                    b.list_offset_anywhere(topic, p, Spec::Timestamp(ts)).await?.0
                }
                Reset::Offset(o) => {
                    let start = b.list_offset_anywhere(topic, p, Spec::Earliest(true)).await?.0;
                    let end = b.list_offset_anywhere(topic, p, Spec::Latest(true)).await?.0;
                    if !(start..=end).contains(&o) {
                        return Err(Error::new(
                            ErrorCode::OffsetOutOfRange,
                            format!("{topic}-{p}: offset {o} is outside [{start}, {end}]"),
                        ));
                    }
                    o
                }
            };
            records.push(OffsetRecord {
                topic: topic.clone(),
                partition: p,
                value: StoredOffset { offset, metadata: String::new(), commit_ms: now },
            });
        }
        let out =
            records.iter().map(|r| committed(&r.topic, r.partition, Some(&r.value))).collect();
        c.reset_offsets(&req.group_id, records, req.dry_run).await?;
        Ok(out)
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn group_heartbeat(
        &self,
        req: Request<v1::GroupHeartbeatRequest>,
    ) -> Result<Response<v1::GroupHeartbeatResponse>, Status> {
        let started = Instant::now();
        let r = self.heartbeat(req.into_inner()).await;
        m::request("group_heartbeat", code_of(&r), started);
        Ok(Response::new(r.unwrap_or_else(|e| v1::GroupHeartbeatResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        })))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn commit_offsets(
        &self,
        req: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let started = Instant::now();
        let r = self.commit(req.into_inner()).await;
        m::request("commit_offsets", code_of(&r), started);
        Ok(Response::new(v1::CommitOffsetsResponse { error: Some(proto_error(&r)) }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn fetch_offsets(
        &self,
        req: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        let started = Instant::now();
        let r = GroupsService::fetch_offsets(self, req.into_inner()).await;
        m::request("fetch_offsets", code_of(&r), started);
        let error = Some(proto_error(&r));
        Ok(Response::new(v1::FetchOffsetsResponse { error, offsets: r.unwrap_or_default() }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn describe_group(
        &self,
        req: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        let started = Instant::now();
        let r = self.describe(req.into_inner()).await;
        m::request("describe_group", code_of(&r), started);
        Ok(Response::new(r.unwrap_or_else(|e| v1::DescribeGroupResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        })))
    }

    #[tracing::instrument(skip_all)]
    async fn list_groups(
        &self,
        req: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let started = Instant::now();
        let forwarded = req.metadata().get(FORWARDED_HEADER).is_some();
        let r = self.list(forwarded).await;
        m::request("list_groups", code_of(&r), started);
        let error = Some(proto_error(&r));
        Ok(Response::new(v1::ListGroupsResponse { error, groups: r.unwrap_or_default() }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn delete_group(
        &self,
        req: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let started = Instant::now();
        let r = self.delete(req.into_inner()).await;
        m::request("delete_group", code_of(&r), started);
        Ok(Response::new(v1::DeleteGroupResponse { error: Some(proto_error(&r)) }))
    }

    #[tracing::instrument(skip_all, fields(group = %req.get_ref().group_id))]
    async fn reset_offsets(
        &self,
        req: Request<v1::ResetOffsetsRequest>,
    ) -> Result<Response<v1::ResetOffsetsResponse>, Status> {
        let started = Instant::now();
        let r = self.reset(req.into_inner()).await;
        m::request("reset_offsets", code_of(&r), started);
        let error = Some(proto_error(&r));
        Ok(Response::new(v1::ResetOffsetsResponse { error, offsets: r.unwrap_or_default() }))
    }
}
