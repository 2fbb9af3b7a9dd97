//! Events to the plugins of the same tenant that subscribe to a topic.

use serde::Serialize;

use crate::bindings::bitbylaw::plugin::events as wit;
use crate::{Error, StoreError};

pub fn emit(topic: &str, payload: &[u8]) -> Result<(), StoreError> {
    wit::emit(topic, payload)
}

pub fn emit_json<T: Serialize + ?Sized>(topic: &str, payload: &T) -> Result<(), Error> {
    Ok(emit(topic, &to_bytes(payload)?)?)
}

/// One event per payload, all or none, in one store round trip.
/// Since the world of 2026-12-04 (`events.emit-all`).
pub fn emit_all(topic: &str, payloads: &[Vec<u8>]) -> Result<(), StoreError> {
    wit::emit_all(topic, payloads)
}

/// [`emit_all`] with JSON payloads.
pub fn emit_all_json<T: Serialize>(topic: &str, payloads: &[T]) -> Result<(), Error> {
    let bytes = payloads
        .iter()
        .map(to_bytes)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(emit_all(topic, &bytes)?)
}

fn to_bytes<T: Serialize + ?Sized>(payload: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(payload).map_err(|e| Error::Internal(format!("event not serialisable: {e}")))
}

/// While an event is handled: the most deliveries it gets (the subscription's
/// `max_attempts`). `event.attempt == max_attempts()` means a retryable error
/// now sends it to the dead letters. `None` outside `handle_event`.
/// Since the world of 2026-12-04 (`events.max-attempts`).
pub fn max_attempts() -> Option<u32> {
    wit::max_attempts()
}

/// Whether this is the event's last delivery: after a failure now it goes to
/// the dead letters, retryable or not.
pub fn is_last_attempt(event: &crate::Event) -> bool {
    max_attempts().is_some_and(|max| event.attempt >= max)
}
