//! The answer to a request.

use serde::Serialize;

use crate::bindings::exports::bitbylaw::plugin::handler as wit;

/// An HTTP response built by the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `value` as JSON with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(e) => {
                crate::Error::Internal(format!("response not serialisable: {e}")).into_response()
            }
        }
    }

    /// Plain UTF-8 text.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into().into_bytes())
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}
