//! A Google account's settings: as written in the tenant file
//! ([`GoogleConfig`]), checked when the file is read ([`Parsed`]), and with the
//! service-account key read and parsed when the account opens ([`Settings`]).

use std::path::Path;
use std::time::Duration;

use bitbylaw_core::secret::SecretRef;
use bitbylaw_core::upstream::{SettingError, base_url};
use reqwest::Url;
use serde::Deserialize;
use yup_oauth2::ServiceAccountKey;

/// Google Calendar's API, as google-calendar3 addresses it.
pub const DEFAULT_API_BASE: &str = "https://www.googleapis.com/calendar/v3/";

/// An account of kind `google` (`[upstreams.<name>]` with `kind = "google"`):
/// a service account with domain-wide delegation for the firm's Workspace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// The service account's JSON key (`{ file = ... }` or `{ env = ... }`).
    /// Its `token_uri` is where tokens are asked for.
    pub service_account_key: SecretRef,
    /// Google Calendar's API base; tests point it at a simulator.
    #[serde(default = "defaults::api_base")]
    pub api_base: String,
    /// Calls per minute per mailbox (Google's default quota: 600). `0` turns
    /// the host's bucket off (Google's 403s are still retried).
    #[serde(default = "defaults::user_requests_per_minute")]
    pub user_requests_per_minute: u32,
    /// Calls per minute for the whole account (Google's per-project quota: 10,000).
    /// `0` turns the bucket off.
    #[serde(default = "defaults::project_requests_per_minute")]
    pub project_requests_per_minute: u32,
    /// Calls a bucket lets through at once before the per-minute rate holds.
    /// With Google's sliding minute, a burst plus a minute's rate should stay
    /// below the quota.
    #[serde(default = "defaults::quota_burst")]
    pub quota_burst: u32,
    /// Longest a call waits for its quota before it answers `rate-limited`.
    #[serde(default = "defaults::quota_wait_ms")]
    pub quota_wait_ms: u64,
    /// Retries of a call Google refused for its quota (403 `rateLimitExceeded`,
    /// 429) or failed (5xx), with exponential backoff and jitter.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// The first backoff; each retry doubles it (plus up to as much jitter).
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest one request to Google may take (token requests included).
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// The mailboxes this tenant's plugins may act as: addresses
    /// (`anna@kanzlei.de`) or whole domains (`@kanzlei.de`). Any other is
    /// refused. Without it, every mailbox the service account's domain-wide
    /// delegation reaches (set it: one Workspace may hold more than this firm).
    #[serde(default)]
    pub mailboxes: Option<Vec<String>>,
}

mod defaults {
    pub fn api_base() -> String {
        super::DEFAULT_API_BASE.into()
    }
    pub fn user_requests_per_minute() -> u32 {
        600
    }
    pub fn project_requests_per_minute() -> u32 {
        10_000
    }
    pub fn quota_burst() -> u32 {
        10
    }
    pub fn quota_wait_ms() -> u64 {
        10_000
    }
    pub fn max_retries() -> u32 {
        5
    }
    pub fn retry_base_ms() -> u64 {
        500
    }
    pub fn timeout_ms() -> u64 {
        30_000
    }
}

/// Checked settings; the key is still only referenced.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub(crate) settings: Settings,
    key: SecretRef,
}

