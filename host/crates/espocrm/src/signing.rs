//! EspoCRM's two uses of HMAC-SHA256, written from its documentation
//! (`../shared/reference/upstreams.md`): signing API requests
//! (`X-Hmac-Authorization`) and checking webhook deliveries (`Signature`,
//! `X-Signature`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::settings::Webhook;

type HmacSha256 = Hmac<Sha256>;

/// HMAC hashes keys longer than a block and pads shorter ones, so no key is
/// refused; the `Option` only spares the host a panic path.
fn mac(key: &[u8]) -> Option<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(key).ok()
}

/// `X-Hmac-Authorization` for one request: `base64(apiKey + ":" +
/// HMAC-SHA256(secretKey, "<METHOD> <path below api/v1>"))`, the path
/// without its query and the MAC as its **raw** 32 bytes. EspoCRM's server
/// takes the raw digest in every version and the hex form (the reference's
/// vector) only from 8.4.1; its own PHP client sends raw.
pub fn hmac_authorization(
    api_key: &str,
    secret_key: &str,
    method: &str,
    path: &str,
) -> Option<String> {
    let mut mac = mac(secret_key.as_bytes())?;
    mac.update(method.as_bytes());
    mac.update(b" ");
    mac.update(path.as_bytes());
    let mut signed = format!("{api_key}:").into_bytes();
    signed.extend_from_slice(&mac.finalize().into_bytes());
    Some(STANDARD.encode(signed))
}

/// Why a webhook delivery was refused. Messages hold neither the secret nor the expected MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no `Signature` or `X-Signature` header")]
    Missing,
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Mismatch(String),
}

/// The two headers EspoCRM signs deliveries with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `Signature` (EspoCRM 9): `base64(webhookId + ":" + hex(HMAC))`.
    Hex,
    /// `X-Signature` (older, still sent): `base64(webhookId + ":" + rawHmacBytes)`.
    Raw,
}

impl Scheme {
    fn of(header: &str) -> Option<Self> {
        if header.eq_ignore_ascii_case("signature") {
            Some(Scheme::Hex)
        } else if header.eq_ignore_ascii_case("x-signature") {
            Some(Scheme::Raw)
        } else {
            None
        }
    }

    fn header(self) -> &'static str {
        match self {
            Scheme::Hex => "Signature",
            Scheme::Raw => "X-Signature",
        }
    }
}

