//! Asking Advoware's security gateway for a token: the signed request, the
//! answer's lifetime, and the gateway's refusals with secrets taken out. The
//! token is cached and fetched once across host instances by the shared
//! [`TokenCache`](bitbylaw_core::upstream::TokenCache).

use std::time::Duration;

use bitbylaw_core::egress::Egress;
use bitbylaw_core::upstream::{Issued, TokenFailure};
use reqwest::Url;
use serde::Deserialize;

use bitbylaw_core::upstream::rest::RestError;

use super::{Settings, signing};

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

/// One signed token request within `timeout`. A refusal (4xx) is
/// [`TokenFailure::Refused`]; everything else that brings no token is `Failed`.
pub async fn fetch(
    tenant: &str,
    settings: &Settings,
    egress: &Egress,
    token_url: &Url,
    timeout: Duration,
) -> Result<Issued, TokenFailure<RestError>> {
    let nonce = uuid::Uuid::new_v4().to_string();
    let timestamp = signing::timestamp(chrono::Utc::now());
    let body = signing::token_request(settings, &nonce, &timestamp).ok_or_else(|| {
        TokenFailure::Failed(RestError::Unauthorized(
            "the configured API key is not base64".into(),
        ))
    })?;
    let request = egress
        .client()
        .post(token_url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let answer = egress
        .fetch(request, timeout)
        .await
        .map_err(|error| TokenFailure::Failed(RestError::fetch(error, "security gateway")))?;
    if !(200..300).contains(&answer.status) {
        let message = gateway_message(&answer.body, settings);
        if answer.status >= 500 {
            return Err(TokenFailure::Failed(RestError::Connection(format!(
                "security gateway answered {}: {message}",
                answer.status
            ))));
        }
        tracing::warn!(
            %tenant,
            status = answer.status,
            %message,
            "Advoware's security gateway refused the token request"
        );
        return Err(TokenFailure::Refused(RestError::Unauthorized(format!(
            "the security gateway refused the token request ({}): {message}",
            answer.status
        ))));
    }
    let token = match serde_json::from_slice::<TokenAnswer>(&answer.body) {
        Ok(parsed) if !parsed.access_token.trim().is_empty() => parsed,
        // serde's message could quote the answer, token included: say only what is missing.
        _ => {
            return Err(TokenFailure::Failed(RestError::Connection(
                "security gateway answered without an `access_token`".into(),
            )));
        }
    };
    let ttl = bitbylaw_core::upstream::reuse_time(settings.token_ttl, lifetime(&token));
    tracing::info!(%tenant, cached_for_s = ttl.as_secs(), "new Advoware token");
    Ok(Issued {
        token: token.access_token,
        ttl,
    })
}

/// A short digest of who signs in where: what a token belongs to. The cache
/// key names it (not the secrets), so a tenant file switched to another user
/// or firm does not pick up the old account's token.
pub fn account_id(settings: &Settings) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_ttl_is_kept_for_long_lived_tokens() {
        let ttl = bitbylaw_core::upstream::reuse_time(
            Duration::from_secs(53 * 60),
            Some(Duration::from_secs(55 * 60)),
        );
        assert_eq!(ttl, Duration::from_secs(53 * 60));
    }

    #[test]
    fn short_lived_tokens_are_cached_less_than_they_live() {
        let ttl = bitbylaw_core::upstream::reuse_time(
            Duration::from_secs(53 * 60),
            Some(Duration::from_secs(20)),
        );
        assert_eq!(ttl, Duration::from_secs(18));
        assert_eq!(
            bitbylaw_core::upstream::reuse_time(Duration::from_secs(60), None),
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
        let mut settings = crate::Settings::for_tests();
        settings.password = bitbylaw_core::secret::Secret::new("geheim-kennwort");
        let body = format!(r#"{{"Message":"{}geheim-kennwort"}}"#, "x".repeat(195));
        let message = gateway_message(body.as_bytes(), &settings);
        assert!(!message.contains("geheim"), "{message}");
    }

    #[test]
    fn gateway_messages_are_read_and_shortened() {
        let settings = crate::Settings::for_tests();
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
