//! Produce: each partition's batch goes through the same path as gRPC's produce (validation,
//! idempotence, replication), all partitions of a request at once. Each topic needs Write
//! (a transactional request also Write on its transactional id); a partition of a topic the
//! caller may not write is answered TOPIC_AUTHORIZATION_FAILED and nothing of it is stored.

use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::LeaderIdAndEpoch;
use kafka_protocol::messages::produce_response::NodeEndpoint;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::produce_response::TopicProduceResponse;
use kafka_protocol::protocol::StrBytes;

use super::errors;
use super::metadata::current_leader;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::BatchFault;
use crate::error::Error;
use crate::service::acl;
use crate::service::data as svc;

/// Answers `req`; with acks=0 the caller sends nothing back.
pub async fn handle(
    b: &Broker,
    caller: &Caller,
    listener: Option<&str>,
    req: ProduceRequest,
    version: i16,
) -> ProduceResponse {
    admit(b, caller, req).await.finish(b, listener, version).await
}

/// A Produce request whose batches are proposed, in the request's order; its answer is
/// still to come.
pub struct Admitted {
    parts: Vec<(String, i32, Result<svc::AdmittedProduce, Error>)>,
}

/// Validates and proposes every partition's batch of `req`, one after another: a
/// connection's requests admitted in turn keep their batches' order in each partition (an
/// idempotent producer's sequence numbers depend on it) while they replicate together.
pub async fn admit(b: &Broker, caller: &Caller, req: ProduceRequest) -> Admitted {
    let acks = match req.acks {
        0 => svc::Acks::None,
        // acks=1 is answered once a quorum has the batch, as acks=all: a Raft leader has no
        // weaker acknowledgement to give.
        1 | -1 => svc::Acks::All,
        v => svc::Acks::Unknown(v.into()),
    };
    // 0 (or less) leaves the wait to the broker's request-timeout-ms.
    let timeout = u64::try_from(req.timeout_ms).ok().filter(|t| *t > 0).map(Duration::from_millis);
    let transaction = match &req.transactional_id {
        Some(id) => {
            acl::authorize(b, caller, Operation::Write, Resource::transactional_id(id)).err()
        }
        None => None,
    };
    let mut parts = Vec::new();
    for t in req.topic_data {
        let topic = t.name.0.to_string();
        let denied = transaction
            .clone()
            .or_else(|| acl::authorize(b, caller, Operation::Write, Resource::topic(&topic)).err());
        for p in t.partition_data {
            let index = p.index;
            let admitted = async {
                if let Some(e) = &denied {
                    return Err(e.clone());
                }
                let partition = u32::try_from(index).map_err(|_| {
                    Error::UnknownPartition(format!("{topic}: no partition {index}"))
                })?;
                let batch = p.records.ok_or_else(|| Error::Batch {
                    fault: BatchFault::Corrupt,
                    message: format!("{topic}-{index}: no records"),
                })?;
                let req = svc::Produce { topic: topic.clone(), partition, batch, acks, timeout };
                svc::admit(b, req).await
            }
            .await;
            parts.push((topic.clone(), index, admitted));
        }
    }
    Admitted { parts }
}

impl Admitted {
    /// Waits for every batch's outcome; the response of `version`.
    /// Waits for every batch; NOT_LEADER answers name the leader as a client of the named
    /// `listener` reaches it.
    pub async fn finish(self, b: &Broker, listener: Option<&str>, version: i16) -> ProduceResponse {
        let results = join_all(self.parts.into_iter().map(|(topic, index, admitted)| async move {
            let r = match admitted {
                Ok(a) => a.finish().await,
                Err(e) => Err(e),
            };
            (topic, index, r)
        }))
        .await;
        response(b, listener, results, version)
    }
}

fn response(
    b: &Broker,
    listener: Option<&str>,
    results: Vec<(String, i32, Result<svc::Produced, Error>)>,
    version: i16,
) -> ProduceResponse {
    let mut responses: Vec<TopicProduceResponse> = Vec::new();
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for (topic, index, r) in results {
        let (base_offset, log_start_offset) =
            r.as_ref().map_or((-1, -1), |p| (p.base_offset, p.log_start_offset));
        let mut part = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(errors::code_of(&r))
            .with_base_offset(base_offset)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(log_start_offset);
        if let Err(e) = &r {
            tracing::debug!(topic = %topic, partition = index, "Kafka produce refused: {e}");
            if version >= 8 {
                part = part.with_error_message(Some(StrBytes::from_string(e.to_string())));
            }
            // Version 10 on (KIP-951): where the partition's leader is now, so the client
            // need not refresh its metadata first.
            if version >= 10 && errors::code(e) == errors::NOT_LEADER_OR_FOLLOWER {
                let hint =
                    u32::try_from(index).ok().and_then(|p| current_leader(b, listener, &topic, p));
                if let Some((id, epoch, host, port, rack)) = hint {
                    part = part.with_current_leader(
                        LeaderIdAndEpoch::default().with_leader_id(id).with_leader_epoch(epoch),
                    );
                    if !endpoints.iter().any(|n| n.node_id == id) {
                        endpoints.push(
                            NodeEndpoint::default()
                                .with_node_id(id)
                                .with_host(StrBytes::from_string(host))
                                .with_port(port)
                                .with_rack(rack.map(StrBytes::from_string)),
                        );
                    }
                }
            }
        }
        match responses.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partition_responses.push(part),
            None => responses.push(
                TopicProduceResponse::default()
                    .with_name(StrBytes::from_string(topic).into())
                    .with_partition_responses(vec![part]),
            ),
        }
    }
    ProduceResponse::default().with_responses(responses).with_node_endpoints(endpoints)
}
