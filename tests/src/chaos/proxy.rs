//! [`Proxy`]: one TCP proxy with a switchable [`Mode`], for links between brokers.
//!
//! Each accepted connection is dialed through to the target and pumped in both directions by
//! two tasks that watch the proxy's mode, so a change reaches open connections at once.

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rand::RngExt;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a proxy does with the bytes of its connections.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Hold connections open and forward nothing: bytes read from either side are discarded.
    /// Leaving Blackhole resets every connection that lost bytes (its byte stream is now
    /// corrupt), so the peers reconnect — like a long partition after which TCP gave up.
    Blackhole,
    /// Reset every open connection and every new one at once.
    Reset,
    /// Deliver every chunk after base ± jitter (uniform), in order.
    Delay {
        /// Mean delay.
        base: Duration,
        /// Half-width of the uniform spread around `base`.
        jitter: Duration,
    },
    /// Stop reading and forwarding; bytes wait in the kernel's socket buffers and flow again,
    /// unchanged, when the mode changes (a partition shorter than TCP's give-up).
    Stall,
    /// Forward requests; replace each response chunk, with this probability, by a reset of
    /// the connection (client-side use: indeterminate results, forced retries).
    DropResponses {
        /// 0.0 ..= 1.0.
        probability: f64,
    },
}

/// Counters of one proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes forwarded toward the target.
    pub bytes_up: u64,
    /// Bytes forwarded back to the dialer.
    pub bytes_down: u64,
    /// Bytes discarded (blackhole).
    pub bytes_dropped: u64,
    /// Connections reset by the proxy.
    pub resets: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    bytes_dropped: AtomicU64,
    resets: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept.abort();
        // Closing the channel ends every connection's pumps.
        self.mode.send_replace(Mode::Reset);
    }
}

