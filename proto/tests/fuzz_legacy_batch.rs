//! Fuzzing of rafka's older batch format (`rafka_proto::legacy`), which brokers still accept
//! from old clients: the first thing a broker runs on such untrusted produce bytes.
//!
//! Proves, with proptest:
//! - arbitrary bytes, and arbitrary (possibly sealed) `RecordBatch` messages, never make
//!   [`validate`] or [`validate_records`] panic; an accepted batch decodes, its
//!   [`BatchInfo`] is its header, and [`validate`] accepts exactly what its documented rules
//!   allow;
//! - every batch [`build`] makes (random keys, null keys, values, headers, timestamps,
//!   producer fields, each compression) validates with the right count and decodes back to
//!   its records;
//! - every single-byte flip, overwrite, insertion, deletion, truncation or extension of a
//!   valid batch is refused or leaves the checksummed content unchanged, and any flip inside
//!   the `records` block is refused by the checksum;
//! - a corrupted batch re-sealed with a correct checksum (what a hostile producer sends)
//!   never panics the decompressors or the decoder, and whatever [`validate_records`]
//!   accepts, [`records`] can read.
//!
//! Each property runs 2000 cases by default (about 10 s for the file in the dev profile).
//! Scale with `PROPTEST_CASES=N` (every property runs N cases instead); a failure prints
//! the minimal input, and proptest stores its seed in `fuzz_batch.proptest-regressions` to
//! replay it first next time.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use rafka_proto::legacy::BatchError;
use rafka_proto::legacy::BatchInfo;
use rafka_proto::legacy::MAGIC;
use rafka_proto::legacy::NewRecord;
use rafka_proto::legacy::build;
use rafka_proto::legacy::checksum;
use rafka_proto::legacy::records;
use rafka_proto::legacy::seal;
use rafka_proto::legacy::validate;
use rafka_proto::legacy::validate_records;
use rafka_proto::v1::Compression;
use rafka_proto::v1::RecordBatch;

/// Large enough that no generated batch is refused for size unless a test asks for it.
const MAX: usize = 1 << 20;

/// `PROPTEST_CASES` when set, else `default`: each property picks a default that keeps the
/// whole file within seconds in the dev profile.
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(v) => v.trim().parse().unwrap_or_else(|e| panic!("PROPTEST_CASES={v:?}: {e}")),
        Err(_) => default,
    }
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(default_cases), ..ProptestConfig::default() }
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)]
}

/// Timestamps around now and around zero, negative included. Bounded so that the spread of
/// one batch fits an i64 delta: [`build`] subtracts the smallest timestamp from each one.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        1_600_000_000_000i64..1_900_000_000_000,
        -1_000i64..1_000,
        -(1i64 << 60)..(1i64 << 60),
    ]
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        proptest::collection::vec(any::<u8>(), 0..256),
        timestamp(),
        proptest::collection::vec((".{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..4),
    )
        .prop_map(|(key, value, timestamp, headers)| NewRecord {
            key: key.map(Bytes::from),
            value: value.into(),
            timestamp,
            headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        })
}

/// `(producer id, epoch, base sequence)` of an idempotent producer, or none.
fn producer() -> impl Strategy<Value = Option<(i64, i32, i32)>> {
    proptest::option::of((0..=i64::MAX, 0..=i32::MAX, 0..=i32::MAX))
}

/// A valid sealed batch, with the records and producer it was built from.
fn valid_batch() -> impl Strategy<Value = (RecordBatch, Vec<NewRecord>, Option<(i64, i32, i32)>)> {
    valid_batch_of(producer())
}

/// [`valid_batch`] with the producer fields from `producer`.
fn valid_batch_of(
    producer: impl Strategy<Value = Option<(i64, i32, i32)>>,
) -> impl Strategy<Value = (RecordBatch, Vec<NewRecord>, Option<(i64, i32, i32)>)> {
    (proptest::collection::vec(new_record(), 1..12), producer, compression())
        .prop_map(|(recs, producer, c)| (build(&recs, producer, c), recs, producer))
}

