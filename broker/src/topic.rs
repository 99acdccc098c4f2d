//! Topic names and per-topic configs.
//!
//! Supported configs (Kafka's names): `retention.ms`, `retention.bytes` (-1 = unlimited) and
//! `max.message.bytes`. Segment size and roll time are broker-wide (`[log]` in the broker
//! config) because one log runtime serves every partition of a broker.

use std::collections::BTreeMap;

use crate::config::TopicDefaults;
use crate::error::Error;

/// Largest `max.message.bytes` accepted (gRPC messages must still carry the batch).
pub const MAX_MESSAGE_BYTES_LIMIT: u64 = 64 << 20;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// A topic's effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: u64,
}

impl TopicConfig {
    /// The broker defaults alone.
    pub fn from_defaults(d: &TopicDefaults) -> TopicConfig {
        TopicConfig {
            retention_ms: d.retention_ms,
            retention_bytes: d.retention_bytes,
            max_message_bytes: d.max_message_bytes,
        }
    }

    /// Defaults overlaid with `overrides`; unknown keys and bad values are `INVALID_CONFIG`.
    pub fn resolve(
        d: &TopicDefaults,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, Error> {
        let mut c = TopicConfig::from_defaults(d);
        for (k, v) in overrides {
            let bad = |why: &str| Error::InvalidConfig(format!("config {k}={v:?}: {why}"));
            let int = || v.trim().parse::<i64>().map_err(|_| bad("not an integer"));
            match k.as_str() {
                "retention.ms" => {
                    c.retention_ms = int()?;
                    if c.retention_ms < -1 || c.retention_ms == 0 {
                        return Err(bad("must be -1 (unlimited) or positive"));
                    }
                }
                "retention.bytes" => {
                    c.retention_bytes = int()?;
                    if c.retention_bytes < -1 || c.retention_bytes == 0 {
                        return Err(bad("must be -1 (unlimited) or positive"));
                    }
                }
                "max.message.bytes" => {
                    let n = int()?;
                    if n < 1 || n as u64 > MAX_MESSAGE_BYTES_LIMIT {
                        return Err(bad(&format!(
                            "must be between 1 and {MAX_MESSAGE_BYTES_LIMIT}"
                        )));
                    }
                    c.max_message_bytes = n as u64;
                }
                _ => {
                    return Err(Error::InvalidConfig(format!(
                        "unknown topic config {k:?} (supported: retention.ms, retention.bytes, \
                             max.message.bytes)"
                    )));
                }
            }
        }
        Ok(c)
    }

    /// Every config with its effective value, for DescribeTopic.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("retention.ms".to_string(), self.retention_ms.to_string()),
            ("retention.bytes".to_string(), self.retention_bytes.to_string()),
            ("max.message.bytes".to_string(), self.max_message_bytes.to_string()),
        ])
    }
}

/// Checks a topic name: `[a-zA-Z0-9._-]{1,249}`; names starting `__` are internal and only
/// the broker itself may create them.
pub fn validate_name(name: &str, internal: bool) -> Result<(), Error> {
    let bad = |why: &str| Error::InvalidTopic(format!("topic name {name:?}: {why}"));
    if name.is_empty() || name.len() > 249 {
        return Err(bad("must be 1 to 249 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(bad("may only contain ASCII letters, digits, '.', '_' and '-'"));
    }
    if name == "." || name == ".." {
        return Err(bad("may not be '.' or '..'"));
    }
    if name.starts_with("__") && !internal {
        return Err(bad("names starting with '__' are reserved for internal topics"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            validate_name(ok, false).unwrap();
        }
        for bad in ["", "a/b", "a b", "é", "..", "__consumer_offsets", &"x".repeat(250)] {
            assert_eq!(
                validate_name(bad, false).unwrap_err().code(),
                rafka_proto::ErrorCode::InvalidTopic,
                "{bad}"
            );
        }
        validate_name("__consumer_offsets", true).unwrap();
    }

    #[test]
    fn configs_resolve_and_refuse() {
        let d = TopicDefaults::default();
        let c = TopicConfig::resolve(&d, &BTreeMap::from([("retention.ms".into(), "1000".into())]))
            .unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.max_message_bytes, d.max_message_bytes);
        for (k, v) in [
            ("retention.ms", "0"),
            ("retention.ms", "x"),
            ("max.message.bytes", "0"),
            ("max.message.bytes", "999999999999"),
            ("cleanup.policy", "compact"),
        ] {
            let e = TopicConfig::resolve(&d, &BTreeMap::from([(k.into(), v.into())])).unwrap_err();
            assert_eq!(e.code(), rafka_proto::ErrorCode::InvalidConfig, "{k}={v}");
        }
    }
}
