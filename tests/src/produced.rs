//! [`Produced`]: a record of what a test wrote to one partition, to check reads against.

use bytes::Bytes;
use rafka_proto::batch::Compression;
use rafka_proto::batch::NewRecord;
use rafka_proto::v1::Acks;

use crate::FetchedRecord;
use crate::TestClient;
use crate::records;
use crate::records::check_dense;

/// The value of the record at `offset`: says its offset, padded to `len` bytes.
pub fn value(offset: i64, len: usize) -> Bytes {
    let mut v = format!("record {offset:010} ").into_bytes();
    v.resize(len.max(v.len()), b'a' + (offset % 26) as u8);
    Bytes::from(v)
}

/// One batch as it was produced.
#[derive(Debug, Clone, Copy)]
pub struct SentBatch {
    /// Offset of its first record.
    pub base: i64,
    /// Encoded size.
    pub bytes: usize,
    /// Timestamp of its records.
    pub timestamp: i64,
}

/// Everything produced to one partition, in offset order from 0.
#[derive(Debug, Default)]
pub struct Produced {
    /// Per offset: value and timestamp.
    pub records: Vec<(Bytes, i64)>,
    /// Per batch, in offset order.
    pub batches: Vec<SentBatch>,
}

impl Produced {
    /// The offset after the last record produced.
    pub fn end(&self) -> i64 {
        self.records.len() as i64
    }

    /// Produces `batches` batches of `per_batch` records of `len` bytes, all stamped `ts`,
    /// each acknowledged by a quorum, and checks they get the next offsets.
    pub async fn append(
        &mut self,
        client: &TestClient,
        topic: &str,
        partition: u32,
        batches: usize,
        (per_batch, len): (usize, usize),
        ts: i64,
    ) {
        for _ in 0..batches {
            let base = self.end();
            let recs: Vec<NewRecord> = (0..per_batch as i64)
                .map(|k| records::value_record(value(base + k, len), ts))
                .collect();
            let batch = records::batch(&recs, None, Compression::None);
            let bytes = batch.len();
            let got = client.must_produce(topic, partition, batch, Acks::All).await;
            assert_eq!(got, base, "{topic}/{partition}: base offset of a batch");
            self.records.extend(recs.into_iter().map(|r| (r.value.unwrap_or_default(), ts)));
            self.batches.push(SentBatch { base, bytes, timestamp: ts });
        }
    }

    /// Checks that `got` is exactly what was produced from offset `from` to the end.
    pub fn check_from(&self, got: &[FetchedRecord], from: i64, what: &str) {
        check_dense(got, from).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(
            got.len() as i64,
            self.end() - from,
            "{what}: records from offset {from} to the end ({})",
            self.end()
        );
        for r in got {
            let (v, ts) = &self.records[r.offset as usize];
            assert!(r.value_bytes() == v, "{what}: the value at offset {} changed", r.offset);
            assert_eq!(r.timestamp, *ts, "{what}: the timestamp at offset {}", r.offset);
        }
    }
}