/// A TCP proxy; clones share it, and dropping the last one stops it and closes its
/// connections.
#[derive(Debug, Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl Proxy {
    /// Listens on `bind_ip:0` and forwards each accepted connection to `target`.
    pub async fn start(bind_ip: IpAddr, target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(SocketAddr::new(bind_ip, 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Pass);
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(listener, target, mode.clone(), counters.clone()));
        Ok(Proxy { inner: Arc::new(Inner { addr, target, mode, counters, accept }) })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.inner.target
    }

    /// Switches the mode, for open connections too.
    pub fn set_mode(&self, mode: Mode) {
        self.inner.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode.borrow().clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.inner.counters;
        ProxyStats {
            connections: c.connections.load(Relaxed),
            bytes_up: c.bytes_up.load(Relaxed),
            bytes_down: c.bytes_down.load(Relaxed),
            bytes_dropped: c.bytes_dropped.load(Relaxed),
            resets: c.resets.load(Relaxed),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        counters.connections.fetch_add(1, Relaxed);
        let rx = mode.subscribe();
        let counters = counters.clone();
        tokio::spawn(async move {
            if *rx.borrow() == Mode::Reset {
                reset(client, &counters);
                return;
            }
            // A refused dial closes the accepted connection: the dialer sees a dead peer.
            let Ok(server) = TcpStream::connect(target).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let (kill_tx, kill_rx) = watch::channel(false);
            let up = tokio::spawn(pump(
                cr,
                sw,
                rx.clone(),
                counters.clone(),
                Dir::Up,
                kill_tx.clone(),
                kill_rx.clone(),
            ));
            let down = tokio::spawn(pump(sr, cw, rx, counters, Dir::Down, kill_tx, kill_rx));
            let _ = tokio::join!(up, down);
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// Resets with RST (SO_LINGER 0), not a graceful FIN.
fn reset(stream: TcpStream, counters: &Counters) {
    counters.resets.fetch_add(1, Relaxed);
    abortive_close(&stream);
    drop(stream);
}

/// Makes the socket's close send RST. tokio deprecates `set_linger` because a non-zero
/// linger blocks the dropping thread; a zero linger never does.
#[allow(deprecated)]
fn abortive_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Pumps one direction until EOF, an error, or a reset (by the mode or the other pump).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
    dir: Dir,
    kill: watch::Sender<bool>,
    mut killed: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut dropped = false;
    let mut due = tokio::time::Instant::now();
    // Both sockets close with RST once the other pump, told by `kill`, drops its halves too.
    let die = |from: OwnedReadHalf, to: OwnedWriteHalf, counters: &Counters| {
        counters.resets.fetch_add(1, Relaxed);
        abortive_close(from.as_ref());
        abortive_close(to.as_ref());
        kill.send_replace(true);
    };
    loop {
        let current = mode.borrow_and_update().clone();
        if *killed.borrow() {
            return;
        }
        match &current {
            Mode::Reset => return die(from, to, &counters),
            Mode::Pass | Mode::Delay { .. } | Mode::DropResponses { .. } if dropped => {
                return die(from, to, &counters);
            }
            Mode::Stall => {
                tokio::select! {
                    _ = mode.changed() => continue,
                    _ = killed.changed() => return,
                }
            }
            _ => {}
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = mode.changed() => continue,
            _ = killed.changed() => return,
        };
        // The mode may have changed while the read was pending: judge the bytes by the mode
        // now in force.
        let now = mode.borrow().clone();
        match now {
            Mode::Blackhole => {
                dropped = true;
                counters.bytes_dropped.fetch_add(n as u64, Relaxed);
                continue;
            }
            Mode::Reset => return die(from, to, &counters),
            Mode::Stall => {
                // Hold these bytes until the stall ends, then deliver them.
                let _ = mode.wait_for(|m| *m != Mode::Stall).await;
            }
            Mode::Delay { base, jitter } => {
                let spread = jitter.as_micros() as i64;
                let offset =
                    if spread > 0 { rand::rng().random_range(-spread..=spread) } else { 0 };
                let delay = Duration::from_micros((base.as_micros() as i64 + offset).max(0) as u64);
                due = due.max(tokio::time::Instant::now() + delay);
                tokio::time::sleep_until(due).await;
            }
            Mode::DropResponses { probability }
                if dir == Dir::Down && rand::rng().random_bool(probability.clamp(0.0, 1.0)) =>
            {
                return die(from, to, &counters);
            }
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let c = if dir == Dir::Up { &counters.bytes_up } else { &counters.bytes_down };
        c.fetch_add(n as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    /// An echo server on `ip:0`.
    async fn echo(ip: Ipv4Addr) -> SocketAddr {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn proxy_to_echo() -> Proxy {
        let target = echo(Ipv4Addr::LOCALHOST).await;
        Proxy::start(Ipv4Addr::LOCALHOST.into(), target).await.unwrap()
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(LIMIT, s.read_exact(&mut got)).await.expect("echo in time").unwrap();
        got
    }

    /// Whether `s` sees nothing within `d` (asserting an absence needs a bounded wait).
    async fn silent_for(s: &mut TcpStream, d: Duration) -> bool {
        let mut b = [0u8; 1];
        tokio::time::timeout(d, s.read(&mut b)).await.is_err()
    }

    /// Whether `s` is closed (EOF or reset) within the limit.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 16];
        matches!(tokio::time::timeout(LIMIT, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn pass_forwards_both_ways_and_counts() {
        let p = proxy_to_echo().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
        let st = p.stats();
        assert_eq!((st.connections, st.bytes_up, st.bytes_down), (1, 5, 5));
    }

    #[tokio::test]
    async fn stall_holds_bytes_and_delivers_them_after() {
        let p = proxy_to_echo().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"a").await, b"a");
        p.set_mode(Mode::Stall);
        s.write_all(b"held").await.unwrap();
        assert!(silent_for(&mut s, Duration::from_millis(200)).await, "a stalled link delivered");
        p.set_mode(Mode::Pass);
        let mut got = [0u8; 4];
        tokio::time::timeout(LIMIT, s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"held");
    }

    #[tokio::test]
    async fn blackhole_drops_and_leaving_it_resets_the_connection() {
        let p = proxy_to_echo().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"a").await, b"a");
        p.set_mode(Mode::Blackhole);
        s.write_all(b"lost").await.unwrap();
        assert!(silent_for(&mut s, Duration::from_millis(200)).await, "a blackhole delivered");
        crate::poll("bytes dropped", LIMIT, || async {
            if p.stats().bytes_dropped >= 4 { Ok(()) } else { Err("not yet") }
        })
        .await
        .unwrap();
        p.set_mode(Mode::Pass);
        assert!(closed(&mut s).await, "a connection that lost bytes was kept");
        // New connections pass again.
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"again").await, b"again");
    }

    #[tokio::test]
    async fn reset_closes_open_and_new_connections() {
        let p = proxy_to_echo().await;
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"a").await, b"a");
        p.set_mode(Mode::Reset);
        assert!(closed(&mut s).await, "open connection survived Reset");
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert!(closed(&mut s).await, "new connection survived Reset");
        assert!(p.stats().resets >= 2);
    }

    #[tokio::test]
    async fn delay_holds_each_chunk_and_keeps_order() {
        let p = proxy_to_echo().await;
        let base = Duration::from_millis(60);
        p.set_mode(Mode::Delay { base, jitter: Duration::from_millis(20) });
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut s, b"x").await, b"x");
        // Both directions are delayed: at least twice (base - jitter).
        assert!(started.elapsed() >= Duration::from_millis(80), "{:?}", started.elapsed());
        let msgs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100]).collect();
        for m in &msgs {
            s.write_all(m).await.unwrap();
        }
        let mut got = vec![0u8; 5000];
        tokio::time::timeout(LIMIT, s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, msgs.concat(), "delayed bytes reordered");
    }

    #[tokio::test]
    async fn drop_responses_resets_on_a_response_but_passes_at_zero() {
        let p = proxy_to_echo().await;
        p.set_mode(Mode::DropResponses { probability: 0.0 });
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"ok").await, b"ok");
        p.set_mode(Mode::DropResponses { probability: 1.0 });
        s.write_all(b"request").await.unwrap();
        assert!(closed(&mut s).await, "a response was delivered");
        assert_eq!(p.stats().bytes_up, 9, "the request itself was forwarded");
    }

    #[tokio::test]
    async fn a_refused_target_closes_the_connection_and_drop_stops_the_proxy() {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let p = Proxy::start(Ipv4Addr::LOCALHOST.into(), gone).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert!(closed(&mut s).await);
        let addr = p.addr();
        drop(p);
        crate::poll("the listener closing", LIMIT, || async {
            match TcpStream::connect(addr).await {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepting"),
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn binds_on_other_loopback_addresses() {
        let target = echo(Ipv4Addr::new(127, 0, 0, 3)).await;
        let p = Proxy::start(Ipv4Addr::new(127, 0, 0, 2).into(), target).await.unwrap();
        assert_eq!(p.addr().ip(), Ipv4Addr::new(127, 0, 0, 2));
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"elsewhere").await, b"elsewhere");
    }
}
