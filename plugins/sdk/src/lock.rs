//! Leases shared by every host instance: only one holder at a time, until the TTL runs out.

use std::time::Duration;

use crate::StoreError;
use crate::bindings::bitbylaw::plugin::lock as wit;
use crate::kv::millis;

/// A held lease. Release it when done; if dropped, the TTL frees the lock.
#[derive(Debug)]
pub struct Lease {
    name: String,
    token: String,
}

impl Lease {
    pub fn token(&self) -> &str {
        &self.token
    }

    /// False when the lease had already expired (someone else may hold the lock now).
    pub fn extend(&self, ttl: Duration) -> Result<bool, StoreError> {
        wit::extend(&self.name, &self.token, millis(ttl))
    }

    pub fn release(self) -> Result<bool, StoreError> {
        wit::release(&self.name, &self.token)
    }
}

/// Takes the lock, or `None` when someone holds it.
pub fn acquire(name: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
    Ok(wit::acquire(name, millis(ttl))?.map(|token| Lease {
        name: name.to_owned(),
        token,
    }))
}

/// Extends a lease known only by its token (e.g. kept in `kv` between calls).
pub fn extend(name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
    wit::extend(name, token, millis(ttl))
}

/// Releases a lease known only by its token.
pub fn release(name: &str, token: &str) -> Result<bool, StoreError> {
    wit::release(name, token)
}
