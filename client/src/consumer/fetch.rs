//! One fetch round of a [`Consumer`]: every owned partition with a position is fetched at
//! once (each a long poll at its leader); the round ends as soon as one returns records,
//! taking along the others already done. Every batch's CRC is checked before decoding.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_proto::ErrorCode;
use rafka_proto::batch;

use super::Consumer;
use super::ConsumerRecord;
use super::membership::Tp;
use crate::data::FetchResult;
use crate::error::Error;
use crate::error::Result;

/// After the first partition with records, how long the round waits for others already on
/// their way.
const GATHER: Duration = Duration::from_millis(5);

impl Consumer {
    /// Fetches owned partitions once, waiting up to `wait` for data; advances positions past
    /// what it returns. An out-of-range position is reset per `auto_offset_reset`.
    pub(super) async fn fetch_round(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>> {
        let client = &self.client;
        let max_bytes = self.config.fetch_max_bytes;
        let mut pending: FuturesUnordered<_> = self
            .positions
            .iter()
            .filter_map(|(tp, pos)| pos.map(|pos| (tp.clone(), pos)))
            .map(|(tp, pos)| async move {
                let r = client.fetch(&tp.0, tp.1, pos, max_bytes, wait).await;
                (tp, pos, r)
            })
            .collect();
        let mut done = Vec::new();
        while let Some(item) = pending.next().await {
            let has_data = matches!(&item.2, Ok(f) if !f.batches.is_empty());
            done.push(item);
            if has_data {
                while let Ok(Some(item)) = tokio::time::timeout(GATHER, pending.next()).await {
                    done.push(item);
                }
                break;
            }
        }
        drop(pending);
        let mut out = Vec::new();
        for (tp, pos, r) in done {
            let fetched = match r {
                Ok(f) => f,
                Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) => {
                    let reset = self.reset_position(&tp).await?;
                    tracing::info!(?tp, pos, reset, "position out of range; reset");
                    self.positions.insert(tp, Some(reset));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let next = decode(&tp, pos, fetched, &mut out)?;
            if let Some(p) = self.positions.get_mut(&tp) {
                *p = Some(next);
            }
        }
        Ok(out)
    }
}

/// Appends the records of `fetched` at or after `pos` to `out`; returns the next position.
fn decode(tp: &Tp, pos: i64, fetched: FetchResult, out: &mut Vec<ConsumerRecord>) -> Result<i64> {
    let mut next = pos;
    for (base, bytes) in fetched.batches {
        let (records, count) = decode_batch(tp, base, bytes)?;
        for r in records {
            let offset = base + i64::from(r.offset_delta);
            if offset < next {
                continue;
            }
            out.push(ConsumerRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
            });
        }
        next = next.max(base + i64::from(count));
    }
    Ok(next)
}

/// Checks one fetched batch (its checksum, structure and base offset) and decodes it: its
/// records and record count.
fn decode_batch(tp: &Tp, base: i64, bytes: Bytes) -> Result<(Vec<batch::Record>, i32)> {
    let corrupt = |e: String| {
        Error::Protocol(format!("{}-{}: corrupt batch at offset {base}: {e}", tp.0, tp.1))
    };
    let h = batch::validate(&bytes, usize::MAX).map_err(|e| corrupt(e.to_string()))?;
    if h.base_offset != base {
        return Err(corrupt(format!("the batch says base offset {}", h.base_offset)));
    }
    let records = batch::records(&bytes).map_err(|e| corrupt(e.to_string()))?;
    Ok((records, h.records_count))
}

#[cfg(test)]
mod tests {
    use rafka_proto::batch::Compression;
    use rafka_proto::batch::Header;
    use rafka_proto::batch::NewRecord;

    use super::*;

    fn encoded(values: &[&str]) -> Bytes {
        let records: Vec<NewRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| NewRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(v.to_string())),
                timestamp: 1000 + i as i64,
                headers: vec![
                    Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) },
                    Header { key: "n".into(), value: None },
                ],
            })
            .collect();
        batch::build(&records, None, Compression::Lz4)
    }

    fn at(base: i64, b: Bytes) -> Bytes {
        let mut b = b.to_vec();
        batch::set_base_offset(&mut b, base);
        b.into()
    }

    #[test]
    fn records_before_the_position_are_skipped_and_fields_survive() {
        let tp = ("t".to_string(), 0);
        let fetched = FetchResult {
            high_watermark: 13,
            log_start_offset: 0,
            batches: vec![(10, at(10, encoded(&["a", "b", "c"])))],
        };
        let mut out = Vec::new();
        let next = decode(&tp, 11, fetched, &mut out).unwrap();
        assert_eq!(next, 13);
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![11, 12]);
        assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(out[0].value.as_deref(), Some(&b"b"[..]));
        assert_eq!(out[0].timestamp, 1001);
        assert_eq!(
            out[0].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"x"))), ("n".to_string(), None)]
        );
        let wrong_base = FetchResult {
            high_watermark: 13,
            log_start_offset: 0,
            batches: vec![(10, at(9, encoded(&["a"])))],
        };
        let err = decode(&tp, 10, wrong_base, &mut out).unwrap_err();
        assert!(err.to_string().contains("base offset 9"), "{err}");
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let mut bytes = encoded(&["a"]).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tp = ("t".to_string(), 0);
        let err = decode_batch(&tp, 0, bytes.into()).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    }
}
