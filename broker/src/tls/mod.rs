//! TLS on the broker port and between brokers, terminated by the broker itself (rustls with
//! the ring provider) so that it can tell gRPC from Kafka after the handshake and reload
//! certificates without a restart.
//!
//! - [`Tls`]: the PEM files of `[tls]`, loaded into rustls configs — the server side (with
//!   client-certificate verification as `client-auth` says), the client side a broker uses to
//!   dial others, and the HTTP side port's — and loaded again when a file changes.
//! - [`principal`]: the principal a verified client certificate names (Kafka's
//!   `ssl.principal.mapping.rules`).
//! - [`stream`]: an accepted connection, plaintext or TLS, with what the handshake learnt.
//! - [`dial`]: the connector brokers dial each other with, verifying the peer's certificate
//!   against its advertised name.
//! - [`proof`]: the cluster secret's proof, for brokers without client certificates.

pub mod dial;
pub mod principal;
pub mod proof;
pub mod stream;

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::ClientAuth;
use crate::config::ConfigError;
use crate::config::TlsConfig;
use crate::config::invalid;
pub use principal::PrincipalRules;

/// How often the files are checked for changes, at most (on a new connection or dial).
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// ALPN protocol of gRPC (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";

/// The broker's TLS material, reloaded when its files change.
pub struct Tls {
    config: TlsConfig,
    rules: PrincipalRules,
    /// `[auth] broker-secret-file`'s secret, when set.
    secret: Option<proof::BrokerSecret>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish_non_exhaustive()
    }
}

struct State {
    checked: Instant,
    /// The files' stamps when last read (successfully or not: a bad file is reported once).
    stamps: Vec<Option<Stamp>>,
    configs: Configs,
    /// Readings of changed files that were used, and that were not.
    reloads: (u64, u64),
    /// The principal of the certificate in use.
    own: Option<Arc<str>>,
}

/// The rustls configs made from one reading of the files.
#[derive(Clone)]
pub struct Configs {
    /// The broker port's server side.
    pub server: Arc<ServerConfig>,
    /// The client side of broker-to-broker connections (presents this broker's certificate).
    pub client: Arc<ClientConfig>,
    /// The HTTP side port's server side (no client certificates, HTTP/1.1).
    pub http: Arc<ServerConfig>,
    /// The leaf certificate served, DER.
    pub leaf: Arc<[u8]>,
}

/// What tells a changed file: modification time, size, inode (a rename over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: md.modified().ok(), len: md.len(), inode: md.ino() })
}

impl Tls {
    /// Reads the files of `config` (TLS must be on). Errors name the key of the file at fault.
    pub fn load(config: &TlsConfig) -> Result<Arc<Tls>, ConfigError> {
        Tls::load_with_secret(config, None)
    }

    /// [`Tls::load`], with the cluster secret brokers prove to each other (see [`proof`]).
    pub fn load_with_secret(
        config: &TlsConfig,
        secret: Option<&[u8]>,
    ) -> Result<Arc<Tls>, ConfigError> {
        debug_assert!(config.enabled());
        let rules = PrincipalRules::parse(&config.principal_mapping_rules)
            .map_err(|e| invalid("tls.principal-mapping-rules", e))?;
        let stamps = files(config).iter().map(|p| stamp(p)).collect();
        let configs = build(config)?;
        let own = principal_of(&rules, &configs.leaf);
        Ok(Arc::new(Tls {
            config: config.clone(),
            rules,
            secret: secret.map(proof::BrokerSecret::new),
            state: Mutex::new(State {
                checked: Instant::now(),
                stamps,
                configs,
                reloads: (0, 0),
                own,
            }),
        }))
    }

