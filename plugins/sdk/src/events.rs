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
