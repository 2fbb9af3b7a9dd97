//! An EspoCRM account's settings: as written in the tenant file
//! ([`EspoCrmConfig`]), checked when the file is read ([`Parsed`]), and with
//! the secrets read when the account opens ([`Settings`]).

use std::collections::BTreeMap;
use std::path::Path;

use bitbylaw_core::secret::{Secret, SecretRef};
use bitbylaw_core::upstream::rest::{Limits, defaults};
use bitbylaw_core::upstream::{SettingError, base_url};
use reqwest::Url;
use serde::Deserialize;

/// An account of kind `espocrm` (`[upstreams.<name>]` with `kind = "espocrm"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EspoCrmConfig {
    /// Where EspoCRM runs, e.g. `https://crm.kanzlei.de/`; the API is `<it>api/v1/`.
    pub base_url: String,
    /// The API user's key.
    pub api_key: SecretRef,
    /// The API user's secret key: when given, requests are signed
    /// (`X-Hmac-Authorization`) instead of carrying the key (`X-Api-Key`).
    #[serde(default)]
    pub secret_key: Option<SecretRef>,
    /// Longest one request may take.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How often a read (`GET`) that met a 502, 503, 504 or a dropped
    /// connection is tried again, within the call's deadline. Writes are
    /// never retried (a lost answer may hide a write that happened).
    #[serde(default = "defaults::read_retries")]
    pub read_retries: u32,
    /// The first pause before such a retry; it doubles each time, with jitter.
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// The webhooks registered in EspoCRM for this firm, by a name the plugin
    /// uses (e.g. `"CBeteiligte.create"`): EspoCRM's webhook id and its secret key.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

/// One webhook as EspoCRM shows it after registering (Administration → Webhooks).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The webhook's id in EspoCRM; it opens every signature.
    pub id: String,
    /// The webhook's secret key.
    pub secret: SecretRef,
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    ApiKey(Secret),
    Hmac { api_key: Secret, secret_key: Secret },
}

/// A webhook with its secret read.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub secret: Secret,
}

/// Checked settings with the secrets still only referenced.
#[derive(Debug, Clone)]
pub struct Parsed {
    api_base: Url,
    limits: Limits,
    api_key: SecretRef,
    secret_key: Option<SecretRef>,
    webhooks: BTreeMap<String, WebhookConfig>,
}

impl Parsed {
    /// Checks everything but the secrets (which may not be readable where configs are checked).
    pub fn new(config: EspoCrmConfig) -> Result<Self, SettingError> {
        let base = base_url("base_url", &config.base_url)?;
        let api_base = base
            .join("api/v1/")
            .map_err(|e| SettingError::new("base_url", format!("no API below it: {e}")))?;
        let limits = Limits::new(config.timeout_ms, config.read_retries, config.retry_base_ms)?;
        for (name, webhook) in &config.webhooks {
            let id = webhook.id.trim();
            // The id opens the signed text `<id>:<mac>`: a colon in it would be ambiguous.
            if id.is_empty() || id.contains(':') || id != webhook.id {
                return Err(SettingError::new(
                    format!("webhooks.{name}.id"),
                    "must be EspoCRM's webhook id: not empty, no spaces around it, no `:`",
                ));
            }
        }
        Ok(Self {
            api_base,
            limits,
            api_key: config.api_key,
            secret_key: config.secret_key,
            webhooks: config.webhooks,
        })
    }

    /// Reads the secrets; relative secret files are taken from `base_dir`.
    pub fn resolve(&self, base_dir: &Path) -> Result<Settings, SettingError> {
        let read = |key: String, reference: &SecretRef| {
            reference
                .resolve(base_dir)
                .map_err(|e| SettingError::new(key, e))
        };
        let api_key = read("api_key".into(), &self.api_key)?;
        let auth = match &self.secret_key {
            None => Auth::ApiKey(api_key),
            Some(secret) => Auth::Hmac {
                api_key,
                secret_key: read("secret_key".into(), secret)?,
            },
        };
        let webhooks = self
            .webhooks
            .iter()
            .map(|(name, webhook)| {
                let secret = read(format!("webhooks.{name}.secret"), &webhook.secret)?;
                Ok((
                    name.clone(),
                    Webhook {
                        id: webhook.id.clone(),
                        secret,
                    },
                ))
            })
            .collect::<Result<_, SettingError>>()?;
        Ok(Settings {
            api_base: self.api_base.clone(),
            limits: self.limits,
            auth,
            webhooks,
        })
    }
}

/// Everything the client needs for one firm's EspoCRM.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<base_url>api/v1/`.
    pub api_base: Url,
    pub limits: Limits,
    pub auth: Auth,
    pub webhooks: BTreeMap<String, Webhook>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, SettingError> {
        let table: toml::Table = text.parse().unwrap();
        Parsed::new(SettingError::parse_table(table)?)
    }

    #[test]
    fn the_api_lives_below_the_base_url() {
        let parsed =
            parse("base_url = \"https://crm.example/espo\"\napi_key = { env = \"K\" }").unwrap();
        assert_eq!(parsed.api_base.as_str(), "https://crm.example/espo/api/v1/");
    }

    #[test]
    fn mistakes_name_their_key() {
        let error = parse("base_url = \"ftp://crm\"\napi_key = { env = \"K\" }").unwrap_err();
        assert_eq!(error.key.as_deref(), Some("base_url"));
        let error = parse("base_url = \"https://crm/\"\napi_key = { env = \"K\" }\ntimeout_ms = 0")
            .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("timeout_ms"));
        let error = parse(
            "base_url = \"https://crm/\"\napi_key = { env = \"K\" }\n[webhooks.\"CBeteiligte.create\"]\nid = \"a:b\"\nsecret = { env = \"S\" }",
        )
        .unwrap_err();
        assert_eq!(error.key.as_deref(), Some("webhooks.CBeteiligte.create.id"));
        let error = parse("base_url = \"https://crm/\"\napi_key = { env = \"K\" }\napi_secret = 1")
            .unwrap_err();
        assert!(error.message.contains("api_secret"), "{error}");
    }

    #[test]
    fn a_missing_secret_names_the_key_and_the_variable() {
        let parsed = parse(
            "base_url = \"https://crm/\"\napi_key = { env = \"BITBYLAW_TEST_ESPO_KEY_UNSET\" }",
        )
        .unwrap();
        let error = parsed.resolve(Path::new(".")).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("api_key"));
        assert!(
            error.message.contains("BITBYLAW_TEST_ESPO_KEY_UNSET"),
            "{error}"
        );
    }
}
