//! Upstream kind `google`: Google Calendar for every plugin granted a Google
//! account, through the `google-calendar` WIT interface.
//!
//! The firm's service-account key stays in the host. A call acts as one
//! mailbox (`subject`): it takes its share of the account's quotas from the
//! store ([`quota`]), a token for the mailbox ([`token`]: cached in the store,
//! fetched once across host instances), and goes to Google through
//! google-calendar3's hub. Google's quota refusals (403 `rateLimitExceeded`,
//! `userRateLimitExceeded`, 429) and 5xx are retried with exponential backoff
//! and jitter; a 401 drops the token and tries once more with a fresh one;
//! every other answer goes to the plugin as a typed error.

mod capability;
mod convert;
mod quota;
mod settings;
mod token;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bitbylaw_core::egress::{Egress, FetchError};
use bitbylaw_core::metrics::{Metrics, UpstreamLabel};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, SettingError, TokenCache, TokenError, UpstreamKind,
    UpstreamState, backoff,
};
use google_calendar3::CalendarHub;
use google_calendar3::api;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;

pub use capability::GoogleCall;
pub use settings::{DEFAULT_API_BASE, GoogleConfig, Parsed, Settings};
pub use token::SCOPE;

/// The kind: `kind = "google"`, serving `bitbylaw:plugin/google-calendar`.
pub struct Google;

/// The kind's name in tenant files and metrics.
pub const KIND: &str = "google";

impl UpstreamKind for Google {
    fn name(&self) -> &'static str {
        KIND
    }

    fn interface(&self) -> &'static str {
        "bitbylaw:plugin/google-calendar"
    }

    fn parse(&self, settings: toml::Table) -> Result<Arc<dyn AccountSettings>, SettingError> {
        let config: GoogleConfig = SettingError::parse_table(settings)?;
        Ok(Arc::new(Parsed::new(&config)?))
    }

    fn add_to_linker<T: UpstreamState>(
        linker: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()> {
        capability::add_to_linker(linker)
    }
}

impl AccountSettings for Parsed {
    fn open(&self, context: &OpenContext<'_>) -> Result<Account, SettingError> {
        let settings = self.resolve(context.base_dir)?;
        Ok(Client::new(context, settings)?)
    }
}

/// Why a call brought no answer the plugin can use. Messages never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoogleError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("gone: {0}")]
    Gone(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl TokenError for GoogleError {
    fn timeout() -> Self {
        GoogleError::Unavailable("no token before the call's deadline".into())
    }
    fn unavailable(error: bitbylaw_core::store::StoreError) -> Self {
        GoogleError::Unavailable(format!("the token store: {error}"))
    }
}

/// HTTPS (and plain HTTP, for simulators) with the one rustls provider of the
/// tree passed explicitly, so no process-wide default has to be installed.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

type Hub = CalendarHub<Connector>;

fn connector() -> Result<Connector, SettingError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| SettingError {
            key: None,
            message: format!("TLS setup failed: {e}"),
        })?;
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

/// One tenant's Google account, shared by the plugins granted it.
pub struct Client {
    label: UpstreamLabel,
    settings: Settings,
    http: google_calendar3::common::Client<Connector>,
    tokens: token::Tokens,
    quotas: quota::Quotas,
    /// For the calls google-calendar3 cannot make (it cannot send `If-Match`).
    egress: Egress,
    metrics: Metrics,
}

impl Client {
    pub fn new(context: &OpenContext<'_>, settings: Settings) -> Result<Arc<Self>, SettingError> {
        let Some(key) = settings.key.clone() else {
            return Err(SettingError::new(
                "service_account_key",
                "was not read before the account opened",
            ));
        };
        let connector = connector()?;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, google_calendar3::common::Body>(connector.clone());
        let label = context.label(KIND);
        let scope = context.scope(KIND);
        let cache = TokenCache::new(
            label.clone(),
            context.store.clone(),
            scope.clone(),
            context.metrics.clone(),
        );
        Ok(Arc::new(Self {
            quotas: quota::Quotas::new(context.store.clone(), scope, context.account, &settings),
            tokens: token::Tokens::new(cache, key, connector, settings.timeout),
            label,
            settings,
            http,
            egress: context.egress.clone(),
            metrics: context.metrics.clone(),
        }))
    }

