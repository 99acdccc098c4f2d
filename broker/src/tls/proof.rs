//! The cluster secret, for brokers without client certificates (`[tls] client-auth =
//! "none"`): a broker dialing another proves it knows `[auth] broker-secret-file`'s secret
//! by sending, right after the TLS handshake and before anything else, a preamble holding
//! an HMAC of the TLS session's exported keying material (RFC 5705). The proof is bound to
//! that session: seen or replayed on another connection it proves nothing, and the secret
//! never crosses the network.
//!
//! # Format
//!
//! `RFKB` (4 bytes; as a Kafka request size it would be 1.38 GB, as HTTP/2 it is no preface,
//! so the listener cannot mistake it), a version byte (1), then 32 bytes:
//! HMAC-SHA256(secret, exporter("EXPORTER-rafka-broker-proof", no context, 32 bytes)).

use ring::hmac;

/// The preamble's first bytes.
pub const MAGIC: &[u8; 4] = b"RFKB";
/// The preamble's length.
pub const LEN: usize = 4 + 1 + 32;
const VERSION: u8 = 1;
const LABEL: &[u8] = b"EXPORTER-rafka-broker-proof";

/// The shared secret, as an HMAC key.
#[derive(Clone)]
pub struct BrokerSecret(hmac::Key);

impl std::fmt::Debug for BrokerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerSecret(..)")
    }
}

impl BrokerSecret {
    pub fn new(secret: &[u8]) -> BrokerSecret {
        BrokerSecret(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The preamble a dialing broker sends on the session `conn`.
    pub fn preamble<D>(&self, conn: &rustls::ConnectionCommon<D>) -> Result<[u8; LEN], String> {
        let material = exported(conn)?;
        let tag = hmac::sign(&self.0, &material);
        let mut out = [0u8; LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Whether `got` (a whole preamble) proves the secret on the session `conn`.
    pub fn verify<D>(&self, conn: &rustls::ConnectionCommon<D>, got: &[u8]) -> bool {
        let Ok(material) = exported(conn) else { return false };
        got.len() == LEN
            && got.starts_with(MAGIC)
            && got[4] == VERSION
            && hmac::verify(&self.0, &material, &got[5..]).is_ok()
    }
}

fn exported<D>(conn: &rustls::ConnectionCommon<D>) -> Result<[u8; 32], String> {
    conn.export_keying_material([0u8; 32], LABEL, None)
        .map_err(|e| format!("exporting TLS keying material: {e}"))
}
