//! `http`: outbound requests through the host's [`Egress`](crate::egress::Egress),
//! limited to the origins the tenant allows the plugin, with the host's timeout
//! and size caps. Redirects are not followed: one could lead outside the allowlist.

use std::time::Duration;

use bitbylaw_bindings::http::{Error, Host, Request, Response};
use tokio::time::Instant;

use super::HostState;
use crate::egress::{FetchError, Fetched, Origin, with_headers};

impl Host for HostState {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        let plugin = &self.plugin;
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| Error::InvalidRequest(format!("bad URL: {e}")))?;
        let origin =
            Origin::of(&url).ok_or_else(|| Error::InvalidRequest("URL has no host".into()))?;
        if !plugin.allowed_origins.contains(&origin) {
            tracing::warn!(
                tenant = %plugin.tenant,
                plugin = %plugin.name,
                request_id = %self.call.request_id,
                %origin,
                "egress refused: origin not in the plugin's allowlist"
            );
            plugin.metrics.egress_refused(&plugin.tenant, &plugin.name);
            return Err(Error::Forbidden(format!(
                "origin {origin} is not allowed for this plugin"
            )));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("bad method `{}`", request.method)))?;
        let egress = &plugin.egress;
        let requested = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(egress.max_timeout());
        let left_in_call = self.call.deadline.saturating_duration_since(Instant::now());
        let timeout = requested.min(egress.max_timeout()).min(left_in_call);

        let mut builder = with_headers(egress.client().request(method, url), &request.headers)
            .map_err(Error::InvalidRequest)?;
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        egress
            .fetch(builder, timeout)
            .await
            .map(response)
            .map_err(error)
    }
}

fn response(fetched: Fetched) -> Response {
    Response {
        status: fetched.status,
        headers: fetched.headers,
        body: fetched.body,
    }
}

fn error(error: FetchError) -> Error {
    match error {
        FetchError::Timeout => Error::Timeout,
        FetchError::Invalid(m) => Error::InvalidRequest(m),
        FetchError::Connection(m) => Error::Connection(m),
        FetchError::TooLarge(n) => Error::TooLarge(n),
    }
}