/// An arbitrary `RecordBatch`: a valid batch with each header field replaced, one time in
/// five, by a value near the edges of its rule or by anything, its records block sometimes
/// replaced by random bytes, and sealed (correct checksum) most of the time, so that every
/// check of [`validate`] decides some cases and some batches pass them all.
fn arbitrary_batch() -> impl Strategy<Value = RecordBatch> {
    fn maybe<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
        proptest::option::weighted(0.2, s)
    }
    let u32_edge = || prop_oneof![0u32..3, any::<u32>()];
    let i64_edge = || prop_oneof![-2i64..2, any::<i64>()];
    let i32_edge = || prop_oneof![-2i32..2, any::<i32>()];
    (
        valid_batch(),
        (maybe(u32_edge()), maybe(i64_edge()), maybe(i32_edge()), maybe(i32_edge())),
        (maybe(timestamp()), maybe(timestamp()), maybe(u32_edge()), maybe(i32_edge())),
        maybe(proptest::collection::vec(any::<u8>(), 0..512)),
        proptest::option::weighted(0.2, any::<u32>()),
    )
        .prop_map(|((mut b, _, _), header, more, recs, crc)| {
            let (magic, id, epoch, seq) = header;
            let (base, max, count, comp) = more;
            b.magic = magic.unwrap_or(b.magic);
            b.producer_id = id.unwrap_or(b.producer_id);
            b.producer_epoch = epoch.unwrap_or(b.producer_epoch);
            b.base_sequence = seq.unwrap_or(b.base_sequence);
            b.base_timestamp = base.unwrap_or(b.base_timestamp);
            b.max_timestamp = max.unwrap_or(b.max_timestamp);
            b.record_count = count.unwrap_or(b.record_count);
            b.compression = comp.unwrap_or(b.compression);
            if let Some(recs) = recs {
                b.records = recs.into();
            }
            seal(&mut b);
            // Now and then a checksum that is (almost certainly) wrong.
            b.crc = crc.unwrap_or(b.crc);
            b
        })
}

/// What [`validate`] promises about an accepted batch: it decodes, and the info is its
/// header. [`validate_records`] additionally promises [`records`] reads it.
fn check_accepted(bytes: &[u8], info: BatchInfo, with_records: bool) {
    let b = RecordBatch::decode(bytes).expect("an accepted batch decodes");
    assert_eq!(b.magic, MAGIC);
    assert_eq!(b.crc, checksum(&b));
    assert!(info.record_count > 0 && !b.records.is_empty());
    assert_eq!(
        info,
        BatchInfo {
            record_count: b.record_count,
            max_timestamp: b.max_timestamp,
            producer_id: b.producer_id,
            producer_epoch: b.producer_epoch,
            base_sequence: b.base_sequence,
        }
    );
    if with_records {
        let recs = records(&b).expect("validate_records accepted what records refuses");
        assert_eq!(recs.records.len(), info.record_count as usize);
        for r in &recs.records {
            let ts = b.base_timestamp.checked_add(r.timestamp_delta).expect("timestamp overflow");
            assert!((b.base_timestamp..=b.max_timestamp).contains(&ts), "record at {ts}");
        }
    }
}

/// Runs both validations on `bytes` (which must not panic) and checks what they accept.
fn validate_both(bytes: &[u8], max: usize) -> (Result<BatchInfo, BatchError>, bool) {
    let shallow = validate(bytes, max);
    let deep = validate_records(bytes, max);
    match (&shallow, &deep) {
        (Ok(info), Ok(deep_info)) => {
            assert_eq!(info, deep_info);
            check_accepted(bytes, *info, true);
        }
        (Ok(info), Err(_)) => check_accepted(bytes, *info, false),
        (Err(e), Err(deep_e)) => assert_eq!(e, deep_e, "validate_records runs validate first"),
        (Err(e), Ok(_)) => panic!("validate refused ({e}) what validate_records accepted"),
    }
    let deep_ok = deep.is_ok();
    (shallow, deep_ok)
}

/// The fields the checksum covers, to compare a mutated batch with its original.
fn covered(b: &RecordBatch) -> (u32, i64, i32, i32, i64, i64, u32, i32, Bytes) {
    (
        b.magic,
        b.producer_id,
        b.producer_epoch,
        b.base_sequence,
        b.base_timestamp,
        b.max_timestamp,
        b.record_count,
        b.compression,
        b.records.clone(),
    )
}

/// One byte-level change of an encoded batch.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at (index mod len) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite the byte at (index mod len).
    Set(usize, u8),
    /// Insert a byte before (index mod (len + 1)).
    Insert(usize, u8),
    /// Remove the byte at (index mod len).
    Remove(usize),
    /// Keep the first (n mod len) bytes.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..24).prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let len = out.len();
    match m {
        Mutation::Flip(i, mask) => out[i % len] ^= mask,
        Mutation::Set(i, v) => out[i % len] = *v,
        Mutation::Insert(i, v) => out.insert(i % (len + 1), *v),
        Mutation::Remove(i) => {
            out.remove(i % len);
        }
        Mutation::Truncate(n) => out.truncate(n % len),
        Mutation::Extend(tail) => out.extend_from_slice(tail),
    }
    out
}

