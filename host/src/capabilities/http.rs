//! `http`: outbound requests through one shared `reqwest` client, limited to the
//! origins the tenant allows the plugin, with the host's timeout and size caps.
//! Redirects are not followed: a redirect could lead outside the allowlist.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::generated::bitbylaw::plugin::http::{Error, Host, Request, Response};
use crate::runtime::HostState;

/// A scheme, host and port, as browsers compare them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `https://host[:port]` (no path, query or credentials).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: only http and https origins are allowed"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{text}`: an origin has no path, query or fragment"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{text}`: an origin holds no credentials"));
        }
        Self::of(&url).ok_or_else(|| format!("`{text}` has no host"))
    }

    pub fn of(url: &reqwest::Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The shared client and the host's caps.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    max_timeout: Duration,
    max_response_bytes: u64,
}

impl Egress {
    pub fn new(config: &crate::config::EgressConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bitbylaw/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            max_timeout: Duration::from_millis(config.max_timeout_ms),
            max_response_bytes: config.max_response_bytes,
        })
    }
}

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
            .unwrap_or(egress.max_timeout);
        let left_in_call = self.call.deadline.saturating_duration_since(Instant::now());
        let timeout = requested.min(egress.max_timeout).min(left_in_call);

        let mut builder = egress.client.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidRequest(format!("bad header name `{name}`")))?;
            let value = http::HeaderValue::from_str(value)
                .map_err(|_| Error::InvalidRequest(format!("bad value for header `{name}`")))?;
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }

        let started = Instant::now();
        let response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        if response
            .content_length()
            .is_some_and(|len| len > egress.max_response_bytes)
        {
            return Err(Error::TooLarge(egress.max_response_bytes));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        let read_deadline = started + timeout;
        loop {
            let chunk = tokio::time::timeout_at(read_deadline, stream.next())
                .await
                .map_err(|_| Error::Timeout)?;
            match chunk {
                None => break,
                Some(Ok(bytes)) => {
                    if body.len() as u64 + bytes.len() as u64 > egress.max_response_bytes {
                        return Err(Error::TooLarge(egress.max_response_bytes));
                    }
                    body.extend_from_slice(&bytes);
                }
                Some(Err(error)) => return Err(classify(error)),
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn classify(error: reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout
    } else if error.is_builder() {
        Error::InvalidRequest(error.without_url().to_string())
    } else {
        // Without the URL: it may carry credentials in its query.
        Error::Connection(error.without_url().to_string())
    }
}
