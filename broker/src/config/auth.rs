//! [`AuthConfig`]: the `[auth]` table of the broker config.

use std::path::PathBuf;

use serde::Deserialize;
use serde::Serialize;

use crate::config::ClientAuth;
use crate::config::ConfigError;
use crate::config::TlsConfig;
use crate::config::invalid;

/// Shortest cluster secret accepted.
pub const MIN_BROKER_SECRET: usize = 32;

/// Authentication and authorization (`[auth]`). Off by default, as in Kafka and Redpanda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthConfig {
    /// Every Kafka connection must authenticate with SASL, and every gRPC call carry
    /// credentials (or come over a verified client certificate).
    pub enabled: bool,
    /// SASL mechanisms offered: `SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN`.
    pub mechanisms: Vec<String>,
    /// Whether PLAIN (the password in clear) is served on connections without TLS.
    pub plain_without_tls: bool,
    /// Users (names, without `User:`) that every authorization check lets through.
    pub superusers: Vec<String>,
    /// A user created with the password in `bootstrap-password-file` when the cluster first
    /// has a controller leader and no such user exists yet, so authentication can be on from
    /// the first start. Empty: none.
    pub bootstrap_user: String,
    /// The file holding the bootstrap user's password (its first line).
    pub bootstrap_password_file: PathBuf,
    /// Principals (`User:...`, as `[tls] principal-mapping-rules` make them from client
    /// certificates) that are brokers: only they may make Raft, heartbeat and probe calls
    /// while authentication is on. Empty: the principal of this broker's own certificate.
    pub broker_principals: Vec<String>,
    /// A file whose first line is a secret every broker of the cluster shares: brokers prove
    /// it to each other (bound to each TLS session, never sent) instead of presenting client
    /// certificates, for clusters with `tls.client-auth = "none"`. Needs TLS. Empty: none.
    pub broker_secret_file: PathBuf,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into(), "PLAIN".into()],
            plain_without_tls: false,
            superusers: Vec::new(),
            bootstrap_user: String::new(),
            bootstrap_password_file: PathBuf::new(),
            broker_principals: Vec::new(),
            broker_secret_file: PathBuf::new(),
        }
    }
}

impl AuthConfig {
    /// Checks names and the keys that go together. Keys in errors are prefixed `auth.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.mechanisms.is_empty() {
            return Err(invalid("auth.mechanisms", "must name at least one mechanism"));
        }
        for m in &self.mechanisms {
            if crate::auth::Mechanism::from_name(m).is_none() {
                return Err(invalid(
                    "auth.mechanisms",
                    format!("unknown mechanism `{m}` (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)"),
                ));
            }
        }
        for u in self.superusers.iter().chain(std::iter::once(&self.bootstrap_user)) {
            if u.starts_with("User:") {
                return Err(invalid(
                    "auth.superusers",
                    format!("`{u}`: give the user name without `User:`"),
                ));
            }
        }
        if self.superusers.iter().any(|u| u.trim().is_empty()) {
            return Err(invalid("auth.superusers", "an empty user name"));
        }
        if let Some(p) = self.broker_principals.iter().find(|p| !p.starts_with("User:")) {
            return Err(invalid("auth.broker-principals", format!("`{p}` is not User:<name>")));
        }
        let file_set = !self.bootstrap_password_file.as_os_str().is_empty();
        if !self.bootstrap_user.is_empty() && !file_set {
            return Err(invalid(
                "auth.bootstrap-password-file",
                "must be set with auth.bootstrap-user",
            ));
        }
        if self.bootstrap_user.is_empty() && file_set {
            return Err(invalid(
                "auth.bootstrap-user",
                "must be set with auth.bootstrap-password-file",
            ));
        }
        Ok(())
    }

    /// The bootstrap user's password: the first line of its file. A missing file or an empty
    /// password is an error naming the key.
    pub fn bootstrap_password(&self) -> Result<Option<String>, ConfigError> {
        if self.bootstrap_user.is_empty() {
            return Ok(None);
        }
        const KEY: &str = "auth.bootstrap-password-file";
        let path = &self.bootstrap_password_file;
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
        let password = text.lines().next().unwrap_or_default().to_string();
        if password.is_empty() {
            return Err(invalid(KEY, format!("{} holds an empty password", path.display())));
        }
        Ok(Some(password))
    }

    /// Checks the keys that go with `[tls]` on a cluster of `brokers` founding brokers: with
    /// authentication on, several brokers must be able to prove they are brokers.
    pub fn check_with(&self, tls: &TlsConfig, brokers: usize) -> Result<(), ConfigError> {
        let secret_set = !self.broker_secret_file.as_os_str().is_empty();
        if secret_set && !tls.enabled() {
            return Err(invalid(
                "auth.broker-secret-file",
                "needs TLS (brokers prove the secret on TLS sessions): set tls.cert-file",
            ));
        }
        if self.enabled && brokers > 1 && tls.client_auth == ClientAuth::None && !secret_set {
            return Err(invalid(
                "auth.enabled",
                "brokers must prove they are brokers: set tls.client-auth to optional or \
                 required (client certificates), or auth.broker-secret-file (a shared secret)",
            ));
        }
        if secret_set {
            self.broker_secret()?;
        }
        Ok(())
    }

    /// The cluster secret: the first line of `broker-secret-file` (at least
    /// [`MIN_BROKER_SECRET`] bytes), `None` when the key is not set.
    pub fn broker_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        const KEY: &str = "auth.broker-secret-file";
        let path = &self.broker_secret_file;
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
        let secret = text.lines().next().unwrap_or_default().trim_end();
        if secret.len() < MIN_BROKER_SECRET {
            return Err(invalid(
                KEY,
                format!(
                    "{} holds a secret of {} bytes: use at least {MIN_BROKER_SECRET} (e.g. \
                     `openssl rand -hex 32`)",
                    path.display(),
                    secret.len()
                ),
            ));
        }
        Ok(Some(secret.as_bytes().to_vec()))
    }

    /// The mechanisms offered, parsed.
    pub fn mechanisms(&self) -> Vec<crate::auth::Mechanism> {
        self.mechanisms.iter().filter_map(|m| crate::auth::Mechanism::from_name(m)).collect()
    }
}
