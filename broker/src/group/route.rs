//! Finding a group's coordinator, and reading partition offsets from wherever the
//! partition's leader is (lag, ResetOffsets).

use std::sync::Arc;

use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::groups::OFFSETS_TOPIC;
use rafka_proto::groups::offsets_partition;
use rafka_proto::v1;

use super::Coordinator;
use super::coordinator::validate_group_id;
use crate::broker::Broker;
use crate::error::Error;
use crate::error::Result;

/// Hops a forwarded offset lookup may take following leader hints.
const MAX_HOPS: usize = 3;
/// Bound on one forwarded offset lookup.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Broker {
    /// The coordinator of `group` if this broker is it; else `NOT_COORDINATOR` pointing at
    /// the coordinator (or at a broker hosting a replica, which knows it), or
    /// `COORDINATOR_NOT_AVAILABLE`.
    pub fn coordinator_for(&self, group: &str) -> Result<Arc<Coordinator>> {
        validate_group_id(group)?;
        let state = self.state();
        let Some(t) = state.topics.get(OFFSETS_TOPIC) else {
            return Err(Error::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC} is not created yet (the cluster is starting)"),
            ));
        };
        let p = offsets_partition(group, t.partitions.len() as u32);
        let rec = &t.partitions[p as usize];
        let hosted =
            self.coordinators.read().unwrap_or_else(|e| e.into_inner()).get(&rec.group).cloned();
        if let Some(c) = hosted {
            return if c.group.is_leader() { Ok(c) } else { Err(c.not_coordinator()) };
        }
        let hint = rec
            .replicas
            .iter()
            .find(|r| self.is_alive(r.broker))
            .and_then(|r| state.brokers.get(&r.broker))
            .map(|b| (b.id, b.address.clone()));
        match hint {
            Some((broker_id, address)) => {
                let mut e = Error::new(
                    ErrorCode::NotCoordinator,
                    format!(
                        "broker {} does not host offsets partition {p} of group {group:?}; \
                         broker {broker_id} at {address} does",
                        self.id
                    ),
                );
                e.leader = Some(v1::LeaderHint { broker_id, address });
                Err(e)
            }
            None => Err(Error::new(
                ErrorCode::CoordinatorNotAvailable,
                format!("no live broker hosts offsets partition {p} of group {group:?}"),
            )),
        }
    }

    /// ListOffsets of any partition: answered by the local replica if it leads, else by the
    /// leader (following `NOT_LEADER` hints).
    pub async fn list_offset_anywhere(
        &self,
        topic: &str,
        partition: u32,
        spec: v1::offset_spec::Spec,
    ) -> Result<(i64, i64)> {
        let mut addr = match self.route(topic, partition) {
            Ok((_, p)) if p.group.is_leader() => return p.list_offset(&spec, false).await,
            Ok((_, p)) => p.group.leader().map(|(_, n)| n.addr),
            Err(e) if e.code == ErrorCode::NotLeader => e.leader.map(|l| l.address),
            Err(e) => return Err(e),
        };
        let what = format!("{topic}-{partition}");
        for _ in 0..MAX_HOPS {
            let Some(a) = addr.take() else { break };
            let mut client = v1::data_client::DataClient::new(self.channel(&a)?);
            let req = v1::ListOffsetsRequest {
                topic: topic.to_string(),
                partition,
                spec: Some(v1::OffsetSpec { spec: Some(spec) }),
                allow_follower: false,
            };
            let resp = tokio::time::timeout(LOOKUP_TIMEOUT, client.list_offsets(req))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorCode::RequestTimedOut,
                        format!("{what}: leader at {a}: timed out"),
                    )
                })?
                .map_err(|s| {
                    Error::new(ErrorCode::LeaderNotAvailable, format!("{what}: leader at {a}: {s}"))
                })?;
            let resp = resp.into_inner();
            let err = resp.error.unwrap_or_else(v1::Error::none);
            match err.error_code() {
                ErrorCode::None => return Ok((resp.offset, resp.timestamp)),
                ErrorCode::NotLeader => addr = err.leader.map(|l| l.address),
                code => return Err(Error::new(code, err.message)),
            }
        }
        Err(Error::not_leader(&what, None))
    }
}
