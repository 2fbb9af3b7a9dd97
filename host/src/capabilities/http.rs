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

        let mut builder = with_headers(egress.client.request(method, url), &request.headers)
            .map_err(Error::InvalidRequest)?;
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let fetched = egress.fetch(builder, timeout).await?;
        Ok(fetched.into())
    }
}

/// Adds a guest's headers to a request, refusing names and values HTTP does not allow.
pub(crate) fn with_headers(
    mut builder: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> Result<reqwest::RequestBuilder, String> {
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name `{name}`"))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("bad value for header `{name}`"))?;
        builder = builder.header(name, value);
    }
    Ok(builder)
}

impl From<Fetched> for Response {
    fn from(fetched: Fetched) -> Self {
        Response {
            status: fetched.status,
            headers: fetched.headers,
            body: fetched.body,
        }
    }
}

impl From<FetchError> for Error {
    fn from(error: FetchError) -> Self {
        match error {
            FetchError::Timeout => Error::Timeout,
            FetchError::Invalid(m) => Error::InvalidRequest(m),
            FetchError::Connection(m) => Error::Connection(m),
            FetchError::TooLarge(n) => Error::TooLarge(n),
        }
    }
}

/// Why an outbound request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Timeout,
    Invalid(String),
    Connection(String),
    TooLarge(u64),
}

/// An upstream's answer, read in full.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Egress {
    /// The shared client, for building requests that [`Egress::fetch`] then sends.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The longest any outbound request may take.
    pub fn max_timeout(&self) -> Duration {
        self.max_timeout
    }

    /// Sends `builder` and reads the whole answer within `timeout`, refusing
    /// bodies past the host's size cap. Every status is an answer.
    pub async fn fetch(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let response = builder.timeout(timeout).send().await.map_err(classify)?;
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
            .is_some_and(|len| len > self.max_response_bytes)
        {
            return Err(FetchError::TooLarge(self.max_response_bytes));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        let read_deadline = started + timeout;
        loop {
            let chunk = tokio::time::timeout_at(read_deadline, stream.next())
                .await
                .map_err(|_| FetchError::Timeout)?;
            match chunk {
                None => break,
                Some(Ok(bytes)) => {
                    if body.len() as u64 + bytes.len() as u64 > self.max_response_bytes {
                        return Err(FetchError::TooLarge(self.max_response_bytes));
                    }
                    body.extend_from_slice(&bytes);
                }
                Some(Err(error)) => return Err(classify(error)),
            }
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

fn classify(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        FetchError::Timeout
    } else if error.is_builder() {
        FetchError::Invalid(error.without_url().to_string())
    } else {
        // Without the URL: it may carry credentials in its query.
        FetchError::Connection(error_chain(&error.without_url()))
    }
}

/// The error and its sources on one line: reqwest's own message alone
/// ("error sending request") does not say that the connection was refused.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
