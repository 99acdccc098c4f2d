//! Users: SCRAM credentials in the controller state, listed and changed on the controller
//! leader. Who may is decided by ACLs as Kafka does (Describe or Alter on the cluster), by
//! the caller's handler; a broker forwarding a request for a client checked the client
//! first.

use std::collections::BTreeMap;

use crate::auth::Hash;
use crate::auth::scram;
use crate::auth::scram::Credential;
use crate::broker::Broker;
use crate::controller::Command;
use crate::error::Error;
use crate::error::Result;

/// Whether `principal` (`User:<name>`) is a broker: listed in `[auth] broker-principals`, or
/// by default the principal of this broker's own certificate.
pub fn is_broker(b: &Broker, principal: &str) -> bool {
    let listed = &b.config().auth.broker_principals;
    if !listed.is_empty() {
        return listed.iter().any(|p| p == principal);
    }
    b.tls().and_then(|t| t.own_principal()).is_some_and(|own| &*own == principal)
}

/// Every user and the hashes it has credentials for, with their iteration counts.
pub fn list(b: &Broker) -> Result<BTreeMap<String, Vec<(Hash, u32)>>> {
    leader(b)?;
    let state = b.controller().state();
    Ok(state
        .users
        .iter()
        .map(|(u, creds)| (u.clone(), creds.iter().map(|(h, c)| (*h, c.iterations)).collect()))
        .collect())
}

/// One user's change: credentials to delete, credentials to set (from salted passwords).
#[derive(Debug, Default)]
pub struct Change {
    pub delete: Vec<Hash>,
    pub set: BTreeMap<Hash, Credential>,
}

impl Change {
    /// Adds a credential from a salted password, as Kafka's admin clients send it.
    pub fn set_salted(
        &mut self,
        hash: Hash,
        iterations: u32,
        salt: &[u8],
        salted: &[u8],
    ) -> Result<()> {
        if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::InvalidRequest(format!(
                "iterations must be {}..={}, got {iterations}",
                scram::MIN_ITERATIONS,
                scram::MAX_ITERATIONS
            )));
        }
        if salt.is_empty() || salted.is_empty() {
            return Err(Error::InvalidRequest("empty salt or salted password".into()));
        }
        if self.delete.contains(&hash) || self.set.contains_key(&hash) {
            return Err(Error::InvalidRequest(format!("{} is changed twice", hash.mechanism())));
        }
        self.set.insert(hash, Credential::from_salted(hash, salted, salt, iterations));
        Ok(())
    }
}

/// Applies `change` to `user` (on the controller leader): deletions first, then the new
/// credentials. Deleting a credential the user does not have is refused.
pub async fn alter(b: &Broker, user: &str, change: Change) -> Result<()> {
    leader(b)?;
    if user.is_empty() {
        return Err(Error::InvalidRequest("empty user name".into()));
    }
    let state = b.controller().state();
    if let Some(h) =
        change.delete.iter().find(|h| !state.users.get(user).is_some_and(|c| c.contains_key(h)))
    {
        return Err(Error::InvalidRequest(format!(
            "user {user} has no {} credential to delete",
            h.mechanism()
        )));
    }
    if !change.delete.is_empty() {
        let cmd = Command::DeleteScramCredentials { user: user.into(), hashes: change.delete };
        b.controller().propose(cmd).await?;
    }
    if !change.set.is_empty() {
        let cmd = Command::SetScramCredentials {
            user: user.into(),
            credentials: change.set,
            if_absent: false,
        };
        b.controller().propose(cmd).await?;
    }
    tracing::info!(user, "SCRAM credentials changed");
    Ok(())
}

fn leader(b: &Broker) -> Result<()> {
    if b.controller().is_leader() { Ok(()) } else { Err(b.controller().not_controller()) }
}
