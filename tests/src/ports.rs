//! Loopback ports reserved for brokers that are not running yet.
//!
//! The harness binds `127.0.0.1:0` (the kernel picks a free port) and holds the listener
//! until right before the broker is spawned, so two brokers of one test, or two tests, never
//! get the same port. Between release and the broker's own bind another process could take
//! the port; on loopback that window is a few milliseconds. A restarted broker reuses its
//! ports unreserved, as a real one would.

use std::io;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::net::TcpListener;

/// A loopback port held by a listening socket until [`ReservedPort::release`].
#[derive(Debug)]
pub struct ReservedPort {
    listener: TcpListener,
}

impl ReservedPort {
    /// Reserves a free port on 127.0.0.1.
    pub fn new() -> io::Result<ReservedPort> {
        ReservedPort::on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Reserves a free port on `ip` (any of 127.0.0.0/8 works on Linux without set-up).
    pub fn on(ip: IpAddr) -> io::Result<ReservedPort> {
        Ok(ReservedPort { listener: TcpListener::bind(SocketAddr::new(ip, 0))? })
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Frees the port for the process about to bind it and returns its address.
    pub fn release(self) -> SocketAddr {
        self.addr()
    }
}

/// Whether `addr` can be listened on right now (as a broker would, with `SO_REUSEADDR`).
pub fn is_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_held_and_released() {
        let ports: Vec<ReservedPort> = (0..8).map(|_| ReservedPort::new().unwrap()).collect();
        let mut addrs: Vec<SocketAddr> = ports.iter().map(ReservedPort::addr).collect();
        for a in &addrs {
            assert!(a.ip().is_loopback() && a.port() != 0, "{a}");
            assert!(!is_free(*a), "{a} is reserved but bindable");
        }
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 8, "duplicate ports: {addrs:?}");
        for p in ports {
            let a = p.release();
            assert!(is_free(a), "{a} still held after release");
        }
    }
}
