//! Who may post a form: a shared secret in a header, or Standard Webhooks
//! signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//! Neither replaces the tenant's API key (Kong's, or the host's): both apply.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from now, either way.
pub const TOLERANCE_S: i64 = 300;

/// Why a delivery is refused (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Missing(&'static str),
    Wrong(&'static str),
    Stale,
    Replayed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing(what) => write!(f, "missing {what}"),
            Refused::Wrong(what) => write!(f, "wrong {what}"),
            Refused::Stale => write!(f, "webhook-timestamp is more than {TOLERANCE_S} s from now"),
            Refused::Replayed => write!(f, "this webhook-id was delivered before"),
        }
    }
}

/// The shared secret: the header's value must equal it.
pub fn shared_secret(given: Option<&str>, secret: &str) -> Result<(), Refused> {
    let given = given.ok_or(Refused::Missing("secret header"))?;
    if bool::from(given.trim().as_bytes().ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(Refused::Wrong("secret"))
    }
}

/// The three Standard Webhooks headers of a delivery.
pub struct Signed<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a Standard Webhooks signature at `now` (unix seconds): HMAC-SHA256
/// of `{id}.{timestamp}.{body}` keyed with the base64 secret after `whsec_`,
/// any of the space-separated `v1,<base64>` matching. Returns the id, for the
/// caller to refuse it the second time.
pub fn standard_webhooks<'a>(
    headers: &Signed<'a>,
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<&'a str, Refused> {
    let id = headers.id.ok_or(Refused::Missing("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(Refused::Missing("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(Refused::Missing("webhook-signature"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refused::Wrong("webhook-timestamp"))?;
    if (now - at).abs() > TOLERANCE_S {
        return Err(Refused::Stale);
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| Refused::Wrong("secret (not base64 after `whsec_`)"))?;
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return Err(Refused::Wrong("secret"));
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures
        .split_whitespace()
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|signature| STANDARD.decode(signature).ok())
        .any(|signature| bool::from(signature.as_slice().ct_eq(expected.as_slice())));
    if matches {
        Ok(id)
    } else {
        Err(Refused::Wrong("webhook-signature"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the reference (`upstreams.md`, WordPress lead forms).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const AT: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn signed(signature: &str) -> Signed<'_> {
        Signed {
            id: Some(ID),
            timestamp: Some("1649367553"),
            signature: Some(signature),
        }
    }

    #[test]
    fn the_reference_vector_passes_within_the_tolerance() {
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), BODY, SECRET, AT),
            Ok(ID)
        );
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), BODY, SECRET, AT + 300),
            Ok(ID)
        );
        // Several signatures (a secret being rotated): any one will do.
        let rotated = format!("v1,AAAA {SIGNATURE}");
        assert_eq!(
            standard_webhooks(&signed(&rotated), BODY, SECRET, AT),
            Ok(ID)
        );
    }

    #[test]
    fn a_stale_timestamp_another_body_or_secret_is_refused() {
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), BODY, SECRET, AT + 301),
            Err(Refused::Stale)
        );
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), BODY, SECRET, AT - 301),
            Err(Refused::Stale)
        );
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), b"{}", SECRET, AT),
            Err(Refused::Wrong("webhook-signature"))
        );
        assert_eq!(
            standard_webhooks(&signed(SIGNATURE), BODY, "whsec_c2VjcmV0", AT),
            Err(Refused::Wrong("webhook-signature"))
        );
        let unsigned = Signed {
            signature: None,
            ..signed(SIGNATURE)
        };
        assert_eq!(
            standard_webhooks(&unsigned, BODY, SECRET, AT),
            Err(Refused::Missing("webhook-signature"))
        );
    }

    #[test]
    fn the_shared_secret_must_match_exactly() {
        assert_eq!(shared_secret(Some("s3cret"), "s3cret"), Ok(()));
        assert_eq!(
            shared_secret(Some("s3cre"), "s3cret"),
            Err(Refused::Wrong("secret"))
        );
        assert_eq!(
            shared_secret(None, "s3cret"),
            Err(Refused::Missing("secret header"))
        );
    }
}
