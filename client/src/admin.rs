//! [`Admin`]: topic and cluster administration over the `Admin` service, and consumer-group
//! administration over the `Groups` service (routed to each group's coordinator).

use std::collections::BTreeMap;
use std::collections::HashMap;

use rafka_proto::v1;

use crate::client::Client;
use crate::client::admin;
use crate::consumer::SeekTo;
use crate::data::OffsetSpec;
use crate::error::Result;
use crate::groups::from_wire;
use crate::groups::groups;
use crate::metadata::BrokerDescription;
use crate::metadata::ClusterMetadata;
use crate::metadata::PartitionDescription;

/// A topic as `ListTopics` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub topic_id: u64,
    /// How many partitions it has.
    pub partitions: u32,
    /// Whether it is an internal topic.
    pub internal: bool,
}

/// A topic as `DescribeTopic` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic name.
    pub name: String,
    /// The topic id.
    pub topic_id: u64,
    /// Its partitions, in the order the broker sent them.
    pub partitions: Vec<PartitionDescription>,
    /// Its configs that differ from the defaults, as the broker reports them.
    pub configs: HashMap<String, String>,
}

/// The cluster as `DescribeCluster` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster's id.
    pub cluster_id: String,
    /// The controller's broker id, if one is known.
    pub controller_id: Option<u64>,
    /// Every broker.
    pub brokers: Vec<BrokerDescription>,
    /// The partition batch format brokers write (2: Kafka's RecordBatch v2; 1 while a broker
    /// of an older version is in the cluster).
    pub batch_format: u32,
    /// Brokers removed by decommissioning.
    pub decommissioned: Vec<u64>,
    /// Brokers holding a voter of the controller group.
    pub controller_voters: Vec<u64>,
}

/// A consumer group as `ListGroups` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// "empty", "reconciling" or "stable".
    pub state: String,
    /// Number of members.
    pub members: u32,
    /// The coordinator's broker id.
    pub coordinator: u64,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// Member epoch.
    pub member_epoch: i32,
    /// The client id it sent.
    pub client_id: String,
    /// Subscribed topics.
    pub subscribed_topics: Vec<String>,
    /// Partitions it owns now.
    pub assignment: Vec<(String, u32)>,
    /// Partitions it was asked to give up and has not yet.
    pub pending_revocation: Vec<(String, u32)>,
    /// What the target assignment gives it.
    pub target_assignment: Vec<(String, u32)>,
    /// The regex it subscribed with (Kafka clients' pattern subscriptions), if any.
    pub subscribed_regex: Option<String>,
    /// Classic groups: its static instance id, if any.
    pub group_instance_id: Option<String>,
    /// Classic groups: the client's address as the coordinator saw it.
    pub client_host: String,
}

