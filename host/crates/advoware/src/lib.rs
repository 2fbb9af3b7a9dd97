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

use bitbylaw_core::egress::Fetched;
use bitbylaw_core::upstream::rest::{ApiRequest, Prepared, Rest, RestClient, RestError};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, Recent, SettingError, TokenCache, UpstreamKind,
    UpstreamState,
};
use reqwest::Url;
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

/// Headers the client sets itself.
const RESERVED_HEADERS: &[&str] = &["authorization"];

/// How long a token refused right after issue is not replaced on a 401.
const REFUSED_FRESH_HOLD: Duration = Duration::from_secs(10);

/// One tenant's client; shared by the tenant's plugins that may use it.
pub struct Client {
    tenant: String,
    rest: Rest,
    settings: Settings,
    endpoints: discovery::EndpointSource,
    tokens: TokenCache<RestError>,
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
        let tokens = TokenCache::new(
            context.label(KIND),
            context.store.clone(),
            context.scope(KIND),
            context.metrics.clone(),
        );
        Ok(Arc::new(Self {
            tenant: context.tenant.to_owned(),
            rest: Rest::new(context, KIND, settings.limits, RESERVED_HEADERS),
            account_id: token::account_id(&settings),
            tokens,
            settings,
            endpoints,
            refused_fresh: Recent::new(REFUSED_FRESH_HOLD),
        }))
    }

    /// One call with the tenant's token: on 401 the token is dropped, a new
    /// one fetched and the call sent once more. The inner result is the API
    /// request's (what a read may be retried for); the outer error is signing
    /// in, never retried here (the token cache holds its own rules).
    async fn signed_in(
        &self,
        request: &Prepared,
        endpoints: &Endpoints,
        deadline: Instant,
    ) -> Result<Result<Fetched, RestError>, RestError> {
        let token = self.token(endpoints, deadline).await?;
        match self.attempt(request, &token, deadline).await {
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
        match self.attempt(request, &token, deadline).await {
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

    async fn token(&self, endpoints: &Endpoints, deadline: Instant) -> Result<String, RestError> {
        // A token request takes no longer than any other request to Advoware.
        let deadline = deadline.min(Instant::now() + self.rest.time_left(deadline));
        self.tokens
            .get(&self.account_id, deadline, |timeout| {
                token::fetch(
                    &self.tenant,
                    &self.settings,
                    self.rest.egress(),
                    &endpoints.token_url,
                    timeout,
                )
            })
            .await
    }

    async fn attempt(
        &self,
        request: &Prepared,
        token: &str,
        deadline: Instant,
    ) -> Result<Fetched, RestError> {
        self.rest
            .attempt(request, deadline, |builder| Ok(builder.bearer_auth(token)))
            .await
    }
}

impl RestClient for Client {
    const UPSTREAM: &'static str = "Advoware";
    const KIND: &'static str = KIND;

    /// Sends `request` to the API, signed in; every status Advoware answers is `Ok`,
    /// except a 401 to a freshly issued token (an `Unauthorized` error).
    async fn send(&self, request: ApiRequest, deadline: Instant) -> Result<Fetched, RestError> {
        let endpoints = self
            .endpoints
            .get(&self.settings, &self.rest, deadline)
            .await?;
        let request = self.rest.prepare(request, &endpoints.api_base)?;
        self.rest
            .with_read_retries(&request.method, deadline, || {
                self.signed_in(&request, &endpoints, deadline)
            })
            .await
    }
}

fn refused_fresh_error() -> RestError {
    RestError::Unauthorized(
        "Advoware answered 401 to a freshly issued token (after one retry); check the account's rights"
            .into(),
    )
}
