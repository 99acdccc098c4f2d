use proptest::prelude::*;

use super::*;

fn rec(key: Option<&'static [u8]>, value: Option<&'static [u8]>, ts: i64) -> NewRecord {
    NewRecord {
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        timestamp: ts,
        headers: vec![
            Header { key: "h1".into(), value: Some(Bytes::from_static(b"x")) },
            Header { key: "h1".into(), value: None },
        ],
    }
}

fn sample() -> Vec<NewRecord> {
    vec![
        rec(Some(b"k0"), Some(b"hello"), 1_700_000_000_000),
        rec(None, None, 1_699_999_999_000),
        rec(Some(b""), Some(b""), 1_700_000_000_500),
    ]
}

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn batches_round_trip_with_every_codec() {
    for c in ALL {
        let b = build(&sample(), Some((7, 2, 40)), c);
        let h = validate_records(&b, 1 << 20).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(h.compression().unwrap(), c);
        assert_eq!((h.records_count, h.last_offset_delta), (3, 2));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (7, 2, 40));
        assert_eq!(h.base_timestamp, 1_700_000_000_000);
        assert_eq!(h.max_timestamp, 1_700_000_000_500);
        let got = records(&b).unwrap();
        assert_eq!(got.len(), 3);
        for (i, (r, want)) in got.iter().zip(sample()).enumerate() {
            assert_eq!(r.offset_delta, i as i32);
            assert_eq!((&r.key, &r.value, r.timestamp), (&want.key, &want.value, want.timestamp));
            assert_eq!(r.headers, want.headers, "duplicate header keys and null values kept");
        }
    }
}

/// The layout, written field by field from the format table rather than by [`build`].
#[test]
fn a_hand_assembled_batch_reads_as_the_format_says() {
    let mut r = BytesMut::new();
    r.put_i8(0); // attributes
    r.put_u8(0x04); // timestampDelta 2 (zigzag)
    r.put_u8(0x00); // offsetDelta 0
    r.put_u8(0x02); // key length 1
    r.put_slice(b"k");
    r.put_u8(0x01); // value length -1: null
    r.put_u8(0x02); // one header
    r.put_u8(0x02);
    r.put_slice(b"h");
    r.put_u8(0x01); // header value null
    let mut block = BytesMut::new();
    block.put_u8((r.len() as u8) << 1);
    block.put_slice(&r);
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((49 + block.len()) as i32);
    b.put_i32(5);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(0);
    b.put_i64(1000);
    b.put_i64(1002);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(1);
    b.put_slice(&block);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let h = validate_records(&b, 1 << 20).unwrap();
    assert_eq!(h.partition_leader_epoch, 5);
    let got = records(&b).unwrap();
    assert_eq!(got[0].timestamp, 1002);
    assert_eq!(got[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(got[0].value, None);
    assert_eq!(got[0].headers, vec![Header { key: "h".into(), value: None }]);
}

#[test]
fn base_offset_and_leader_epoch_are_outside_the_checksum() {
    let mut b = build(&sample(), None, Compression::Lz4).to_vec();
    set_base_offset(&mut b, 1234);
    set_partition_leader_epoch(&mut b, 9);
    let h = validate(&b, 1 << 20).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 9));
}

