//! The security gateway's token request: fields, timestamp and HMAC-512 signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha512;

use super::Settings;

/// base64(HMAC-SHA512(base64-decoded `api_key`, "{product}:{app_id}:{nonce}:{timestamp}")).
/// `None` when the API key is not base64.
pub fn signature(
    api_key: &str,
    product: u32,
    app_id: &str,
    nonce: &str,
    timestamp: &str,
) -> Option<String> {
    let key = STANDARD.decode(api_key).ok()?;
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha512>::new_from_slice(&key).ok()?;
    mac.update(format!("{product}:{app_id}:{nonce}:{timestamp}").as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

/// UTC, ISO-8601 with milliseconds and `Z`, as the gateway expects: `2026-08-30T00:00:00.000Z`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The JSON body of one token request, with a fresh nonce and the current time.
/// `None` when the API key is not base64 (checked when the settings were read).
pub fn token_request(settings: &Settings, nonce: &str, timestamp: &str) -> Option<Value> {
    let signature = signature(
        settings.api_key.expose(),
        settings.product,
        &settings.app_id,
        nonce,
        timestamp,
    )?;
    Some(json!({
        "AppID": settings.app_id,
        "Kanzlei": settings.kanzlei,
        "Database": settings.database,
        "User": settings.user,
        "Role": settings.role,
        "Product": settings.product,
        "Password": settings.password.expose(),
        "Nonce": nonce,
        "RequestTimeStamp": timestamp,
        "HMAC512Signature": signature,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public test vector from Advoware's documentation (see `shared/reference/upstreams.md`).
    #[test]
    fn signature_matches_the_public_test_vector() {
        let signed = signature(
            "dGVzdC1zZWNyZXQta2V5",
            64,
            "app-123",
            "nonce-abc",
            "2026-08-30T00:00:00.000Z",
        );
        assert_eq!(
            signed.as_deref(),
            Some(
                "o7rz9KmoXZs550HfzO6ffiG17XwiPmlBHlksUYKZ3jcfolELow51Fw5KlrQqCK5y41aIValDjrh1iQ2GZ2WtqQ=="
            )
        );
    }

    #[test]
    fn a_key_that_is_not_base64_gives_no_signature() {
        assert_eq!(signature("not base64!", 64, "a", "n", "t"), None);
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let at = DateTime::parse_from_rfc3339("2026-08-30T02:00:00.1234+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(at), "2026-08-30T00:00:00.123Z");
    }
}
