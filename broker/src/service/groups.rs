//! Consumer groups: member heartbeats, offset commits and fetches, describe, list, delete
//! and reset — each on the group's coordinator (`NOT_COORDINATOR` pointing at it when that
//! is another broker).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_proto::groups::offsets_partition;

use crate::broker::Broker;
use crate::error::Error;
use crate::error::Leader;
use crate::error::Result;
use crate::group::Coordinator;
use crate::group::GroupListing;
use crate::group::classic::ClassicGroup;
use crate::group::classic::Phase;
use crate::group::coordinator::HeartbeatRequest;
use crate::group::coordinator::group_not_found;
use crate::group::coordinator::now_ms;
use crate::group::coordinator::validate_group_id;
use crate::group::state::Assignment;
use crate::group::state::GroupState;
use crate::group::state::HeartbeatReply;
use crate::group::store::OffsetRecord;
use crate::group::store::StoredOffset;
use crate::partition::OffsetSpec;
use crate::remote;

/// Longest metadata string stored with an offset.
const MAX_METADATA_BYTES: usize = 4096;
/// Most topics one member may subscribe to, and most partitions it may report owning.
const MAX_SUBSCRIPTIONS: usize = 10_000;
const MAX_OWNED_PARTITIONS: usize = 100_000;
/// Longest member id, client id and assignor name.
const MAX_ID_BYTES: usize = 255;

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest(message.into())
}

/// The coordinator of `group` if this broker is it; else `NOT_COORDINATOR` pointing at the
/// coordinator (or at a broker hosting a replica, which knows it), or
/// `COORDINATOR_NOT_AVAILABLE`.
pub fn coordinator_for(b: &Broker, group: &str) -> Result<Arc<Coordinator>> {
    validate_group_id(group)?;
    let state = b.state();
    let Some(t) = state.topics.get(OFFSETS_TOPIC) else {
        return Err(Error::CoordinatorNotAvailable(format!(
            "{OFFSETS_TOPIC} is not created yet (the cluster is starting)"
        )));
    };
    let p = offsets_partition(group, t.partitions.len() as u32);
    let rec = &t.partitions[p as usize];
    if let Some(c) = b.replicas().coordinator(rec.group) {
        return if c.group.is_leader() { Ok(c) } else { Err(c.not_coordinator()) };
    }
    match b.live_replica_broker(&rec.replicas) {
        Some((broker_id, address)) => {
            let message = format!(
                "broker {} does not host offsets partition {p} of group {group:?}; broker \
                 {broker_id} at {address} does",
                b.id()
            );
            Err(Error::NotCoordinator { message, coordinator: Leader { broker_id, address } })
        }
        None => Err(Error::CoordinatorNotAvailable(format!(
            "no live broker hosts offsets partition {p} of group {group:?}"
        ))),
    }
}

/// What a member heartbeat gets back.
pub struct Heartbeat {
    pub reply: HeartbeatReply,
    pub heartbeat_interval_ms: u32,
    pub session_timeout_ms: u32,
}

/// A member heartbeat (join, stay, leave, acknowledge an assignment).
pub async fn heartbeat(b: &Broker, req: HeartbeatRequest) -> Result<Heartbeat> {
    b.available()?;
    let c = coordinator_for(b, &req.group)?;
    if req.member_epoch < -1 {
        return Err(invalid(format!("member epoch {} is below -1", req.member_epoch)));
    }
    check_heartbeat_sizes(&req)?;
    let topics = b.state().user_topic_partitions();
    let reply = c.heartbeat(req, &topics).await?;
    let cfg = &b.config().groups;
    Ok(Heartbeat {
        reply,
        heartbeat_interval_ms: cfg.heartbeat_interval_ms as u32,
        session_timeout_ms: cfg.session_timeout_ms as u32,
    })
}

/// Bounds on what one heartbeat may carry: its content becomes replicated group state.
fn check_heartbeat_sizes(req: &HeartbeatRequest) -> Result<()> {
    for (what, value) in [
        ("member id", &req.member_id),
        ("client id", &req.client_id),
        ("server assignor", &req.assignor),
    ] {
        if value.len() > MAX_ID_BYTES {
            return Err(invalid(format!("{what} of {} bytes exceeds {MAX_ID_BYTES}", value.len())));
        }
    }
    if req.subscribed.len() > MAX_SUBSCRIPTIONS {
        return Err(invalid(format!(
            "{} subscribed topics exceed {MAX_SUBSCRIPTIONS}",
            req.subscribed.len()
        )));
    }
    for t in &req.subscribed {
        crate::topic::validate_name(t, false)?;
    }
    let owned: usize = req.owned.values().map(|p| p.len().max(1)).sum();
    if owned > MAX_OWNED_PARTITIONS {
        return Err(invalid(format!("{owned} owned partitions exceed {MAX_OWNED_PARTITIONS}")));
    }
    Ok(())
}

