//! Leases shared by every host instance: only one holder at a time, until the TTL runs out.
//!
//! For a piece of work that must not run twice at once, [`hold`] gives a
//! [`Held`] lease: extended as the work goes on ([`Held::keep`] once a third
//! of its lifetime has passed, [`Held::fence`] before each write, which also
//! tells when it was lost), released when dropped.

use std::time::{Duration, Instant};

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

/// Why a held lease could not be kept.
#[derive(Debug, Clone)]
pub enum LeaseError {
    /// It is no longer this holder's (it ran out, or was freed): another may
    /// hold it now, so the work must stop before its next write.
    Lost,
    /// The store could not be asked.
    Store(StoreError),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Lost => f.write_str("the lease was lost (it ran out or was freed)"),
            LeaseError::Store(error) => write!(f, "{}", crate::Error::from(error.clone())),
        }
    }
}

/// A lease held for a piece of work; released when dropped (if it is still
/// this holder's), or by the TTL if the instance dies.
#[derive(Debug)]
pub struct Held {
    lease: Option<Lease>,
    ttl: Duration,
    extended_at: Instant,
}

/// Takes `name` for `ttl`, or `None` when someone holds it.
pub fn hold(name: &str, ttl: Duration) -> Result<Option<Held>, StoreError> {
    Ok(acquire(name, ttl)?.map(|lease| Held {
        lease: Some(lease),
        ttl,
        extended_at: Instant::now(),
    }))
}

/// Takes `name` for `ttl`, waiting up to `patience` while another holds it
/// (looking every 20 ms): for short work on one record, such as a receipt,
/// where two at once should run one after the other. `None` when it stayed
/// held: tell the caller to try again.
pub fn hold_within(
    name: &str,
    ttl: Duration,
    patience: Duration,
) -> Result<Option<Held>, StoreError> {
    let started = Instant::now();
    loop {
        if let Some(held) = hold(name, ttl)? {
            return Ok(Some(held));
        }
        if started.elapsed() >= patience {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Held {
    pub fn token(&self) -> &str {
        self.lease.as_ref().map_or("", Lease::token)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Extends the lease now: before a write, so that a holder whose lease
    /// was lost (and another may write) stops first.
    pub fn fence(&mut self) -> Result<(), LeaseError> {
        let Some(lease) = &self.lease else {
            return Err(LeaseError::Lost);
        };
        match lease.extend(self.ttl) {
            Ok(true) => {
                self.extended_at = Instant::now();
                Ok(())
            }
            Ok(false) => Err(LeaseError::Lost),
            Err(error) => Err(LeaseError::Store(error)),
        }
    }

    /// Extends the lease once a third of its lifetime has passed since the
    /// last extension; cheap to call often.
    pub fn keep(&mut self) -> Result<(), LeaseError> {
        if self.extended_at.elapsed() < self.ttl / 3 {
            return Ok(());
        }
        self.fence()
    }

    /// Releases it now; false when it was no longer this holder's.
    pub fn release(mut self) -> Result<bool, StoreError> {
        match self.lease.take() {
            Some(lease) => lease.release(),
            None => Ok(false),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // Not released now, it frees itself with its TTL.
            let _ = lease.release();
        }
    }
}
