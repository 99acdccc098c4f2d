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
    clients: BTreeMap<u64, Proxy>,
    ids: Vec<u64>,
}

impl Net {
    /// Starts a proxy for every ordered pair of `brokers` (id, real address), and one client
    /// proxy per broker.
    pub async fn start(brokers: &[(u64, SocketAddr)]) -> std::io::Result<Net> {
        let mut proxies = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for &(from, from_addr) in brokers {
            clients.insert(from, Proxy::start(from_addr.ip(), from_addr).await?);
            for &(to, to_addr) in brokers {
                if from != to {
                    proxies.insert((from, to), Proxy::start(from_addr.ip(), to_addr).await?);
                }
            }
        }
        Ok(Net { proxies, clients, ids: brokers.iter().map(|(id, _)| *id).collect() })
    }

    /// The address clients reach broker `id` at: its client proxy, which the broker
    /// advertises.
    pub fn client_addr(&self, id: u64) -> SocketAddr {
        self.client(id).addr()
    }

    /// The client proxy of broker `id`.
    pub fn client(&self, id: u64) -> &Proxy {
        self.clients.get(&id).unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// Every client proxy to `mode` (e.g. [`Mode::DropResponses`]).
    pub fn set_clients(&self, mode: Mode) {
        for p in self.clients.values() {
            p.set_mode(mode.clone());
        }
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

    /// Every proxy, client proxies too, back to [`Mode::Pass`].
    pub fn heal(&self) {
        self.set_all(Mode::Pass);
        self.set_clients(Mode::Pass);
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
            .chain(self.clients.iter().filter_map(|(id, p)| match p.mode() {
                Mode::Pass => None,
                m => Some(format!("clients->{id} {m:?}")),
            }))
            .collect();
        if cut.is_empty() { "all links pass".into() } else { cut.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    async fn net3() -> Net {
        let mut brokers = Vec::new();
        for id in 1..=3u8 {
            // Targets need not listen for the shape checks.
            let l = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, id), 0)).unwrap();
            brokers.push((u64::from(id), l.local_addr().unwrap()));
        }
        Net::start(&brokers).await.unwrap()
    }

    /// The directed links not passing.
    fn cut(net: &Net) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for a in net.ids() {
            for b in net.ids() {
                if a != b && net.proxy(a, b).mode() != Mode::Pass {
                    out.push((a, b));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn shapes_cut_exactly_their_links_and_heal_restores_all() {
        let net = net3().await;
        assert_eq!(net.proxy_addr(1, 2).ip(), Ipv4Addr::new(127, 0, 0, 1), "on the dialer's IP");
        assert_eq!(net.proxy(1, 2).target().ip(), Ipv4Addr::new(127, 0, 0, 2));
        net.isolate(2, Mode::Blackhole);
        assert_eq!(cut(&net), vec![(1, 2), (2, 1), (2, 3), (3, 2)]);
        net.heal();
        assert!(cut(&net).is_empty());
        net.partition(&[vec![1], vec![2, 3]], Mode::Stall);
        assert_eq!(cut(&net), vec![(1, 2), (1, 3), (2, 1), (3, 1)]);
        assert_eq!(net.proxy(1, 3).mode(), Mode::Stall);
        net.heal();
        net.bridge(1, 2, 3, Mode::Blackhole);
        assert_eq!(cut(&net), vec![(1, 3), (3, 1)]);
        net.heal();
        net.one_way(3, 1, Mode::Blackhole);
        assert_eq!(cut(&net), vec![(3, 1)]);
        assert!(net.describe().contains("3->1 Blackhole"), "{}", net.describe());
        net.heal();
        assert_eq!(net.describe(), "all links pass");
        assert_eq!(net.client(2).target(), net.proxy(1, 2).target(), "client proxy of 2");
        net.set_clients(Mode::DropResponses { probability: 0.5 });
        assert!(net.describe().contains("clients->3 DropResponses"), "{}", net.describe());
        net.heal();
        assert_eq!(net.client(3).mode(), Mode::Pass);
    }

    #[tokio::test]
    #[should_panic(expected = "not in the net")]
    async fn partition_refuses_unknown_brokers() {
        net3().await.partition(&[vec![1], vec![9]], Mode::Blackhole);
    }
}
