//! An Advoware account's settings: as written in the tenant file
//! ([`AdvowareConfig`]), checked once when the file is read ([`Parsed`]), and
//! with the secrets read when the account opens ([`Settings`]).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bitbylaw_core::secret::{Secret, SecretRef};
use bitbylaw_core::upstream::rest::{self, Limits};
use bitbylaw_core::upstream::{SettingError, base_url, http_url};
use reqwest::Url;
use serde::Deserialize;

/// Advoware's tokens live about an hour; a day is surely a typo.
const MAX_TOKEN_TTL_S: u64 = 24 * 3600;

/// An account of kind `advoware` in a tenant file (`[upstreams.<name>]` with
/// `kind = "advoware"`, or the older `[advoware]`): how the host signs in for
/// this firm. URLs not given are asked from the configurator at `discovery_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvowareConfig {
    /// Relay or connector URL, e.g. `https://www2.advo-net.net:90/`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Where the REST API lives below `api_url`.
    #[serde(default = "defaults::api_path")]
    pub api_path: String,
    /// Security gateway, e.g. `https://security.advo-net.net/`; tokens come from `<it>api/v1/Token`.
    #[serde(default)]
    pub security_gateway: Option<String>,
    /// Configurator asked for the URLs above (`?Kanzlei=<kanzlei>` is added), e.g.
    /// `https://www2.advo-net.net/AdvonetConfigurator/api/Url`. Its `connectorUrl` wins over `relayUrl`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// The app id Advoware issued for this integration.
    pub app_id: String,
    /// The firm (Kanzlei) as Advoware names it.
    pub kanzlei: String,
    pub database: String,
    /// The employee short code (Kürzel) the integration signs in as.
    pub user: String,
    #[serde(default = "defaults::role")]
    pub role: u32,
    /// 64 for third-party apps.
    #[serde(default = "defaults::product")]
    pub product: u32,
    /// Base64, as Advoware hands it out.
    pub api_key: SecretRef,
    pub password: SecretRef,
    /// How long a token is reused (Advoware's live about 55 minutes).
    #[serde(default = "defaults::token_ttl_s")]
    pub token_ttl_s: u64,
    /// Longest one Advoware request may take (token requests included).
    #[serde(default = "rest::defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How often a read (`GET`) that met a 502, 503, 504 or a dropped
    /// connection is tried again, within the call's deadline.
    /// Writes are never retried (a lost answer may hide a write that happened).
    #[serde(default = "rest::defaults::read_retries")]
    pub read_retries: u32,
    /// The first pause before such a retry; it doubles each time, with jitter.
    #[serde(default = "rest::defaults::retry_base_ms")]
    pub retry_base_ms: u64,
}

mod defaults {
    pub fn api_path() -> String {
        "api/v1/advonet/".into()
    }
    pub fn role() -> u32 {
        2
    }
    pub fn product() -> u32 {
        64
    }
    // Tokens live about 55 minutes; 53 leaves room for clock skew and slow calls.
    pub fn token_ttl_s() -> u64 {
        53 * 60
    }
}

/// Checked settings with the secrets still only referenced.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Everything but the secrets, which are empty here.
    pub(crate) settings: Settings,
    api_key: SecretRef,
    password: SecretRef,
}

impl Parsed {
    /// Checks everything but the secrets (which may not be readable where configs are checked).
    pub fn new(config: &AdvowareConfig) -> Result<Self, SettingError> {
        Ok(Self {
            settings: Settings::build(config, Secret::new(""), Secret::new(""))?,
            api_key: config.api_key.clone(),
            password: config.password.clone(),
        })
    }

    /// Reads the secrets; relative secret files are taken from `base_dir`.
    pub fn resolve(&self, base_dir: &Path) -> Result<Settings, SettingError> {
        let api_key = self
            .api_key
            .resolve(base_dir)
            .map_err(|e| SettingError::new("api_key", e))?;
        if STANDARD.decode(api_key.expose()).is_err() {
            return Err(SettingError::new(
                "api_key",
                "is not base64 (Advoware hands out API keys in base64)",
            ));
        }
        let password = self
            .password
            .resolve(base_dir)
            .map_err(|e| SettingError::new("password", e))?;
        Ok(Settings {
            api_key,
            password,
            ..self.settings.clone()
        })
    }
}

