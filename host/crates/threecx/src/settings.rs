//! A 3CX account's settings: as written in the tenant file
//! ([`ThreeCxConfig`]), checked when the file is read ([`Parsed`]), and with
//! the secret read when the account opens ([`Settings`]).

use std::path::Path;
use std::time::Duration;

use bitbylaw_core::secret::{Secret, SecretRef};
use bitbylaw_core::upstream::rest::{Limits, defaults};
use bitbylaw_core::upstream::{SettingError, base_url};
use reqwest::Url;
use serde::Deserialize;

/// An account of kind `3cx` (`[upstreams.<name>]` with `kind = "3cx"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreeCxConfig {
    /// The PBX, e.g. `https://kanzlei.3cx.de/` (its FQDN as a URL).
    pub url: String,
    /// The API client's id and secret (3CX: Admin → Integrations → API).
    pub client_id: String,
    pub client_secret: SecretRef,
    /// The account's request budget, shared by every plugin and instance
    /// (3CX's own limits are not published; 60 a minute is what the firm
    /// planned). A call waits for room up to its deadline.
    #[serde(default = "default_per_minute")]
    pub requests_per_minute: u32,
    /// Longest one request may take.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How often a read that met a 502, 503, 504 or a dropped connection is
    /// tried again within the call's deadline; writes never are.
    #[serde(default = "defaults::read_retries")]
    pub read_retries: u32,
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
}

fn default_per_minute() -> u32 {
    60
}

/// Checked settings with the secret still only referenced.
#[derive(Debug, Clone)]
pub struct Parsed {
    base: Url,
    client_id: String,
    client_secret: SecretRef,
    requests_per_minute: u32,
    limits: Limits,
}

impl Parsed {
    pub fn new(config: ThreeCxConfig) -> Result<Self, SettingError> {
        let base = base_url("url", &config.url)?;
        if base.path() != "/" {
            return Err(SettingError::new(
                "url",
                "the PBX's address only (`https://<fqdn>/`): the APIs are below it",
            ));
        }
        if config.client_id.trim().is_empty() {
            return Err(SettingError::new("client_id", "must not be empty"));
        }
        if config.requests_per_minute == 0 {
            return Err(SettingError::new(
                "requests_per_minute",
                "must be at least 1",
            ));
        }
        Ok(Self {
            base,
            client_id: config.client_id,
            client_secret: config.client_secret,
            requests_per_minute: config.requests_per_minute,
            limits: Limits::new(config.timeout_ms, config.read_retries, config.retry_base_ms)?,
        })
    }

    pub fn resolve(&self, base_dir: &Path) -> Result<Settings, SettingError> {
        let client_secret = self
            .client_secret
            .resolve(base_dir)
            .map_err(|e| SettingError::new("client_secret", e))?;
        Ok(Settings {
            base: self.base.clone(),
            client_id: self.client_id.clone(),
            client_secret,
            requests_per_minute: self.requests_per_minute,
            limits: self.limits,
        })
    }
}

/// Everything the client needs for one firm's 3CX.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://<fqdn>/`: the token endpoint and both APIs are below it.
    pub base: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub requests_per_minute: u32,
    pub limits: Limits,
}

impl Settings {
    /// Reuse a token at most this long, whatever 3CX says it lives.
    pub const TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, SettingError> {
        let table: toml::Table = text.parse().unwrap();
        Parsed::new(SettingError::parse_table(table)?)
    }

    #[test]
    fn mistakes_name_their_key() {
        let ok =
            "url = \"https://pbx.example/\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }";
        assert!(parse(ok).is_ok());
        let error =
            parse(&ok.replace("https://pbx.example/", "https://pbx.example/xapi")).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("url"));
        let error = parse(&ok.replace("\"c\"", "\" \"")).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("client_id"));
        let error = parse(&format!("{ok}\nrequests_per_minute = 0")).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("requests_per_minute"));
        let error = parse(&format!("{ok}\napi_key = 1")).unwrap_err();
        assert!(error.message.contains("api_key"), "{error}");
    }
}
