//! An incoming HTTP request as the host routed it.

use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::exports::bitbylaw::plugin::handler as wit;

/// Set by the host: `routes` when the caller's credential is limited to a
/// list of routes, `all` otherwise.
const KEY_SCOPE_HEADER: &str = "x-bitbylaw-key-scope";

/// A request on one of the plugin's routes.
#[derive(Debug)]
pub struct Request {
    inner: wit::Request,
}

impl Request {
    pub(crate) fn from_wit(inner: wit::Request) -> Self {
        Self { inner }
    }

    /// Upper-case method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.inner.method
    }

    /// The path without the tenant's route prefix.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The route pattern that matched, as declared in [`crate::Description::route`].
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// The host's request id (Kong's `Kong-Request-ID` when present); put it in upstream logs.
    pub fn request_id(&self) -> &str {
        &self.inner.request_id
    }

    /// A path parameter, e.g. `name` of `/hello/{name}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.inner.params, name, false)
    }

    /// A path parameter that the route guarantees; a 400 when it is missing.
    pub fn require_param(&self, name: &str) -> Result<&str, Error> {
        self.param(name)
            .ok_or_else(|| Error::BadRequest(format!("missing path parameter `{name}`")))
    }

    /// The first value of a query parameter (decoded).
    pub fn query(&self, name: &str) -> Option<&str> {
        find(&self.inner.query, name, false)
    }

    /// Every query pair in order, decoded.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.inner.query
    }

    /// The first value of a header, matched without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.inner.headers, name, true)
    }

    /// Whether the caller's credential opens every route of the tenant (an
    /// ordinary key), rather than a list the tenant limited it to. Routes for
    /// operators (repairs, unlocking) refuse such keys, so the firm hands out
    /// a key limited to them for that. The host sets this; a client cannot.
    pub fn key_opens_all_routes(&self) -> bool {
        self.header(KEY_SCOPE_HEADER) != Some("routes")
    }

    /// A 403 unless the caller's key is one the tenant limited to a list of
    /// routes (see [`Request::key_opens_all_routes`]); `what` names the action.
    pub fn require_limited_key(&self, what: &str) -> Result<(), Error> {
        if self.key_opens_all_routes() {
            return Err(Error::Forbidden(format!(
                "{what} needs a key the tenant limits to it (`api_keys` or `kong_consumers` with `routes = [\"{} {}\"]`); a key for every route may not",
                self.method(),
                self.route()
            )));
        }
        Ok(())
    }

    /// Every header pair in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.inner.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// The body as UTF-8 text; a 400 when it is not.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.inner.body)
            .map_err(|e| Error::BadRequest(format!("body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON; a 400 naming what is wrong when it does not fit `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.inner.body)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
    }

    /// Takes the body out without copying.
    pub fn into_body(self) -> Vec<u8> {
        self.inner.body
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str, ignore_case: bool) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| {
            if ignore_case {
                key.eq_ignore_ascii_case(name)
            } else {
                key == name
            }
        })
        .map(|(_, value)| value.as_str())
}
