//! 3CX's client-credentials token: `POST /connect/token` with the client id
//! and secret, form-encoded. Cached and fetched once across host instances by
//! the shared [`TokenCache`](bitbylaw_core::upstream::TokenCache).

use std::time::Duration;

use bitbylaw_core::egress::Egress;
use bitbylaw_core::upstream::rest::RestError;
use bitbylaw_core::upstream::{Issued, TokenFailure, reuse_time};
use serde::Deserialize;

use crate::Settings;

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

/// One token request within `timeout`: a refusal (4xx) is `Refused`,
/// anything else that brings no token `Failed`. The secret never reaches a
/// message.
pub async fn fetch(
    tenant: &str,
    settings: &Settings,
    egress: &Egress,
    timeout: Duration,
) -> Result<Issued, TokenFailure<RestError>> {
    let url = settings.base.join("connect/token").map_err(|e| {
        TokenFailure::Failed(RestError::InvalidRequest(format!("the token URL: {e}")))
    })?;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &settings.client_id)
        .append_pair("client_secret", settings.client_secret.expose())
        .append_pair("grant_type", "client_credentials")
        .finish();
    let request = egress
        .client()
        .post(url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    let answer = egress
        .fetch(request, timeout)
        .await
        .map_err(|error| TokenFailure::Failed(RestError::fetch(error, "3CX token endpoint")))?;
    if !(200..300).contains(&answer.status) {
        let said: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let reason = said["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        if answer.status >= 500 {
            return Err(TokenFailure::Failed(RestError::Connection(format!(
                "3CX's token endpoint answered {}",
                answer.status
            ))));
        }
        tracing::warn!(%tenant, status = answer.status, %reason, "3CX refused the token request");
        return Err(TokenFailure::Refused(RestError::Unauthorized(format!(
            "3CX refused the token request ({}): {reason}",
            answer.status
        ))));
    }
    let token = match serde_json::from_slice::<TokenAnswer>(&answer.body) {
        Ok(token) if !token.access_token.trim().is_empty() => token,
        _ => {
            return Err(TokenFailure::Failed(RestError::Connection(
                "3CX answered the token request without an `access_token`".into(),
            )));
        }
    };
    let lifetime = token
        .expires_in
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|lifetime| !lifetime.is_zero());
    let ttl = reuse_time(Settings::TOKEN_REUSE, lifetime);
    tracing::info!(%tenant, cached_for_s = ttl.as_secs(), "new 3CX token");
    Ok(Issued {
        token: token.access_token,
        ttl,
    })
}