    /// The current configs; the files are read again first if one changed since they were
    /// last read (checked at most once a second). A changed file that cannot be used is
    /// logged and the configs in use are kept.
    pub fn configs(&self) -> Configs {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamps: Vec<Option<Stamp>> = files(&self.config).iter().map(|p| stamp(p)).collect();
            if stamps != state.stamps {
                state.stamps = stamps;
                match build(&self.config) {
                    Ok(configs) => {
                        tracing::info!("TLS files changed: new connections use them");
                        crate::metrics::tls_reloaded(true);
                        state.own = principal_of(&self.rules, &configs.leaf);
                        state.configs = configs;
                        state.reloads.0 += 1;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "TLS files changed but cannot be used, keeping the old ones: {e}"
                        );
                        crate::metrics::tls_reloaded(false);
                        state.reloads.1 += 1;
                    }
                }
            }
        }
        state.configs.clone()
    }

    /// [`Tls::configs`] without waiting for the once-a-second check: the files are compared
    /// now. For tests, which must not sleep through the interval.
    #[doc(hidden)]
    pub fn configs_checked_now(&self) -> Configs {
        let past = Instant::now().checked_sub(RELOAD_CHECK).unwrap_or_else(Instant::now);
        self.state.lock().unwrap_or_else(|p| p.into_inner()).checked = past;
        self.configs()
    }

    /// How many readings of changed files were used, and how many were not (bad files).
    pub fn reloads(&self) -> (u64, u64) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).reloads
    }

    /// Whether clients are asked for certificates.
    pub fn client_auth(&self) -> ClientAuth {
        self.config.client_auth
    }

    /// Whether the HTTP side port is served over TLS.
    pub fn on_http(&self) -> bool {
        self.config.http
    }

    /// The principal this broker's own certificate maps to, as other brokers see it.
    pub fn own_principal(&self) -> Option<Arc<str>> {
        self.configs();
        self.state.lock().unwrap_or_else(|p| p.into_inner()).own.clone()
    }

    /// The cluster secret brokers prove to each other, when `[auth] broker-secret-file` is set.
    pub fn broker_secret(&self) -> Option<&proof::BrokerSecret> {
        self.secret.as_ref()
    }

    /// The principal mapping rules.
    pub fn rules(&self) -> &PrincipalRules {
        &self.rules
    }
}

fn principal_of(rules: &PrincipalRules, leaf: &[u8]) -> Option<Arc<str>> {
    let subject = principal::subject(leaf).ok()?;
    rules.map(&subject).map(|name| Arc::from(format!("User:{name}")))
}

fn files(config: &TlsConfig) -> [&PathBuf; 3] {
    [&config.cert_file, &config.key_file, &config.client_ca_file]
}

/// rustls's ring provider. rustls deprecates it for lacking post-quantum key exchange (only
/// its aws-lc-rs provider has that, at the price of a C and assembly build); ring keeps the
/// build pure enough and its TLS 1.2/1.3 suites are what Kafka clients use today.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn build(config: &TlsConfig) -> Result<Configs, ConfigError> {
    let chain = certs("tls.cert-file", &config.cert_file)?;
    let leaf: Arc<[u8]> = Arc::from(chain[0].as_ref());
    let key_pem = read("tls.key-file", &config.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        invalid(
            "tls.key-file",
            format!("{}: not a PEM private key: {e}", config.key_file.display()),
        )
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certs("tls.client-ca-file", &config.client_ca_file)? {
        roots.add(ca).map_err(|e| {
            invalid("tls.client-ca-file", format!("{}: {e}", config.client_ca_file.display()))
        })?;
    }
    let roots = Arc::new(roots);
    let tls_err = |key: &str| {
        let key = key.to_string();
        move |e: rustls::Error| invalid(&key, e.to_string())
    };
    let server_builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("tls"))?;
    let server_builder = match config.client_auth {
        ClientAuth::None => server_builder.with_no_client_auth(),
        auth => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier =
                verifier.build().map_err(|e| invalid("tls.client-ca-file", e.to_string()))?;
            server_builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = server_builder
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(tls_err("tls.key-file"))?;
    server.alpn_protocols = vec![ALPN_H2.to_vec()];
    let mut http = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("tls"))?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(tls_err("tls.key-file"))?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(tls_err("tls"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_err("tls.key-file"))?;
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Configs { server: Arc::new(server), client: Arc::new(client), http: Arc::new(http), leaf })
}
