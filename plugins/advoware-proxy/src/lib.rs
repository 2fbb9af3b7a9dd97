//! `advoware-proxy`: Advoware's REST API for the firm's other tools, behind Kong.
//!
//! `GET|POST|PUT|DELETE /advoware/proxy?endpoint=<path>` calls `<API base><path>`
//! with the same method; every other query parameter and the body go along
//! unchanged, and Advoware's status and body come back. Signing in is the host's
//! (the `advoware` capability); this plugin only translates. Errors:
//! no or bad `endpoint` → 400, Advoware unreachable or refusing the account →
//! 502, no answer in time → 504; all with a JSON body. See
//! `docs/plugins/advoware-proxy.md`.

use bitbylaw_sdk::advoware::{self, AdvowareError};
use bitbylaw_sdk::{Description, Error, Plugin, Request, Response, Router, info};

struct AdvowareProxy;

const ROUTE: &str = "/advoware/proxy";

/// Request headers that mean something to Advoware; the rest (Kong's consumer
/// headers, API keys, cookies) stays here.
const REQUEST_HEADERS: [&str; 6] = [
    "content-type",
    "accept",
    "accept-language",
    "if-match",
    "if-none-match",
    "if-modified-since",
];

/// Response headers worth handing back; the rest describes Advoware's servers.
const RESPONSE_HEADERS: [&str; 5] = [
    "content-type",
    "content-disposition",
    "etag",
    "last-modified",
    "cache-control",
];

impl Plugin for AdvowareProxy {
    fn describe() -> Description {
        Description::new("advoware-proxy", env!("CARGO_PKG_VERSION"))
    }

    fn routes() -> Router {
        Router::new()
            .get(ROUTE, proxy)
            .post(ROUTE, proxy)
            .put(ROUTE, proxy)
            .delete(ROUTE, proxy)
    }
}

/// One request to Advoware with the caller's method, query and body.
fn proxy(request: Request) -> Result<Response, Error> {
    let endpoint = endpoint(&request)?.to_owned();
    let method = request.method().to_owned();
    let mut upstream = advoware::Request::new(&method, endpoint.as_str());
    for (name, value) in request.query_pairs() {
        if name != "endpoint" {
            upstream = upstream.query(name.as_str(), value.as_str());
        }
    }
    for name in REQUEST_HEADERS {
        if let Some(value) = request.header(name) {
            upstream = upstream.header(name, value);
        }
    }
    let body = request.into_body();
    if !body.is_empty() || matches!(method.as_str(), "POST" | "PUT") {
        upstream = upstream.body(body);
    }
    let answer = upstream.send().map_err(|error| match error {
        // The caller's endpoint was refused (e.g. `../`): their mistake, not ours.
        AdvowareError::InvalidRequest(message) => Error::BadRequest(message),
        other => Error::from(other),
    })?;
    // The path only: query values (also one written into the endpoint) may hold personal data.
    let path = endpoint.split('?').next().unwrap_or_default();
    info!("proxied {} {}", method, path; "status" => answer.status);
    let mut response = Response::new(answer.status);
    for name in RESPONSE_HEADERS {
        if let Some(value) = answer.header(name) {
            response = response.with_header(name, value);
        }
    }
    Ok(response.with_body(answer.body))
}

/// The one `endpoint` query parameter, present and not empty.
fn endpoint(request: &Request) -> Result<&str, Error> {
    let mut values = request
        .query_pairs()
        .iter()
        .filter(|(name, _)| name == "endpoint")
        .map(|(_, value)| value.as_str());
    match (values.next(), values.next()) {
        (Some(value), None) if !value.trim().is_empty() => Ok(value),
        (None, _) | (Some(_), None) => Err(Error::BadRequest(
            "query parameter `endpoint` is required: the Advoware path to call, e.g. `?endpoint=employees`"
                .into(),
        )),
        (Some(_), Some(_)) => Err(Error::BadRequest(
            "query parameter `endpoint` is given more than once".into(),
        )),
    }
}

bitbylaw_sdk::export_plugin!(AdvowareProxy);
