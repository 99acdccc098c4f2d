//! [`TlsConfig`]: the `[tls]` table of the broker config.

use std::path::PathBuf;

use serde::Deserialize;
use serde::Serialize;

use crate::config::ConfigError;
use crate::config::invalid;

/// TLS on the broker port and between brokers (`[tls]`). Off while `cert-file` is empty.
/// The files are PEM; they are read at start (an unreadable or unusable file is a config
/// error naming its key) and again whenever they change, so certificates rotate without a
/// restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    /// This broker's certificate chain, leaf first. It is served to clients and brokers and
    /// presented as the client certificate when this broker dials another, so it should
    /// carry both the serverAuth and clientAuth key usages, and name the host of
    /// `advertise` (DNS name or IP address).
    pub cert_file: PathBuf,
    /// The private key of `cert-file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates that verify client certificates and other brokers' certificates;
    /// brokers trust them when they dial each other. Required with `cert-file`.
    pub client_ca_file: PathBuf,
    /// Whether clients present certificates: `none`, `optional` or `required`. A verified
    /// certificate's subject, mapped by `principal-mapping-rules`, names the principal.
    pub client_auth: ClientAuth,
    /// Kafka's `ssl.principal.mapping.rules`, one rule per item: `RULE:pattern/replacement/`
    /// (optionally followed by `L` or `U` to change case) or `DEFAULT` (the whole subject,
    /// RFC 2253 form, e.g. `CN=app,O=Example`). The first rule whose pattern matches the whole
    /// subject names the principal; empty: `DEFAULT`.
    pub principal_mapping_rules: Vec<String>,
    /// Serve the HTTP side port (`/metrics`, `/healthz`, `/readyz`) over TLS too, with the same
    /// certificate and without client certificates.
    pub http: bool,
}

/// Whether clients present certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Certificates are not asked for.
    #[default]
    None,
    /// A certificate is asked for and verified if given; clients without one are let in.
    Optional,
    /// A connection without a certificate from `client-ca-file` is refused in the handshake.
    Required,
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// Checks that the keys that go together are given together; the files themselves are
    /// read when the broker starts (`tls::Tls::load`). Keys in errors are prefixed `tls.`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if !self.enabled() {
            for (key, path) in
                [("tls.key-file", &self.key_file), ("tls.client-ca-file", &self.client_ca_file)]
            {
                if set(path) {
                    return Err(invalid(key, "is set but tls.cert-file is not (TLS is off)"));
                }
            }
            if self.client_auth != ClientAuth::None {
                return Err(invalid("tls.client-auth", "needs TLS: set tls.cert-file"));
            }
            if self.http {
                return Err(invalid("tls.http", "needs TLS: set tls.cert-file"));
            }
            return Ok(());
        }
        if !set(&self.key_file) {
            return Err(invalid("tls.key-file", "must be set with tls.cert-file"));
        }
        if !set(&self.client_ca_file) {
            return Err(invalid(
                "tls.client-ca-file",
                "must be set with tls.cert-file: brokers verify each other's certificates \
                 against it",
            ));
        }
        Ok(())
    }
}
