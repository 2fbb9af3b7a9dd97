//! What every REST kind shares (`advoware`, `espocrm`, and the next: 3CX,
//! WordPress): the plugin's request (`types.rest-request` in the WIT) checked
//! and placed below the account's API base, sent with the kind's signing
//! within the account's limits and the call's deadline, a read retried when
//! it met a gateway failure, every attempt counted, and one error type
//! (`types.rest-error`).
//!
//! A kind then holds only what is its own: its settings, how it signs a
//! request ([`Rest::attempt`]'s `sign`), and its interface's name. Its WIT
//! `send` is [`serve`], generic over its client ([`RestClient`]).

use std::future::Future;
use std::time::Duration;

use bitbylaw_bindings::http::Response;
use bitbylaw_bindings::types::{RestError as WitRestError, RestRequest};
use reqwest::{Method, RequestBuilder, Url};
use tokio::time::Instant;

use super::{OpenContext, SettingError, UpstreamCall, backoff, request_outcome};
use crate::egress::{Egress, FetchError, Fetched, with_headers};
use crate::metrics::{Metrics, UpstreamLabel};
use crate::store::StoreError;

/// Why a request to a REST upstream got no answer. Any status the upstream
/// answers with is an answer, not an error. Messages never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("not signed in: {0}")]
    Unauthorized(String),
    #[error("no answer in time")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Unavailable(String),
}

impl RestError {
    /// An outbound failure; `what` names the other side (`Advoware configurator`).
    pub fn fetch(error: FetchError, what: &str) -> Self {
        match error {
            FetchError::Timeout => RestError::Timeout,
            FetchError::TooLarge(n) => RestError::TooLarge(n),
            // A request the host could not build is not the caller's fault either.
            FetchError::Invalid(m) | FetchError::Connection(m) => {
                RestError::Connection(format!("{what}: {m}"))
            }
        }
    }
}

impl super::TokenError for RestError {
    fn timeout() -> Self {
        RestError::Timeout
    }

    fn unavailable(error: StoreError) -> Self {
        RestError::Unavailable(format!("token cache unavailable: {error}"))
    }
}

impl From<RestError> for WitRestError {
    fn from(error: RestError) -> Self {
        match error {
            RestError::InvalidRequest(m) => WitRestError::InvalidRequest(m),
            RestError::Unauthorized(m) => WitRestError::Unauthorized(m),
            RestError::Timeout => WitRestError::Timeout,
            RestError::Connection(m) => WitRestError::Connection(m),
            RestError::TooLarge(n) => WitRestError::TooLarge(n),
            RestError::Unavailable(m) => WitRestError::Unavailable(m),
        }
    }
}

/// What a plugin asks a REST upstream for: the WIT record in host types.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// Below the kind's API base; checked with [`super::endpoint::resolve`].
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<bytes::Bytes>,
    pub timeout: Option<Duration>,
}

impl From<RestRequest> for ApiRequest {
    fn from(request: RestRequest) -> Self {
        Self {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body.map(Into::into),
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        }
    }
}

/// The method of a plugin's request to an upstream API: GET, POST, PUT,
/// PATCH or DELETE, in any case; the message says what else was given.
pub fn api_method(text: &str) -> Result<Method, String> {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        other => Err(format!(
            "method `{other}` is not one of GET, POST, PUT, PATCH, DELETE"
        )),
    }
}

/// Refuses a plugin's header that the kind sets itself (`reserved`, lower case).
pub fn check_headers(headers: &[(String, String)], reserved: &[&str]) -> Result<(), String> {
    match headers
        .iter()
        .find(|(name, _)| reserved.contains(&name.to_ascii_lowercase().as_str()))
    {
        Some((name, _)) => Err(format!("header `{name}` is set by the host")),
        None => Ok(()),
    }
}

/// The settings every REST account has, with the same names and defaults in
/// each kind's section: `timeout_ms`, `read_retries`, `retry_base_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest one request may take.
    pub timeout: Duration,
    /// How often a read that met a 502, 503, 504 or a dropped connection is
    /// tried again, within the call's deadline.
    pub read_retries: u32,
    /// The first pause before such a retry; it doubles each time, with jitter.
    pub retry_base: Duration,
}

/// The defaults of [`Limits`], for `#[serde(default = "...")]` in a kind's settings.
pub mod defaults {
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn read_retries() -> u32 {
        3
    }
    pub fn retry_base_ms() -> u64 {
        200
    }
}

const MAX_TIMEOUT_MS: u64 = 600_000;
const MAX_READ_RETRIES: u32 = 10;
const MAX_RETRY_BASE_MS: u64 = 60_000;

