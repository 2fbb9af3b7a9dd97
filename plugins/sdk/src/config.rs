//! The plugin's settings for the current tenant (`[plugins.<name>.config]`).

use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::bitbylaw::plugin::config as wit;

/// One setting; tables and lists come as JSON text.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// A setting the plugin cannot work without; a 500 naming the key when it is missing.
pub fn require(key: &str) -> Result<String, Error> {
    get(key).ok_or_else(|| Error::Internal(format!("plugin setting `{key}` is not configured")))
}

/// Every setting as pairs.
pub fn all() -> Vec<(String, String)> {
    wit::get_all()
}

/// All settings deserialised into `T` (values that look like JSON are parsed as JSON).
pub fn load<T: DeserializeOwned>() -> Result<T, Error> {
    let map: serde_json::Map<String, serde_json::Value> = all()
        .into_iter()
        .map(|(key, value)| {
            let parsed = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            (key, parsed)
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| Error::Internal(format!("plugin settings do not fit: {e}")))
}

/// For a setting that is text but may look like a number (`"101"` reaches a
/// plugin as the number 101, see [`load`]):
/// `#[serde(default, deserialize_with = "bitbylaw_sdk::config::text")]`.
pub fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text),
            Some(other) => Some(other.to_string()),
        },
    )
}
