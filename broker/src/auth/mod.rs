//! Authentication: who a connection is. SASL mechanisms for Kafka clients (SCRAM-SHA-256,
//! SCRAM-SHA-512, PLAIN) and password checks for gRPC call credentials, all against the
//! SCRAM credentials kept in the controller state ([`scram::Credential`]: never a password).
//!
//! - [`scram`]: credentials and the server side of a SCRAM exchange.
//! - [`Mechanism`], [`plain`]: the mechanisms and SASL/PLAIN's one message.
//!
//! Principals are Kafka's: `User:<name>`; `User:ANONYMOUS` for a connection that has not
//! authenticated (allowed only while authentication is off).

pub mod scram;

use serde::Deserialize;
use serde::Serialize;

pub use scram::Hash;

/// The last password login verified on one connection, so the calls after it do not pay the
/// key derivation again: the digest of what the client sent, the user, and the credential it
/// was checked against (a changed or deleted credential is checked afresh).
#[derive(Debug, Default)]
pub struct LoginCache(std::sync::Mutex<Option<(Vec<u8>, String, scram::Credential)>>);

impl LoginCache {
    /// The user `sent` (digested) logged in as, if `current` is still that user's credential.
    pub fn get(
        &self,
        sent: &[u8],
        current: impl FnOnce(&str) -> Option<scram::Credential>,
    ) -> Option<String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, sent);
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (d, user, credential) = cached.as_ref()?;
        (d.as_slice() == digest.as_ref() && current(user).as_ref() == Some(credential))
            .then(|| user.clone())
    }

    /// Remembers that `sent` logged in as `user` against `credential`.
    pub fn put(&self, sent: &[u8], user: &str, credential: scram::Credential) {
        let digest = ring::digest::digest(&ring::digest::SHA256, sent).as_ref().to_vec();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((digest, user.into(), credential));
    }
}

/// The principal of connections that did not authenticate, as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM with SHA-256 or SHA-512.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// See [`Mechanism::ScramSha256`].
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// The password in clear (only over TLS unless allowed).
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    /// Every mechanism served.
    pub const ALL: [Mechanism; 3] =
        [Mechanism::ScramSha256, Mechanism::ScramSha512, Mechanism::Plain];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism named `name` (SASL names are upper case).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    pub fn scram(self) -> Option<Hash> {
        match self {
            Mechanism::ScramSha256 => Some(Hash::Sha256),
            Mechanism::ScramSha512 => Some(Hash::Sha512),
            Mechanism::Plain => None,
        }
    }
}

/// SASL/PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`.
pub mod plain {
    /// The user and password of a PLAIN message, or why it is malformed. An authorization id
    /// must be empty or the user's own.
    pub fn parse(message: &[u8]) -> Result<(String, String), &'static str> {
        let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected authzid NUL user NUL password");
        };
        if user.is_empty() || password.is_empty() {
            return Err("empty user or password");
        }
        if !authzid.is_empty() && authzid != user {
            return Err("an authorization id other than the user");
        }
        Ok((user.to_string(), password.to_string()))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn plain_messages() {
            assert_eq!(super::parse(b"\0alice\0pw"), Ok(("alice".into(), "pw".into())));
            assert_eq!(super::parse(b"alice\0alice\0pw"), Ok(("alice".into(), "pw".into())));
            for bad in
                [&b""[..], b"\0alice", b"\0\0pw", b"\0alice\0", b"bob\0alice\0pw", b"\0a\0b\0c"]
            {
                assert!(super::parse(bad).is_err(), "{bad:?}");
            }
        }
    }
}