impl Limits {
    /// Checks the settings as written, naming the key that is wrong.
    pub fn new(
        timeout_ms: u64,
        read_retries: u32,
        retry_base_ms: u64,
    ) -> Result<Self, SettingError> {
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(SettingError::new(
                "timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS} (ten minutes)"),
            ));
        }
        if read_retries > MAX_READ_RETRIES {
            return Err(SettingError::new(
                "read_retries",
                format!("must be at most {MAX_READ_RETRIES}"),
            ));
        }
        if retry_base_ms > MAX_RETRY_BASE_MS {
            return Err(SettingError::new(
                "retry_base_ms",
                format!("must be at most {MAX_RETRY_BASE_MS} (a minute)"),
            ));
        }
        Ok(Self {
            timeout: Duration::from_millis(timeout_ms),
            read_retries,
            retry_base: Duration::from_millis(retry_base_ms),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(defaults::timeout_ms()),
            read_retries: defaults::read_retries(),
            retry_base: Duration::from_millis(defaults::retry_base_ms()),
        }
    }
}

/// A plugin's request, checked and placed below the API base: what a kind signs.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: Method,
    pub url: Url,
    headers: Vec<(String, String)>,
    body: Option<bytes::Bytes>,
    timeout: Option<Duration>,
}

impl Prepared {
    /// The URL's path below `api_base`, with its leading `/` (what EspoCRM signs).
    pub fn path_below(&self, api_base: &Url) -> &str {
        let path = self.url.path();
        path.strip_prefix(api_base.path().trim_end_matches('/'))
            .unwrap_or(path)
    }
}

/// The part of a REST kind's client that every kind shares: the host's HTTP
/// client, the account's limits and metric labels, the headers the kind sets.
pub struct Rest {
    label: UpstreamLabel,
    egress: Egress,
    metrics: Metrics,
    limits: Limits,
    /// Lower case; a plugin may not send them.
    reserved: &'static [&'static str],
}