    fn hub(&self, token: String) -> Hub {
        let mut hub = CalendarHub::new(self.http.clone(), token);
        hub.base_url(self.settings.api_base.to_string());
        hub
    }

    /// One page of events.
    pub async fn list_events(
        &self,
        subject: &str,
        calendar: &str,
        query: &ListQuery,
        deadline: Instant,
    ) -> Result<api::Events, GoogleError> {
        let calendar = path_segment(calendar)?;
        let (time_min, time_max) = (
            query
                .time_min
                .as_deref()
                .map(convert::parse_moment)
                .transpose()?,
            query
                .time_max
                .as_deref()
                .map(convert::parse_moment)
                .transpose()?,
        );
        if let Some(n) = query.max_results
            && !(1..=2500).contains(&n)
        {
            return Err(GoogleError::Invalid(
                "max-results must be between 1 and 2500".into(),
            ));
        }
        self.call("events.list", subject, deadline, |token| {
            let hub = self.hub(token);
            let calendar = calendar.clone();
            async move {
                let mut call = hub.events().list(&calendar);
                if let Some(token) = &query.sync_token {
                    call = call.sync_token(token);
                }
                if let Some(token) = &query.page_token {
                    call = call.page_token(token);
                }
                if let Some(moment) = time_min {
                    call = call.time_min(moment);
                }
                if let Some(moment) = time_max {
                    call = call.time_max(moment);
                }
                if let Some(n) = query.max_results {
                    call = call.max_results(i32::try_from(n).unwrap_or(2500));
                }
                if query.show_deleted {
                    call = call.show_deleted(true);
                }
                if query.single_events {
                    call = call.single_events(true);
                }
                for filter in &query.private_property {
                    call = call.add_private_extended_property(filter);
                }
                call.doit()
                    .await
                    .map(|(_, events)| events)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    pub async fn get_event(
        &self,
        subject: &str,
        calendar: &str,
        event: &str,
        deadline: Instant,
    ) -> Result<api::Event, GoogleError> {
        let (calendar, event) = (path_segment(calendar)?, path_segment(event)?);
        self.call("events.get", subject, deadline, |token| {
            let hub = self.hub(token);
            let (calendar, event) = (calendar.clone(), event.clone());
            async move {
                hub.events()
                    .get(&calendar, &event)
                    .doit()
                    .await
                    .map(|(_, event)| event)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    pub async fn insert_event(
        &self,
        subject: &str,
        calendar: &str,
        event: api::Event,
        deadline: Instant,
    ) -> Result<api::Event, GoogleError> {
        let encoded = path_segment(calendar)?;
        let mut event = event;
        // An id of the host's when the plugin gives none: a retry after a lost
        // answer then finds the event instead of making a second one.
        let id = event.id.get_or_insert_with(new_event_id).clone();
        let mut attempts = 0;
        let inserted = self
            .call("events.insert", subject, deadline, |token| {
                attempts += 1;
                let hub = self.hub(token);
                let (calendar, event) = (encoded.clone(), event.clone());
                async move {
                    hub.events()
                        .insert(event, &calendar)
                        .doit()
                        .await
                        .map(|(_, event)| event)
                        .map_err(Failure::Api)
                }
            })
            .await;
        match inserted {
            // The first attempt may have gone through with its answer lost:
            // the event found is the one made only when it is live and says
            // what was sent (a cancelled one, or another with that id, is a conflict).
            Err(GoogleError::Conflict(message)) if attempts > 1 => {
                let found = self.get_event(subject, calendar, &id, deadline).await?;
                let ours = found.status.as_deref() != Some("cancelled")
                    && found.summary == event.summary
                    && same_time(found.start.as_ref(), event.start.as_ref());
                if ours {
                    Ok(found)
                } else {
                    Err(GoogleError::Conflict(message))
                }
            }
            other => other,
        }
    }

    /// `patch` or `update` of one event: an unconditional update through
    /// google-calendar3, the rest through the host's HTTP client (which can
    /// send `If-Match` and the nulls a patch needs).
    pub async fn change_event(
        &self,
        subject: &str,
        calendar: &str,
        id: &str,
        event: api::Event,
        change: Change<'_>,
        deadline: Instant,
    ) -> Result<api::Event, GoogleError> {
        let Change { replace, if_match } = change;
        let (calendar, id) = (path_segment(calendar)?, path_segment(id)?);
        let method = if replace {
            "events.update"
        } else {
            "events.patch"
        };
        // A patch goes through the host's client too: it must clear the other
        // form of a start or end, which google-calendar3 cannot send.
        if if_match.is_some() || !replace {
            // As google-calendar3 does: absent fields are left out, not sent
            // as null (which would clear them in a patch).
            let mut json = serde_json::to_value(&event)
                .map(without_nulls)
                .map_err(|e| GoogleError::Invalid(format!("the event cannot be sent: {e}")))?;
            if !replace {
                clear_other_time_forms(&mut json);
            }
            let body = serde_json::to_vec(&json)
                .map_err(|e| GoogleError::Invalid(format!("the event cannot be sent: {e}")))?;
            let verb = if replace {
                reqwest::Method::PUT
            } else {
                reqwest::Method::PATCH
            };
            let path = format!("calendars/{calendar}/events/{id}");
            let answer = self
                .call(method, subject, deadline, |token| {
                    self.send_conditional(
                        verb.clone(),
                        &path,
                        token,
                        if_match,
                        Some(body.clone()),
                        deadline,
                    )
                })
                .await?;
            return serde_json::from_slice(&answer).map_err(|e| {
                GoogleError::Unavailable(format!("Google's answer is not an event: {e}"))
            });
        }
        self.call(method, subject, deadline, |token| {
            let hub = self.hub(token);
            let (calendar, id, event) = (calendar.clone(), id.clone(), event.clone());
            async move {
                hub.events()
                    .update(event, &calendar, &id)
                    .doit()
                    .await
                    .map(|(_, event)| event)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    pub async fn delete_event(
        &self,
        subject: &str,
        calendar: &str,
        id: &str,
        if_match: Option<&str>,
        deadline: Instant,
    ) -> Result<(), GoogleError> {
        let (calendar, id) = (path_segment(calendar)?, path_segment(id)?);
        let deleted = if let Some(etag) = if_match {
            let path = format!("calendars/{calendar}/events/{id}");
            self.call("events.delete", subject, deadline, |token| {
                self.send_conditional(
                    reqwest::Method::DELETE,
                    &path,
                    token,
                    Some(etag),
                    None,
                    deadline,
                )
            })
            .await
            .map(drop)
        } else {
            self.delete_unconditionally(subject, &calendar, &id, deadline)
                .await
        };
        match deleted {
            // 410 `deleted`: it is cancelled already (perhaps by our own attempt
            // whose answer was lost). Deleting is idempotent.
            Err(GoogleError::Gone(_)) => Ok(()),
            other => other,
        }
    }

    async fn delete_unconditionally(
        &self,
        subject: &str,
        calendar: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<(), GoogleError> {
        self.call("events.delete", subject, deadline, |token| {
            let hub = self.hub(token);
            let (calendar, id) = (calendar.to_owned(), id.to_owned());
            async move {
                hub.events()
                    .delete(&calendar, &id)
                    .doit()
                    .await
                    .map(drop)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    pub async fn list_calendars(
        &self,
        subject: &str,
        deadline: Instant,
    ) -> Result<Vec<api::CalendarListEntry>, GoogleError> {
        let mut calendars = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let list = self
                .call("calendarList.list", subject, deadline, |token| {
                    let hub = self.hub(token);
                    let page = page.clone();
                    async move {
                        let mut call = hub.calendar_list().list();
                        if let Some(page) = &page {
                            call = call.page_token(page);
                        }
                        call.doit()
                            .await
                            .map(|(_, list)| list)
                            .map_err(Failure::Api)
                    }
                })
                .await?;
            calendars.extend(list.items.unwrap_or_default());
            match list.next_page_token {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => return Ok(calendars),
            }
        }
    }

    pub async fn get_calendar(
        &self,
        subject: &str,
        calendar: &str,
        deadline: Instant,
    ) -> Result<api::Calendar, GoogleError> {
        let calendar = path_segment(calendar)?;
        self.call("calendars.get", subject, deadline, |token| {
            let hub = self.hub(token);
            let calendar = calendar.clone();
            async move {
                hub.calendars()
                    .get(&calendar)
                    .doit()
                    .await
                    .map(|(_, calendar)| calendar)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    pub async fn insert_calendar(
        &self,
        subject: &str,
        calendar: api::Calendar,
        deadline: Instant,
    ) -> Result<api::Calendar, GoogleError> {
        self.call("calendars.insert", subject, deadline, |token| {
            let hub = self.hub(token);
            let calendar = calendar.clone();
            async move {
                hub.calendars()
                    .insert(calendar)
                    .doit()
                    .await
                    .map(|(_, calendar)| calendar)
                    .map_err(Failure::Api)
            }
        })
        .await
    }

    /// A request google-calendar3 cannot express (`If-Match`, a patch that
    /// clears a member), sent with the same token through the host's HTTP
    /// client; the answer's body on success.
    fn send_conditional(
        &self,
        method: reqwest::Method,
        path: &str,
        token: String,
        etag: Option<&str>,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<u8>, Failure>> + Send + 'static {
        let url = self.settings.api_base.join(path);
        let egress = self.egress.clone();
        let etag = etag.map(str::to_owned);
        let timeout = self.time_left(deadline);
        async move {
            let url = url.map_err(|e| {
                Failure::Final(GoogleError::Invalid(format!("bad event path: {e}")))
            })?;
            let mut request = egress.client().request(method, url).bearer_auth(token);
            if let Some(etag) = etag {
                request = request.header("if-match", etag);
            }
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let answer = egress
                .fetch(request, timeout)
                .await
                .map_err(|error| match error {
                    FetchError::Timeout => Failure::Timeout,
                    FetchError::Invalid(message) => Failure::Final(GoogleError::Invalid(message)),
                    FetchError::TooLarge(limit) => Failure::Final(GoogleError::Unavailable(
                        format!("Google's answer is larger than {limit} bytes"),
                    )),
                    other => Failure::Http(0, other.to_string()),
                })?;
            if (200..300).contains(&answer.status) {
                Ok(answer.body)
            } else {
                Err(Failure::Http(
                    answer.status,
                    String::from_utf8_lossy(&answer.body).into_owned(),
                ))
            }
        }
    }

    fn time_left(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .min(self.settings.timeout)
            .min(self.egress.max_timeout())
    }

    /// Runs `attempt` with the mailbox's token after taking the quota:
    /// retrying quota refusals and 5xx with backoff, and a 401 once with a
    /// fresh token, all within the call's deadline.
    async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        subject: &str,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, GoogleError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let subject = &mailbox(subject)?;
        if !self.settings.may_act_as(subject) {
            self.metrics.upstream_call(&self.label, method, "invalid");
            return Err(GoogleError::Invalid(format!(
                "mailbox `{subject}` is not one this tenant's Google account may act as (`mailboxes` of the account)"
            )));
        }
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            let waited = self.quotas.take(subject, deadline).await;
            let waited = match waited {
                Ok(waited) => waited,
                Err(error) => {
                    self.metrics
                        .upstream_call(&self.label, method, "rate_limited");
                    return Err(error);
                }
            };
            if !waited.is_zero() {
                self.metrics.upstream_quota_wait(&self.label, waited);
            }
            let token = match self.tokens.get(subject, deadline).await {
                Ok(token) => token,
                Err(error) => {
                    self.metrics
                        .upstream_call(&self.label, method, outcome_label(&error));
                    return Err(error);
                }
            };
            let limit = Instant::now() + self.time_left(deadline);
            let outcome = match tokio::time::timeout_at(limit, attempt(token.clone())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Timeout),
            };
            let failure = match outcome {
                Ok(value) => {
                    self.metrics.upstream_call(&self.label, method, "ok");
                    return Ok(value);
                }
                Err(failure) => failure.classify(),
            };
            match failure {
                Verdict::Unauthorized(message) if !refreshed => {
                    refreshed = true;
                    tracing::info!(tenant = %self.label.tenant, account = %self.label.account, %message, "Google refused the token; fetching a fresh one");
                    if let Err(error) = self.tokens.invalidate(subject, &token).await {
                        self.metrics
                            .upstream_call(&self.label, method, outcome_label(&error));
                        return Err(error);
                    }
                }
                Verdict::Retry(error) if retries < self.settings.max_retries => {
                    let backoff = backoff(self.settings.retry_base, retries);
                    if Instant::now() + backoff >= deadline {
                        self.metrics
                            .upstream_call(&self.label, method, outcome_label(&error));
                        return Err(error);
                    }
                    retries += 1;
                    self.metrics.upstream_retry(&self.label, method);
                    tracing::debug!(tenant = %self.label.tenant, %method, retry = retries, %error, "Google call retried");
                    tokio::time::sleep(backoff).await;
                }
                Verdict::Unauthorized(message) => {
                    self.metrics
                        .upstream_call(&self.label, method, "unauthorized");
                    return Err(GoogleError::Unauthorized(format!(
                        "Google refused a fresh token: {message}"
                    )));
                }
                Verdict::Retry(error) | Verdict::Final(error) => {
                    self.metrics
                        .upstream_call(&self.label, method, outcome_label(&error));
                    return Err(error);
                }
            }
        }
    }
}

/// How an event is changed: replaced (`update`) or patched, and only if it
/// still has the etag `if_match`.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub replace: bool,
    pub if_match: Option<&'a str>,
}

/// What a plugin lists (the WIT query, owned by the host).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub sync_token: Option<String>,
    pub page_token: Option<String>,
    pub time_min: Option<String>,
    pub time_max: Option<String>,
    pub max_results: Option<u32>,
    pub show_deleted: bool,
    pub single_events: bool,
    pub private_property: Vec<String>,
}

/// A failed attempt, before it is judged.
pub(crate) enum Failure {
    Api(google_calendar3::Error),
    /// A status (0: no answer) and Google's body, from the host's own client.
    Http(u16, String),
    /// The host's own client could not send it as asked (a bad header value),
    /// or the answer passed the size cap: no retry helps.
    Final(GoogleError),
    Timeout,
}

/// What to do about a failed attempt.
enum Verdict {
    Unauthorized(String),
    Retry(GoogleError),
    Final(GoogleError),
}

impl Failure {
    fn classify(self) -> Verdict {
        match self {
            Failure::Timeout => Verdict::Final(GoogleError::Unavailable(
                "Google did not answer in time".into(),
            )),
            Failure::Http(0, message) => Verdict::Retry(GoogleError::Unavailable(message)),
            Failure::Final(error) => Verdict::Final(error),
            Failure::Http(status, body) => {
                let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                judge(status, &json, &body)
            }
            Failure::Api(google_calendar3::Error::BadRequest(json)) => {
                // google-calendar3 keeps the JSON, not the status: Google's own
                // errors carry it as `error.code`; JSON of another shape (a proxy,
                // a front end) says nothing we can trust, so it may pass.
                match json["error"]["code"]
                    .as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                {
                    Some(status) => judge(status, &json, ""),
                    None => Verdict::Retry(GoogleError::Unavailable(format!(
                        "an answer Google's API would not give: {}",
                        clip(&json.to_string())
                    ))),
                }
            }
            Failure::Api(google_calendar3::Error::Failure(response)) => {
                judge(response.status().as_u16(), &serde_json::Value::Null, "")
            }
            Failure::Api(google_calendar3::Error::HttpError(error)) => Verdict::Retry(
                GoogleError::Unavailable(format!("connection to Google failed: {error}")),
            ),
            Failure::Api(google_calendar3::Error::Io(error)) => Verdict::Retry(
                GoogleError::Unavailable(format!("connection to Google failed: {error}")),
            ),
            Failure::Api(other) => Verdict::Final(GoogleError::Unavailable(format!(
                "Google's answer could not be used: {}",
                clip(&other.to_string())
            ))),
        }
    }
}

/// Google's error answer by status and `error.errors[].reason`.
fn judge(status: u16, json: &serde_json::Value, raw: &str) -> Verdict {
    let message = json["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let raw = clip(raw);
            if raw.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {raw}")
            }
        });
    let reasons: Vec<&str> = json["error"]["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let quota = reasons
        .iter()
        .any(|r| matches!(*r, "rateLimitExceeded" | "userRateLimitExceeded"));
    match status {
        401 => Verdict::Unauthorized(message),
        403 if quota => Verdict::Retry(GoogleError::RateLimited(message)),
        429 => Verdict::Retry(GoogleError::RateLimited(message)),
        404 => Verdict::Final(GoogleError::NotFound(message)),
        409 => Verdict::Final(GoogleError::Conflict(message)),
        410 => Verdict::Final(GoogleError::Gone(message)),
        412 => Verdict::Final(GoogleError::PreconditionFailed(message)),
        500..=599 => Verdict::Retry(GoogleError::Unavailable(message)),
        _ => Verdict::Final(GoogleError::Invalid(message)),
    }
}

/// A new event id in base32hex (`0-9`, `a-v`), as Google accepts client ids.
fn new_event_id() -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..26)
        .map(|_| char::from(DIGITS[fastrand::usize(..32)]))
        .collect()
}

/// At most 200 characters of `text`: answers can be long and hold event data.
fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(200).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

/// In a patch body: a start or end given as a date clears its `dateTime`,
/// and one given as a time clears its `date`. Google merges a patched
/// `start` member by member, so a timed event made all-day (or back) would
/// otherwise hold both and be refused.
fn clear_other_time_forms(event: &mut serde_json::Value) {
    for key in ["start", "end", "originalStartTime"] {
        let Some(time) = event.get_mut(key).and_then(|t| t.as_object_mut()) else {
            continue;
        };
        if time.contains_key("date") {
            time.insert("dateTime".into(), serde_json::Value::Null);
        } else if time.contains_key("dateTime") {
            time.insert("date".into(), serde_json::Value::Null);
        }
    }
}

/// `value` without the object members that are null, at every depth.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(members) => members
            .into_iter()
            .filter(|(_, member)| !member.is_null())
            .map(|(key, member)| (key, without_nulls(member)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

fn outcome_label(error: &GoogleError) -> &'static str {
    match error {
        GoogleError::NotFound(_) => "not_found",
        GoogleError::Gone(_) => "gone",
        GoogleError::Conflict(_) => "conflict",
        GoogleError::PreconditionFailed(_) => "precondition_failed",
        GoogleError::RateLimited(_) => "rate_limited",
        GoogleError::Unauthorized(_) => "unauthorized",
        GoogleError::Invalid(_) => "invalid",
        GoogleError::Unavailable(_) => "unavailable",
    }
}

/// google-calendar3 puts ids into the path as they are (an id with `#` or `/`
/// would change the URL: google-apis-rs#308); encode them first.
fn path_segment(id: &str) -> Result<String, GoogleError> {
    // A segment of dots walks the path even percent-encoded (the URL standard
    // decodes `%2E` there): no calendar or event is called that.
    if id.is_empty() || id == "." || id == ".." {
        return Err(GoogleError::Invalid(format!(
            "`{id}` is not a calendar or event id"
        )));
    }
    Ok(percent_encoding::utf8_percent_encode(id, SEGMENT).to_string())
}

/// The mailbox a call acts as, as Google compares them: trimmed, lower case,
/// `local@domain`. One mailbox, one token and one bucket, however it is written.
/// Whether two starts (or ends) are the same moment or day; Google answers
/// times in UTC whatever zone they were sent in.
fn same_time(a: Option<&api::EventDateTime>, b: Option<&api::EventDateTime>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.date == b.date && a.date_time == b.date_time,
        (None, None) => true,
        _ => false,
    }
}

fn mailbox(subject: &str) -> Result<String, GoogleError> {
    let mailbox = subject.trim().to_lowercase();
    let valid = mailbox.len() <= 254
        && mailbox.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && mailbox
            .chars()
            .all(|c| c.is_ascii_graphic() || !c.is_ascii());
    if valid {
        Ok(mailbox)
    } else {
        Err(GoogleError::Invalid(format!(
            "subject `{subject}` is not a mailbox (name@domain) to act as"
        )))
    }
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

#[cfg(test)]
mod tests {
    use super::*;

    fn google(code: u16, reason: &str) -> serde_json::Value {
        serde_json::json!({"error": {"code": code, "message": "m", "errors": [{"reason": reason}]}})
    }

    #[test]
    fn googles_answers_are_judged_by_status_and_reason() {
        let verdict = |code, reason| judge(code, &google(code, reason), "");
        assert!(matches!(
            verdict(403, "rateLimitExceeded"),
            Verdict::Retry(GoogleError::RateLimited(_))
        ));
        assert!(matches!(
            verdict(403, "userRateLimitExceeded"),
            Verdict::Retry(GoogleError::RateLimited(_))
        ));
        assert!(matches!(
            verdict(403, "forbidden"),
            Verdict::Final(GoogleError::Invalid(_))
        ));
        assert!(matches!(
            verdict(429, "rateLimitExceeded"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            verdict(410, "fullSyncRequired"),
            Verdict::Final(GoogleError::Gone(_))
        ));
        assert!(matches!(
            verdict(412, "conditionNotMet"),
            Verdict::Final(GoogleError::PreconditionFailed(_))
        ));
        assert!(matches!(
            verdict(409, "duplicate"),
            Verdict::Final(GoogleError::Conflict(_))
        ));
        assert!(matches!(
            verdict(404, "notFound"),
            Verdict::Final(GoogleError::NotFound(_))
        ));
        assert!(matches!(
            verdict(503, "backendError"),
            Verdict::Retry(GoogleError::Unavailable(_))
        ));
        assert!(matches!(
            verdict(401, "authError"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            verdict(400, "invalid"),
            Verdict::Final(GoogleError::Invalid(_))
        ));
    }

    #[test]
    fn absent_fields_are_left_out_not_nulled() {
        let event = api::Event {
            summary: Some("neu".into()),
            ..Default::default()
        };
        let json = without_nulls(serde_json::to_value(&event).unwrap());
        assert_eq!(json, serde_json::json!({"summary": "neu"}));
    }

    #[test]
    fn a_patched_time_clears_its_other_form() {
        let mut patch = serde_json::json!({
            "summary": "x",
            "start": { "date": "2026-12-24", "timeZone": "Europe/Berlin" },
            "end": { "dateTime": "2026-12-24T10:00:00Z" },
        });
        clear_other_time_forms(&mut patch);
        assert_eq!(
            patch,
            serde_json::json!({
                "summary": "x",
                "start": { "date": "2026-12-24", "dateTime": null, "timeZone": "Europe/Berlin" },
                "end": { "dateTime": "2026-12-24T10:00:00Z", "date": null },
            })
        );
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let base = Duration::from_millis(100);
        for retry in 0..4 {
            let step = base * (1 << retry);
            let wait = backoff(base, retry);
            assert!(wait >= step && wait <= step * 2, "{retry}: {wait:?}");
        }
    }

    #[test]
    fn ids_cannot_change_the_path() {
        assert_eq!(path_segment("primary").unwrap(), "primary");
        assert_eq!(path_segment("anna@kanzlei.de").unwrap(), "anna@kanzlei.de");
        assert_eq!(
            path_segment("en.german#holiday@group.v.calendar.google.com").unwrap(),
            "en.german%23holiday@group.v.calendar.google.com"
        );
        assert_eq!(path_segment("../x").unwrap(), "..%2Fx");
        for walking in ["", ".", ".."] {
            assert!(matches!(
                path_segment(walking),
                Err(GoogleError::Invalid(_))
            ));
        }
    }

    #[test]
    fn a_mailbox_is_one_however_it_is_written() {
        assert_eq!(mailbox(" Anna@Kanzlei.DE ").unwrap(), "anna@kanzlei.de");
        for bad in [
            "",
            "anna",
            "@kanzlei.de",
            "anna@kanzlei",
            "an na@kanzlei.de",
            "a@b@c.de",
        ] {
            assert!(
                matches!(mailbox(bad), Err(GoogleError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
