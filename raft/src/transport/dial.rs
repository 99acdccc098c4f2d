//! How a node opens its channel to a peer: plaintext HTTP/2 by default, or through a
//! [`Dialer`] the application supplies (the broker's TLS connector). The transport knows
//! nothing of certificates; it only asks for a channel.

use std::fmt::Debug;

use tonic::transport::Channel;
use tonic::transport::Endpoint;

/// Makes the channel to one peer.
pub trait Dialer: Debug + Send + Sync + 'static {
    /// A lazily connecting channel with `endpoint`'s HTTP/2 settings that dials `dial` and
    /// authenticates the peer as `advertised` (its advertised `host:port`, which differs from
    /// `dial` when the fault suite routes traffic through a proxy).
    fn channel(&self, endpoint: Endpoint, dial: &str, advertised: &str) -> Result<Channel, String>;
}

/// The channel `dialer` makes, or a plaintext one without a dialer.
pub(crate) fn channel(
    dialer: Option<&dyn Dialer>,
    endpoint: Endpoint,
    dial: &str,
    advertised: &str,
) -> Result<Channel, String> {
    match dialer {
        Some(d) => d.channel(endpoint, dial, advertised),
        None => Ok(endpoint.connect_lazy()),
    }
}
