//! Named listeners: more ports, each with the address clients of that port are told.
//!
//! The `listen` / `advertise` pair is the listener named [`INTERNAL`]: brokers talk to each
//! other over it, and clients that connect to it see every broker at its `advertise` address.
//! Clients in another network (outside a container network or a Kubernetes cluster) reach the
//! brokers at other addresses; they connect to a named listener instead, and Metadata (Kafka's
//! and gRPC's) answers them with each broker's address on that listener — as Kafka's
//! `listeners` / `advertised.listeners`:
//!
//! ```toml
//! listeners = "external=0.0.0.0:19092"
//! advertised-listeners = "external=broker1.example.com:19092"
//! ```
//!
//! Every listener serves both protocols (gRPC and Kafka) with the same TLS and authentication.
//! A broker that lacks the listener a client connected to is shown at its internal address.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::ConfigError;
use super::check_host_port;
use super::invalid;

/// The name of the `listen` / `advertise` pair.
pub const INTERNAL: &str = "internal";

/// One named listener besides the internal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedListener {
    /// Its name: letters, digits, `-` and `_`.
    pub name: String,
    /// `ip:port` it binds.
    pub listen: SocketAddr,
    /// `host:port` its clients are told.
    pub advertise: String,
}

/// Parses `listeners` and `advertised-listeners` (`name=addr,...`): every advertised name must
/// be a listener, and a listener without an advertised address advertises its bind address
/// (which must then be one others can dial).
pub fn parse(listeners: &str, advertised: &str) -> Result<Vec<NamedListener>, ConfigError> {
    let binds = pairs("listeners", listeners)?;
    let mut adverts = pairs("advertised-listeners", advertised)?;
    let mut out = Vec::with_capacity(binds.len());
    for (name, bind) in binds {
        let listen = bind.parse::<SocketAddr>().map_err(|_| {
            invalid("listeners", format!("{name}: `{bind}` is not ip:port (e.g. 0.0.0.0:19092)"))
        })?;
        let advertise = adverts.remove(&name).unwrap_or_else(|| bind.clone());
        check_host_port(&advertise)
            .map_err(|why| invalid("advertised-listeners", format!("{name}: {why}")))?;
        if advertise.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_unspecified()) {
            return Err(invalid(
                "advertised-listeners",
                format!(
                    "{name}: `{advertise}` is an unspecified address others cannot reach \
                     (give the listener an advertised address)"
                ),
            ));
        }
        out.push(NamedListener { name, listen, advertise });
    }
    if let Some(name) = adverts.keys().next() {
        return Err(invalid(
            "advertised-listeners",
            format!("{name} is not a listener (name it in `listeners` too)"),
        ));
    }
    Ok(out)
}

/// `name=value,...` into a map; names are unique, well-formed and not [`INTERNAL`].
fn pairs(key: &str, list: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, value)) = item.split_once('=') else {
            return Err(invalid(key, format!("`{item}` is not name=host:port")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(key, format!("`{name}`: a name is letters, digits, - and _")));
        }
        if name.eq_ignore_ascii_case(INTERNAL) {
            return Err(invalid(
                key,
                format!("`{name}` is the listen/advertise pair's name; set those keys instead"),
            ));
        }
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return Err(invalid(key, format!("{name} is named twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_with_and_without_advertised_addresses() {
        let l = parse(
            "external=0.0.0.0:19092, lan=127.0.0.1:19093",
            "external=broker1.example.com:29092",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "external");
        assert_eq!(l[0].listen, "0.0.0.0:19092".parse().unwrap());
        assert_eq!(l[0].advertise, "broker1.example.com:29092");
        assert_eq!((l[1].name.as_str(), l[1].advertise.as_str()), ("lan", "127.0.0.1:19093"));
        assert!(parse("", "").unwrap().is_empty());
    }

    #[test]
    fn bad_listeners_are_refused_with_the_reason() {
        let why = |l: &str, a: &str| parse(l, a).unwrap_err().to_string();
        assert!(why("external=0.0.0.0:19092", "").contains("unspecified"), "{}", why("x", ""));
        assert!(why("external", "").contains("not name=host:port"));
        assert!(why("ext ernal=127.0.0.1:1", "").contains("a name is"));
        assert!(why("internal=127.0.0.1:1", "").contains("listen/advertise pair"));
        assert!(why("a=127.0.0.1:1,a=127.0.0.1:2", "").contains("named twice"));
        assert!(why("a=localhost:1", "").contains("not ip:port"));
        assert!(why("a=127.0.0.1:1", "b=x:1").contains("b is not a listener"));
        assert!(why("a=127.0.0.1:1", "a=x:0").contains("1..=65535"));
    }
}