/// Checks a delivery: at least one of `Signature` and `X-Signature` must
/// come, and every one that comes (each repeat too) must carry `webhook`'s id
/// and the HMAC of `body` under its secret. The id and the MAC are compared
/// in constant time.
pub fn verify_webhook(
    webhook: &Webhook,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), SignatureError> {
    let mut checked = 0;
    for (name, value) in headers {
        let Some(scheme) = Scheme::of(name) else {
            continue;
        };
        let (id, received) = split(scheme, value)?;
        if !bool::from(id.ct_eq(webhook.id.as_bytes())) {
            return Err(SignatureError::Mismatch(format!(
                "`{}` is signed for another webhook than the one configured",
                scheme.header()
            )));
        }
        let Some(mut mac) = mac(webhook.secret.expose().as_bytes()) else {
            return Err(SignatureError::Mismatch(
                "the webhook's secret cannot key an HMAC".into(),
            ));
        };
        mac.update(body);
        if mac.verify_slice(&received).is_err() {
            return Err(SignatureError::Mismatch(format!(
                "`{}` does not match the body (another secret, or a changed body)",
                scheme.header()
            )));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(SignatureError::Missing);
    }
    Ok(())
}

/// A header's webhook id and MAC bytes.
fn split(scheme: Scheme, value: &str) -> Result<(Vec<u8>, Vec<u8>), SignatureError> {
    let malformed = |why: &str| SignatureError::Malformed(format!("`{}` {why}", scheme.header()));
    let value = value.trim();
    let decoded = STANDARD
        .decode(value)
        .or_else(|_| STANDARD_NO_PAD.decode(value))
        .map_err(|_| malformed("is not base64"))?;
    match scheme {
        Scheme::Hex => {
            let colon = decoded
                .iter()
                .rposition(|b| *b == b':')
                .ok_or_else(|| malformed("holds no `<webhook id>:` before the HMAC"))?;
            let (id, hex_mac) = (&decoded[..colon], &decoded[colon + 1..]);
            if hex_mac.len() != 64 {
                return Err(malformed("does not end in a 64-digit hex HMAC-SHA256"));
            }
            let received =
                hex::decode(hex_mac).map_err(|_| malformed("does not end in a hex HMAC-SHA256"))?;
            Ok((id.to_vec(), received))
        }
        Scheme::Raw => {
            // The raw MAC may hold any byte, `:` too: it is the last 32 bytes.
            let Some(colon) = decoded.len().checked_sub(33) else {
                return Err(malformed("is too short for `<webhook id>:<HMAC-SHA256>`"));
            };
            if decoded[colon] != b':' {
                return Err(malformed("holds no `<webhook id>:` before the HMAC"));
            }
            Ok((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
        }
    }
}

#[cfg(test)]
mod tests {
    use bitbylaw_core::secret::Secret;

    use super::*;

    fn webhook(id: &str, secret: &str) -> Webhook {
        Webhook {
            id: id.into(),
            secret: Secret::new(secret),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BODY: &[u8] = br#"[{"id":"abc123","name":"Test"}]"#;
    const SIGNATURE: &str = "d2ViaG9va0lkNDU2OmFmYTBlMDJlNDJjNTQ3ODRkYmM2MjE2YTIzZGM1OTQ3NjU5ZTAwNzg0Zjg4NTNkZjVjZDAzNjg1MDZiMzI5OWQ=";
    const X_SIGNATURE: &str = "d2ViaG9va0lkNDU2Oq+g4C5CxUeE28YhaiPcWUdlngB4T4hT31zQNoUGsymd";

    #[test]
    fn the_reference_vectors_verify() {
        let hook = webhook("webhookId456", "secretKey123");
        for pairs in [
            vec![("Signature", SIGNATURE)],
            vec![("X-Signature", X_SIGNATURE)],
            vec![("signature", SIGNATURE), ("x-signature", X_SIGNATURE)],
        ] {
            assert_eq!(
                verify_webhook(&hook, &headers(&pairs), BODY),
                Ok(()),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_wrong_secret_a_tampered_body_or_another_webhook_is_refused() {
        let both = headers(&[("Signature", SIGNATURE), ("X-Signature", X_SIGNATURE)]);
        let wrong_secret = webhook("webhookId456", "secretKey124");
        assert!(matches!(
            verify_webhook(&wrong_secret, &both, BODY),
            Err(SignatureError::Mismatch(_))
        ));
        let hook = webhook("webhookId456", "secretKey123");
        let tampered = br#"[{"id":"abc124","name":"Test"}]"#;
        assert!(matches!(
            verify_webhook(&hook, &both, tampered),
            Err(SignatureError::Mismatch(_))
        ));
        let other = webhook("webhookId457", "secretKey123");
        assert!(matches!(
            verify_webhook(&other, &both, BODY),
            Err(SignatureError::Mismatch(_))
        ));
    }

    #[test]
    fn one_good_header_does_not_cover_a_bad_one() {
        let hook = webhook("webhookId456", "secretKey123");
        let bad = STANDARD.encode(format!("webhookId456:{}", "0".repeat(64)));
        let pairs = headers(&[("Signature", SIGNATURE), ("X-Signature", &bad)]);
        assert!(verify_webhook(&hook, &pairs, BODY).is_err());
        let pairs = headers(&[("Signature", SIGNATURE), ("Signature", &bad)]);
        assert!(verify_webhook(&hook, &pairs, BODY).is_err());
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let hook = webhook("webhookId456", "secretKey123");
        assert_eq!(
            verify_webhook(&hook, &headers(&[("X-Other", "x")]), BODY),
            Err(SignatureError::Missing)
        );
        for value in [
            "not base64!",
            "d2ViaG9va0lkNDU2",
            &STANDARD.encode("webhookId456:abc"),
        ] {
            let pairs = headers(&[("Signature", value)]);
            assert!(
                matches!(
                    verify_webhook(&hook, &pairs, BODY),
                    Err(SignatureError::Malformed(_))
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn messages_hold_no_secret_or_expected_mac() {
        let hook = webhook("webhookId456", "secretKey123");
        let tampered = b"[]";
        let error =
            verify_webhook(&hook, &headers(&[("Signature", SIGNATURE)]), tampered).unwrap_err();
        let expected = {
            let mut mac = mac(b"secretKey123").unwrap();
            mac.update(tampered);
            hex::encode(mac.finalize().into_bytes())
        };
        let text = error.to_string();
        assert!(
            !text.contains("secretKey123") && !text.contains(&expected),
            "{text}"
        );
    }

    #[test]
    fn the_reference_hmac_authorization_vector_holds_in_its_raw_form() {
        let signed = STANDARD
            .decode(hmac_authorization("apiKey1", "apiSecret", "GET", "/Lead/abc").unwrap())
            .unwrap();
        let (key, mac) = signed.split_at(b"apiKey1:".len());
        assert_eq!(key, b"apiKey1:");
        assert_eq!(mac.len(), 32, "the raw digest");
        // The reference's vector is the same MAC in hex (what EspoCRM 8.4.1+ also takes).
        let reference = STANDARD
            .decode("YXBpS2V5MTowMmRkOGJkYTkwZmM4YTllMDI4OTc1NTMwZjI1NTAyYWQ2NzMyZTQ0YzFlYjNlMWE3MThkMzc0MmY5Yjk3MmZj")
            .unwrap();
        assert_eq!(
            format!("apiKey1:{}", hex::encode(mac)).into_bytes(),
            reference
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn sign_hex(id: &str, secret: &str, body: &[u8]) -> String {
            let mut mac = mac(secret.as_bytes()).unwrap();
            mac.update(body);
            STANDARD.encode(format!("{id}:{}", hex::encode(mac.finalize().into_bytes())))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Signature headers as they arrive: anything is read without a panic and never accepted.
            #[test]
            fn any_header_value_is_refused_without_panic(name in "(?i)(x-)?signature", value in any::<String>(), body in any::<Vec<u8>>()) {
                let hook = webhook("webhookId456", "secretKey123");
                prop_assert!(verify_webhook(&hook, &[(name, value)], &body).is_err());
            }

            /// Arbitrary bytes base64-encoded (the shape EspoCRM sends, any content) are never accepted.
            #[test]
            fn any_encoded_bytes_are_refused(name in "(?i)(x-)?signature", bytes in any::<Vec<u8>>()) {
                let hook = webhook("webhookId456", "secretKey123");
                prop_assert!(verify_webhook(&hook, &[(name, STANDARD.encode(&bytes))], BODY).is_err());
            }

            /// A right signature verifies; any one changed byte of the body does not.
            #[test]
            fn a_signature_holds_for_its_body_only(
                id in "[A-Za-z0-9]{1,24}",
                secret in "[ -~]{1,40}",
                body in proptest::collection::vec(any::<u8>(), 1..256),
                flip in any::<prop::sample::Index>(),
                bit in 0u8..8,
            ) {
                let hook = webhook(&id, &secret);
                let pairs = vec![("Signature".to_owned(), sign_hex(&id, &secret, &body))];
                prop_assert_eq!(verify_webhook(&hook, &pairs, &body), Ok(()));
                let mut changed = body.clone();
                let at = flip.index(changed.len());
                changed[at] ^= 1 << bit;
                prop_assert!(verify_webhook(&hook, &pairs, &changed).is_err());
            }
        }
    }
}
