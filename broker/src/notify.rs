//! systemd's readiness protocol (`Type=notify`, `sd_notify(3)`): `READY=1` once the broker
//! is ready to serve (what `/readyz` answers 200 for), `STOPPING=1` when it begins to shut
//! down. Without `NOTIFY_SOCKET` in the environment (not started by systemd) nothing is
//! sent. Other service managers that speak the protocol work the same.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::http::Health;

/// How often readiness is checked until it is reached.
const POLL: Duration = Duration::from_millis(100);

/// Whether a service manager listens.
fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells the service manager `READY=1` once `health` is ready; returns then.
pub async fn ready_when(health: Arc<dyn Health>) {
    if !wanted() {
        return;
    }
    loop {
        if health.ready().is_ok() {
            send(&[NotifyState::Ready, NotifyState::Status("serving")]);
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Tells the service manager `STOPPING=1`.
pub fn stopping() {
    if wanted() {
        send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    // The socket stays in the environment: readiness and stopping are both sent.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("telling the service manager {states:?}: {e}");
    }
}
