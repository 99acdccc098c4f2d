//! SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka's KIP-84 use them): the
//! stored credential, its derivation from a password, and the server side of one exchange.
//!
//! # Exchange
//!
//! ```text
//! client-first:  n,,n=<user>,r=<client nonce>
//! server-first:  r=<client nonce><server nonce>,s=<salt, base64>,i=<iterations>
//! client-final:  c=biws,r=<nonce>,p=<proof, base64>
//! server-final:  v=<server signature, base64>
//! ```
//!
//! A user that does not exist gets a made-up salt and fails at the proof, like a wrong
//! password, so the exchange does not tell who exists.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest;
use ring::hmac;
use ring::pbkdf2;
use serde::Deserialize;
use serde::Serialize;

/// Fewest and most PBKDF2 iterations a credential may have (Kafka's bounds).
pub const MIN_ITERATIONS: u32 = 4096;
/// See [`MIN_ITERATIONS`].
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Hash {
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Hash {
    /// Both, in Kafka's mechanism-type order (1, 2).
    pub const ALL: [Hash; 2] = [Hash::Sha256, Hash::Sha512];

    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's ScramMechanism code (AlterUserScramCredentials and friends).
    pub fn kafka_type(self) -> i8 {
        match self {
            Hash::Sha256 => 1,
            Hash::Sha512 => 2,
        }
    }

    /// The hash of Kafka's ScramMechanism code.
    pub fn from_kafka_type(t: i8) -> Option<Hash> {
        Hash::ALL.into_iter().find(|h| h.kafka_type() == t)
    }

    /// The hash of SASL mechanism `name`.
    pub fn from_mechanism(name: &str) -> Option<Hash> {
        Hash::ALL.into_iter().find(|h| h.mechanism() == name)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }
}

/// What a broker keeps of a password: never the password, nor anything a client could log
/// in with (RFC 5802's StoredKey and ServerKey, with the salt and iteration count).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Base64.
    pub salt: String,
    /// Base64 of H(ClientKey).
    pub stored_key: String,
    /// Base64 of HMAC(SaltedPassword, "Server Key").
    pub server_key: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential of `password` with a fresh random salt.
    pub fn from_password(hash: Hash, password: &str, iterations: u32) -> Credential {
        let salt: [u8; 32] = rand::random();
        Credential::from_salted(
            hash,
            &salted_password(hash, password.as_bytes(), &salt, iterations),
            &salt,
            iterations,
        )
    }

    /// The credential of a salted password (`Hi(password, salt, i)`), as Kafka's
    /// AlterUserScramCredentials sends it.
    pub fn from_salted(hash: Hash, salted: &[u8], salt: &[u8], iterations: u32) -> Credential {
        let client_key = hash.mac(salted, b"Client Key");
        Credential {
            salt: B64.encode(salt),
            stored_key: B64.encode(hash.h(&client_key)),
            server_key: B64.encode(hash.mac(salted, b"Server Key")),
            iterations,
        }
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN, gRPC).
    pub fn verify_password(&self, hash: Hash, password: &str) -> bool {
        let Ok(salt) = B64.decode(&self.salt) else { return false };
        let salted = salted_password(hash, password.as_bytes(), &salt, self.iterations);
        let stored = hash.h(&hash.mac(&salted, b"Client Key"));
        B64.decode(&self.stored_key).is_ok_and(|s| equal(&s, &stored))
    }
}

fn salted_password(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; hash.len()];
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1");
    pbkdf2::derive(hash.pbkdf2(), iterations, salt, password, &mut out);
    out
}

/// Compares in time that depends only on the lengths.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed. The client is told only that authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that is not what SCRAM sends at this step.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Channel binding, extensions or an authorization id other than the user.
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(&'static str),
    /// A wrong password, or a user without a credential for this mechanism.
    #[error("invalid credentials")]
    Invalid,
}

