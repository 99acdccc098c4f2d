//! Group calls on [`Client`], routed to the group's coordinator.
//!
//! Any broker accepts a group request; one that does not coordinate the group answers
//! `NOT_COORDINATOR` with the coordinator in `Error.leader` when it knows it. The address is
//! cached per group and used until a retriable failure says otherwise; without a cached
//! address a request goes to any broker. Retries follow the client's one retry policy
//! (`Client::call_routed`).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use crate::client::Channel;
use rafka_proto::ErrorCode;
use rafka_proto::v1;
use rafka_proto::v1::groups_client::GroupsClient;

use crate::client::Client;
use crate::client::HasError;
use crate::error::Error;
use crate::error::Result;

/// A `Groups` gRPC client over `ch`.
pub(crate) fn groups(ch: Channel) -> GroupsClient<Channel> {
    GroupsClient::new(ch)
}

/// `(topic, partition)` pairs grouped by topic, as the wire wants them.
pub(crate) fn to_wire<'a>(
    partitions: impl IntoIterator<Item = &'a (String, u32)>,
) -> Vec<v1::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().insert(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| v1::TopicPartitions {
            topic: t.to_string(),
            partitions: ps.into_iter().collect(),
        })
        .collect()
}

/// The `(topic, partition)` pairs of a wire list.
pub(crate) fn from_wire(parts: &[v1::TopicPartitions]) -> BTreeSet<(String, u32)> {
    parts.iter().flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p))).collect()
}

impl Client {
    /// Sends a group request to `group`'s coordinator (cached, else any broker), following
    /// `NOT_COORDINATOR` hints, within `total` (else the config's total timeout).
    pub(crate) async fn call_coordinator<T, F, Fut>(
        &self,
        group: &str,
        total: Option<Duration>,
        call: F,
    ) -> Result<T>
    where
        T: HasError,
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let cache = self.coordinator_cache();
        let known = |id: u64| self.broker_address(id);
        let route = || cache.lock().unwrap().get(group).cloned();
        let on_error = |e: &Error, hint: Option<v1::LeaderHint>| {
            let mut cache = cache.lock().unwrap();
            match (e.code(), hint) {
                (Some(ErrorCode::NotCoordinator), Some(h)) if !h.address.is_empty() => {
                    // Metadata's address of the broker: the hint's is its internal one.
                    let address = known(h.broker_id).unwrap_or(h.address);
                    cache.insert(group.to_string(), address);
                }
                _ if e.is_retriable() => {
                    cache.remove(group);
                }
                _ => {}
            }
        };
        self.call_routed(total, route, on_error, call).await
    }

    /// One `GroupHeartbeat`, retried within `total`. Errors such as `UNKNOWN_MEMBER_ID` and
    /// `FENCED_MEMBER_EPOCH` come back as [`Error::Broker`] at once.
    pub async fn group_heartbeat(
        &self,
        req: v1::GroupHeartbeatRequest,
        total: Option<Duration>,
    ) -> Result<v1::GroupHeartbeatResponse> {
        let group = req.group_id.clone();
        self.call_coordinator(&group, total, |ch| {
            let req = req.clone();
            async move { groups(ch).group_heartbeat(req).await }
        })
        .await
    }

    /// Commits `offsets` (`(topic, partition, next offset to read)`) for `group`, as `member`
    /// (`(member id, epoch)`) or, with `None`, without membership (allowed only while the
    /// group has no members).
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        member: Option<(&str, i32)>,
        offsets: &[(String, u32, i64)],
    ) -> Result<()> {
        let (member_id, member_epoch) = member.unwrap_or(("", -1));
        let offsets: Vec<v1::OffsetCommit> = offsets
            .iter()
            .map(|(topic, partition, offset)| v1::OffsetCommit {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                metadata: String::new(),
            })
            .collect();
        self.call_coordinator(group, None, |ch| {
            let req = v1::CommitOffsetsRequest {
                group_id: group.to_string(),
                member_id: member_id.to_string(),
                member_epoch,
                offsets: offsets.clone(),
            };
            async move { groups(ch).commit_offsets(req).await }
        })
        .await?;
        Ok(())
    }

    /// The committed offsets of `partitions` in `group`, in the same order; `None` where
    /// nothing is committed (or the group does not exist).
    pub async fn fetch_group_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Option<i64>>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = to_wire(partitions);
        let r = self
            .call_coordinator(group, None, |ch| {
                let req = v1::FetchOffsetsRequest {
                    group_id: group.to_string(),
                    partitions: wanted.clone(),
                };
                async move { groups(ch).fetch_offsets(req).await }
            })
            .await;
        let resp = match r {
            Ok(resp) => resp,
            Err(e) if e.code() == Some(ErrorCode::GroupIdNotFound) => {
                return Ok(vec![None; partitions.len()]);
            }
            Err(e) => return Err(e),
        };
        let got: BTreeMap<(String, u32), i64> =
            resp.offsets.into_iter().map(|o| ((o.topic, o.partition), o.offset)).collect();
        Ok(partitions.iter().map(|tp| got.get(tp).copied().filter(|&o| o >= 0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lists_group_by_topic_and_round_trip() {
        let tps = vec![("b".to_string(), 1), ("a".to_string(), 2), ("b".to_string(), 0)];
        let wire = to_wire(&tps);
        assert_eq!(wire.len(), 2);
        assert_eq!(wire[0].topic, "a");
        assert_eq!(wire[1].partitions, vec![0, 1]);
        assert_eq!(from_wire(&wire), tps.into_iter().collect());
    }
}
