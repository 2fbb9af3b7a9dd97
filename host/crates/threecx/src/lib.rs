//! Upstream kind `3cx`: the firm's 3CX V20 PBX, used by every plugin granted
//! the account through the `threecx` WIT interface.
//!
//! The host holds the client id and secret. A call: the path must lie below
//! the Call Control API (`callcontrol/`) or the XAPI (`xapi/v1/`); one share
//! of the account's request budget is taken from a bucket in the tenant's
//! store (every instance draws from the same one; an empty bucket is waited
//! for up to the call's deadline); the tenant's client-credentials token is
//! taken from the store (fetched once when many calls find none); the call is
//! sent. On 401 the token is dropped, a new one fetched and the call sent once
//! more. A read that met a 502, 503, 504 or a dropped connection is tried
//! again (`read_retries`); a write never is.

mod capability;
mod settings;
mod token;

use std::sync::Arc;

use bitbylaw_core::egress::Fetched;
use bitbylaw_core::store::{Bucket, Store};
use bitbylaw_core::upstream::rest::{ApiRequest, Prepared, Rest, RestClient, RestError};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, SettingError, TokenCache, UpstreamKind, UpstreamState,
};
use tokio::time::Instant;

pub use capability::ThreeCxCall;
pub use settings::{Parsed, Settings, ThreeCxConfig};

/// The kind: `kind = "3cx"`, serving `bitbylaw:plugin/threecx`.
pub struct ThreeCx;

/// The kind's name in tenant files and metrics.
pub const KIND: &str = "3cx";

/// The two APIs a plugin may reach (paths below the PBX's address).
const APIS: [&str; 2] = ["callcontrol/", "xapi/v1/"];

impl UpstreamKind for ThreeCx {
    fn name(&self) -> &'static str {
        KIND
    }

    fn interface(&self) -> &'static str {
        "bitbylaw:plugin/threecx"
    }

    fn parse(&self, settings: toml::Table) -> Result<Arc<dyn AccountSettings>, SettingError> {
        let config: ThreeCxConfig = SettingError::parse_table(settings)?;
        Ok(Arc::new(Parsed::new(config)?))
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
        Ok(Arc::new(Client::new(context, settings)?))
    }
}

/// Headers the client sets itself.
const RESERVED_HEADERS: &[&str] = &["authorization"];

/// One tenant's 3CX client; shared by the tenant's plugins granted it.
pub struct Client {
    tenant: String,
    rest: Rest,
    settings: Settings,
    tokens: TokenCache<RestError>,
    /// The token's subject in the cache: the client id (not the secret).
    account_id: String,
    store: Store,
    /// The budget's bucket in the tenant's store.
    budget_key: String,
}

impl Client {
    pub fn new(context: &OpenContext<'_>, settings: Settings) -> Result<Self, SettingError> {
        let scope = context.scope(KIND);
        let budget_key = scope
            .bucket(&format!("budget:{}", context.account))
            .map_err(|e| SettingError::new("url", e.to_string()))?;
        Ok(Self {
            tenant: context.tenant.to_owned(),
            rest: Rest::new(context, KIND, settings.limits, RESERVED_HEADERS),
            tokens: TokenCache::new(
                context.label(KIND),
                context.store.clone(),
                scope,
                context.metrics.clone(),
            ),
            account_id: format!("{}@{}", settings.client_id, settings.base),
            store: context.store.clone(),
            budget_key,
            settings,
        })
    }

    /// One share of the account's budget, waited for up to `deadline`. The
    /// bucket holds a minute's budget at most, so a quiet account may burst.
    async fn take_budget(&self, deadline: Instant) -> Result<(), RestError> {
        let per_minute = self.settings.requests_per_minute;
        let bucket = Bucket {
            capacity: per_minute,
            refill_per_second: f64::from(per_minute) / 60.0,
        };
        self.store
            .rate_wait(&self.budget_key, bucket, deadline)
            .await
            .map(|_| ())
            .map_err(|_| {
                RestError::Unavailable(format!(
                    "the 3CX account's budget ({per_minute} requests a minute) has no room within this call's deadline"
                ))
            })
    }

    async fn token(&self, deadline: Instant) -> Result<String, RestError> {
        let deadline = deadline.min(Instant::now() + self.rest.time_left(deadline));
        self.tokens
            .get(&self.account_id, deadline, |timeout| {
                token::fetch(&self.tenant, &self.settings, self.rest.egress(), timeout)
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

    /// One call with the tenant's token; on 401 a new token and one more try.
    async fn signed_in(
        &self,
        request: &Prepared,
        deadline: Instant,
    ) -> Result<Result<Fetched, RestError>, RestError> {
        self.take_budget(deadline).await?;
        let token = self.token(deadline).await?;
        match self.attempt(request, &token, deadline).await {
            Ok(answer) if answer.status == 401 => {}
            other => return Ok(other),
        }
        tracing::info!(tenant = %self.tenant, "3CX refused the cached token; fetching a new one and retrying once");
        self.tokens.invalidate(&self.account_id, &token).await?;
        let token = self.token(deadline).await?;
        self.take_budget(deadline).await?;
        Ok(self.attempt(request, &token, deadline).await)
    }
}

impl RestClient for Client {
    const UPSTREAM: &'static str = "3CX";
    const KIND: &'static str = KIND;

    async fn send(&self, request: ApiRequest, deadline: Instant) -> Result<Fetched, RestError> {
        let path = request.path.trim_start_matches('/');
        if !APIS.iter().any(|api| path.starts_with(api)) {
            return Err(RestError::InvalidRequest(format!(
                "`{}` is neither below `callcontrol/` (Call Control API) nor `xapi/v1/` (XAPI)",
                request.path
            )));
        }
        let request = self.rest.prepare(request, &self.settings.base)?;
        self.rest
            .with_read_retries(&request.method, deadline, || {
                self.signed_in(&request, deadline)
            })
            .await
    }
}
