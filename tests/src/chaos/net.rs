//! [`Net`]: one [`Proxy`] per direction per broker pair, and partition shapes made of them.
//!
//! The proxy `(a, b)` listens on a's IP and forwards to b's real address; broker `a` is
//! configured to dial b through it, so it carries the connections a opens to b — a's requests
//! and b's answers on them. Cutting `(a, b)` therefore silences a → b calls while b → a calls
//! (through `(b, a)`) still pass: a one-way partition.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::proxy::Mode;
use super::proxy::Proxy;

/// The proxies between the brokers of one cluster.
#[derive(Debug)]
pub struct Net {
    proxies: BTreeMap<(u64, u64), Proxy>,
    ids: Vec<u64>,
}

impl Net {
    /// Starts a proxy for every ordered pair of `brokers` (id, real address).
    pub async fn start(brokers: &[(u64, SocketAddr)]) -> std::io::Result<Net> {
        let mut proxies = BTreeMap::new();
        for &(from, from_addr) in brokers {
            for &(to, to_addr) in brokers {
                if from != to {
                    proxies.insert((from, to), Proxy::start(from_addr.ip(), to_addr).await?);
                }
            }
        }
        Ok(Net { proxies, ids: brokers.iter().map(|(id, _)| *id).collect() })
    }

    /// The address broker `from` must dial to reach broker `to`.
    pub fn proxy_addr(&self, from: u64, to: u64) -> SocketAddr {
        self.proxy(from, to).addr()
    }

    /// The proxy carrying `from`'s connections to `to`.
    ///
    /// # Panics
    /// When either id is not in the net, or they are equal.
    pub fn proxy(&self, from: u64, to: u64) -> &Proxy {
        self.proxies.get(&(from, to)).unwrap_or_else(|| panic!("no link {from}->{to}"))
    }

    /// The broker ids.
    pub fn ids(&self) -> Vec<u64> {
        self.ids.clone()
    }

    /// Sets one direction.
    pub fn set(&self, from: u64, to: u64, mode: Mode) {
        self.proxy(from, to).set_mode(mode);
    }

    /// Every proxy back to [`Mode::Pass`].
    pub fn heal(&self) {
        self.set_all(Mode::Pass);
    }

    /// Every link to `mode`.
    pub fn set_all(&self, mode: Mode) {
        for p in self.proxies.values() {
            p.set_mode(mode.clone());
        }
    }

    fn cut(&self, a: u64, b: u64, mode: &Mode) {
        self.set(a, b, mode.clone());
        self.set(b, a, mode.clone());
    }

    /// Cuts `node` from every other broker, both ways.
    pub fn isolate(&self, node: u64, mode: Mode) {
        for &other in self.ids.iter().filter(|&&o| o != node) {
            self.cut(node, other, &mode);
        }
    }

    /// Cuts every pair on different sides, both ways; brokers on no side stay connected to
    /// everyone.
    ///
    /// # Panics
    /// On an id not in the net.
    pub fn partition(&self, sides: &[Vec<u64>], mode: Mode) {
        for id in sides.iter().flatten() {
            assert!(self.ids.contains(id), "broker {id} is not in the net");
        }
        for (i, a_side) in sides.iter().enumerate() {
            for b_side in &sides[i + 1..] {
                for &a in a_side {
                    for &b in b_side {
                        self.cut(a, b, &mode);
                    }
                }
            }
        }
    }

    /// `a` and `c` cannot talk to each other; both still talk to `bridge`.
    pub fn bridge(&self, a: u64, bridge: u64, c: u64, mode: Mode) {
        assert!(a != bridge && c != bridge && a != c, "a bridge needs three brokers");
        self.cut(a, c, &mode);
    }

    /// `from`'s connections to `to` are cut; `to`'s connections to `from` pass.
    pub fn one_way(&self, from: u64, to: u64, mode: Mode) {
        self.set(from, to, mode);
    }

    /// What is not passing, e.g. `1->2 Blackhole, 2->1 Blackhole` (or `all links pass`).
    pub fn describe(&self) -> String {
        let cut: Vec<String> = self
            .proxies
            .iter()
            .filter_map(|((a, b), p)| match p.mode() {
                Mode::Pass => None,
                m => Some(format!("{a}->{b} {m:?}")),
            })
            .collect();
        if cut.is_empty() { "all links pass".into() } else { cut.join(", ") }
    }
}
