//! An accepted connection of the broker port ([`Conn`]): plaintext TCP or a TLS session, with
//! what its handshake established ([`PeerInfo`]). The gRPC server finds the `PeerInfo` in
//! each request's extensions (tonic's `Connected`); the Kafka server gets it with the stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::Tls;
use crate::metrics;

/// First byte of a TLS record carrying a handshake: every TLS client's first byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// What is known of the other end of a connection.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// Its address.
    pub addr: Option<SocketAddr>,
    /// Whether the connection is a TLS session.
    pub tls: bool,
    /// `User:<name>` from a verified client certificate (mTLS).
    pub principal: Option<Arc<str>>,
    /// gRPC password logins verified on this connection.
    pub logins: Arc<crate::auth::LoginCache>,
    /// The connection proved the cluster secret: it comes from a broker.
    pub broker: bool,
    /// The named listener it came in on; `None`: the internal one (`listen`).
    pub listener: Option<Arc<str>>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection. Bytes read ahead to tell its protocol are read again first.
pub struct Conn {
    io: Io,
    ahead: Vec<u8>,
    pos: usize,
    info: PeerInfo,
}

/// Why a connection was closed before its TLS session began.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The client did not start a TLS handshake.
    #[error("not a TLS client (first byte {0:#04x}): TLS is required on this port")]
    Plaintext(u8),
    /// The handshake failed (no or an unknown client certificate, no common version, ...).
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    /// No principal mapping rule applies to the verified certificate's subject.
    #[error("no principal mapping rule applies to the client certificate subject `{0}`")]
    Principal(String),
    /// A broker's proof of the cluster secret that does not hold.
    #[error("a broker preamble that does not prove the cluster secret")]
    BrokerSecret,
    /// The connection closed or failed before the handshake.
    #[error("{0}")]
    Io(io::Error),
}

impl Conn {
    /// A plaintext connection.
    pub fn plain(stream: TcpStream) -> Conn {
        let addr = stream.peer_addr().ok();
        Conn {
            io: Io::Plain(stream),
            ahead: Vec::new(),
            pos: 0,
            info: PeerInfo { addr, ..Default::default() },
        }
    }

    /// Runs the server side of a TLS handshake on `stream` with `tls`'s current certificate;
    /// a connection that does not begin with a TLS handshake is refused without one.
    pub async fn accept_tls(tls: &Tls, stream: TcpStream) -> Result<Conn, Refused> {
        let addr = stream.peer_addr().ok();
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await.map_err(Refused::Io)?;
        if n == 0 {
            return Err(Refused::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")));
        }
        if first[0] != TLS_HANDSHAKE {
            metrics::tls_refused("plaintext");
            return Err(Refused::Plaintext(first[0]));
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.configs().server);
        let stream = acceptor.accept(stream).await.map_err(|e| {
            metrics::tls_refused("handshake");
            Refused::Handshake(e)
        })?;
        let principal = match stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            None => None,
            Some(cert) => {
                let subject = super::principal::subject(cert).map_err(|e| {
                    metrics::tls_refused("principal");
                    Refused::Principal(e)
                })?;
                let name = tls.rules().map(&subject).ok_or_else(|| {
                    metrics::tls_refused("principal");
                    Refused::Principal(subject)
                })?;
                Some(Arc::from(format!("User:{name}")))
            }
        };
        Ok(Conn {
            io: Io::Tls(Box::new(stream)),
            ahead: Vec::new(),
            pos: 0,
            info: PeerInfo { addr, tls: true, principal, ..Default::default() },
        })
    }

    /// Records the named listener the connection came in on.
    pub fn set_listener(&mut self, listener: Option<Arc<str>>) {
        self.info.listener = listener;
    }

    /// What is known of the other end.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The ALPN protocol the TLS handshake agreed on.
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.io {
            Io::Plain(_) => None,
            Io::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The first `n` bytes the client sends (fewer if it closes first), without consuming
    /// them: reads of the connection return them again.
    pub async fn first_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        match &mut self.io {
            // A plaintext stream can be peeked at: nothing needs reading ahead.
            Io::Plain(s) => {
                let mut first = vec![0u8; n];
                loop {
                    let got = s.peek(&mut first).await?;
                    if got == 0 || got >= n {
                        first.truncate(got);
                        return Ok(first);
                    }
                    // Fewer bytes so far: wait for more to arrive rather than spin.
                    s.readable().await?;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            Io::Tls(s) => {
                while self.ahead.len() < n {
                    let mut buf = vec![0u8; n - self.ahead.len()];
                    let got = s.read(&mut buf).await?;
                    if got == 0 {
                        break;
                    }
                    self.ahead.extend_from_slice(&buf[..got]);
                }
                Ok(self.ahead[self.pos..].to_vec())
            }
        }
    }

    /// Reads a broker's proof of the cluster secret if the session begins with one (see
    /// [`super::proof`]): `Ok(true)` if it proves the secret (the connection is then a
    /// broker's, and the proof is consumed), `Ok(false)` if there is none, an error if there
    /// is a proof that does not hold (or no secret to check it against).
    pub async fn take_broker_proof(&mut self, tls: &Tls) -> Result<bool, Refused> {
        let Io::Tls(_) = &self.io else { return Ok(false) };
        let first = self.first_bytes(super::proof::MAGIC.len()).await.map_err(Refused::Io)?;
        if first != super::proof::MAGIC {
            return Ok(false);
        }
        let got = self.first_bytes(super::proof::LEN).await.map_err(Refused::Io)?;
        let Io::Tls(s) = &self.io else { return Ok(false) };
        let proved = tls.broker_secret().is_some_and(|secret| secret.verify(s.get_ref().1, &got));
        if !proved {
            metrics::tls_refused("broker-secret");
            return Err(Refused::BrokerSecret);
        }
        debug_assert_eq!(self.pos, 0, "nothing of the session was read yet");
        self.ahead.drain(..super::proof::LEN);
        self.pos = 0;
        self.info.broker = true;
        Ok(true)
    }

    /// The plaintext TCP stream, when the connection is one and nothing was read ahead (so
    /// it can be split into owned halves).
    pub fn into_plain(self) -> Result<(TcpStream, PeerInfo), Box<Conn>> {
        match self.io {
            Io::Plain(s) if self.pos >= self.ahead.len() => Ok((s, self.info)),
            io => Err(Box::new(Conn { io, ..self })),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.ahead.len() {
            let n = (this.ahead.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.ahead[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.ahead.len() {
                this.ahead = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}
