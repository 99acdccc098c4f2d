//! Key → partition: Kafka's `Utils.murmur2`, bit for bit, so a key lands on the same
//! partition as it would with the Java client.

/// Kafka's `Utils.murmur2` of `data` (seed `0x9747b28c`), as the signed `int` Java returns.
///
/// Java's arithmetic is mirrored with wrapping `i32` operations and logical (`>>>`) shifts;
/// the 1–3 trailing bytes are folded in as Java's fall-through `switch` does.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: i32 = 0x9747_b28c_u32 as i32;
    const M: i32 = 0x5bd1_e995;
    const R: u32 = 24;
    let ushr = |x: i32, n: u32| ((x as u32) >> n) as i32;

    let length = data.len() as i32;
    let mut h = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= ushr(k, R);
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java sign-extends each byte (`data[i] & 0xff` masks it back), so use the unsigned value.
    if tail.len() >= 3 {
        h ^= i32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= i32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= i32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= ushr(h, 13);
    h = h.wrapping_mul(M);
    h ^= ushr(h, 15);
    h
}

/// The partition of `key` among `partitions` (> 0): `(murmur2(key) & 0x7fffffff) % partitions`,
/// as Kafka's default partitioner computes it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) as u32 % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        assert_eq!(partition_for_key(b"21", 12), (-973_932_308_i32 & 0x7fff_ffff) as u32 % 12);
        for n in 1..=16 {
            assert!(partition_for_key(b"foobar", n) < n);
        }
    }
}
