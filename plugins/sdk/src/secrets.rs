//! The plugin's own secrets for the current tenant. Keep them out of logs and responses.

use crate::Error;
use crate::bindings::bitbylaw::plugin::secrets as wit;

pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}

/// A secret the plugin cannot work without; a 500 naming (only) the secret when it is missing.
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| Error::Internal(format!("secret `{name}` is not configured")))
}
