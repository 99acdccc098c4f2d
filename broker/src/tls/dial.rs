//! The connector brokers dial each other with over TLS: TCP to the address to dial, then a
//! TLS handshake that presents this broker's certificate and verifies the peer's against
//! `client-ca-file` and the host of its *advertised* address (the fault suite dials proxies,
//! but the certificate still has to name the broker). With a cluster secret, the proof of it
//! follows the handshake (see [`super::proof`]).

use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use super::Tls;

/// Dials other brokers over TLS (the Raft transport's and the broker's own channels).
#[derive(Debug, Clone)]
pub struct TlsDialer(pub Arc<Tls>);

impl rafka_raft::Dialer for TlsDialer {
    fn channel(&self, endpoint: Endpoint, dial: &str, advertised: &str) -> Result<Channel, String> {
        let name = server_name(advertised)?;
        let tls = self.0.clone();
        let dial = dial.to_string();
        let connector = tower::service_fn(move |_: Uri| {
            let (tls, dial, name) = (tls.clone(), dial.clone(), name.clone());
            async move {
                let tcp = TcpStream::connect(&dial).await?;
                tcp.set_nodelay(true)?;
                let connector = tokio_rustls::TlsConnector::from(tls.configs().client);
                let mut stream = connector.connect(name, tcp).await?;
                if let Some(secret) = tls.broker_secret() {
                    let preamble = secret.preamble(stream.get_ref().1).map_err(io::Error::other)?;
                    stream.write_all(&preamble).await?;
                }
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        });
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

/// The name a peer's certificate must carry: the host of its `host:port`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("`{host}` is not a name a certificate can carry: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_advertised_hosts() {
        assert_eq!(server_name("broker-1.rafka:9092").unwrap().to_str(), "broker-1.rafka");
        assert_eq!(server_name("127.0.0.1:9092").unwrap().to_str(), "127.0.0.1");
        assert_eq!(server_name("[::1]:9092").unwrap().to_str(), "::1");
        assert!(server_name("bad_name!:1").is_err());
    }
}