/// What an opened account runs on.
#[derive(Clone)]
pub struct Settings {
    /// The API base, ending in `/`.
    pub api_base: Url,
    pub user_per_minute: u32,
    pub project_per_minute: u32,
    pub burst: u32,
    pub quota_wait: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
    /// Addresses and `@domain`s, lower case; none: any mailbox.
    pub mailboxes: Option<Vec<String>>,
    /// The parsed service-account key (its private key is never printed).
    pub(crate) key: Option<ServiceAccountKey>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api_base", &self.api_base.as_str())
            .field("user_per_minute", &self.user_per_minute)
            .field("project_per_minute", &self.project_per_minute)
            .field(
                "service_account",
                &self.key.as_ref().map(|key| key.client_email.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Whether the tenant may act as `mailbox` (lower case).
    pub fn may_act_as(&self, mailbox: &str) -> bool {
        self.mailboxes.as_ref().is_none_or(|allowed| {
            allowed.iter().any(|entry| match entry.strip_prefix('@') {
                Some(domain) => mailbox
                    .rsplit_once('@')
                    .is_some_and(|(_, own)| own == domain),
                None => entry == mailbox,
            })
        })
    }
}

impl Parsed {
    pub fn new(config: &GoogleConfig) -> Result<Self, SettingError> {
        let api_base = base_url("api_base", &config.api_base)?;
        if config.quota_burst == 0 {
            return Err(SettingError::new("quota_burst", "must be at least 1"));
        }
        if config.timeout_ms == 0 || config.timeout_ms > 600_000 {
            return Err(SettingError::new(
                "timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        if config.quota_wait_ms > 600_000 {
            return Err(SettingError::new("quota_wait_ms", "must be at most 600000"));
        }
        if config.retry_base_ms > 60_000 {
            return Err(SettingError::new("retry_base_ms", "must be at most 60000"));
        }
        if config.max_retries > 20 {
            return Err(SettingError::new("max_retries", "must be at most 20"));
        }
        let mailboxes = config
            .mailboxes
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|entry| {
                        let entry = entry.trim().to_lowercase();
                        let domain = entry.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                        if entry.matches('@').count() != 1 || !domain.contains('.') {
                            return Err(SettingError::new(
                                "mailboxes",
                                format!("`{entry}` is neither a mailbox (name@domain) nor a domain (@domain)"),
                            ));
                        }
                        Ok(entry)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            settings: Settings {
                api_base,
                user_per_minute: config.user_requests_per_minute,
                project_per_minute: config.project_requests_per_minute,
                burst: config.quota_burst,
                quota_wait: Duration::from_millis(config.quota_wait_ms),
                max_retries: config.max_retries,
                retry_base: Duration::from_millis(config.retry_base_ms.max(1)),
                timeout: Duration::from_millis(config.timeout_ms),
                mailboxes,
                key: None,
            },
            key: config.service_account_key.clone(),
        })
    }

    /// Reads and parses the service-account key; relative files are taken
    /// from `base_dir`. Errors name where the key came from, never its content.
    pub fn resolve(&self, base_dir: &Path) -> Result<Settings, SettingError> {
        let text = self
            .key
            .resolve(base_dir)
            .map_err(|e| SettingError::new("service_account_key", e))?;
        let key = parse_key(text.expose()).map_err(|problem| {
            SettingError::new(
                "service_account_key",
                format!("{} {problem}", self.key.describe()),
            )
        })?;
        Ok(Settings {
            key: Some(key),
            ..self.settings.clone()
        })
    }
}

/// A service-account key as Google hands it out (JSON), checked enough that
/// the first token request does not fail on its form.
fn parse_key(text: &str) -> Result<ServiceAccountKey, String> {
    // yup-oauth2's own error would quote serde's view of the text; say less.
    let key = yup_oauth2::parse_service_account_key(text).map_err(|_| {
        "is not a service-account key (JSON with client_email, private_key and token_uri)"
            .to_owned()
    })?;
    if !key.private_key.contains("PRIVATE KEY-----") {
        return Err("has no PEM private key in `private_key`".into());
    }
    if key.client_email.is_empty() {
        return Err("has an empty `client_email`".into());
    }
    match Url::parse(&key.token_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(key),
        _ => Err("has a `token_uri` that is not an http(s) URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(table: &str) -> GoogleConfig {
        toml::from_str(table).unwrap()
    }

    #[test]
    fn defaults_are_googles_quotas() {
        let parsed = Parsed::new(&config("service_account_key = { env = \"K\" }")).unwrap();
        assert_eq!(parsed.settings.api_base.as_str(), DEFAULT_API_BASE);
        assert_eq!(parsed.settings.user_per_minute, 600);
        assert_eq!(parsed.settings.project_per_minute, 10_000);
    }

    #[test]
    fn api_base_gets_its_slash() {
        let parsed = Parsed::new(&config(
            "service_account_key = { env = \"K\" }\napi_base = \"http://127.0.0.1:9/calendar/v3\"",
        ))
        .unwrap();
        assert_eq!(
            parsed.settings.api_base.as_str(),
            "http://127.0.0.1:9/calendar/v3/"
        );
    }

    #[test]
    fn a_key_that_does_not_parse_names_its_source_never_its_text() {
        let dir = std::env::temp_dir().join(format!("bbl-google-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("key.json"),
            "{\"private_key\": \"s3cr3t-material\"",
        )
        .unwrap();
        let parsed = Parsed::new(&config("service_account_key = { file = \"key.json\" }")).unwrap();
        let error = parsed.resolve(&dir).unwrap_err();
        assert_eq!(error.key.as_deref(), Some("service_account_key"));
        assert!(error.message.contains("key.json"), "{}", error.message);
        assert!(!error.message.contains("s3cr3t"), "{}", error.message);
    }
}
