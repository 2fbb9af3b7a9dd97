//! Events to the plugins of the same tenant that subscribe to a topic.

use serde::Serialize;

use crate::bindings::bitbylaw::plugin::events as wit;
use crate::{Error, StoreError};

pub fn emit(topic: &str, payload: &[u8]) -> Result<(), StoreError> {
    wit::emit(topic, payload)
}

pub fn emit_json<T: Serialize + ?Sized>(topic: &str, payload: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(payload)
        .map_err(|e| Error::Internal(format!("event not serialisable: {e}")))?;
    Ok(emit(topic, &bytes)?)
}

/// While an event is handled: the most deliveries it gets (the subscription's
/// `max_attempts`). `event.attempt == max_attempts()` means a retryable error
/// now sends it to the dead letters. `None` outside `handle_event`.
pub fn max_attempts() -> Option<u32> {
    wit::max_attempts()
}

/// Whether this is the event's last delivery: after a failure now it goes to
/// the dead letters, retryable or not.
pub fn is_last_attempt(event: &crate::Event) -> bool {
    max_attempts().is_some_and(|max| event.attempt >= max)
}
