//! Consumer-group placement: which partition of `__consumer_offsets` owns a group.

/// Name of the internal topic holding consumer-group offsets and membership.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Longest group id accepted, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 255;

/// The `__consumer_offsets` partition owning `group_id` when the topic has `partitions`
/// partitions: `abs(hashCode(group_id)) mod partitions`, with Java's `String.hashCode`
/// (over UTF-16 code units) exactly as Kafka computes it, so a group keeps the same
/// partition number a Kafka user would expect.
pub fn offsets_partition(group_id: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "the offsets topic has at least one partition");
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    // Kafka's Utils.abs: i32::MIN maps to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322, "Hello" == 69609650; 99162322 % 16 == 2.
        assert_eq!(offsets_partition("hello", 1 << 30), 99_162_322);
        assert_eq!(offsets_partition("Hello", 1 << 30), 69_609_650);
        assert_eq!(offsets_partition("hello", 16), 99_162_322 % 16);
        // A negative hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE -> 0.
        assert_eq!(offsets_partition("polygenelubricants", 7), 0);
        // Non-BMP characters hash as their two UTF-16 surrogates: "😀" = 0xD83D, 0xDE00.
        let h = (0xD83Di32 * 31 + 0xDE00) as u32;
        assert_eq!(offsets_partition("😀", 1 << 30), h % (1 << 30));
        assert_eq!(offsets_partition("", 16), 0);
    }
}
