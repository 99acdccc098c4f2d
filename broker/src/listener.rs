//! The broker port's two protocols: gRPC (HTTP/2) and Kafka's, told apart by the first
//! bytes a client sends. An HTTP/2 connection starts with the preface `PRI * HTTP/2.0`; a
//! Kafka connection starts with a request's 4-byte big-endian size, and `PRI ` read as one
//! (1,347,569,952 bytes) is far beyond any request a broker accepts. Both kinds of client
//! speak first, so peeking never waits on the server.

use std::io;
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::supervisor::Supervisor;

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

/// Accepts connections on `listener` until the supervisor stops, and sorts them: gRPC
/// connections come out of the returned stream (for tonic's `serve_with_incoming`), Kafka
/// connections go to `kafka`, each on a task of `servers`.
pub fn split<K, F>(
    listener: TcpListener,
    servers: &Supervisor,
    kafka: K,
) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static
where
    K: Fn(TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (grpc_tx, grpc_rx) = mpsc::channel(GRPC_BACKLOG);
    let kafka = std::sync::Arc::new(kafka);
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
            tasks.spawn("sort a connection", async move {
                match sniff(&stream).await {
                    Ok(Protocol::Grpc) => {
                        let _ = grpc_tx.send(Ok(stream)).await;
                    }
                    Ok(Protocol::Kafka) => {
                        connections.spawn("Kafka connection", kafka(stream));
                    }
                    Err(e) => tracing::debug!(%peer, "connection closed before a request: {e}"),
                }
            });
        }
    });
    futures::stream::unfold(grpc_rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) })
}

/// Waits for the first 4 bytes of `stream` without consuming them.
async fn sniff(stream: &TcpStream) -> io::Result<Protocol> {
    let mut first = [0u8; 4];
    let peek = async {
        loop {
            let n = stream.peek(&mut first).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            if n >= first.len() {
                return Ok(protocol_of(&first));
            }
            // Fewer bytes so far: wait for more to arrive rather than spin.
            stream.readable().await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(SNIFF_TIMEOUT, peek)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "sent nothing"))?
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