/// Everything the client needs to sign in for one firm.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_url: Option<Url>,
    pub api_path: String,
    pub security_gateway: Option<Url>,
    pub discovery_url: Option<Url>,
    pub app_id: String,
    pub kanzlei: String,
    pub database: String,
    pub user: String,
    pub role: u32,
    pub product: u32,
    /// Base64 as configured; [`Settings::resolve`] has checked that it decodes.
    pub api_key: Secret,
    pub password: Secret,
    pub token_ttl: Duration,
    pub limits: Limits,
}

impl Settings {
    fn build(
        config: &AdvowareConfig,
        api_key: Secret,
        password: Secret,
    ) -> Result<Self, SettingError> {
        let api_url = config
            .api_url
            .as_deref()
            .map(|text| base_url("api_url", text))
            .transpose()?;
        let security_gateway = config
            .security_gateway
            .as_deref()
            .map(|text| base_url("security_gateway", text))
            .transpose()?;
        let discovery_url = config
            .discovery_url
            .as_deref()
            .map(|text| http_url("discovery_url", text))
            .transpose()?;
        if (api_url.is_none() || security_gateway.is_none()) && discovery_url.is_none() {
            return Err(SettingError::new(
                "discovery_url",
                "needed when `api_url` or `security_gateway` is not given",
            ));
        }
        let api_path = config.api_path.trim_start_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.');
        if api_path.split('/').any(|segment| segment == "..") || !api_path.chars().all(plain) {
            return Err(SettingError::new(
                "api_path",
                "must be a plain path such as `api/v1/advonet/`",
            ));
        }
        let api_path = if api_path.is_empty() || api_path.ends_with('/') {
            api_path.to_owned()
        } else {
            format!("{api_path}/")
        };
        for (key, value) in [
            ("app_id", &config.app_id),
            ("kanzlei", &config.kanzlei),
            ("database", &config.database),
            ("user", &config.user),
        ] {
            if value.trim().is_empty() {
                return Err(SettingError::new(key, "must not be empty"));
            }
        }
        if !(1..=MAX_TOKEN_TTL_S).contains(&config.token_ttl_s) {
            return Err(SettingError::new(
                "token_ttl_s",
                format!("must be between 1 and {MAX_TOKEN_TTL_S} (a day)"),
            ));
        }
        let limits = Limits::new(config.timeout_ms, config.read_retries, config.retry_base_ms)?;
        Ok(Self {
            api_url,
            api_path,
            security_gateway,
            discovery_url,
            app_id: config.app_id.clone(),
            kanzlei: config.kanzlei.clone(),
            database: config.database.clone(),
            user: config.user.clone(),
            role: config.role,
            product: config.product,
            api_key,
            password,
            token_ttl: Duration::from_secs(config.token_ttl_s),
            limits,
        })
    }
}

#[cfg(test)]
impl Settings {
    /// Settings with fixed URLs and made-up secrets.
    pub fn for_tests() -> Self {
        Self {
            api_url: Url::parse("http://127.0.0.1:9/").ok(),
            api_path: "api/v1/advonet/".into(),
            security_gateway: Url::parse("http://127.0.0.1:9/").ok(),
            discovery_url: None,
            app_id: "app".into(),
            kanzlei: "k".into(),
            database: "d".into(),
            user: "SB".into(),
            role: 2,
            product: 64,
            api_key: Secret::new("dGVzdC1zZWNyZXQta2V5"),
            password: Secret::new("pw"),
            token_ttl: Duration::from_secs(3180),
            limits: Limits {
                retry_base: Duration::from_millis(1),
                ..Limits::default()
            },
        }
    }
}
