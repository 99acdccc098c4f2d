//! Who is in the cluster at the start: `initial-cluster` (the founding brokers) or `join`
//! (live brokers a new broker joins through), and the `host:port` check both use.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::ConfigError;
use super::invalid;

/// Parses `initial-cluster` for the broker `node_id` advertising `advertise` (see
/// [`super::BrokerConfig::initial_cluster`]).
pub(crate) fn initial_cluster(
    list: &str,
    node_id: u64,
    advertise: &str,
) -> Result<BTreeMap<u64, String>, ConfigError> {
    const KEY: &str = "initial-cluster";
    let mut members = BTreeMap::new();
    if list.trim().is_empty() {
        members.insert(node_id, advertise.to_string());
        return Ok(members);
    }
    let mut addrs = BTreeSet::new();
    for item in list.split(',').map(str::trim) {
        let bad = |why: String| invalid(KEY, format!("item `{item}`: {why}"));
        let (id, addr) = item.split_once('=').ok_or_else(|| bad("expected id=host:port".into()))?;
        let id: u64 = match id.trim().parse() {
            Ok(id) if id > 0 => id,
            _ => return Err(bad(format!("`{}` is not a broker id (a positive integer)", id))),
        };
        let addr = addr.trim();
        check_host_port(addr).map_err(bad)?;
        if members.contains_key(&id) {
            return Err(bad(format!("broker id {id} is listed twice")));
        }
        if !addrs.insert(addr) {
            return Err(bad(format!("address {addr} is listed twice")));
        }
        members.insert(id, addr.to_string());
    }
    match members.get(&node_id) {
        None => {
            Err(invalid(KEY, format!("`{}` does not list this broker (node-id {})", list, node_id)))
        }
        Some(addr) if addr != advertise => Err(invalid(
            KEY,
            format!(
                "lists this broker (node-id {}) at {addr}, but it advertises {}; \
                 the list must give each broker its advertised address",
                node_id, advertise
            ),
        )),
        Some(_) => Ok(members),
    }
}

/// Parses `join` (`host:port,...`); it excludes `initial-cluster` (a founding member does not
/// join: it is there from the start).
pub(crate) fn join(list: &str, initial_cluster: &str) -> Result<Vec<String>, ConfigError> {
    let addrs: Vec<String> =
        list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    if addrs.is_empty() {
        return Ok(addrs);
    }
    if !initial_cluster.trim().is_empty() {
        return Err(invalid(
            "join",
            "a broker either founds the cluster (initial-cluster) or joins it (join), not both",
        ));
    }
    for a in &addrs {
        check_host_port(a).map_err(|why| invalid("join", why))?;
    }
    Ok(addrs)
}

/// Checks a dialable `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address,
/// and a port in 1..=65535.
pub(crate) fn check_host_port(addr: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{addr}` is not host:port: {why}"));
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("no port");
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return bad("the port must be 1..=65535"),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("bad IPv6 address"),
        };
    }
    if host.is_empty() {
        return bad("no host");
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return bad("the host is not a DNS name or IP address (IPv6 goes in brackets)");
    }
    Ok(())
}
