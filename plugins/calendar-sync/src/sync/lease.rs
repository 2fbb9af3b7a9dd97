//! The employee's lock, held for the whole run and checked before every
//! write: a run whose lease ran out or was freed, and so may have a second
//! run beside it, stops before its next write and saves nothing.

use std::time::{Duration, Instant};

use bitbylaw_sdk::lock::{Held, LeaseError};
use bitbylaw_sdk::{Error, kv};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::RunError;
use crate::state::lease_key;

/// How often a run leaves a sign of life beside its lock.
const BEAT: Duration = Duration::from_secs(5);

/// A run is taken as live while its last sign of life is younger than this
/// (or a third of the lock's lifetime, if that is longer): a run between two
/// writes waits at most for one upstream call.
pub const LIVE_FOR: Duration = Duration::from_secs(60);

/// Who holds an employee's lock: kept beside it for the `locks` routes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub token: String,
    /// The run's last sign of life, milliseconds since the Unix epoch.
    pub beat_ms: i64,
}

impl Holder {
    pub fn load(kuerzel: &str) -> Result<Option<Holder>, Error> {
        kv::get_json(&lease_key(kuerzel))
    }

    /// How long ago the run last showed it is alive.
    pub fn silent_for(&self) -> Duration {
        let age = Utc::now().timestamp_millis().saturating_sub(self.beat_ms);
        Duration::from_millis(u64::try_from(age).unwrap_or(0))
    }
}

/// The lease of one run (released when the fence is dropped), with its sign of life.
pub struct Fence {
    lease: Held,
    kuerzel: String,
    beat_at: Option<Instant>,
}

impl Fence {
    pub fn held(lease: Held, kuerzel: &str) -> Self {
        let mut fence = Fence {
            lease,
            kuerzel: kuerzel.to_owned(),
            beat_at: None,
        };
        fence.beat();
        fence
    }

    /// Before every write (and every save): extends the lease, which fails
    /// when it is no longer this run's.
    pub fn check(&mut self) -> Result<(), RunError> {
        match self.lease.fence() {
            Ok(()) => {
                if self.beat_at.is_none_or(|at| at.elapsed() >= BEAT) {
                    self.beat();
                }
                Ok(())
            }
            Err(LeaseError::Lost) => Err(RunError::LeaseLost(format!(
                "the run of {} lost its lock (it ran out or was freed); it stopped before its next write and saved nothing",
                self.kuerzel
            ))),
            Err(LeaseError::Store(error)) => Err(Error::from(error).into()),
        }
    }

    /// Leaves the token and a sign of life beside the lock, for the `locks`
    /// routes; failing to do so fails nothing.
    fn beat(&mut self) {
        let holder = Holder {
            token: self.lease.token().to_owned(),
            beat_ms: Utc::now().timestamp_millis(),
        };
        let _ = kv::set_json(&lease_key(&self.kuerzel), &holder, Some(self.lease.ttl()));
        self.beat_at = Some(Instant::now());
    }

    /// The run is over: the lease goes, and with it the sign of life.
    pub fn release(self) {
        match self.lease.release() {
            // Still this run's: its sign of life goes with it.
            Ok(true) => {
                let _ = kv::delete(&lease_key(&self.kuerzel));
            }
            // Lost: the holder record is another run's now, left as it is.
            Ok(false) => {}
            Err(error) => bitbylaw_sdk::warn!(
                "could not release the lock of {}: {}",
                self.kuerzel,
                Error::from(error)
            ),
        }
    }
}
