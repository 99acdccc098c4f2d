//! The payload of a partition log entry: one record batch exactly as the producer sent it.
//!
//! # Format
//!
//! ```text
//! kind u8 | record_count u32 | max_timestamp i64 | producer_id i64 | producer_epoch i32 |
//! base_sequence i32 | batch bytes
//! ```
//!
//! All integers little-endian. `kind` is the batch's format: 2 for a Kafka RecordBatch v2
//! (what brokers write once the cluster's batch format is 2), 1 for rafka's older protobuf
//! `RecordBatch` (written before, and while a cluster is upgrading). The header repeats what
//! the broker validated in the batch so that reading an entry (fetch, apply, recovery) never
//! parses the batch again.

use std::fmt;
use std::io;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use rafka_proto::batch;
use rafka_proto::legacy;
use rafka_raft::LogPayload;

use crate::error::Result;

const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 4 + 4;

/// The newest batch format this build reads and writes; brokers write it once every broker
/// of the cluster supports it.
pub const BATCH_FORMAT: u32 = 2;

/// The format of a stored batch (the entry's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rafka's protobuf `RecordBatch` (magic 1).
    Legacy = 1,
    /// Kafka's RecordBatch v2.
    Kafka = 2,
}

/// What validation found in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub record_count: u32,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub base_sequence: i32,
}

impl BatchInfo {
    fn of_kafka(h: &batch::BatchHeader) -> BatchInfo {
        BatchInfo {
            // Validation checked the count is at least 1.
            record_count: h.records_count as u32,
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch.into(),
            base_sequence: h.base_sequence,
        }
    }

    fn of_legacy(i: legacy::BatchInfo) -> BatchInfo {
        BatchInfo {
            record_count: i.record_count,
            max_timestamp: i.max_timestamp,
            producer_id: i.producer_id,
            producer_epoch: i.producer_epoch,
            base_sequence: i.base_sequence,
        }
    }
}

/// A record batch in the partition log.
#[derive(Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// What validation found in the batch.
    pub info: BatchInfo,
    pub format: Format,
    /// The batch, byte for byte as produced (or as converted at produce).
    pub batch: Bytes,
}

impl PartitionEntry {
    /// Validates a produced batch — a Kafka RecordBatch v2, or rafka's older format from an
    /// old client — against `max_bytes`, and makes the entry to store in `cluster_format`
    /// (the controller's batch format): Kafka batches are stored as sent once the format is
    /// 2; old-format batches are converted to Kafka's then; until then Kafka batches are
    /// converted down, so that no broker is sent an entry it cannot read.
    pub fn produced(bytes: Bytes, max_bytes: usize, cluster_format: u32) -> Result<Self> {
        if legacy::is_legacy(&bytes) {
            let info = BatchInfo::of_legacy(legacy::validate_records(&bytes, max_bytes)?);
            if cluster_format < Format::Kafka as u32 {
                return Ok(PartitionEntry { info, format: Format::Legacy, batch: bytes });
            }
            let batch = legacy::to_v2(&bytes)?;
            return Ok(PartitionEntry { info, format: Format::Kafka, batch });
        }
        let h = batch::validate_records(&bytes, max_bytes)?;
        let info = BatchInfo::of_kafka(&h);
        if cluster_format < Format::Kafka as u32 {
            let batch = legacy::from_v2(&bytes)?;
            return Ok(PartitionEntry { info, format: Format::Legacy, batch });
        }
        Ok(PartitionEntry { info, format: Format::Kafka, batch: bytes })
    }

    /// The batch as a Kafka RecordBatch v2 with its base offset and leader epoch set (both
    /// outside the checksum): stored Kafka batches are copied, not re-encoded; old-format
    /// batches are converted.
    pub fn to_kafka(&self, base_offset: i64, leader_epoch: i32) -> io::Result<Bytes> {
        let mut out = match self.format {
            Format::Kafka => BytesMut::from(&self.batch[..]),
            Format::Legacy => BytesMut::from(
                &legacy::to_v2(&self.batch)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?[..],
            ),
        };
        if out.len() < batch::HEADER_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "stored batch truncated"));
        }
        batch::set_base_offset(&mut out, base_offset);
        batch::set_partition_leader_epoch(&mut out, leader_epoch);
        Ok(out.freeze())
    }

    /// The batch's records with their timestamps.
    pub fn records(&self) -> io::Result<Vec<batch::Record>> {
        let bad = |e: &dyn fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        match self.format {
            Format::Kafka => batch::records(&self.batch).map_err(|e| bad(&e)),
            Format::Legacy => {
                let v2 = legacy::to_v2(&self.batch).map_err(|e| bad(&e))?;
                batch::records(&v2).map_err(|e| bad(&e))
            }
        }
    }
}

impl fmt::Debug for PartitionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for PartitionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch({} records, {} bytes, format {}, producer {}/{}/{})",
            self.info.record_count,
            self.batch.len(),
            self.format as u8,
            self.info.producer_id,
            self.info.producer_epoch,
            self.info.base_sequence
        )
    }
}

impl PartitionEntry {
    /// Sequence number of the batch's last record (idempotent batches).
    pub fn last_sequence(&self) -> i64 {
        self.info.base_sequence as i64 + self.info.record_count as i64 - 1
    }
}

impl LogPayload for PartitionEntry {
    fn record_count(&self) -> u32 {
        self.info.record_count
    }

    fn max_timestamp(&self) -> i64 {
        self.info.max_timestamp
    }

    fn encoded_len(&self) -> usize {
        HEADER_LEN + self.batch.len()
    }

    fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_u8(self.format as u8);
        buf.put_u32_le(self.info.record_count);
        buf.put_i64_le(self.info.max_timestamp);
        buf.put_i64_le(self.info.producer_id);
        buf.put_i32_le(self.info.producer_epoch);
        buf.put_i32_le(self.info.base_sequence);
        buf.put_slice(&self.batch);
    }

    fn decode(mut bytes: Bytes) -> io::Result<Self> {
        if bytes.len() < HEADER_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "partition entry truncated"));
        }
        let format = match bytes.get_u8() {
            1 => Format::Legacy,
            2 => Format::Kafka,
            kind => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown partition entry kind {kind}"),
                ));
            }
        };
        let info = BatchInfo {
            record_count: bytes.get_u32_le(),
            max_timestamp: bytes.get_i64_le(),
            producer_id: bytes.get_i64_le(),
            producer_epoch: bytes.get_i32_le(),
            base_sequence: bytes.get_i32_le(),
        };
        Ok(PartitionEntry { info, format, batch: bytes })
    }
}

#[cfg(test)]
mod tests {
    use rafka_proto::ErrorCode;
    use rafka_proto::batch::Compression;
    use rafka_proto::batch::Header;
    use rafka_proto::batch::NewRecord;

    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        for format in [Format::Legacy, Format::Kafka] {
            let e = PartitionEntry {
                info: BatchInfo {
                    record_count: 3,
                    max_timestamp: 99,
                    producer_id: 7,
                    producer_epoch: 2,
                    base_sequence: 10,
                },
                format,
                batch: Bytes::from_static(b"batch-bytes"),
            };
            let mut buf = BytesMut::new();
            e.encode(&mut buf);
            assert_eq!(buf.len(), e.encoded_len());
            assert_eq!(buf[0], format as u8);
            let back = PartitionEntry::decode(buf.clone().freeze()).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.last_sequence(), 12);
            assert!(PartitionEntry::decode(buf.freeze().slice(..HEADER_LEN - 1)).is_err());
            let mut bad = BytesMut::new();
            e.encode(&mut bad);
            bad[0] = 9;
            assert!(PartitionEntry::decode(bad.freeze()).is_err());
        }
    }

    fn kafka_records(null_value: bool) -> Vec<NewRecord> {
        (0..4)
            .map(|i| NewRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: (!(null_value && i == 3)).then(|| Bytes::from(format!("v{i}"))),
                timestamp: 1_000 + i,
                headers: vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"x")) }],
            })
            .collect()
    }

    /// Kafka batches are stored as sent at format 2 and served with only the base offset
    /// and leader epoch changed; at format 1 they are converted down, and what a format-1
    /// entry serves reads back as the same records.
    #[test]
    fn kafka_batches_by_cluster_format() {
        let sent = batch::build(&kafka_records(false), Some((5, 1, 0)), Compression::Gzip);
        let e = PartitionEntry::produced(sent.clone(), 1 << 20, 2).unwrap();
        assert_eq!((e.format, &e.batch), (Format::Kafka, &sent));
        assert_eq!(
            e.info,
            BatchInfo {
                record_count: 4,
                max_timestamp: 1_003,
                producer_id: 5,
                producer_epoch: 1,
                base_sequence: 0
            }
        );
        let served = e.to_kafka(40, 3).unwrap();
        assert_eq!(served[16..], sent[16..], "only baseOffset..partitionLeaderEpoch change");
        let h = batch::validate(&served, usize::MAX).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (40, 3));

        let old = PartitionEntry::produced(sent.clone(), 1 << 20, 1).unwrap();
        assert_eq!(old.format, Format::Legacy);
        assert_eq!(old.info, e.info);
        assert_eq!(old.records().unwrap(), e.records().unwrap());
        let h = batch::validate(&old.to_kafka(40, 3).unwrap(), usize::MAX).unwrap();
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (5, 1, 0));

        let tombstone = batch::build(&kafka_records(true), None, Compression::None);
        assert!(PartitionEntry::produced(tombstone.clone(), 1 << 20, 2).is_ok());
        let refused = PartitionEntry::produced(tombstone, 1 << 20, 1).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::UnsupportedForMessageFormat, "{refused}");
    }

    /// Old clients' batches are converted to Kafka's at format 2 and kept at format 1.
    #[test]
    fn legacy_batches_by_cluster_format() {
        let records: Vec<legacy::NewRecord> = (0..3)
            .map(|i| legacy::NewRecord {
                key: None,
                value: Bytes::from(format!("v{i}")),
                timestamp: 2_000 - i,
                headers: vec![("h".into(), Bytes::new())],
            })
            .collect();
        let sent: Bytes = prost::Message::encode_to_vec(&legacy::build(
            &records,
            Some((9, 2, 7)),
            rafka_proto::v1::Compression::Zstd,
        ))
        .into();
        let kept = PartitionEntry::produced(sent.clone(), 1 << 20, 1).unwrap();
        assert_eq!((kept.format, &kept.batch), (Format::Legacy, &sent));
        let converted = PartitionEntry::produced(sent, 1 << 20, 2).unwrap();
        assert_eq!(converted.format, Format::Kafka);
        assert_eq!(converted.info, kept.info);
        let h = batch::validate_records(&converted.batch, usize::MAX).unwrap();
        assert_eq!(h.compression().unwrap(), Compression::Zstd);
        let got = converted.records().unwrap();
        assert_eq!(got, kept.records().unwrap());
        assert_eq!(got.iter().map(|r| r.timestamp).collect::<Vec<_>>(), [2_000, 1_999, 1_998]);
        assert_eq!(got[1].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(got[2].headers, [Header { key: "h".into(), value: Some(Bytes::new()) }]);
        let too_big = PartitionEntry::produced(converted.batch.clone(), 10, 2).unwrap_err();
        assert_eq!(too_big.code(), ErrorCode::MessageTooLarge);
    }
}
