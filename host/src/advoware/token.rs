//! The tenant's Advoware token: cached in the tenant's store for every plugin
//! and host instance, fetched by one caller at a time.
//!
//! Single flight has two levels: a mutex in this process, so concurrent calls
//! here wait for one fetch, and a lease in the store, so several host instances
//! do not all ask the gateway at once. Whoever waits re-reads the cache.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::{AdvowareError, Settings, signing};
use crate::capabilities::http::{Egress, FetchError};
use crate::metrics::Metrics;
use crate::store::{Scope, Store};

/// How often a caller waiting for another instance's fetch looks at the cache.
const WAIT_POLL: Duration = Duration::from_millis(20);

pub struct Tokens {
    tenant: String,
    store: Store,
    key: String,
    lease_key: String,
    local: tokio::sync::Mutex<()>,
    metrics: Metrics,
}

/// What the gateway answers; clients differ in which lifetime field they read,
/// so both are taken.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    expiration_utc: Option<String>,
}

impl Tokens {
    pub fn new(
        tenant: &str,
        store: Store,
        scope: &Scope,
        metrics: Metrics,
    ) -> Result<Self, crate::store::StoreError> {
        Ok(Self {
            tenant: tenant.to_owned(),
            store,
            key: scope.kv("token")?,
            lease_key: scope.lock("token")?,
            local: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// A valid token: the cached one, or a new one fetched once for all waiting callers.
    pub async fn get(
        &self,
        settings: &Settings,
        egress: &Egress,
        token_url: &Url,
        deadline: Instant,
    ) -> Result<String, AdvowareError> {
        if let Some(token) = self.cached().await? {
            return Ok(token);
        }
        let _local = tokio::time::timeout_at(deadline, self.local.lock())
            .await
            .map_err(|_| AdvowareError::Timeout)?;
        if let Some(token) = self.cached().await? {
            return Ok(token);
        }
        let lease_ttl = settings.timeout + Duration::from_secs(5);
        let lease = uuid::Uuid::new_v4().simple().to_string();
        loop {
            if self
                .store
                .lock_acquire(&self.lease_key, &lease, lease_ttl)
                .await
                .map_err(unavailable)?
            {
                // Another instance may have stored one between our read and the lease.
                let result = match self.cached().await {
                    Ok(Some(token)) => Ok(token),
                    Ok(None) => self.fetch(settings, egress, token_url, deadline).await,
                    Err(error) => Err(error),
                };
                // A lease left behind expires by itself.
                let _ = self.store.lock_release(&self.lease_key, &lease).await;
                return result;
            }
            if Instant::now() + WAIT_POLL >= deadline {
                return Err(AdvowareError::Timeout);
            }
            tokio::time::sleep(WAIT_POLL).await;
            if let Some(token) = self.cached().await? {
                return Ok(token);
            }
        }
    }

    /// Drops `token` from the cache if it is still the cached one (Advoware refused it).
    pub async fn invalidate(&self, token: &str) -> Result<(), AdvowareError> {
        // Not atomic: at worst a token stored just now is dropped and fetched again.
        if self.cached().await?.as_deref() == Some(token) {
            self.store.delete(&self.key).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn cached(&self) -> Result<Option<String>, AdvowareError> {
        let bytes = self.store.get(&self.key).await.map_err(unavailable)?;
        Ok(bytes
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|token| !token.is_empty()))
    }

    async fn fetch(
        &self,
        settings: &Settings,
        egress: &Egress,
        token_url: &Url,
        deadline: Instant,
    ) -> Result<String, AdvowareError> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = signing::timestamp(chrono::Utc::now());
        let body = signing::token_request(settings, &nonce, &timestamp)
            .ok_or_else(|| AdvowareError::Unauthorized("the API key is not base64".into()))?;
        let timeout = settings
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let request = egress
            .client()
            .post(token_url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = match egress.fetch(request, timeout).await {
            Ok(answer) => answer,
            Err(error) => {
                self.metrics.advoware_token(&self.tenant, "failed");
                return Err(match error {
                    FetchError::Timeout => AdvowareError::Timeout,
                    FetchError::TooLarge(n) => AdvowareError::TooLarge(n),
                    FetchError::Invalid(m) | FetchError::Connection(m) => {
                        AdvowareError::Connection(format!("security gateway: {m}"))
                    }
                });
            }
        };
        if !(200..300).contains(&answer.status) {
            let message = redact(&gateway_message(&answer.body), settings);
            if answer.status >= 500 {
                self.metrics.advoware_token(&self.tenant, "failed");
                return Err(AdvowareError::Connection(format!(
                    "security gateway answered {}: {message}",
                    answer.status
                )));
            }
            self.metrics.advoware_token(&self.tenant, "refused");
            tracing::warn!(
                tenant = %self.tenant,
                status = answer.status,
                %message,
                "Advoware's security gateway refused the token request"
            );
            return Err(AdvowareError::Unauthorized(format!(
                "the security gateway refused the token request ({}): {message}",
                answer.status
            )));
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            self.metrics.advoware_token(&self.tenant, "failed");
            AdvowareError::Connection(format!(
                "security gateway sent no usable token: {}",
                // serde's message names the field, never the value.
                e
            ))
        })?;
        if parsed.access_token.is_empty() {
            self.metrics.advoware_token(&self.tenant, "failed");
            return Err(AdvowareError::Connection(
                "security gateway sent an empty token".into(),
            ));
        }
        self.metrics.advoware_token(&self.tenant, "ok");
        let ttl = cache_ttl(settings.token_ttl, lifetime(&parsed));
        self.store
            .set(&self.key, parsed.access_token.as_bytes(), Some(ttl))
            .await
            .map_err(unavailable)?;
        tracing::info!(
            tenant = %self.tenant,
            cached_for_s = ttl.as_secs(),
            "new Advoware token"
        );
        Ok(parsed.access_token)
    }
}

/// How long the gateway says the token lives, from `expires_in` (seconds, a
/// number or a string) or else `expiration_utc`.
fn lifetime(answer: &TokenAnswer) -> Option<Duration> {
    let seconds = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if let Some(seconds) = seconds.filter(|s| s.is_finite() && *s > 0.0) {
        return Some(Duration::from_secs_f64(seconds));
    }
    let expires = chrono::DateTime::parse_from_rfc3339(answer.expiration_utc.as_deref()?).ok()?;
    (expires.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// The configured reuse time, shortened when the token lives less: a tenth of its
/// life (at most a minute) is kept as a margin for skew and slow calls.
fn cache_ttl(configured: Duration, lifetime: Option<Duration>) -> Duration {
    let Some(lifetime) = lifetime else {
        return configured;
    };
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    configured
        .min(lifetime.saturating_sub(margin))
        .max(Duration::from_millis(1))
}

/// The gateway's own words: `Message`/`message`/`error_description`, or the text, shortened.
fn gateway_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|value| {
            ["Message", "message", "error_description", "error"]
                .iter()
                .find_map(|key| value.get(key).and_then(|v| v.as_str()))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    text.chars().take(200).collect()
}

/// A gateway could echo what it was sent; the secrets never leave this module.
fn redact(message: &str, settings: &Settings) -> String {
    let mut message = message.to_owned();
    for secret in [settings.password.expose(), settings.api_key.expose()] {
        if !secret.is_empty() {
            message = message.replace(secret, "[redacted]");
        }
    }
    message
}

fn unavailable(error: crate::store::StoreError) -> AdvowareError {
    AdvowareError::Unavailable(format!("token cache: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_ttl_is_kept_for_long_lived_tokens() {
        let ttl = cache_ttl(
            Duration::from_secs(53 * 60),
            Some(Duration::from_secs(55 * 60)),
        );
        assert_eq!(ttl, Duration::from_secs(53 * 60));
    }

    #[test]
    fn short_lived_tokens_are_cached_less_than_they_live() {
        let ttl = cache_ttl(Duration::from_secs(53 * 60), Some(Duration::from_secs(20)));
        assert_eq!(ttl, Duration::from_secs(18));
        assert_eq!(
            cache_ttl(Duration::from_secs(60), None),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn lifetime_reads_either_field() {
        let answer: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"3300"}"#).unwrap();
        assert_eq!(lifetime(&answer), Some(Duration::from_secs(3300)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(600);
        let answer = TokenAnswer {
            access_token: "t".into(),
            expires_in: None,
            expiration_utc: Some(later.to_rfc3339()),
        };
        let read = lifetime(&answer).unwrap();
        assert!(read <= Duration::from_secs(600) && read >= Duration::from_secs(590));
    }

    #[test]
    fn gateway_messages_are_shortened_and_redacted() {
        assert_eq!(
            gateway_message(br#"{"Message":"Falscher Name oder falsches Kennwort"}"#),
            "Falscher Name oder falsches Kennwort"
        );
        assert_eq!(gateway_message(b""), "(no message)");
        assert_eq!(gateway_message(&[b'x'; 500]).len(), 200);
    }
}
