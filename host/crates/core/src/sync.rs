//! Locking std mutexes without panicking.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`; a poisoned one (a thread panicked while holding it) is used
/// as it is: what it guards here stays consistent, and a request must not panic.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
