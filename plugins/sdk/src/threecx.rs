//! The firm's 3CX phone system (V20), signed in by the host: the Call Control
//! API (`callcontrol/{dn}/makecall`, participants) and the XAPI
//! (`xapi/v1/Recordings`, `xapi/v1/CallHistoryView`). Needs an account of kind
//! `3cx` granted to the plugin; the host keeps the token and the account's
//! request budget.
//!
//! ```ignore
//! let made = threecx::Request::post("callcontrol/101/makecall")
//!     .json(&json!({ "destination": "+491711234567", "timeout": 30 }))?
//!     .send()?;
//! ```

use crate::bindings::bitbylaw::plugin::threecx as wit;
use crate::http::HttpResponse;

/// What a request may fail with (`types.rest-error`).
pub use crate::bindings::bitbylaw::plugin::types::RestError as ThreeCxError;

/// The `threecx` interface, for [`crate::rest::Request`].
pub struct ThreeCx;

impl crate::rest::Upstream for ThreeCx {
    type Error = ThreeCxError;

    fn send(request: &wit::Request) -> Result<HttpResponse, ThreeCxError> {
        wit::send(request)
    }
}

/// A request being built: `threecx::Request::get("xapi/v1/Recordings").query("$top", "50").send()`.
pub type Request = crate::rest::Request<ThreeCx>;
