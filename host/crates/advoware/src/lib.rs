//! Upstream kind `advoware`: the host's one Advoware client, used by every
//! plugin granted an Advoware account through the `advoware` WIT interface.
//!
//! Why in the host rather than a guest library: the API key and password stay
//! in the host (a plugin never holds them, so it cannot leak them), the token is
//! one per tenant and shared by all of its plugins, and the auth code exists
//! once, in native Rust, fixed for every plugin by one host update.
//!
//! A call: find the API base (configured, or asked from the configurator and
//! kept for an hour), check the path stays below it (`bitbylaw_core::upstream::endpoint`), take the
//! tenant's token ([`token`]: cached in the store, fetched once when missing),
//! send. On 401 the token is dropped, a new one fetched and the call sent once
//! more; a second 401 is an error, never a loop. Refusals are held for a few
//! seconds rather than repeated, so a wrong password or missing rights cannot
//! turn a burst of calls into a burst of token requests. A read (`GET`) that
//! met a 502, 503, 504 or a dropped connection is tried again with backoff
//! (`read_retries`, `retry_base_ms`) within the call's deadline; a write never
//! is, since its answer may be lost after Advoware made the change.

mod capability;

pub use capability::AdvowareCall;
mod discovery;
mod settings;
mod signing;
mod token;

use std::sync::Arc;
use std::time::Duration;

use bitbylaw_core::egress::{Egress, FetchError, Fetched, with_headers};
use bitbylaw_core::metrics::{Metrics, UpstreamLabel};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, Recent, SettingError, TokenCache, TokenError,
    UpstreamKind, UpstreamState, api_method, check_headers, request_outcome,
};

pub use bitbylaw_core::upstream::ApiRequest;
use reqwest::{Method, Url};
use tokio::time::Instant;

pub use settings::{AdvowareConfig, Parsed, Settings};

/// The kind: `kind = "advoware"`, serving `bitbylaw:plugin/advoware`.
pub struct Advoware;

/// The kind's name in tenant files and metrics.
pub const KIND: &str = "advoware";

impl UpstreamKind for Advoware {
    fn name(&self) -> &'static str {
        KIND
    }

    fn interface(&self) -> &'static str {
        "bitbylaw:plugin/advoware"
    }

    fn parse(&self, settings: toml::Table) -> Result<Arc<dyn AccountSettings>, SettingError> {
        let config: AdvowareConfig = SettingError::parse_table(settings)?;
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
        let client = Client::new(context, settings)?;
        Ok(client)
    }
}

/// Where a tenant's Advoware lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `<relay or connector URL><api_path>`, ending in `/`.
    pub api_base: Url,
    /// `<security gateway>api/v1/Token`.
    pub token_url: Url,
}

/// Why a request got no answer from Advoware. Messages never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvowareError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("not signed in: {0}")]
    Unauthorized(String),
    #[error("Advoware did not answer in time")]
    Timeout,
    #[error("connection to Advoware failed: {0}")]
    Connection(String),
    #[error("Advoware's answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Unavailable(String),
}

impl TokenError for AdvowareError {
    fn timeout() -> Self {
        AdvowareError::Timeout
    }

    fn unavailable(error: bitbylaw_core::store::StoreError) -> Self {
        AdvowareError::Unavailable(format!("Advoware token cache unavailable: {error}"))
    }
}

/// Headers the client sets itself.
const RESERVED_HEADERS: [&str; 3] = ["authorization", "host", "content-length"];

/// Time kept back from the call's deadline, so that an Advoware timeout is
/// answered as one (504 from the plugin) before the host stops the whole call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// How long a token refused right after issue is not replaced on a 401.
const REFUSED_FRESH_HOLD: Duration = Duration::from_secs(10);

/// How long one outbound request may take: the tenant's timeout, the host's
/// cap, and no longer than what is left before `deadline`.
fn time_left(settings: &Settings, egress: &Egress, deadline: Instant) -> Duration {
    settings
        .timeout
        .min(egress.max_timeout())
        .min(deadline.saturating_duration_since(Instant::now()))
}

/// An outbound failure as the client reports it; `what` names the other side.
fn fetch_error(error: FetchError, what: &str) -> AdvowareError {
    match error {
        FetchError::Timeout => AdvowareError::Timeout,
        FetchError::TooLarge(n) => AdvowareError::TooLarge(n),
        // A request the host could not build is not the caller's fault either.
        FetchError::Invalid(m) | FetchError::Connection(m) => {
            AdvowareError::Connection(format!("{what}: {m}"))
        }
    }
}

/// One tenant's client; shared by the tenant's plugins that may use it.
pub struct Client {
    tenant: String,
    label: UpstreamLabel,
    settings: Settings,
    egress: Egress,
    metrics: Metrics,
    endpoints: discovery::EndpointSource,
    tokens: TokenCache<AdvowareError>,
    /// Which account signs in where: the token's subject in the cache.
    account_id: String,
    /// A token Advoware refused right after it was issued (the retry got 401 too),
    /// and when. For [`REFUSED_FRESH_HOLD`] a call that gets 401 with it fails at
    /// once instead of fetching yet another token: the account's rights, not the
    /// token, are the problem, and a caller repeating such calls must not turn
    /// each into a token request.
    refused_fresh: Recent<String>,
}