impl Rest {
    /// `reserved`: the headers the kind's signing sets (`host` and
    /// `content-length` are always the host's).
    pub fn new(
        context: &OpenContext<'_>,
        kind: &str,
        limits: Limits,
        reserved: &'static [&'static str],
    ) -> Self {
        Self {
            label: context.label(kind),
            egress: context.egress.clone(),
            metrics: context.metrics.clone(),
            limits,
            reserved,
        }
    }

    pub fn label(&self) -> &UpstreamLabel {
        &self.label
    }

    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks method and headers and resolves path and query below `api_base`.
    pub fn prepare(&self, request: ApiRequest, api_base: &Url) -> Result<Prepared, RestError> {
        let method = api_method(&request.method).map_err(RestError::InvalidRequest)?;
        check_headers(&request.headers, &["host", "content-length"])
            .and_then(|()| check_headers(&request.headers, self.reserved))
            .map_err(RestError::InvalidRequest)?;
        let url = super::endpoint::resolve(api_base, &request.path, &request.query)
            .map_err(RestError::InvalidRequest)?;
        Ok(Prepared {
            method,
            url,
            headers: request.headers,
            body: request.body,
            timeout: request.timeout,
        })
    }

    /// How long one request may take now: the account's timeout, the host's
    /// cap, and no longer than what is left before `deadline`.
    pub fn time_left(&self, deadline: Instant) -> Duration {
        self.limits
            .timeout
            .min(self.egress.max_timeout())
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Sends `request` once, `sign` adding the kind's auth; counted in
    /// `bitbylaw_upstream_requests_total`. A body without a content type goes
    /// as JSON.
    pub async fn attempt(
        &self,
        request: &Prepared,
        deadline: Instant,
        sign: impl FnOnce(RequestBuilder) -> Result<RequestBuilder, RestError>,
    ) -> Result<Fetched, RestError> {
        let left = self.time_left(deadline);
        let timeout = request.timeout.map_or(left, |asked| asked.min(left));
        if timeout.is_zero() {
            return Err(RestError::Timeout);
        }
        let mut builder = with_headers(
            self.egress
                .client()
                .request(request.method.clone(), request.url.clone()),
            &request.headers,
        )
        .map_err(RestError::InvalidRequest)?;
        if let Some(body) = &request.body {
            let typed = request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if !typed {
                builder = builder.header("content-type", "application/json");
            }
            builder = builder.body(body.clone());
        }
        let answer = self.egress.fetch(sign(builder)?, timeout).await;
        self.metrics
            .upstream_request(&self.label, request_outcome(&answer));
        answer.map_err(|error| RestError::fetch(error, &format!("{} API", self.label.kind)))
    }

    /// Runs `attempt` and, for a read (`GET`) whose answer was 502, 503 or
    /// 504 or whose connection broke, runs it again after a backoff, up to
    /// `read_retries` times and never past `deadline`. A write is sent once:
    /// its answer may be lost after the upstream made the change.
    ///
    /// `attempt`'s outer error (signing in failed) is returned at once; its
    /// inner result is the request's, which is what a read is retried for.
    pub async fn with_read_retries<F, Fut>(
        &self,
        method: &Method,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<Fetched, RestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Result<Fetched, RestError>, RestError>>,
    {
        let mut retry = 0;
        loop {
            let result = attempt().await?;
            let transient = match &result {
                Ok(answer) => matches!(answer.status, 502..=504),
                // Not a timeout: a slow upstream is not faster a moment later,
                // and the time is the call's.
                Err(error) => matches!(error, RestError::Connection(_)),
            };
            if *method != Method::GET || !transient || retry >= self.limits.read_retries {
                return result;
            }
            let pause = backoff(self.limits.retry_base, retry);
            if Instant::now() + pause >= deadline {
                return result;
            }
            self.metrics.upstream_retry(&self.label, method.as_str());
            tracing::info!(
                tenant = %self.label.tenant,
                kind = %self.label.kind,
                retry = retry + 1,
                "a read failed on the way; trying again"
            );
            tokio::time::sleep(pause).await;
            retry += 1;
        }
    }
}

/// A REST kind's client as its WIT interface serves it.
pub trait RestClient: std::any::Any + Send + Sync {
    /// The upstream in messages to plugins and operators, e.g. `Advoware`.
    const UPSTREAM: &'static str;
    /// `kind = "<name>"` in the tenant file.
    const KIND: &'static str;

    /// Sends one request signed in; every status the upstream answers is `Ok`.
    /// Nothing runs past `deadline`.
    fn send(
        &self,
        request: ApiRequest,
        deadline: Instant,
    ) -> impl Future<Output = Result<Fetched, RestError>> + Send;
}

/// Time kept back from the call's deadline, so that an upstream timeout
/// reaches the plugin as one (504 from a proxy) before the host stops the
/// whole call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The caller's client of kind `C`, or why it has none and how to grant one.
pub fn granted<'a, C: RestClient>(call: &UpstreamCall<'a>) -> Result<&'a C, String> {
    call.grants.client::<C>().ok_or_else(|| {
        format!(
            "plugin `{}` of tenant `{}` may not use {}: grant it an account of kind `{}` in the tenant file (`upstreams = [\"<name>\"]`)",
            call.plugin,
            call.tenant,
            C::UPSTREAM,
            C::KIND
        )
    })
}

/// The body of every REST interface's `send`: the caller's granted client
/// (`not-configured` naming how to grant one), the request sent, a failure
/// logged with the call's ids.
pub async fn serve<C: RestClient>(
    call: &UpstreamCall<'_>,
    request: RestRequest,
) -> Result<Response, WitRestError> {
    let client = granted::<C>(call).map_err(WitRestError::NotConfigured)?;
    let deadline = call
        .deadline
        .checked_sub(DEADLINE_MARGIN)
        .unwrap_or(call.deadline);
    match client.send(request.into(), deadline).await {
        Ok(answer) => Ok(Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        }),
        Err(error) => {
            tracing::warn!(
                tenant = %call.tenant,
                plugin = %call.plugin,
                request_id = %call.request_id,
                kind = C::KIND,
                %error,
                "{} request failed",
                C::UPSTREAM
            );
            Err(error.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_key_that_is_out_of_range() {
        assert_eq!(
            Limits::new(0, 3, 200).unwrap_err().key.as_deref(),
            Some("timeout_ms")
        );
        assert_eq!(
            Limits::new(1_000, 11, 200).unwrap_err().key.as_deref(),
            Some("read_retries")
        );
        assert_eq!(
            Limits::new(1_000, 3, 60_001).unwrap_err().key.as_deref(),
            Some("retry_base_ms")
        );
        assert_eq!(Limits::new(30_000, 3, 200).unwrap(), Limits::default());
    }

    #[test]
    fn a_path_below_the_base_keeps_its_leading_slash() {
        let base = Url::parse("https://crm.example/espo/api/v1/").unwrap();
        let prepared = Prepared {
            method: Method::GET,
            url: base.join("CBeteiligte/abc?select=name").unwrap(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        };
        assert_eq!(prepared.path_below(&base), "/CBeteiligte/abc");
    }
}
