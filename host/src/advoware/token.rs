//! The tenant's Advoware token: cached in the tenant's store for every plugin
//! and host instance, fetched by one caller at a time.
//!
//! Single flight has two levels: a mutex in this process, so concurrent calls
//! here wait for one fetch, and a lease in the store, so several host instances
//! do not all ask the gateway at once. Whoever waits re-reads the cache. A
//! refused token request is remembered for a few seconds, so a wrong password
//! costs one request per [`FAILURE_HOLD`], not one per waiting call.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::recent::Recent;
use super::{AdvowareError, Settings, fetch_error, signing, time_left};
use crate::capabilities::http::Egress;
use crate::metrics::Metrics;
use crate::store::{Scope, Store, StoreError};

/// How often a caller waiting for another instance's fetch looks at the cache.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// How long a refused token request answers for the calls after it.
const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// How long this process reuses the token it last read without asking the store.
/// Saves a store round trip per call (a quarter of the proxy's throughput on
/// Redis); a token another instance replaced in the meantime costs one 401 and
/// the usual retry, never an extra token request.
const MEMO_TTL: Duration = Duration::from_secs(1);

pub struct Tokens {
    tenant: String,
    store: Store,
    key: String,
    lease_key: String,
    local: tokio::sync::Mutex<()>,
    /// The last refusal by the gateway, answered again for [`FAILURE_HOLD`].
    refused: Recent<AdvowareError>,
    /// The token last read or stored here, reused for [`MEMO_TTL`].
    memo: Recent<String>,
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
    /// The cache key names the account (not its secrets): a tenant file switched to
    /// another user or firm does not pick up the old account's token.
    pub fn new(
        tenant: &str,
        settings: &Settings,
        store: Store,
        scope: &Scope,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let account = account_id(settings);
        Ok(Self {
            tenant: tenant.to_owned(),
            store,
            key: scope.kv(&format!("token:{account}"))?,
            lease_key: scope.lock(&format!("token:{account}"))?,
            local: tokio::sync::Mutex::new(()),
            refused: Recent::new(FAILURE_HOLD),
            memo: Recent::new(MEMO_TTL),
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
        if let Some(refusal) = self.refused.get() {
            return Err(refusal);
        }
        let timeout = time_left(settings, egress, deadline);
        // The lease outlives the fetch a little, so a slow store does not let a second one start.
        let lease_ttl = timeout + Duration::from_secs(2);
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let acquired = self
                .store
                .lock_acquire(&self.lease_key, &lease_id, lease_ttl)
                .await
                .map_err(unavailable)?;
            if acquired {
                let lease = Lease(Some((self.store.clone(), self.lease_key.clone(), lease_id)));
                // Another instance may have stored one between our read and the lease.
                let result = match self.cached().await {
                    Ok(Some(token)) => Ok(token),
                    Ok(None) => self.fetch(settings, egress, token_url, timeout).await,
                    Err(error) => Err(error),
                };
                lease.release().await;
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
        self.memo.forget(token);
        self.store
            .delete_if_equal(&self.key, token)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn cached(&self) -> Result<Option<String>, AdvowareError> {
        if let Some(token) = self.memo.get() {
            return Ok(Some(token));
        }
        let bytes = self.store.get(&self.key).await.map_err(unavailable)?;
        let token = bytes
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|token| !token.is_empty());
        if let Some(token) = &token {
            self.memo.set(token.clone());
        }
        Ok(token)
    }

    async fn fetch(
        &self,
        settings: &Settings,
        egress: &Egress,
        token_url: &Url,
        timeout: Duration,
    ) -> Result<String, AdvowareError> {
        if timeout.is_zero() {
            return Err(AdvowareError::Timeout);
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        let timestamp = signing::timestamp(chrono::Utc::now());
        let body = signing::token_request(settings, &nonce, &timestamp).ok_or_else(|| {
            AdvowareError::Unauthorized("the configured API key is not base64".into())
        })?;
        let request = egress
            .client()
            .post(token_url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let answer = egress.fetch(request, timeout).await.map_err(|error| {
            self.metrics.advoware_token(&self.tenant, "failed");
            fetch_error(error, "security gateway")
        })?;
        if !(200..300).contains(&answer.status) {
            let message = gateway_message(&answer.body, settings);
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
            let error = AdvowareError::Unauthorized(format!(
                "the security gateway refused the token request ({}): {message}",
                answer.status
            ));
            self.refused.set(error.clone());
            return Err(error);
        }
        let token = match serde_json::from_slice::<TokenAnswer>(&answer.body) {
            Ok(parsed) if !parsed.access_token.trim().is_empty() => parsed,
            // serde's message could quote the answer, token included: say only what is missing.
            _ => {
                self.metrics.advoware_token(&self.tenant, "failed");
                return Err(AdvowareError::Connection(
                    "security gateway answered without an `access_token`".into(),
                ));
            }
        };
        self.metrics.advoware_token(&self.tenant, "ok");
        let ttl = cache_ttl(settings.token_ttl, lifetime(&token));
        self.store
            .set(&self.key, token.access_token.as_bytes(), Some(ttl))
            .await
            .map_err(unavailable)?;
        self.memo.set(token.access_token.clone());
        tracing::info!(
            tenant = %self.tenant,
            cached_for_s = ttl.as_secs(),
            "new Advoware token"
        );
        Ok(token.access_token)
    }
}

/// A held lease on the token fetch. Released when done; if the call is dropped
/// first (its deadline passed), released from a task of its own rather than
/// left to block the tenant until it expires.
struct Lease(Option<(Store, String, String)>);

impl Lease {
    async fn release(mut self) {
        if let Some((store, key, id)) = self.0.take() {
            // A lease that cannot be released expires by itself.
            let _ = store.lock_release(&key, &id).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((store, key, id)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = store.lock_release(&key, &id).await;
            });
        }
    }
}

/// A short digest of who signs in where: what a token belongs to.
fn account_id(settings: &Settings) -> String {
    use sha2::{Digest, Sha256};
    let url = |url: &Option<Url>| url.as_ref().map(Url::as_str).unwrap_or_default().to_owned();
    let identity = [
        settings.app_id.clone(),
        settings.kanzlei.clone(),
        settings.database.clone(),
        settings.user.clone(),
        settings.role.to_string(),
        settings.product.to_string(),
        url(&settings.security_gateway),
        url(&settings.discovery_url),
    ]
    .join("\n");
    hex::encode(&Sha256::digest(identity.as_bytes())[..8])
}

/// How long the gateway says the token lives, from `expires_in` (seconds, a
/// number or a string) or else `expiration_utc`.
fn lifetime(answer: &TokenAnswer) -> Option<Duration> {
    let seconds = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    // A nonsensical lifetime (negative, huge) is ignored rather than trusted.
    if let Some(lifetime) = seconds.and_then(|s| Duration::try_from_secs_f64(s).ok())
        && !lifetime.is_zero()
    {
        return Some(lifetime);
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

/// The gateway's own words (`Message`/`message`/`error_description`, or the
/// text), with the secrets taken out before it is shortened.
fn gateway_message(body: &[u8], settings: &Settings) -> String {
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
    let text = redact(
        &text,
        &[settings.password.expose(), settings.api_key.expose()],
    );
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    text.chars().take(200).collect()
}

/// Takes `secrets` out of `text`, also in their JSON-escaped and URL-encoded forms:
/// a gateway could echo what it was sent.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        let url: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        for form in [secret.to_string(), json, url, percent] {
            if !form.is_empty() {
                text = text.replace(&form, "[redacted]");
            }
        }
    }
    text
}

fn unavailable(error: StoreError) -> AdvowareError {
    AdvowareError::Unavailable(format!("Advoware token cache unavailable: {error}"))
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
    fn lifetime_reads_either_field_and_ignores_nonsense() {
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
        for nonsense in [r#""1e300""#, "1e20", "-5", "0"] {
            let answer: TokenAnswer = serde_json::from_str(&format!(
                r#"{{"access_token":"t","expires_in":{nonsense}}}"#
            ))
            .unwrap();
            assert_eq!(lifetime(&answer), None, "{nonsense}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_every_form() {
        let secret = "pä\"ss/XyZ 1+";
        let forms = [
            secret.to_owned(),
            serde_json::to_string(secret).unwrap(),
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        ];
        for form in forms {
            let clean = redact(&format!("Kennwort {form} falsch"), &[secret]);
            assert!(clean.contains("[redacted]"), "{form} -> {clean}");
            assert!(!clean.contains("XyZ"), "{form} -> {clean}");
        }
    }

    #[test]
    fn a_secret_at_the_cut_is_redacted_before_shortening() {
        let mut settings = super::super::Settings::for_tests();
        settings.password = crate::config::Secret::new("geheim-kennwort");
        let body = format!(r#"{{"Message":"{}geheim-kennwort"}}"#, "x".repeat(195));
        let message = gateway_message(body.as_bytes(), &settings);
        assert!(!message.contains("geheim"), "{message}");
    }

    #[test]
    fn gateway_messages_are_read_and_shortened() {
        let settings = super::super::Settings::for_tests();
        assert_eq!(
            gateway_message(
                br#"{"Message":"Falscher Name oder falsches Kennwort"}"#,
                &settings
            ),
            "Falscher Name oder falsches Kennwort"
        );
        assert_eq!(gateway_message(b"", &settings), "(no message)");
        assert_eq!(
            gateway_message(&[b'x'; 500], &settings).chars().count(),
            200
        );
    }
}