impl Client {
    /// The client of one tenant's account, its token kept in the tenant's store.
    pub fn new(context: &OpenContext<'_>, settings: Settings) -> Result<Arc<Self>, SettingError> {
        let endpoints = discovery::EndpointSource::new(&settings).map_err(|e| SettingError {
            key: None,
            message: e,
        })?;
        let label = context.label(KIND);
        let tokens = TokenCache::new(
            label.clone(),
            context.store.clone(),
            context.scope(KIND),
            context.metrics.clone(),
        );
        Ok(Arc::new(Self {
            tenant: context.tenant.to_owned(),
            label,
            account_id: token::account_id(&settings),
            tokens,
            settings,
            egress: context.egress.clone(),
            metrics: context.metrics.clone(),
            endpoints,
            refused_fresh: Recent::new(REFUSED_FRESH_HOLD),
        }))
    }

    /// Sends `request` to the API, signed in; every status Advoware answers is `Ok`,
    /// except a 401 to a freshly issued token (an `Unauthorized` error).
    /// Nothing runs past `deadline`.
    pub async fn send(
        &self,
        request: ApiRequest,
        deadline: Instant,
    ) -> Result<Fetched, AdvowareError> {
        let deadline = deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline);
        let method = api_method(&request.method).map_err(AdvowareError::InvalidRequest)?;
        check_headers(&request.headers, &RESERVED_HEADERS)
            .map_err(AdvowareError::InvalidRequest)?;
        let endpoints = self
            .endpoints
            .get(&self.settings, &self.egress, deadline)
            .await?;
        let url = bitbylaw_core::upstream::endpoint::resolve(
            &endpoints.api_base,
            &request.path,
            &request.query,
        )
        .map_err(AdvowareError::InvalidRequest)?;

        // Reads are retried when Advoware or the way to it failed on the
        // way (502/503/504, a dropped connection, a timeout), within the
        // deadline; writes never are: their answer may be lost after the write.
        let idempotent = method == Method::GET;
        let mut retry = 0;
        loop {
            let result = self
                .signed_in(&method, &url, &request, &endpoints, deadline)
                .await?;
            let transient = match &result {
                Ok(answer) => matches!(answer.status, 502..=504),
                // Not a timeout: a slow Advoware is not faster a moment later,
                // and the time is the call's.
                Err(error) => matches!(error, AdvowareError::Connection(_)),
            };
            if !idempotent || !transient || retry >= self.settings.read_retries {
                return result;
            }
            let pause = bitbylaw_core::upstream::backoff(self.settings.retry_base, retry);
            if Instant::now() + pause >= deadline {
                return result;
            }
            self.metrics.upstream_retry(&self.label, method.as_str());
            tracing::info!(
                tenant = %self.tenant,
                retry = retry + 1,
                "an Advoware read failed on the way; trying again"
            );
            tokio::time::sleep(pause).await;
            retry += 1;
        }
    }

    /// One call with the tenant's token: on 401 the token is dropped, a new
    /// one fetched and the call sent once more. The inner result is the API
    /// request's (what a read may be retried for); the outer error is signing
    /// in, never retried here (the token cache holds its own rules).
    async fn signed_in(
        &self,
        method: &Method,
        url: &Url,
        request: &ApiRequest,
        endpoints: &Endpoints,
        deadline: Instant,
    ) -> Result<Result<Fetched, AdvowareError>, AdvowareError> {
        let token = self.token(endpoints, deadline).await?;
        match self.attempt(method, url, request, &token, deadline).await {
            Ok(answer) if answer.status == 401 => {}
            other => return Ok(other),
        }
        if self.refused_fresh.get().as_deref() == Some(token.as_str()) {
            return Err(refused_fresh_error());
        }
        tracing::info!(
            tenant = %self.tenant,
            "Advoware refused the cached token; fetching a new one and retrying once"
        );
        self.tokens.invalidate(&self.account_id, &token).await?;
        let token = self.token(endpoints, deadline).await?;
        match self.attempt(method, url, request, &token, deadline).await {
            Ok(answer) if answer.status == 401 => {}
            other => return Ok(other),
        }
        tracing::warn!(
            tenant = %self.tenant,
            "Advoware refused a freshly issued token too; not retrying"
        );
        self.refused_fresh.set(token);
        Err(refused_fresh_error())
    }

    async fn token(
        &self,
        endpoints: &Endpoints,
        deadline: Instant,
    ) -> Result<String, AdvowareError> {
        // A token request takes no longer than any other request to Advoware.
        let deadline =
            deadline.min(Instant::now() + time_left(&self.settings, &self.egress, deadline));
        self.tokens
            .get(&self.account_id, deadline, |timeout| {
                token::fetch(
                    &self.tenant,
                    &self.settings,
                    &self.egress,
                    &endpoints.token_url,
                    timeout,
                )
            })
            .await
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        request: &ApiRequest,
        token: &str,
        deadline: Instant,
    ) -> Result<Fetched, AdvowareError> {
        let left = time_left(&self.settings, &self.egress, deadline);
        let timeout = request.timeout.map_or(left, |asked| asked.min(left));
        if timeout.is_zero() {
            return Err(AdvowareError::Timeout);
        }
        let mut builder = with_headers(
            self.egress.client().request(method.clone(), url.clone()),
            &request.headers,
        )
        .map_err(AdvowareError::InvalidRequest)?
        .bearer_auth(token);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let answer = self.egress.fetch(builder, timeout).await;
        self.metrics
            .upstream_request(&self.label, request_outcome(&answer));
        answer.map_err(|error| fetch_error(error, "Advoware API"))
    }
}

fn refused_fresh_error() -> AdvowareError {
    AdvowareError::Unauthorized(
        "Advoware answered 401 to a freshly issued token (after one retry); check the account's rights"
            .into(),
    )
}
