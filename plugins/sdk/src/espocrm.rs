//! The firm's EspoCRM ("VMH"), authenticated by the host.
//!
//! The host holds the API key, the secret key and the webhooks' secrets; a
//! plugin names a path below `api/v1/` and gets EspoCRM's answer, and hands
//! a webhook delivery to [`verify_webhook`]. Needs an account of kind
//! `espocrm` granted to the plugin (`upstreams = ["<account>"]`); without it
//! every call answers `NotConfigured`.
//!
//! ```ignore
//! let party = espocrm::Request::get("CBeteiligte/6571a1b2c3d4e5f60").send()?.json::<Value>()?;
//! espocrm::verify_webhook("CBeteiligte.create", &request)?;
//! ```

use crate::Error;
use crate::bindings::bitbylaw::plugin::espocrm as wit;
use crate::http::HttpResponse;

pub use wit::Error as EspoCrmError;
pub use wit::SignatureError;

/// The `espocrm` interface, for [`crate::rest::Request`].
pub struct EspoCrm;

impl crate::rest::Upstream for EspoCrm {
    type Error = EspoCrmError;

    fn send(request: &wit::Request) -> Result<HttpResponse, EspoCrmError> {
        wit::send(request)
    }
}

/// A request being built: `espocrm::Request::get("CBeteiligte").query("maxSize", "50").send()`.
pub type Request = crate::rest::Request<EspoCrm>;

/// A list of `entity`'s records whose `attribute` equals `value` (EspoCRM
/// compares case-insensitively): `espocrm::equals("Lead", "emailAddress", email).query("maxSize", "1").send()`.
pub fn equals(entity: &str, attribute: &str, value: &str) -> Request {
    Request::get(entity)
        .query("where[0][type]", "equals")
        .query("where[0][attribute]", attribute)
        .query("where[0][value]", value)
}

/// The id of the first `entity` record whose `attribute` equals `value`, as
/// a sync step: how a sync finds the record it may have created before a
/// host died, instead of creating it twice.
pub fn find_id(
    entity: &str,
    attribute: &str,
    value: &str,
) -> Result<Option<String>, crate::sync::Failure> {
    use crate::sync::{Failure, refused, unanswered};
    let what = format!("looking for the {entity}");
    let answer = equals(entity, attribute, value)
        .query("select", "id")
        .query("maxSize", "1")
        .send()
        .map_err(|e| unanswered("EspoCRM", &what, e))?;
    if !answer.is_success() {
        return Err(refused("EspoCRM", &what, &answer));
    }
    let list: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| Failure::Retryable(format!("EspoCRM's list is not JSON: {e}")))?;
    Ok(list["list"][0]["id"].as_str().map(str::to_owned))
}

/// Checks an incoming request against the account's webhook `webhook`
/// (`Signature` / `X-Signature` over the raw body).
pub fn verify_webhook(webhook: &str, request: &crate::Request) -> Result<(), SignatureError> {
    // Only the signature headers matter; the rest need not cross into the host.
    let signatures: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case("signature") || name.eq_ignore_ascii_case("x-signature")
        })
        .cloned()
        .collect();
    wit::verify_webhook(webhook, &signatures, request.body())
}

impl From<EspoCrmError> for Error {
    fn from(error: EspoCrmError) -> Self {
        match error {
            EspoCrmError::NotConfigured(m) => Error::Internal(m),
            EspoCrmError::InvalidRequest(m) => {
                Error::Internal(format!("invalid EspoCRM request: {m}"))
            }
            EspoCrmError::Timeout => Error::GatewayTimeout("EspoCRM did not answer in time".into()),
            EspoCrmError::Connection(m) => {
                Error::BadGateway(format!("EspoCRM connection failed: {m}"))
            }
            EspoCrmError::TooLarge(n) => {
                Error::BadGateway(format!("EspoCRM's answer is larger than {n} bytes"))
            }
        }
    }
}
