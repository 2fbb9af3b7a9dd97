//! Outbound HTTP through the host, limited to the origins the tenant allows this plugin.

use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::bitbylaw::plugin::http as wit;

pub use wit::Error as HttpError;
pub use wit::Response as HttpResponse;

/// A request being built: `http::Request::get(url).header(..).send()`.
#[derive(Debug, Clone)]
pub struct Request {
    inner: wit::Request,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            inner: wit::Request {
                method: method.to_ascii_uppercase(),
                url: url.into(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
        }
    }

    crate::builder::request_builder!(url);

    pub fn send(&self) -> Result<HttpResponse, HttpError> {
        wit::send(&self.inner)
    }
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body's first `max` characters as text, trimmed (`…` when cut): for messages.
    pub fn excerpt(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(max) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::BadGateway(format!("upstream sent unexpected JSON: {e}")))
    }
}

impl From<HttpError> for Error {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Forbidden(m) => Error::Internal(format!("egress refused by the host: {m}")),
            HttpError::InvalidRequest(m) => {
                Error::Internal(format!("invalid outbound request: {m}"))
            }
            HttpError::Timeout => Error::GatewayTimeout("upstream did not answer in time".into()),
            HttpError::Connection(m) => {
                Error::BadGateway(format!("upstream connection failed: {m}"))
            }
            HttpError::TooLarge(n) => {
                Error::BadGateway(format!("upstream response larger than {n} bytes"))
            }
        }
    }
}
