//! A plugin's errors, each mapped to an HTTP status and a JSON body.

use std::fmt;

use crate::Response;
use crate::StoreError;

/// What went wrong while handling a request. `?` on SDK calls converts into it;
/// the host answers with `{"error": <code>, "message": <text>}` and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the caller sent something unusable.
    BadRequest(String),
    /// 403: the caller may not do this (e.g. a repair route called with an
    /// ordinary key; see [`crate::Request::key_opens_all_routes`]).
    Forbidden(String),
    /// 404
    NotFound(String),
    /// 409
    Conflict(String),
    /// 502: an upstream answered badly or not at all.
    BadGateway(String),
    /// 503: a dependency (store, upstream) is unavailable; retry later.
    Unavailable(String),
    /// 504: an upstream did not answer in time.
    GatewayTimeout(String),
    /// 500
    Internal(String),
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::BadGateway(_) => 502,
            Error::Unavailable(_) => 503,
            Error::GatewayTimeout(_) => 504,
            Error::Internal(_) => 500,
        }
    }

    /// Short machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::BadGateway(_) => "bad_gateway",
            Error::Unavailable(_) => "unavailable",
            Error::GatewayTimeout(_) => "gateway_timeout",
            Error::Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::BadRequest(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::BadGateway(m)
            | Error::Unavailable(m)
            | Error::GatewayTimeout(m)
            | Error::Internal(m) => m,
        }
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        Response::new(self.status())
            .with_header("content-type", "application/json")
            .with_body(body.to_string().into_bytes())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(m) => Error::Unavailable(format!("store unavailable: {m}")),
            StoreError::Invalid(m) => Error::Internal(format!("store refused the operation: {m}")),
        }
    }
}
