//! A value remembered for a while: the token memo, a refusal held for a few
//! seconds, a token refused right after issue. One small type instead of a
//! mutex around `Option<(value, when)>` at each place.

use std::borrow::Borrow;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct Recent<T> {
    hold: Duration,
    slot: Mutex<Option<(T, Instant)>>,
}

impl<T: Clone> Recent<T> {
    /// Remembers values for `hold`.
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            slot: Mutex::new(None),
        }
    }

    /// The value, if it was set less than `hold` ago.
    pub fn get(&self) -> Option<T> {
        let slot = self.slot.lock().ok()?;
        slot.as_ref()
            .filter(|(_, at)| at.elapsed() < self.hold)
            .map(|(value, _)| value.clone())
    }

    pub fn set(&self, value: T) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((value, Instant::now()));
        }
    }

    /// Forgets the value if it is `value`.
    pub fn forget<Q>(&self, value: &Q)
    where
        T: Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        if let Ok(mut slot) = self.slot.lock()
            && slot
                .as_ref()
                .is_some_and(|(held, _)| held.borrow() == value)
        {
            *slot = None;
        }
    }
}
