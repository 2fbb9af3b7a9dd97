//! Key-value state of this tenant and plugin; other tenants and plugins cannot see it.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::bitbylaw::plugin::kv as wit;
use crate::{Error, StoreError};

pub fn get(key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    wit::get(key)
}

pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
    wit::set(key, value, ttl.map(millis))
}

pub fn delete(key: &str) -> Result<bool, StoreError> {
    wit::delete(key)
}

pub fn incr(key: &str, delta: i64) -> Result<i64, StoreError> {
    wit::incr(key, delta)
}

/// Adds members; returns those that were new.
pub fn set_add(key: &str, members: &[String]) -> Result<Vec<String>, StoreError> {
    wit::set_add(key, members)
}

pub fn set_remove(key: &str, members: &[String]) -> Result<u32, StoreError> {
    wit::set_remove(key, members)
}

pub fn set_members(key: &str) -> Result<Vec<String>, StoreError> {
    wit::set_members(key)
}

/// Reads a JSON value.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Internal(format!(
                "stored value `{key}` is not the expected JSON: {e}"
            ))
        }),
        None => Ok(None),
    }
}

/// Writes a JSON value.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::Internal(format!("value not serialisable: {e}")))?;
    Ok(set(key, &bytes, ttl)?)
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
