//! After healing: every replica's whole log, read back as `FinalRead` ops for the checker.
//!
//! For each partition, the leader's high watermark is read first; then every replica is
//! polled (follower fetches) until its own high watermark has reached it, so the replicas are
//! compared over the same committed prefix, and each is read from offset 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rafka_proto::ErrorCode;
use rafka_proto::ErrorExt;
use rafka_proto::v1::FetchRequest;

use super::history::Call;
use super::history::History;
use crate::TestClient;
use crate::records::decode_batch;

/// Reads every replica of every partition of `topic` and records a `FinalRead` per replica.
/// Fails when a partition has no leader or a replica does not catch up within `timeout`.
pub async fn final_reads(
    history: &Arc<History>,
    client: &TestClient,
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    // Moves and disk replacements under way must finish: the replicas read below are then
    // the final voters.
    crate::poll("every reassignment to complete after healing", timeout, || async {
        let md = client.metadata(&[topic]).await?;
        let moving: Vec<u32> = md
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| !p.target_replicas.is_empty())
            .map(|p| p.partition)
            .collect();
        if moving.is_empty() { Ok(()) } else { anyhow::bail!("partitions {moving:?} moving") }
    })
    .await?;
    for partition in 0..partitions {
        let (leader, _) = client
            .wait_for_leader(topic, partition, timeout, |_| true)
            .await
            .with_context(|| format!("{topic}/{partition} has no leader after healing"))?;
        let md = client.metadata(&[topic]).await?;
        let info = md
            .topics
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
            .with_context(|| format!("{topic}/{partition} missing from metadata"))?;
        let addr_of =
            |id: u64| md.brokers.iter().find(|b| b.broker_id == id).map(|b| b.address.clone());
        // The leader's committed end: what every replica must reach.
        let leader_hw = client.fetch(topic, partition, 0).await?.high_watermark;
        for &replica in &info.replicas {
            let addr = addr_of(replica).with_context(|| format!("replica {replica} unknown"))?;
            let hw = crate::poll(
                &format!("replica {replica} of {topic}/{partition} reaching offset {leader_hw}"),
                timeout,
                || async {
                    let r = follower_fetch(client, &addr, topic, partition, 0).await?;
                    if r.0 >= leader_hw { Ok(r.0) } else { Err(anyhow::anyhow!("at {}", r.0)) }
                },
            )
            .await?;
            let mut records = Vec::new();
            let mut batches = Vec::new();
            let mut next = 0;
            while next < hw {
                let (_, fetched) = follower_fetch(client, &addr, topic, partition, next).await?;
                anyhow::ensure!(
                    !fetched.is_empty(),
                    "replica {replica} of {topic}/{partition}: nothing at {next} below {hw}"
                );
                for b in fetched {
                    let decoded = decode_batch(b.base_offset, &b.batch)?;
                    batches.push((b.base_offset, crc32c::crc32c(&b.batch)));
                    for r in decoded {
                        if r.offset >= next && r.offset < hw {
                            records
                                .push((r.offset, String::from_utf8_lossy(r.value_bytes()).into()));
                        }
                    }
                    next = next.max(records.last().map_or(next, |(o, _)| o + 1));
                }
                // A batch holding no record at or after `next` would loop forever.
                anyhow::ensure!(
                    records.last().is_some_and(|(o, _)| *o + 1 == next),
                    "replica {replica} of {topic}/{partition}: no progress at {next}"
                );
            }
            batches.retain(|(base, _)| *base < hw);
            let call = Call::FinalRead {
                partition,
                replica,
                leader: replica == leader,
                high_watermark: hw,
                records,
                batches,
            };
            history.ok("final", call);
        }
    }
    Ok(())
}

/// One fetch answered by broker `addr` whether or not it leads: `(high watermark, batches)`.
pub async fn follower_fetch(
    client: &TestClient,
    addr: &str,
    topic: &str,
    partition: u32,
    offset: i64,
) -> anyhow::Result<(i64, Vec<rafka_proto::v1::FetchedBatch>)> {
    let req = FetchRequest {
        topic: topic.to_string(),
        partition,
        offset,
        allow_follower: true,
        ..Default::default()
    };
    let resp = client.data_at(addr)?.fetch(req).await?.into_inner();
    let code = resp.error.as_ref().map_or(ErrorCode::None, |e| e.error_code());
    match code {
        ErrorCode::None => Ok((resp.high_watermark, resp.batches)),
        // Asked at or past its end while still catching up.
        ErrorCode::OffsetOutOfRange => Ok((resp.high_watermark, Vec::new())),
        c => anyhow::bail!("fetch at {addr} of {topic}/{partition} at {offset}: {c:?}"),
    }
}