/// One offset to commit.
pub struct CommitOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

/// Commits offsets for a group: by a member (its id and epoch fence the commit) or, with an
/// empty member id and epoch -1, by a client outside the group protocol.
pub async fn commit(
    b: &Broker,
    group: &str,
    member_id: &str,
    member_epoch: i32,
    offsets: Vec<CommitOffset>,
) -> Result<()> {
    b.available()?;
    let c = coordinator_for(b, group)?;
    if offsets.is_empty() {
        return Err(invalid("CommitOffsets without offsets"));
    }
    if member_id.is_empty() != (member_epoch < 0) {
        return Err(invalid(
            "member id and epoch go together: a member id with its epoch, or an empty id with \
             epoch -1",
        ));
    }
    let now = now_ms();
    let mut records = Vec::with_capacity(offsets.len());
    for o in offsets {
        check_partition(b, &o.topic, o.partition)?;
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
        records.push(OffsetRecord {
            topic: o.topic,
            partition: o.partition,
            value: StoredOffset { offset: o.offset, metadata: o.metadata, commit_ms: now },
        });
    }
    c.commit(group, member_id, member_epoch, records).await
}

/// Checks that `topic` is a user topic with `partition`.
fn check_partition(b: &Broker, topic: &str, partition: u32) -> Result<()> {
    let (t, _) = b.lookup(topic, partition)?;
    if t.internal {
        return Err(Error::InvalidTopic(format!("{topic} is internal")));
    }
    Ok(())
}

/// A committed offset as read back: `None` for a partition without one.
pub type Committed = ((String, u32), Option<StoredOffset>);

/// A group's committed offsets: of the partitions asked for, or all of them when `partitions`
/// is empty.
pub async fn fetch_offsets(
    b: &Broker,
    group: &str,
    partitions: &[(String, Vec<u32>)],
) -> Result<Vec<Committed>> {
    b.available()?;
    let c = coordinator_for(b, group)?;
    c.term().await?;
    if c.state(group).is_none() {
        return Err(group_not_found(group));
    }
    let stored = c.offsets(group)?;
    if partitions.is_empty() {
        return Ok(stored.into_iter().map(|(k, o)| (k, Some(o))).collect());
    }
    let mut out = Vec::new();
    for (topic, parts) in partitions {
        for p in parts {
            let key = (topic.clone(), *p);
            let o = stored.get(&key).cloned();
            out.push((key, o));
        }
    }
    Ok(out)
}

/// A group's committed offset of one partition, with the partition's end.
#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: StoredOffset,
    /// -1: unknown (no leader answered).
    pub high_watermark: i64,
}

impl PartitionLag {
    /// Records between the committed offset and the end; -1 when the end is unknown.
    pub fn lag(&self) -> i64 {
        if self.high_watermark < 0 {
            -1
        } else {
            (self.high_watermark - self.committed.offset).max(0)
        }
    }
}

/// A group as its coordinator knows it.
pub struct GroupDescription {
    pub group_id: String,
    pub state: Arc<GroupState>,
    /// A classic group's phase and members, as the coordinator sees them now.
    pub classic: Option<(Phase, ClassicGroup)>,
    pub offsets: Vec<PartitionLag>,
    /// This broker: (id, address).
    pub coordinator: (u64, String),
}

/// A group's members, assignments and committed offsets with their lag.
pub async fn describe(b: &Broker, group: &str) -> Result<GroupDescription> {
    b.available()?;
    let c = coordinator_for(b, group)?;
    c.term().await?;
    // A classic group in its first rebalance is not replicated yet.
    let classic = c.classic_view(group);
    let state = match (c.state(group), &classic) {
        (Some(s), _) => s,
        (None, Some(_)) => Arc::default(),
        (None, None) => return Err(group_not_found(group)),
    };
    let mut offsets = Vec::new();
    for ((topic, partition), committed) in c.offsets(group)? {
        let high_watermark = remote::list_offsets(b, &topic, partition, OffsetSpec::Latest)
            .await
            .map_or(-1, |(o, _)| o);
        offsets.push(PartitionLag { topic, partition, committed, high_watermark });
    }
    Ok(GroupDescription {
        group_id: group.to_string(),
        state,
        classic,
        offsets,
        coordinator: (b.id(), b.address().to_string()),
    })
}

