//! The broker port's two protocols: gRPC (HTTP/2) and Kafka's, told apart by the first
//! bytes a client sends. An HTTP/2 connection starts with the preface `PRI * HTTP/2.0`; a
//! Kafka connection starts with a request's 4-byte big-endian size, and `PRI ` read as one
//! (1,347,569,952 bytes) is far beyond any request a broker accepts. Both kinds of client
//! speak first, so peeking never waits on the server.
//!
//! With TLS on, every connection must begin with a TLS handshake (anything else is closed
//! unanswered); after it, a session that agreed on ALPN `h2` is gRPC, and any other is told
//! apart by its first decrypted bytes as above (Kafka clients offer no ALPN). A broker's
//! proof of the cluster secret, if the session begins with one, is read first.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::supervisor::Supervisor;
use crate::telemetry::RateLimit;
use crate::tls::ALPN_H2;
use crate::tls::Tls;
use crate::tls::stream::Conn;

/// The first bytes of HTTP/2's connection preface.
const HTTP2_PREFACE: &[u8; 4] = b"PRI ";
/// How long a new connection may take to send its first 4 bytes.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted gRPC connections waiting for the gRPC server.
const GRPC_BACKLOG: usize = 64;

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Kafka,
}

/// The protocol of a connection whose first bytes are `first` (at least 4 of them, or all
/// the connection sent before closing).
pub fn protocol_of(first: &[u8]) -> Protocol {
    if first.starts_with(HTTP2_PREFACE) { Protocol::Grpc } else { Protocol::Kafka }
}

/// Accepts connections on `listener` until the supervisor stops, runs the TLS handshake
/// when `tls` is on, and sorts them: gRPC connections come out of the returned stream (for
/// tonic's `serve_with_incoming`), Kafka connections go to `kafka`, each on a task of
/// `servers`. Each connection's [`PeerInfo`](crate::tls::stream::PeerInfo) names `name`, the
/// named listener (`None`: the internal one).
pub fn split<K, F>(
    listener: TcpListener,
    name: Option<Arc<str>>,
    tls: Option<Arc<Tls>>,
    servers: &Supervisor,
    kafka: K,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static
where
    K: Fn(Conn) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (grpc_tx, grpc_rx) = mpsc::channel(GRPC_BACKLOG);
    let kafka = Arc::new(kafka);
    let tasks = servers.clone();
    servers.spawn("broker port", async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: pass, and keep accepting.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY a response's last frame waits for the peer's delayed ACK.
            let _ = stream.set_nodelay(true);
            let grpc_tx = grpc_tx.clone();
            let kafka = kafka.clone();
            let connections = tasks.clone();
            let tls = tls.clone();
            let name = name.clone();
            tasks.spawn("sort a connection", async move {
                let sorted =
                    tokio::time::timeout(SNIFF_TIMEOUT, sort(stream, peer, tls.as_deref()))
                        .await
                        .unwrap_or_else(|_| {
                            Err(io::Error::new(io::ErrorKind::TimedOut, "sent nothing"))
                        })
                        .map(|(protocol, mut conn)| {
                            conn.set_listener(name);
                            (protocol, conn)
                        });
                match sorted {
                    Ok((Protocol::Grpc, conn)) => {
                        let _ = grpc_tx.send(Ok(conn)).await;
                    }
                    Ok((Protocol::Kafka, conn)) => {
                        connections.spawn("Kafka connection", kafka(conn));
                    }
                    Err(e) => tracing::debug!(%peer, "connection closed before a request: {e}"),
                }
            });
        }
    });
    futures::stream::unfold(grpc_rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) })
}

/// The TLS handshake (with `tls`), then the protocol of the connection.
async fn sort(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&Tls>,
) -> io::Result<(Protocol, Conn)> {
    let mut conn = match tls {
        None => Conn::plain(stream),
        Some(tls) => match Conn::accept_tls(tls, stream).await {
            Ok(conn) => conn,
            Err(e) => {
                refused(peer, &e);
                return Err(io::Error::other(e.to_string()));
            }
        },
    };
    if let Some(tls) = tls
        && let Err(e) = conn.take_broker_proof(tls).await
    {
        refused(peer, &e);
        return Err(io::Error::other(e.to_string()));
    }
    if conn.alpn() == Some(ALPN_H2) {
        return Ok((Protocol::Grpc, conn));
    }
    let first = conn.first_bytes(4).await?;
    if first.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok((protocol_of(&first), conn))
}

/// Logs a connection refused before its TLS session, at most once a second (a scanner or a
/// misconfigured client retrying must not flood the log); the metric counts them all.
fn refused(peer: SocketAddr, why: &crate::tls::stream::Refused) {
    static LOG: RateLimit = RateLimit::new();
    if let Some(held) = LOG.allow() {
        tracing::info!(%peer, held, "refused a connection: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefaces_and_sizes() {
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Protocol::Grpc);
        // A Kafka request of 35 bytes, and the size "PRI " would be if it were one.
        assert_eq!(protocol_of(&[0, 0, 0, 35]), Protocol::Kafka);
        assert_eq!(u32::from_be_bytes(*HTTP2_PREFACE), 1_347_569_952);
        assert_eq!(protocol_of(b"GET / HTTP/1.1"), Protocol::Kafka);
    }
}
