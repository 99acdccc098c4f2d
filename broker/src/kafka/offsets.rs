//! ListOffsets (earliest, latest, by timestamp; Describe on each topic) and InitProducerId
//! (idempotent producers: IdempotentWrite on the cluster or Write on some topic).

use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::messages::InitProducerIdResponse;
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::ListOffsetsResponse;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse;

use super::controller;
use super::errors;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::partition::OffsetSpec;
use crate::service::acl;
use crate::service::data as svc;

/// ListOffsets' timestamp for "the next offset to be written".
const LATEST: i64 = -1;
/// ListOffsets' timestamp for "the first offset retained".
const EARLIEST: i64 = -2;
/// ListOffsets' timestamp (v7+) for "the record with the largest timestamp".
const MAX_TIMESTAMP: i64 = -3;

/// Answers `req` (of `version`).
pub async fn list_offsets(
    b: &Broker,
    caller: &Caller,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let topic = t.name.0.to_string();
        let denied = acl::authorize(b, caller, Operation::Describe, Resource::topic(&topic)).err();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let spec = match p.timestamp {
                _ if let Some(e) = &denied => Err(e.clone()),
                LATEST => Ok(OffsetSpec::Latest),
                EARLIEST => Ok(OffsetSpec::Earliest),
                MAX_TIMESTAMP if version >= 7 => Ok(OffsetSpec::MaxTimestamp),
                ts if ts >= 0 => Ok(OffsetSpec::Timestamp(ts)),
                ts => Err(Error::InvalidRequest(format!("unsupported ListOffsets timestamp {ts}"))),
            };
            let r = match (spec, u32::try_from(p.partition_index)) {
                (Ok(spec), Ok(partition)) => {
                    svc::list_offsets(b, &topic, partition, Some(spec), false)
                        .await
                        .map(|found| (partition, found))
                }
                (Err(e), _) => Err(e),
                (_, Err(_)) => Err(Error::UnknownPartition(format!("{topic}: no partition"))),
            };
            let mut out =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            match r {
                Ok((partition, (offset, timestamp))) => {
                    out = out.with_offset(offset).with_timestamp(timestamp);
                    if version >= 4
                        && let Ok((_, part)) = b.route(&topic, partition)
                    {
                        out = out.with_leader_epoch(crate::partition::leader_epoch(
                            part.group.current_term(),
                        ));
                    }
                }
                Err(e) => {
                    out = out.with_error_code(errors::code(&e)).with_offset(-1).with_timestamp(-1);
                }
            }
            partitions.push(out);
        }
        topics.push(
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Answers `req`: a fresh producer id for an idempotent producer. Transactional producers
/// are refused (transactions are not served).
pub async fn init_producer_id(
    b: &Broker,
    caller: &Caller,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let out = InitProducerIdResponse::default();
    if req.transactional_id.is_none() && !acl::allows_idempotent_write(b, caller) {
        let e = acl::denied(caller, Operation::IdempotentWrite, Resource::cluster());
        return out
            .with_error_code(errors::code(&e))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if req.transactional_id.is_some() {
        return out
            .with_error_code(errors::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match controller::init_producer(b).await {
        Ok((id, epoch)) => out
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(i16::try_from(epoch).unwrap_or(i16::MAX)),
        Err(e) => out
            .with_error_code(errors::code(&e))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
