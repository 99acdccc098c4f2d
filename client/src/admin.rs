//! [`Admin`]: topic and cluster administration over the `Admin` service.

use std::collections::HashMap;

use rafka_proto::v1;

use crate::client::Client;
use crate::client::admin;
use crate::error::Result;
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
}

/// Administration of topics and the cluster. Cheap to clone; shares the [`Client`]'s
/// connections and metadata.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
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
        })
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
}
