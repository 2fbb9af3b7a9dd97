//! The tenant's Advoware API, signed in by the host.
//!
//! The host holds the credentials and the token; a plugin names a path below
//! the API base and gets Advoware's answer. Needs an account of kind `advoware`
//! in the tenant file granted to the plugin (`upstreams = ["<account>"]`);
//! without it every call answers `NotConfigured`.
//!
//! ```ignore
//! let employees = advoware::Request::get("employees").send()?.json::<Vec<Employee>>()?;
//! ```

use crate::Error;
use crate::bindings::bitbylaw::plugin::advoware as wit;
use crate::http::HttpResponse;

pub use wit::Error as AdvowareError;

/// A request being built: `advoware::Request::get("appointments").query("kuerzel", "SB").send()`.
#[derive(Debug, Clone)]
pub struct Request {
    inner: wit::Request,
}

impl Request {
    /// `path` is below the API base, e.g. `appointments/4711`.
    pub fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            inner: wit::Request {
                method: method.to_ascii_uppercase(),
                path: path.into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
        }
    }

    crate::builder::request_builder!(path, query);

    pub fn send(&self) -> Result<HttpResponse, AdvowareError> {
        wit::send(&self.inner)
    }
}

impl From<AdvowareError> for Error {
    fn from(error: AdvowareError) -> Self {
        match error {
            AdvowareError::NotConfigured(m) => Error::Internal(m),
            AdvowareError::InvalidRequest(m) => {
                Error::Internal(format!("invalid Advoware request: {m}"))
            }
            AdvowareError::Unauthorized(m) => {
                Error::BadGateway(format!("Advoware sign-in failed: {m}"))
            }
            AdvowareError::Timeout => {
                Error::GatewayTimeout("Advoware did not answer in time".into())
            }
            AdvowareError::Connection(m) => {
                Error::BadGateway(format!("Advoware connection failed: {m}"))
            }
            AdvowareError::TooLarge(n) => {
                Error::BadGateway(format!("Advoware's answer is larger than {n} bytes"))
            }
            AdvowareError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