#[test]
fn bad_batches_are_refused_with_their_reason() {
    let good = build(&sample(), None, Compression::None).to_vec();
    let refused = |b: &[u8]| validate_records(b, 1 << 20).unwrap_err();
    assert!(matches!(refused(&good[..60]), RecordBatchError::TooShort(60)));
    assert!(matches!(refused(&good[..good.len() - 1]), RecordBatchError::Length { .. }));
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(matches!(refused(&flipped), RecordBatchError::Checksum { .. }));
    assert_eq!(
        validate(&good, 10).unwrap_err().code(),
        ErrorCode::MessageTooLarge,
        "over max.message.bytes"
    );
    let reseal = |mut b: Vec<u8>| {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    };
    let mut magic = good.clone();
    magic[16] = 1;
    assert_eq!(refused(&magic).code(), ErrorCode::UnsupportedVersion);
    let mut codec = good.clone();
    codec[22] = 5;
    assert!(matches!(refused(&reseal(codec)), RecordBatchError::Compression(5)));
    let mut control = good.clone();
    control[22] |= 1 << 5;
    assert!(matches!(refused(&reseal(control)), RecordBatchError::Control));
    let mut count = good.clone();
    count[57..61].copy_from_slice(&4i32.to_be_bytes());
    count[23..27].copy_from_slice(&3i32.to_be_bytes());
    assert!(matches!(refused(&reseal(count)), RecordBatchError::RecordCount { .. }));
    let mut pid = good.clone();
    pid[43..51].copy_from_slice(&5i64.to_be_bytes());
    assert!(matches!(refused(&reseal(pid)), RecordBatchError::Producer { .. }));
    let mut late = good.clone();
    late[35..43].copy_from_slice(&1_700_000_000_100i64.to_be_bytes());
    assert!(matches!(refused(&reseal(late)), RecordBatchError::Record { .. }));
    // Two whole batches where one is expected: refused as such (Kafka: INVALID_RECORD).
    let two = [good.clone(), good.clone()].concat();
    let e = refused(&two);
    let expected = RecordBatchError::SeveralBatches { first: good.len(), total: 2 * good.len() };
    assert_eq!(e.to_string(), expected.to_string());
    assert_eq!(e.code(), ErrorCode::InvalidRecord);
    // Trailing bytes that are not a batch: a length mismatch.
    let trailing = [good.clone(), vec![0; 70]].concat();
    assert!(matches!(refused(&trailing), RecordBatchError::Length { .. }));
}

/// A count far beyond what the bytes can hold is refused before anything is reserved for
/// it (a 61-byte batch claiming i32::MAX records must not ask for gigabytes).
#[test]
fn huge_claimed_counts_allocate_nothing() {
    let mut b = build(&sample(), None, Compression::None).to_vec();
    b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(validate_records(&b, 1 << 20), Err(RecordBatchError::RecordCount { .. })));
}

#[test]
fn decompression_bombs_are_refused() {
    // The same bound as MAX_DECOMPRESSED_BYTES, scaled down to keep the test quick.
    let limit = 1 << 20;
    let zeros = vec![0u8; limit + 1];
    for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
        let body = Bytes::from(compress(c, &zeros));
        assert!(body.len() < limit / 10, "{c:?} compresses zeros well");
        let e = decompress_at_most(c, body.clone(), limit).unwrap_err();
        assert!(matches!(e, RecordBatchError::DecompressedTooLarge { .. }), "{c:?}: {e}");
        assert_eq!(decompress_at_most(c, body, limit + 1).unwrap().len(), limit + 1);
    }
}

/// librdkafka writes snappy as one raw block, the Java client with xerial framing: both read.
#[test]
fn raw_and_xerial_snappy_both_read() {
    let raw = b"records block".repeat(100);
    let block = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert_eq!(&decompress(Compression::Snappy, Bytes::from(block)).unwrap()[..], &raw[..]);
    let framed = compress(Compression::Snappy, &raw);
    assert!(framed.starts_with(&XERIAL_MAGIC));
    assert_eq!(&decompress(Compression::Snappy, Bytes::from(framed)).unwrap()[..], &raw[..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes: an error or a batch, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate_records(&bytes, 1 << 20);
        let _ = records(&bytes);
    }

    /// A valid batch with bytes changed (checksum fixed up, so the parser sees the damage):
    /// an error or records, never a panic.
    #[test]
    fn mutated_batches_never_panic(
        codec in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut b = build(&sample(), Some((1, 0, 0)), ALL[codec]).to_vec();
        for (at, v) in edits {
            let at = 21 + at % (b.len() - 21);
            b[at] = v;
        }
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = validate_records(&b, 1 << 20);
    }
}
