//! Outbound HTTP: one shared `reqwest` client with the host's timeout and size
//! caps, used by the `http` capability and by every upstream kind. Redirects
//! are not followed: a redirect could lead outside a plugin's allowlist, or
//! carry an upstream's token to another host.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

/// A scheme, host and port, as browsers compare them. Read from config as
/// `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
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

impl TryFrom<String> for Origin {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
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
    /// `max_timeout` caps every request, `max_response_bytes` every answer's body.
    pub fn new(max_timeout: Duration, max_response_bytes: u64) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("bitbylaw/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            max_timeout,
            max_response_bytes,
        })
    }
}

/// Adds a guest's headers to a request, refusing names and values HTTP does not allow.
pub fn with_headers(
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

/// Why an outbound request got no usable answer. Messages hold no URL (its
/// query may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no answer in time")]
    Timeout,
    #[error("the request could not be built: {0}")]
    Invalid(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("the answer is larger than {0} bytes")]
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
