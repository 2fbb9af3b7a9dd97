//! The one request builder of the REST upstreams the host signs for
//! (`advoware`, `espocrm`, and the next): the WIT's `types.rest-request`,
//! sent through the interface of the kind `U`. Each kind's module names it:
//! `advoware::Request` is `rest::Request<advoware::Advoware>`.

use std::marker::PhantomData;

use crate::Error;
use crate::bindings::bitbylaw::plugin::types::{RestError, RestRequest};
use crate::http::HttpResponse;

/// One REST interface: how a request goes out and what it may fail with.
pub trait Upstream {
    /// The interface's error (`types.rest-error`, or a 0.1 interface's own).
    type Error;

    fn send(request: &RestRequest) -> Result<HttpResponse, Self::Error>;
}

/// A request being built: `advoware::Request::get("appointments").query("kuerzel", "SB").send()`.
pub struct Request<U: Upstream> {
    inner: RestRequest,
    upstream: PhantomData<fn() -> U>,
}

impl<U: Upstream> Request<U> {
    /// `path` is below the account's API base, e.g. `appointments/4711`.
    pub fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            inner: RestRequest {
                method: method.to_ascii_uppercase(),
                path: path.into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
            upstream: PhantomData,
        }
    }

    crate::builder::request_builder!(path, query);

    /// Sends the request; any status the upstream answers is `Ok`.
    pub fn send(&self) -> Result<HttpResponse, U::Error> {
        U::send(&self.inner)
    }
}

// By hand: a derive would ask `U` to be `Clone` and `Debug` too.
impl<U: Upstream> Clone for Request<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            upstream: PhantomData,
        }
    }
}

impl<U: Upstream> std::fmt::Debug for Request<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// A REST upstream's failure as the plugin's own error: a request the host
/// refused is the plugin's bug (500), a failed sign-in or connection a bad
/// gateway (502), no answer in time 504, the host's store 503.
impl From<RestError> for Error {
    fn from(error: RestError) -> Self {
        match error {
            RestError::NotConfigured(m) => Error::Internal(m),
            RestError::InvalidRequest(m) => {
                Error::Internal(format!("invalid upstream request: {m}"))
            }
            RestError::Unauthorized(m) => {
                Error::BadGateway(format!("upstream sign-in failed: {m}"))
            }
            RestError::Timeout => {
                Error::GatewayTimeout("the upstream did not answer in time".into())
            }
            RestError::Connection(m) => {
                Error::BadGateway(format!("upstream connection failed: {m}"))
            }
            RestError::TooLarge(n) => {
                Error::BadGateway(format!("the upstream's answer is larger than {n} bytes"))
            }
            RestError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
