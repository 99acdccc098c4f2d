//! Fetch: the stored Kafka batches of each partition, as stored (with their base offset and
//! leader epoch set), one long poll for the whole request (`max_wait_ms`, `min_bytes`),
//! the response bounded by `max_bytes` but never empty when data exists. No fetch sessions:
//! the session id is always 0, so clients send full requests. The last stable offset is the
//! high watermark (no transactions). Each topic needs Read: the partitions of one the caller
//! may not read are answered TOPIC_AUTHORIZATION_FAILED, unread.

use std::time::Duration;

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::fetch_response::LeaderIdAndEpoch;
use kafka_protocol::messages::fetch_response::PartitionData;

use super::errors;
use super::metadata::current_leader;
use crate::acl::Caller;
use crate::acl::Operation;
use crate::acl::Resource;
use crate::broker::Broker;
use crate::error::Error;
use crate::partition::ReadResult;
use crate::service::acl;
use crate::service::data as svc;

/// One partition of the request.
struct Wanted {
    topic: TopicName,
    partition: i32,
    /// Why the caller may not read it.
    denied: Option<Error>,
}

/// Answers `req`.
pub async fn handle(b: &Broker, caller: &Caller, req: FetchRequest, version: i16) -> FetchResponse {
    let mut wanted = Vec::new();
    let mut reads = Vec::new();
    for t in &req.topics {
        let denied = acl::authorize(b, caller, Operation::Read, Resource::topic(&t.topic.0)).err();
        for p in &t.partitions {
            wanted.push(Wanted {
                topic: t.topic.clone(),
                partition: p.partition,
                denied: denied.clone(),
            });
            if denied.is_some() {
                continue;
            }
            reads.push(svc::Fetch {
                topic: t.topic.0.to_string(),
                // A negative partition is no partition: u32::MAX never exists.
                partition: u32::try_from(p.partition).unwrap_or(u32::MAX),
                offset: p.fetch_offset,
                max_bytes: u32::try_from(p.partition_max_bytes.max(1)).unwrap_or(1),
                max_wait: Duration::ZERO,
                min_bytes: 0,
                allow_follower: false,
            });
        }
    }
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let mut results = svc::fetch_many(b, &reads, wait, min_bytes).await.into_iter();
    // The response's bound; the first partition with data is returned whole regardless.
    let mut budget = usize::try_from(req.max_bytes).unwrap_or(0);
    let mut first = true;
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for w in wanted {
        let r = match w.denied {
            Some(e) => Err(e),
            None => {
                results.next().unwrap_or_else(|| Err(Error::Internal("a read went missing".into())))
            }
        };
        // Version 12 on (KIP-951): where a partition's leader is now, on NOT_LEADER.
        let leader = match &r {
            Err(e) if version >= 12 && errors::code(e) == errors::NOT_LEADER_OR_FOLLOWER => {
                u32::try_from(w.partition)
                    .ok()
                    .and_then(|p| current_leader(b, None, w.topic.0.as_str(), p))
                    .map(|(id, epoch, ..)| {
                        LeaderIdAndEpoch::default().with_leader_id(id).with_leader_epoch(epoch)
                    })
            }
            _ => None,
        };
        let mut data = partition_data(w.partition, r, &mut budget, &mut first);
        if let Some(l) = leader {
            data = data.with_current_leader(l);
        }
        match topics.last_mut() {
            Some(t) if t.topic == w.topic => t.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default().with_topic(w.topic).with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default().with_responses(topics)
}

fn partition_data(
    partition: i32,
    r: Result<ReadResult, Error>,
    budget: &mut usize,
    first: &mut bool,
) -> PartitionData {
    let out = PartitionData::default().with_partition_index(partition);
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            let (hw, start) =
                e.watermarks().map_or((-1, -1), |w| (w.high_watermark, w.log_start_offset));
            return out
                .with_error_code(errors::code(&e))
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(start)
                .with_records(Some(Bytes::new()));
        }
    };
    let mut records = BytesMut::new();
    for batch in &r.batches {
        if !*first && batch.batch.len() > *budget {
            break;
        }
        *first = false;
        *budget = budget.saturating_sub(batch.batch.len());
        records.put_slice(&batch.batch);
    }
    out.with_error_code(errors::NONE)
        .with_high_watermark(r.high_watermark)
        .with_last_stable_offset(r.high_watermark)
        .with_log_start_offset(r.log_start_offset)
        .with_records(Some(records.freeze()))
}
