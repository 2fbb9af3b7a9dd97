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

use crate::bindings::bitbylaw::plugin::advoware as wit;
use crate::http::HttpResponse;

/// What a request may fail with (`types.rest-error`): never a status, which is an answer.
pub use crate::bindings::bitbylaw::plugin::types::RestError as AdvowareError;

/// The `advoware` interface, for [`crate::rest::Request`].
pub struct Advoware;

impl crate::rest::Upstream for Advoware {
    type Error = AdvowareError;

    fn send(request: &wit::Request) -> Result<HttpResponse, AdvowareError> {
        wit::send(request)
    }
}

/// A request being built: `advoware::Request::get("appointments").query("kuerzel", "SB").send()`.
pub type Request = crate::rest::Request<Advoware>;
