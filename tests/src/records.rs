//! Record batches for tests: building them, numbering idempotent producers' sequences, and
//! decoding fetched batches into [`FetchedRecord`]s with their checksums verified.

use std::collections::HashMap;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use rafka_proto::batch;
pub use rafka_proto::batch::BatchHeader;
pub use rafka_proto::batch::Compression;
pub use rafka_proto::batch::Header;
pub use rafka_proto::batch::NewRecord;

/// One record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// Key, `None` for a null key.
    pub key: Option<Bytes>,
    /// Value, `None` for a null value.
    pub value: Option<Bytes>,
    /// Absolute timestamp.
    pub timestamp: i64,
    /// Headers in order.
    pub headers: Vec<Header>,
}

impl FetchedRecord {
    /// The value's bytes; empty for a null value.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch, now.
///
/// Tests stamp records with recent times: a broker deletes segments whose newest record is
/// older than `retention.ms` (7 days by default), and the harness checks retention twice a
/// second, so a fixed timestamp from years ago makes data vanish mid-test.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("timestamp fits i64")
}

/// A record with only a value and a timestamp.
pub fn value_record(value: impl Into<Bytes>, timestamp: i64) -> NewRecord {
    NewRecord { key: None, value: Some(value.into()), timestamp, headers: Vec::new() }
}

/// Encodes a Kafka RecordBatch v2 of `records` (see [`batch::build`]); `producer` is
/// (id, epoch, base sequence).
pub fn batch(
    records: &[NewRecord],
    producer: Option<(i64, i32, i32)>,
    compression: Compression,
) -> Bytes {
    let producer = producer.map(|(id, epoch, seq)| {
        (id, i16::try_from(epoch).expect("producer epochs fit int16"), seq)
    });
    batch::build(records, producer, compression)
}

/// Encodes a non-idempotent, uncompressed batch of `values`, timestamps `ts, ts + 1, ...`.
pub fn values_batch<V: AsRef<[u8]>>(values: &[V], ts: i64) -> Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| value_record(Bytes::copy_from_slice(v.as_ref()), ts + i as i64))
        .collect();
    batch(&records, None, Compression::None)
}

/// `sent` as a broker serves it from `base_offset`: the same bytes with baseOffset set (the
/// partition leader epoch aside: compare with [`without_epoch`] of what was fetched).
pub fn at_offset(sent: &Bytes, base_offset: i64) -> Bytes {
    let mut b = sent.to_vec();
    batch::set_base_offset(&mut b, base_offset);
    b.into()
}

/// `fetched` with its partition leader epoch (the leader's Raft term, which tests do not
/// predict) set back to -1, as producers send it.
pub fn without_epoch(fetched: &Bytes) -> Bytes {
    let mut b = fetched.to_vec();
    batch::set_partition_leader_epoch(&mut b, -1);
    b.into()
}

/// Whether `fetched` holds exactly the batch `sent`: every byte but the two a broker sets
/// (baseOffset, partitionLeaderEpoch), which lie outside the CRC.
pub fn same_batch(fetched: &[u8], sent: &[u8]) -> bool {
    fetched.len() == sent.len()
        && fetched.len() >= batch::HEADER_LEN
        && fetched[8..12] == sent[8..12]
        && fetched[16..] == sent[16..]
}

/// Decodes one fetched batch: verifies its checksum, structure and base offset (the one the
/// response gives it), decompresses it and returns its records with their offsets.
pub fn decode_batch(base_offset: i64, bytes: &Bytes) -> anyhow::Result<Vec<FetchedRecord>> {
    let h = batch::validate(bytes, usize::MAX)
        .with_context(|| format!("fetched batch at offset {base_offset} is invalid"))?;
    if h.base_offset != base_offset {
        bail!("fetched batch at offset {base_offset} says base offset {}", h.base_offset);
    }
    let records = batch::records(bytes)
        .with_context(|| format!("records of the fetched batch at offset {base_offset}"))?;
    Ok(records
        .into_iter()
        .map(|r| FetchedRecord {
            offset: base_offset + i64::from(r.offset_delta),
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers: r.headers,
        })
        .collect())
}

/// The header fields of an encoded batch (producer, sequence, count, crc).
pub fn header(bytes: &Bytes) -> anyhow::Result<BatchHeader> {
    BatchHeader::parse(bytes).context("not a record batch")
}

/// Numbers the batches of one idempotent producer: per partition, each batch's base
/// sequence follows the previous batch's last record.
#[derive(Debug, Clone)]
pub struct Sequencer {
    /// Producer id from `InitProducer`.
    pub producer_id: i64,
    /// Producer epoch from `InitProducer`.
    pub epoch: i32,
    next: HashMap<u32, i32>,
}

impl Sequencer {
    /// A producer identity with every partition's sequence at 0.
    pub fn new(producer_id: i64, epoch: i32) -> Sequencer {
        Sequencer { producer_id, epoch, next: HashMap::new() }
    }

    /// The next base sequence for `partition`.
    pub fn next_sequence(&self, partition: u32) -> i32 {
        self.next.get(&partition).copied().unwrap_or(0)
    }

    /// Encodes `records` as the next batch for `partition` and advances its sequence. Send
    /// the returned bytes again, unchanged, to retry.
    pub fn batch(
        &mut self,
        partition: u32,
        records: &[NewRecord],
        compression: Compression,
    ) -> Bytes {
        let seq = self.next_sequence(partition);
        let count = i32::try_from(records.len()).expect("batch size fits i32");
        self.next.insert(partition, seq.checked_add(count).expect("sequence overflow"));
        batch(records, Some((self.producer_id, self.epoch, seq)), compression)
    }
}

/// Checks that `records` are exactly the offsets `first..first + len`, in order.
pub fn check_dense(records: &[FetchedRecord], first: i64) -> anyhow::Result<()> {
    for (i, r) in records.iter().enumerate() {
        let want = first + i as i64;
        if r.offset != want {
            bail!("record #{i} has offset {} (expected {want}): offsets are not dense", r.offset);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_batch_numbers_records_and_rejects_corruption() {
        let mut bytes = values_batch(&["a", "b", "c"], 1_000).to_vec();
        batch::set_base_offset(&mut bytes, 40);
        let bytes = Bytes::from(bytes);
        let got = decode_batch(40, &bytes).unwrap();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![40, 41, 42]);
        assert_eq!(got[2].value.as_deref(), Some(&b"c"[..]));
        assert!(decode_batch(41, &bytes).is_err(), "a base offset the batch does not say");
        assert_eq!(got[2].timestamp, 1_002);
        check_dense(&got, 40).unwrap();
        assert!(check_dense(&got, 41).is_err());

        let mut bad = bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = decode_batch(40, &Bytes::from(bad)).unwrap_err();
        assert!(format!("{err:#}").contains("checksum"), "{err:#}");
    }

    #[test]
    fn sequencer_advances_per_partition() {
        let mut s = Sequencer::new(7, 3);
        let recs = vec![value_record("x", 1); 4];
        let b0 = header(&s.batch(0, &recs, Compression::Lz4)).unwrap();
        let b1 = header(&s.batch(0, &recs[..1], Compression::None)).unwrap();
        let c0 = header(&s.batch(5, &recs, Compression::Zstd)).unwrap();
        assert_eq!((b0.producer_id, b0.producer_epoch, b0.base_sequence), (7, 3, 0));
        assert_eq!(b0.compression().unwrap(), Compression::Lz4);
        assert_eq!(b1.base_sequence, 4);
        assert_eq!(c0.base_sequence, 0);
        assert_eq!(s.next_sequence(0), 5);
    }
}