/// Groups this broker coordinates.
pub fn local_groups(b: &Broker) -> Vec<GroupListing> {
    let mut out = Vec::new();
    for c in b.replicas().coordinators() {
        if !c.group.is_leader() || !c.group.is_leader_ready() {
            continue;
        }
        for (group, state) in c.groups() {
            out.push(GroupListing {
                group_id: group,
                state: state.state_name().to_string(),
                members: state.members.len() as u32,
                coordinator: b.id(),
            });
        }
    }
    out
}

/// Every group: this broker's, and (unless `local_only`) every other live broker's.
pub async fn list(b: &Broker, local_only: bool) -> Result<Vec<GroupListing>> {
    b.available()?;
    let mut all: BTreeMap<String, GroupListing> =
        local_groups(b).into_iter().map(|g| (g.group_id.clone(), g)).collect();
    if !local_only {
        let state = b.state();
        for broker in state.brokers.values().filter(|x| x.id != b.id()) {
            match remote::list_groups(b, broker).await {
                Ok(groups) => all.extend(groups.into_iter().map(|g| (g.group_id.clone(), g))),
                Err(e) if b.is_alive(broker.id) => return Err(e),
                // A dead broker coordinates nothing (its partitions have new leaders).
                Err(_) => {}
            }
        }
    }
    Ok(all.into_values().collect())
}

/// Deletes a group without members, with its offsets.
pub async fn delete(b: &Broker, group: &str) -> Result<()> {
    b.available()?;
    let c = coordinator_for(b, group)?;
    c.delete_group(group).await
}

/// Where [`reset`] moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first offset at or after this timestamp (ms).
    Timestamp(i64),
    /// This offset, which must lie within the partition.
    Offset(i64),
}

/// Moves a group's committed offsets of `topic` (the given partitions, or all) to `to`
/// (`None`: the request named no target, refused once the coordinator is found); with
/// `dry_run` only computes them. The group must have no members.
pub async fn reset(
    b: &Broker,
    group: &str,
    topic: &str,
    partitions: &[u32],
    to: Option<ResetTo>,
    dry_run: bool,
) -> Result<Vec<OffsetRecord>> {
    b.available()?;
    let c = coordinator_for(b, group)?;
    let to = to.ok_or_else(|| invalid("ResetOffsets without a spec"))?;
    let (t, _) = b.lookup(topic, 0)?;
    if t.internal {
        return Err(Error::InvalidTopic(format!("{topic} is internal")));
    }
    if let Some(state) = c.state(group)
        && !state.members.is_empty()
    {
        // Checked again under the group's lock when committing; this saves the lookups.
        return Err(Error::GroupNotEmpty(format!(
            "group {group:?} has {} active members; stop them before resetting offsets",
            state.members.len()
        )));
    }
    let partitions: Vec<u32> = if partitions.is_empty() {
        (0..t.partitions.len() as u32).collect()
    } else {
        partitions.to_vec()
    };
    let now = now_ms();
    let mut records = Vec::with_capacity(partitions.len());
    for p in partitions {
        check_partition(b, topic, p)?;
        let lookup = |spec| remote::list_offsets(b, topic, p, spec);
        let offset = match to {
            ResetTo::Earliest => lookup(OffsetSpec::Earliest).await?.0,
            ResetTo::Latest => lookup(OffsetSpec::Latest).await?.0,
            ResetTo::Timestamp(ts) => lookup(OffsetSpec::Timestamp(ts)).await?.0,
            ResetTo::Offset(o) => {
                let start = lookup(OffsetSpec::Earliest).await?.0;
                let end = lookup(OffsetSpec::Latest).await?.0;
                if !(start..=end).contains(&o) {
                    let message = format!("{topic}-{p}: offset {o} is outside [{start}, {end}]");
                    return Err(Error::OffsetOutOfRange { message, watermarks: None });
                }
                o
            }
        };
        records.push(OffsetRecord {
            topic: topic.to_string(),
            partition: p,
            value: StoredOffset { offset, metadata: String::new(), commit_ms: now },
        });
    }
    c.reset_offsets(group, records.clone(), dry_run).await?;
    Ok(records)
}

/// An assignment from `(topic, partitions)` pairs; empty lists dropped.
pub fn assignment(parts: impl IntoIterator<Item = (String, Vec<u32>)>) -> Assignment {
    let mut a = Assignment::new();
    for (topic, partitions) in parts {
        a.entry(topic).or_default().extend(partitions);
    }
    a.retain(|_, p| !p.is_empty());
    a
}

/// Subscribed topic names as a set.
pub fn subscriptions(topics: Vec<String>) -> BTreeSet<String> {
    topics.into_iter().collect()
}