/// The server side of one exchange.
#[derive(Debug)]
pub struct ServerExchange {
    hash: Hash,
    user: String,
    credential: Option<Credential>,
    /// The pieces of the AuthMessage so far, and the full nonce.
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Reads client-first and answers server-first. `lookup` finds the user's credential;
    /// `None` carries on with a made-up one.
    pub fn start(
        hash: Hash,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (gs2, bare) = split_gs2(text)?;
        let mut user = None;
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match attr.split_once('=') {
                Some(("n", v)) if i == 0 => user = Some(decode_saslname(v)?),
                Some(("r", v)) if i == 1 && !v.is_empty() => client_nonce = Some(v),
                Some(("m", _)) => return Err(ScramError::Unsupported("mandatory extension")),
                // Optional extensions (Kafka's tokenauth among them) are not served.
                Some(_) if i >= 2 => {
                    return Err(ScramError::Unsupported("extensions"));
                }
                _ => return Err(ScramError::Malformed("client-first attributes")),
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user"))?;
        let client_nonce = client_nonce.ok_or(ScramError::Malformed("no nonce"))?;
        if gs2.is_some_and(|authzid| authzid != user) {
            return Err(ScramError::Unsupported("an authorization id other than the user"));
        }
        let credential = lookup(&user);
        let server_nonce: [u8; 24] = rand::random();
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (B64.encode(rand::random::<[u8; 32]>()), MIN_ITERATIONS),
        };
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        let exchange = ServerExchange {
            hash,
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    /// The hash of this exchange.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The user the client claims to be.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Reads client-final; answers server-final if the proof holds.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        match attrs.next().and_then(|a| a.strip_prefix("c=")) {
            // "n,," or "y,,": no channel binding, and no authorization id to repeat unless
            // client-first gave one (checked to be the user there).
            Some(c) => {
                let header = B64.decode(c).map_err(|_| ScramError::Malformed("channel binding"))?;
                if !header.starts_with(b"n,") && !header.starts_with(b"y,") {
                    return Err(ScramError::Unsupported("channel binding"));
                }
            }
            None => return Err(ScramError::Malformed("no channel binding")),
        }
        // librdkafka repeats its own nonce in front of the full one (`r=<client><client>
        // <server>`); Kafka accepts a nonce that ends with the full one, and so does rafka.
        // The proof still covers the message exactly as sent.
        if !attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .is_some_and(|r| r.ends_with(&self.nonce))
        {
            return Err(ScramError::Malformed("nonce"));
        }
        if attrs.next().is_some() {
            return Err(ScramError::Unsupported("extensions"));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof"))?;
        let Some(credential) = self.credential else { return Err(ScramError::Invalid) };
        let stored_key = B64.decode(&credential.stored_key).map_err(|_| ScramError::Invalid)?;
        let server_key = B64.decode(&credential.server_key).map_err(|_| ScramError::Invalid)?;
        let auth_message =
            format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = self.hash.mac(&stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Invalid);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !equal(&self.hash.h(&client_key), &stored_key) {
            return Err(ScramError::Invalid);
        }
        let server_signature = self.hash.mac(&server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// Splits the GS2 header (`n,,`, `y,,`, or with `a=authzid`) from client-first-bare.
fn split_gs2(text: &str) -> Result<(Option<String>, &str), ScramError> {
    let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed("GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
        _ => return Err(ScramError::Malformed("GS2 header")),
    }
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("GS2 header"))?;
    let authzid = match authzid {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=").ok_or(ScramError::Malformed("authzid"))?)?),
    };
    Ok((authzid, bare))
}

/// A `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(v: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("user name escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// A SCRAM client, for tests and for the tools that set credentials the way Kafka's admin
/// clients do (they send the salted password, never the password).
pub mod client {
    use super::*;

    /// The salted password a Kafka admin client sends for `password`.
    pub fn salted_password(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        super::salted_password(hash, password.as_bytes(), salt, iterations)
    }

    /// client-final for `server_first`, given the client's first message without the GS2
    /// header (`n=user,r=nonce`).
    pub fn client_final(
        hash: Hash,
        password: &str,
        client_first_bare: &str,
        server_first: &[u8],
    ) -> Option<String> {
        let server_first = std::str::from_utf8(server_first).ok()?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_once('=')? {
                ("r", v) => nonce = Some(v),
                ("s", v) => salt = Some(B64.decode(v).ok()?),
                ("i", v) => iterations = v.parse().ok(),
                _ => {}
            }
        }
        let salted = super::salted_password(hash, password.as_bytes(), &salt?, iterations?);
        let without_proof = format!("c=biws,r={}", nonce?);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_key = hash.mac(&salted, b"Client Key");
        let signature = hash.mac(&hash.h(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        Some(format!("{without_proof},p={}", B64.encode(proof)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, from the server's side: user "user", password
    /// "pencil", the RFC's salt, nonces and 4096 iterations.
    #[test]
    fn the_rfc_7677_example_verifies() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = client::salted_password(Hash::Sha256, "pencil", &salt, 4096);
        let credential = Credential::from_salted(Hash::Sha256, &salted, &salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let exchange = ServerExchange {
            hash: Hash::Sha256,
            user: "user".into(),
            credential: Some(credential.clone()),
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = exchange.finish(client_final.as_bytes()).unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(credential.verify_password(Hash::Sha256, "pencil"));
        assert!(!credential.verify_password(Hash::Sha256, "pencil2"));
    }

    fn exchange(hash: Hash, stored: &str, tried: &str, user: &str) -> Result<Vec<u8>, ScramError> {
        let credential = Credential::from_password(hash, stored, MIN_ITERATIONS);
        let bare = format!("n={user},r=abc123");
        let (server, first) = ServerExchange::start(hash, format!("n,,{bare}").as_bytes(), |u| {
            (u == "alice").then(|| credential.clone())
        })?;
        let last = client::client_final(hash, tried, &bare, &first).unwrap();
        server.finish(last.as_bytes())
    }

    #[test]
    fn right_passwords_pass_and_wrong_ones_or_strangers_fail_alike() {
        for hash in Hash::ALL {
            assert!(exchange(hash, "s3cret", "s3cret", "alice").unwrap().starts_with(b"v="));
            assert_eq!(exchange(hash, "s3cret", "guess", "alice"), Err(ScramError::Invalid));
            assert_eq!(exchange(hash, "s3cret", "s3cret", "mallory"), Err(ScramError::Invalid));
        }
    }

    #[test]
    fn malformed_and_unsupported_messages_are_refused() {
        let none = |_: &str| None;
        for bad in [
            &b""[..],
            b"n,,",
            b"x,,n=a,r=b",
            b"n,,r=b,n=a",
            b"n,,n=a",
            b"n,,n=a=,r=b",
            b"n,,n=,r=b",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    ServerExchange::start(Hash::Sha256, bad, none),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [&b"p=tls-unique,,n=a,r=b"[..], b"n,,n=a,r=b,tokenauth=true", b"n,a=b,n=a,r=b"] {
            assert!(
                matches!(
                    ServerExchange::start(Hash::Sha256, bad, none),
                    Err(ScramError::Unsupported(_))
                ),
                "{bad:?}"
            );
        }
        let (server, _) = ServerExchange::start(Hash::Sha256, b"n,,n=a=2Cb,r=xyz", none).unwrap();
        assert_eq!(server.user(), "a,b");
        assert_eq!(server.finish(b"c=biws,r=wrong,p=AAAA"), Err(ScramError::Malformed("nonce")));
    }

    proptest::proptest! {
        /// Whatever a client sends, at either step, is an answer or an error, never a panic;
        /// and nothing but the right proof authenticates.
        #[test]
        fn any_bytes_at_either_step_are_refused_or_answered(
            first in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            last in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            user in "[a-z=,]{0,12}",
            nonce in "[!-+--~]{0,24}",
        ) {
            let credential = Credential::from_password(Hash::Sha256, "pw", MIN_ITERATIONS);
            let lookup = |_: &str| Some(credential.clone());
            let _ = ServerExchange::start(Hash::Sha256, &first, lookup);
            let shaped = format!("n,,n={user},r={nonce}");
            if let Ok((server, _)) = ServerExchange::start(Hash::Sha512, shaped.as_bytes(), lookup) {
                proptest::prop_assert!(server.finish(&last).is_err());
            }
        }
    }
}
