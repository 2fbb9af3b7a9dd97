//! Upstream kind `espocrm`: the firm's EspoCRM ("VMH"), used by every plugin
//! granted the account through the `espocrm` WIT interface.
//!
//! The host holds the API key (and the secret key, when requests are signed)
//! and the webhooks' secrets: a plugin names a path below `api/v1/` and gets
//! EspoCRM's answer, and hands a webhook delivery's headers and body to
//! [`signing::verify_webhook`] without ever seeing a secret. EspoCRM's API
//! keys do not expire, so there is no token to cache: each request carries
//! `X-Api-Key`, or `X-Hmac-Authorization` signed over its method and path.

mod capability;
mod settings;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use bitbylaw_core::egress::{Egress, FetchError, Fetched, with_headers};
use bitbylaw_core::metrics::{Metrics, UpstreamLabel};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, SettingError, UpstreamKind, UpstreamState, api_method,
    check_headers, request_outcome,
};

pub use bitbylaw_core::upstream::ApiRequest;
use tokio::time::Instant;

pub use capability::EspoCrmCall;
pub use settings::{Auth, EspoCrmConfig, Parsed, Settings, Webhook, WebhookConfig};
pub use signing::SignatureError;

/// The kind: `kind = "espocrm"`, serving `bitbylaw:plugin/espocrm`.
pub struct EspoCrm;

/// The kind's name in tenant files and metrics.
pub const KIND: &str = "espocrm";

impl UpstreamKind for EspoCrm {
    fn name(&self) -> &'static str {
        KIND
    }

    fn interface(&self) -> &'static str {
        "bitbylaw:plugin/espocrm"
    }

    fn parse(&self, settings: toml::Table) -> Result<Arc<dyn AccountSettings>, SettingError> {
        let config: EspoCrmConfig = SettingError::parse_table(settings)?;
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
        Ok(Arc::new(Client::new(context, settings)))
    }
}

/// Why a request got no answer from EspoCRM. Messages never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EspoCrmError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("EspoCRM did not answer in time")]
    Timeout,
    #[error("connection to EspoCRM failed: {0}")]
    Connection(String),
    #[error("EspoCRM's answer is larger than {0} bytes")]
    TooLarge(u64),
}

/// Headers the client sets itself.
const RESERVED_HEADERS: [&str; 5] = [
    "x-api-key",
    "x-hmac-authorization",
    "authorization",
    "host",
    "content-length",
];

/// Time kept back from the call's deadline, so that an EspoCRM timeout reaches
/// the plugin as one before the host stops the whole call.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// One tenant's EspoCRM client; shared by the tenant's plugins granted it.
pub struct Client {
    label: UpstreamLabel,
    settings: Settings,
    egress: Egress,
    metrics: Metrics,
}

impl Client {
    pub fn new(context: &OpenContext<'_>, settings: Settings) -> Self {
        Self {
            label: context.label(KIND),
            settings,
            egress: context.egress.clone(),
            metrics: context.metrics.clone(),
        }
    }

    /// Sends `request`, authenticated; every status EspoCRM answers is `Ok`.
    /// Nothing runs past `deadline`.
    pub async fn send(
        &self,
        request: ApiRequest,
        deadline: Instant,
    ) -> Result<Fetched, EspoCrmError> {
        let method = api_method(&request.method).map_err(EspoCrmError::InvalidRequest)?;
        check_headers(&request.headers, &RESERVED_HEADERS).map_err(EspoCrmError::InvalidRequest)?;
        let api_base = &self.settings.api_base;
        let url =
            bitbylaw_core::upstream::endpoint::resolve(api_base, &request.path, &request.query)
                .map_err(EspoCrmError::InvalidRequest)?;
        let mut builder = with_headers(
            self.egress.client().request(method.clone(), url.clone()),
            &request.headers,
        )
        .map_err(EspoCrmError::InvalidRequest)?;
        builder = match &self.settings.auth {
            Auth::ApiKey(key) => builder.header("X-Api-Key", key.expose()),
            Auth::Hmac {
                api_key,
                secret_key,
            } => {
                // Signed: the method and the path below `api/v1`, with its leading `/`.
                let below = url
                    .path()
                    .strip_prefix(api_base.path().trim_end_matches('/'))
                    .unwrap_or(url.path());
                let signed = signing::hmac_authorization(
                    api_key.expose(),
                    secret_key.expose(),
                    method.as_str(),
                    below,
                )
                .ok_or_else(|| {
                    EspoCrmError::InvalidRequest("the secret key cannot key an HMAC".into())
                })?;
                builder.header("X-Hmac-Authorization", signed)
            }
        };
        if let Some(body) = request.body {
            let typed = request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if !typed {
                builder = builder.header("content-type", "application/json");
            }
            builder = builder.body(body);
        }
        let deadline = deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline);
        let left = self
            .settings
            .timeout
            .min(self.egress.max_timeout())
            .min(deadline.saturating_duration_since(Instant::now()));
        let timeout = request.timeout.map_or(left, |asked| asked.min(left));
        if timeout.is_zero() {
            return Err(EspoCrmError::Timeout);
        }
        let answer = self.egress.fetch(builder, timeout).await;
        self.metrics
            .upstream_request(&self.label, request_outcome(&answer));
        answer.map_err(|error| match error {
            FetchError::Timeout => EspoCrmError::Timeout,
            FetchError::TooLarge(n) => EspoCrmError::TooLarge(n),
            FetchError::Invalid(m) | FetchError::Connection(m) => EspoCrmError::Connection(m),
        })
    }

    /// Checks a webhook delivery against the account's webhook `name`; `None`
    /// when the account has no such webhook.
    pub fn verify_webhook(
        &self,
        name: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Option<Result<(), SignatureError>> {
        let webhook = self.settings.webhooks.get(name)?;
        Some(signing::verify_webhook(webhook, headers, body))
    }

    /// The names of the account's webhooks, for messages.
    pub fn webhook_names(&self) -> Vec<&str> {
        self.settings.webhooks.keys().map(String::as_str).collect()
    }
}
