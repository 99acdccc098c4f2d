//! A minimal HTTP/1.1 client over a tokio `TcpStream`, enough for the broker's `/readyz`,
//! `/healthz` and (in `failpoints` builds) `/failpoints/{name}`; no HTTP client dependency
//! for a few status codes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `GET path` to `addr` with `Connection: close` and returns the status code and the
/// raw body (not de-chunked: meant for messages in test failures).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    http_request(addr, "GET", path, "", timeout).await
}

/// Sends `method path` with `body` (as `text/plain`) to `addr`, as [`http_get`] does.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        parse_response(&answer)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{method} {path} at {addr}: no answer in {timeout:?}"),
        )
    })?
}

/// Splits an HTTP/1.x response into status code and body.
fn parse_response(answer: &[u8]) -> io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let bad =
        || io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {text:?}"));
    let status_line = text.lines().next().ok_or_else(bad)?;
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad());
    }
    let code = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves one connection with a canned answer.
    async fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        let addr =
            serve_once("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\n\r\nno raft!")
                .await;
        let (code, body) = http_get(addr, "/readyz", Duration::from_secs(5)).await.unwrap();
        assert_eq!((code, body.as_str()), (503, "no raft!"));
        let addr = serve_once("HTTP/1.1 200 OK\r\n\r\n").await;
        assert_eq!(http_get(addr, "/readyz", Duration::from_secs(5)).await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn garbage_and_silence_are_errors() {
        let addr = serve_once("SSH-2.0-OpenSSH\r\n").await;
        assert!(http_get(addr, "/readyz", Duration::from_secs(5)).await.is_err());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap();
        let err = http_get(silent, "/readyz", Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(listener);
    }
}