proptest! {
    #![proptest_config(config(2000))]

    /// (a) Random bytes: no panic; anything accepted is consistent with its decoding.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        max in prop_oneof![Just(MAX), 0usize..4096],
    ) {
        let (shallow, _) = validate_both(&bytes, max);
        if bytes.len() > max {
            prop_assert!(matches!(shallow, Err(BatchError::TooLarge { .. })), "{shallow:?}");
        }
    }

    /// (a) Arbitrary `RecordBatch` messages: [`validate`] accepts exactly the batches its
    /// rules allow, and no header/records combination panics the deep checks.
    #[test]
    fn arbitrary_batches_follow_the_rules(b in arbitrary_batch()) {
        let bytes = b.encode_to_vec();
        let (shallow, _) = validate_both(&bytes, MAX);
        let idempotent = b.producer_id >= 0;
        let producer_ok = if idempotent {
            b.producer_epoch >= 0 && b.base_sequence >= 0
        } else {
            (b.producer_id, b.producer_epoch, b.base_sequence) == (-1, -1, -1)
        };
        let allowed = b.magic == MAGIC
            && b.record_count > 0
            && !b.records.is_empty()
            && Compression::try_from(b.compression).is_ok()
            && b.max_timestamp >= b.base_timestamp
            && producer_ok
            && b.crc == checksum(&b);
        prop_assert_eq!(shallow.is_ok(), allowed, "{:?}", shallow);
    }

    /// (b2) Every valid batch converts to a valid Kafka batch with the same records (values
    /// non-null) and producer fields, and back to this format with the same records again.
    #[test]
    fn conversions_keep_every_record((b, recs, producer) in valid_batch_of(
        // Kafka's producer epochs are int16; a larger one is refused (checked below).
        proptest::option::of((0..=i64::MAX, 0..=i32::from(i16::MAX) + 1, 0..=i32::MAX))
    )) {
        use rafka_proto::batch as v2;
        let bytes = b.encode_to_vec();
        prop_assert!(rafka_proto::legacy::is_legacy(&bytes));
        let converted = match rafka_proto::legacy::to_v2(&bytes) {
            Ok(c) => c,
            // Kafka's epochs are int16: a larger one cannot be carried.
            Err(BatchError::Producer { epoch, .. }) if epoch == i32::from(i16::MAX) + 1 => {
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert!(!rafka_proto::legacy::is_legacy(&converted));
        let h = v2::validate_records(&converted, MAX).expect("a converted batch is valid");
        let (id, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!((h.producer_id, i32::from(h.producer_epoch), h.base_sequence), (id, epoch, seq));
        let got = v2::records(&converted).unwrap();
        prop_assert_eq!(got.len(), recs.len());
        for (g, want) in got.iter().zip(&recs) {
            prop_assert_eq!(&g.key, &want.key);
            prop_assert_eq!(g.value.as_ref(), Some(&want.value));
            prop_assert_eq!(g.timestamp, want.timestamp);
            let headers: Vec<(String, Bytes)> =
                g.headers.iter().map(|h| (h.key.clone(), h.value.clone().unwrap())).collect();
            prop_assert_eq!(&headers, &want.headers);
        }
        let back = rafka_proto::legacy::from_v2(&converted).expect("no nulls to refuse");
        let info = validate_records(&back, MAX).expect("a converted-back batch is valid");
        prop_assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (id, epoch, seq));
        let decoded = RecordBatch::decode(&back[..]).unwrap();
        let again: Vec<(Option<Bytes>, Bytes, i64)> = records(&decoded)
            .unwrap()
            .records
            .into_iter()
            .map(|r| (r.key, r.value, decoded.base_timestamp + r.timestamp_delta))
            .collect();
        let want: Vec<(Option<Bytes>, Bytes, i64)> =
            recs.iter().map(|r| (r.key.clone(), r.value.clone(), r.timestamp)).collect();
        prop_assert_eq!(again, want);
    }

    /// (b) Every batch `build` makes is valid, and decodes back to its records.
    #[test]
    fn built_batches_validate_and_round_trip((b, recs, producer) in valid_batch()) {
        let bytes = b.encode_to_vec();
        let info = validate_records(&bytes, MAX).expect("a built batch is valid");
        prop_assert_eq!(info, validate(&bytes, MAX).unwrap());
        let (id, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!(
            info,
            BatchInfo {
                record_count: recs.len() as u32,
                max_timestamp: recs.iter().map(|r| r.timestamp).max().unwrap(),
                producer_id: id,
                producer_epoch: epoch,
                base_sequence: seq,
            }
        );
        let decoded = RecordBatch::decode(&bytes[..]).unwrap();
        let back: Vec<NewRecord> = records(&decoded)
            .unwrap()
            .records
            .into_iter()
            .map(|r| NewRecord {
                key: r.key,
                value: r.value,
                timestamp: decoded.base_timestamp + r.timestamp_delta,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
            })
            .collect();
        prop_assert_eq!(back, recs);
        // One byte short of its size is too large, at its size it fits.
        prop_assert!(validate(&bytes, bytes.len()).is_ok());
        let one_short = validate(&bytes, bytes.len() - 1);
        prop_assert!(matches!(one_short, Err(BatchError::TooLarge { .. })), "{one_short:?}");
    }

    /// (c) Single-byte mutations, truncations and extensions of a valid batch: refused, or
    /// accepted with the checksummed content unchanged (bits protobuf ignores, unknown
    /// fields, a repeated field with the same value); never a panic.
    #[test]
    fn mutated_batches_are_refused_or_unchanged(
        (b, _, _) in valid_batch(),
        m in mutation(),
    ) {
        let bytes = b.encode_to_vec();
        let bad = apply(&bytes, &m);
        let (shallow, deep_ok) = validate_both(&bad, MAX);
        if shallow.is_ok() {
            let got = RecordBatch::decode(&bad[..]).unwrap();
            prop_assert_eq!(covered(&got), covered(&b), "{:?} accepted with other content", m);
            prop_assert!(deep_ok, "{:?}: the same content no longer passes validate_records", m);
        }
    }

    /// (c) A flip anywhere inside the `records` block (the checksummed payload; prost
    /// encodes it last, so it is the tail of the message) is a checksum error.
    #[test]
    fn flips_in_the_records_block_fail_the_checksum(
        (b, _, _) in valid_batch(),
        i in any::<usize>(),
        mask in 1..=u8::MAX,
    ) {
        let mut bytes = b.encode_to_vec();
        let at = bytes.len() - b.records.len() + i % b.records.len();
        bytes[at] ^= mask;
        let e = validate(&bytes, MAX).unwrap_err();
        prop_assert!(matches!(e, BatchError::Checksum { .. }), "{e}");
        prop_assert_eq!(validate_records(&bytes, MAX).unwrap_err(), e);
    }

    /// (c) A hostile producer corrupts the records block or header and re-seals: the
    /// checksum passes, so the decompressors and decoder meet the garbage. No panic, and
    /// whatever `validate_records` accepts, consumers can read.
    #[test]
    fn resealed_corruption_never_panics(
        (b, _, _) in valid_batch(),
        m in mutation(),
        count in prop_oneof![Just(None), (0u32..16).prop_map(Some), any::<u32>().prop_map(Some)],
        comp in prop_oneof![Just(None), (0i32..3).prop_map(Some)],
        max_shift in prop_oneof![Just(0i64), -5i64..5],
    ) {
        let mut bad = b.clone();
        if !b.records.is_empty() {
            bad.records = apply(&b.records, &m).into();
        }
        if let Some(count) = count {
            bad.record_count = count;
        }
        if let Some(comp) = comp {
            bad.compression = comp;
        }
        bad.max_timestamp = bad.max_timestamp.saturating_add(max_shift);
        seal(&mut bad);
        let _ = validate_both(&bad.encode_to_vec(), MAX);
        // `records` is also called on its own, by consumers, on whatever arrives.
        let _ = records(&bad);
    }
}

/// Found by fuzzing: timestamps more than `i64::MAX` apart overflowed the delta in `build`
/// (a panic in debug builds). The delta now wraps, and whatever `build` makes of such records
/// either validates with records that decode, or is refused.
#[test]
fn extreme_timestamp_spreads_never_panic() {
    for (a, b) in [(-1, i64::MAX), (i64::MIN, i64::MAX), (i64::MIN, 0)] {
        let recs: Vec<NewRecord> = [a, b]
            .iter()
            .map(|&timestamp| NewRecord {
                key: None,
                value: Bytes::from_static(b"v"),
                timestamp,
                headers: Vec::new(),
            })
            .collect();
        let bytes = build(&recs, None, Compression::None).encode_to_vec();
        if let Ok(info) = validate_records(&bytes, usize::MAX) {
            check_accepted(&bytes, info, true);
        }
    }
}