/// One partition of a described group: committed offset, lag and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionDescription {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The committed offset (next to read), if any.
    pub committed_offset: Option<i64>,
    /// The partition's high watermark, if known.
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed_offset`, when both are known.
    pub lag: Option<i64>,
    /// The member id owning the partition now, if any.
    pub owner: Option<String>,
    /// The owner's client id, if owned.
    pub owner_client_id: Option<String>,
    /// When the offset was committed (ms since the epoch), if it was.
    pub commit_timestamp: Option<i64>,
}

/// A consumer group as `DescribeGroup` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// "empty", "reconciling" or "stable" ("rebalancing" instead of "reconciling" for a
    /// classic group).
    pub state: String,
    /// "consumer" (the consumer group protocol) or "classic" (Kafka's JoinGroup/SyncGroup).
    pub protocol: String,
    /// Classic groups: the members' protocol type ("consumer", "connect", ...).
    pub protocol_type: String,
    /// Bumped on every membership, subscription or topic change.
    pub group_epoch: i32,
    /// The group epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The server-side assignor in use.
    pub assignor: String,
    /// Members, as the coordinator lists them.
    pub members: Vec<GroupMemberDescription>,
    /// Every partition the group committed or a member owns, by topic and partition.
    pub partitions: Vec<GroupPartitionDescription>,
    /// The coordinator as `(broker id, address)`.
    pub coordinator: Option<(u64, String)>,
}

fn sorted(parts: &[v1::TopicPartitions]) -> Vec<(String, u32)> {
    from_wire(parts).into_iter().collect()
}

/// Administration of topics and the cluster. Cheap to clone; shares the [`Client`]'s
/// connections and metadata.
#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) client: Client,
}

impl From<Client> for Admin {
    fn from(client: Client) -> Self {
        Admin { client }
    }
}

impl Admin {
    /// An admin over `client`.
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topic `name` and returns its id. A retry after an attempt whose outcome was
    /// unknown may report `TOPIC_ALREADY_EXISTS` for the topic this call created.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: HashMap<String, String>,
    ) -> Result<u64> {
        let resp = self
            .client
            .call_any(|ch| {
                let req = v1::CreateTopicRequest {
                    name: name.to_string(),
                    partitions,
                    replication_factor,
                    configs: configs.clone(),
                };
                async move { admin(ch).create_topic(req).await }
            })
            .await?;
        self.client.invalidate_metadata();
        Ok(resp.topic_id)
    }

    /// Deletes topic `name`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req = v1::DeleteTopicRequest { name: name.to_string() };
                async move { admin(ch).delete_topic(req).await }
            })
            .await?;
        self.client.invalidate_metadata();
        Ok(())
    }

    /// Every topic; internal ones only when `include_internal`.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>> {
        let resp = self
            .client
            .call_any(|ch| {
                let req = v1::ListTopicsRequest { include_internal };
                async move { admin(ch).list_topics(req).await }
            })
            .await?;
        Ok(resp
            .topics
            .into_iter()
            .map(|t| TopicListing {
                name: t.name,
                topic_id: t.topic_id,
                partitions: t.partitions,
                internal: t.internal,
            })
            .collect())
    }

    /// Topic `name` with its partitions and configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let resp = self
            .client
            .call_any(|ch| {
                let req = v1::DescribeTopicRequest { name: name.to_string() };
                async move { admin(ch).describe_topic(req).await }
            })
            .await?;
        Ok(TopicDescription {
            name: resp.name,
            topic_id: resp.topic_id,
            partitions: resp.partitions.into_iter().map(Into::into).collect(),
            configs: resp.configs,
        })
    }

    /// Sets `configs` on topic `name`.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        configs: HashMap<String, String>,
    ) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req = v1::AlterTopicConfigRequest {
                    name: name.to_string(),
                    configs: configs.clone(),
                };
                async move { admin(ch).alter_topic_config(req).await }
            })
            .await?;
        Ok(())
    }

    /// Raises topic `name` to `total_count` partitions.
    pub async fn create_partitions(&self, name: &str, total_count: u32) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req = v1::CreatePartitionsRequest { name: name.to_string(), total_count };
                async move { admin(ch).create_partitions(req).await }
            })
            .await?;
        Ok(())
    }

    /// Moves partition `partition` of `topic` to `brokers` (the first is the preferred
    /// leader): new replicas join as learners and are promoted once caught up, replicas left
    /// out are removed. Returns once the move is recorded; `describe_topic` shows it under
    /// way (`target_replicas`) until it completes.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        brokers: &[u64],
    ) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req = v1::ReassignPartitionRequest {
                    topic: topic.to_string(),
                    partition,
                    brokers: brokers.to_vec(),
                };
                async move { admin(ch).reassign_partition(req).await }
            })
            .await?;
        Ok(())
    }

    /// Makes replica `broker` the preferred leader of the partition; leadership moves to it
    /// once it is caught up.
    pub async fn transfer_leadership(
        &self,
        topic: &str,
        partition: u32,
        broker: u64,
    ) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req =
                    v1::TransferLeadershipRequest { topic: topic.to_string(), partition, broker };
                async move { admin(ch).transfer_leadership(req).await }
            })
            .await?;
        Ok(())
    }

    /// The cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let resp = self
            .client
            .call_any(|ch| async move {
                admin(ch).describe_cluster(v1::DescribeClusterRequest {}).await
            })
            .await?;
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id,
            controller_id: resp.controller_id,
            brokers: resp.brokers.into_iter().map(Into::into).collect(),
            batch_format: resp.batch_format,
            decommissioned: resp.decommissioned,
            controller_voters: resp.controller_voters,
        })
    }

    /// Starts decommissioning broker `broker`: its replicas move to the other brokers, then
    /// it is removed from the cluster (follow it with [`Admin::describe_cluster`]).
    pub async fn decommission_broker(&self, broker: u64) -> Result<()> {
        self.client
            .call_any(|ch| async move {
                let req = v1::DecommissionBrokerRequest { broker_id: broker };
                admin(ch).decommission_broker(req).await
            })
            .await?;
        Ok(())
    }

    /// Starts moves that spread replicas and preferred leaders evenly; returns (partitions
    /// whose move started now, partitions moving in all). Call again until both are 0.
    pub async fn rebalance(&self) -> Result<(u32, u32)> {
        let resp = self
            .client
            .call_any(|ch| async move { admin(ch).rebalance(v1::RebalanceRequest {}).await })
            .await?;
        Ok((resp.started, resp.moving))
    }

    /// Fresh metadata for `topics` (all topics when empty), straight from a broker. Asking
    /// for all topics also refreshes the client's cache.
    pub async fn metadata(&self, topics: &[&str]) -> Result<ClusterMetadata> {
        if topics.is_empty() {
            return self.client.refresh_metadata().await;
        }
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let resp = self
            .client
            .call_any(|ch| {
                let req = v1::MetadataRequest { topics: topics.clone() };
                async move { admin(ch).metadata(req).await }
            })
            .await?;
        Ok(resp.into())
    }

    /// Every consumer group of the cluster, by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let resp = self
            .client
            .call_any(|ch| async move { groups(ch).list_groups(v1::ListGroupsRequest {}).await })
            .await?;
        Ok(resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id,
                state: g.state,
                members: g.members,
                coordinator: g.coordinator,
            })
            .collect())
    }

    /// Group `group`: members, and per partition the committed offset, high watermark, lag
    /// and owner. `GROUP_ID_NOT_FOUND` for an unknown group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let resp = self
            .client
            .call_coordinator(group, None, |ch| {
                let req = v1::DescribeGroupRequest { group_id: group.to_string() };
                async move { groups(ch).describe_group(req).await }
            })
            .await?;
        let members: Vec<GroupMemberDescription> = resp
            .members
            .into_iter()
            .map(|m| GroupMemberDescription {
                member_id: m.member_id,
                member_epoch: m.member_epoch,
                client_id: m.client_id,
                subscribed_topics: m.subscribed_topics,
                assignment: sorted(&m.assignment),
                pending_revocation: sorted(&m.pending_revocation),
                target_assignment: sorted(&m.target_assignment),
                subscribed_regex: m.subscribed_regex,
                group_instance_id: m.group_instance_id,
                client_host: m.client_host,
            })
            .collect();
        let mut partitions: BTreeMap<(String, u32), GroupPartitionDescription> = BTreeMap::new();
        let blank = |topic: &str, partition| GroupPartitionDescription {
            topic: topic.to_string(),
            partition,
            committed_offset: None,
            high_watermark: None,
            lag: None,
            owner: None,
            owner_client_id: None,
            commit_timestamp: None,
        };
        for o in resp.offsets {
            let known = |v: i64| (v >= 0).then_some(v);
            let mut d = blank(&o.topic, o.partition);
            d.committed_offset = known(o.committed_offset);
            d.high_watermark = known(o.high_watermark);
            d.lag = known(o.lag);
            d.commit_timestamp = known(o.commit_timestamp);
            partitions.insert((o.topic, o.partition), d);
        }
        for m in &members {
            for (t, p) in &m.assignment {
                let d = partitions.entry((t.clone(), *p)).or_insert_with(|| blank(t, *p));
                d.owner = Some(m.member_id.clone());
                d.owner_client_id = Some(m.client_id.clone());
            }
        }
        for d in partitions.values_mut().filter(|d| d.high_watermark.is_none()) {
            // Owned but never committed: the high watermark still says how far the log is.
            let hw = self.client.list_offset(&d.topic, d.partition, OffsetSpec::Latest).await;
            d.high_watermark = hw.ok();
        }
        Ok(GroupDescription {
            group_id: resp.group_id,
            state: resp.state,
            protocol: resp.protocol,
            protocol_type: resp.protocol_type,
            group_epoch: resp.group_epoch,
            assignment_epoch: resp.assignment_epoch,
            assignor: resp.assignor,
            members,
            partitions: partitions.into_values().collect(),
            coordinator: resp.coordinator.map(|c| (c.broker_id, c.address)),
        })
    }

    /// Deletes group `group` and its offsets: `GROUP_NOT_EMPTY` while it has members,
    /// `GROUP_ID_NOT_FOUND` if unknown.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.client
            .call_coordinator(group, None, |ch| {
                let req = v1::DeleteGroupRequest { group_id: group.to_string() };
                async move { groups(ch).delete_group(req).await }
            })
            .await?;
        Ok(())
    }

    /// Moves `group`'s committed offsets of `topic` (`partitions`, or all when empty) to
    /// `to` ([`SeekTo::Beginning`] = log start, [`SeekTo::End`] = high watermark); only
    /// while the group has no members (`GROUP_NOT_EMPTY` otherwise). With `dry_run` nothing
    /// is committed. Returns the new offsets as `(topic, partition, offset)`.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
        to: SeekTo,
        dry_run: bool,
    ) -> Result<Vec<(String, u32, i64)>> {
        use v1::reset_spec::Spec;
        let spec = match to {
            SeekTo::Beginning => Spec::Earliest(true),
            SeekTo::End => Spec::Latest(true),
            SeekTo::Timestamp(ts) => Spec::Timestamp(ts),
            SeekTo::Offset(o) => Spec::Offset(o),
        };
        let resp = self
            .client
            .call_coordinator(group, None, |ch| {
                let req = v1::ResetOffsetsRequest {
                    group_id: group.to_string(),
                    topic: topic.to_string(),
                    partitions: partitions.to_vec(),
                    spec: Some(v1::ResetSpec { spec: Some(spec) }),
                    dry_run,
                };
                async move { groups(ch).reset_offsets(req).await }
            })
            .await?;
        Ok(resp.offsets.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect())
    }
}

/// A user and the SCRAM mechanisms it has a credential for (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    /// The user name.
    pub user: String,
    /// Mechanism names.
    pub mechanisms: Vec<String>,
}

/// PBKDF2 iterations of the credentials [`Admin::set_user_password`] makes.
pub const SCRAM_ITERATIONS: u32 = 8192;

impl Admin {
    /// Creates `user`, or changes its password: SCRAM-SHA-256 and SCRAM-SHA-512 credentials,
    /// salted here, so the password never leaves this process (superusers only on a cluster
    /// with authentication on).
    pub async fn set_user_password(&self, user: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(crate::error::Error::Usage("the password is empty".into()));
        }
        let upsertions: Vec<v1::ScramUpsertion> = [
            (v1::ScramMechanism::ScramSha256, ring::pbkdf2::PBKDF2_HMAC_SHA256, 32),
            (v1::ScramMechanism::ScramSha512, ring::pbkdf2::PBKDF2_HMAC_SHA512, 64),
        ]
        .into_iter()
        .map(|(mechanism, algorithm, len)| {
            let salt: [u8; 32] = rand::random();
            let mut salted = vec![0u8; len];
            let iterations = std::num::NonZeroU32::new(SCRAM_ITERATIONS).expect("positive");
            ring::pbkdf2::derive(algorithm, iterations, &salt, password.as_bytes(), &mut salted);
            v1::ScramUpsertion {
                user: user.to_string(),
                mechanism: mechanism as i32,
                iterations: SCRAM_ITERATIONS,
                salt: salt.to_vec().into(),
                salted_password: salted.into(),
            }
        })
        .collect();
        self.alter_users(v1::AlterUsersRequest { upsertions, deletions: Vec::new() }).await
    }

    /// Deletes `user` (every credential it has).
    pub async fn delete_user(&self, user: &str) -> Result<()> {
        let listed = self.list_users().await?;
        let Some(found) = listed.into_iter().find(|u| u.user == user) else {
            return Err(crate::error::Error::broker(
                rafka_proto::ErrorCode::InvalidRequest,
                format!("there is no user {user}"),
            ));
        };
        let deletions = found
            .mechanisms
            .iter()
            .filter_map(|m| v1::ScramMechanism::from_str_name(&m.replace('-', "_")))
            .map(|m| v1::ScramDeletion { user: user.to_string(), mechanism: m as i32 })
            .collect();
        self.alter_users(v1::AlterUsersRequest { upsertions: Vec::new(), deletions }).await
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<UserListing>> {
        let resp = self
            .client
            .call_any(|ch| async move { admin(ch).list_users(v1::ListUsersRequest {}).await })
            .await?;
        Ok(resp
            .users
            .into_iter()
            .map(|u| UserListing {
                user: u.user,
                mechanisms: u
                    .mechanisms
                    .into_iter()
                    .filter_map(|m| v1::ScramMechanism::try_from(m).ok())
                    .map(|m| m.as_str_name().replace('_', "-"))
                    .collect(),
            })
            .collect())
    }

    async fn alter_users(&self, req: v1::AlterUsersRequest) -> Result<()> {
        self.client
            .call_any(|ch| {
                let req = req.clone();
                async move { admin(ch).alter_users(req).await }
            })
            .await?;
        Ok(())
    }
}
