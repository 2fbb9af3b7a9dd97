//! A tenant's `[advoware]` settings, checked and with secrets read.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;

use crate::config::{AdvowareConfig, Secret};

/// Advoware's tokens live about an hour; a day is surely a typo.
const MAX_TOKEN_TTL_S: u64 = 24 * 3600;
const MAX_TIMEOUT_MS: u64 = 600_000;

/// Why a setting is unusable: the key below `advoware.` and what is wrong.
pub type SettingError = (String, String);

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
    pub timeout: Duration,
}

impl Settings {
    /// Checks everything but the secrets (which may not be readable where configs are checked).
    pub fn check(config: &AdvowareConfig) -> Result<(), SettingError> {
        Self::build(config, Secret::new(""), Secret::new("")).map(|_| ())
    }

    /// Checks the settings and reads the secrets; relative secret files are taken from `base_dir`.
    pub fn resolve(config: &AdvowareConfig, base_dir: &Path) -> Result<Self, SettingError> {
        let api_key = config
            .api_key
            .resolve(base_dir)
            .map_err(|e| ("api_key".to_owned(), e))?;
        if STANDARD.decode(api_key.expose()).is_err() {
            return Err((
                "api_key".into(),
                "is not base64 (Advoware hands out API keys in base64)".into(),
            ));
        }
        let password = config
            .password
            .resolve(base_dir)
            .map_err(|e| ("password".to_owned(), e))?;
        Self::build(config, api_key, password)
    }

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
            return Err((
                "discovery_url".into(),
                "needed when `api_url` or `security_gateway` is not given".into(),
            ));
        }
        let api_path = config.api_path.trim_start_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.');
        if api_path.split('/').any(|segment| segment == "..") || !api_path.chars().all(plain) {
            return Err((
                "api_path".into(),
                "must be a plain path such as `api/v1/advonet/`".into(),
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
                return Err((key.into(), "must not be empty".into()));
            }
        }
        if !(1..=MAX_TOKEN_TTL_S).contains(&config.token_ttl_s) {
            return Err((
                "token_ttl_s".into(),
                format!("must be between 1 and {MAX_TOKEN_TTL_S} (a day)"),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&config.timeout_ms) {
            return Err((
                "timeout_ms".into(),
                format!("must be between 1 and {MAX_TIMEOUT_MS} (ten minutes)"),
            ));
        }
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
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }
}

/// An http(s) URL that paths are appended to: it ends in `/`, has no query.
pub(super) fn base_url(key: &str, text: &str) -> Result<Url, SettingError> {
    let mut url = http_url(key, text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err((key.into(), format!("`{text}`: a base URL has no query")));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An http(s) URL without credentials.
fn http_url(key: &str, text: &str) -> Result<Url, SettingError> {
    let url =
        Url::parse(text).map_err(|e| (key.to_owned(), format!("`{text}` is not a URL: {e}")))?;
    // Credentials first: the other messages print the URL.
    if !url.username().is_empty() || url.password().is_some() {
        return Err((key.into(), "a URL here holds no credentials".into()));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err((key.into(), format!("`{url}`: only http and https URLs")));
    }
    Ok(url)
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
            timeout: Duration::from_secs(30),
        }
    }
}
