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

use bitbylaw_core::egress::Fetched;
use bitbylaw_core::upstream::rest::{ApiRequest, Rest, RestClient, RestError};
use bitbylaw_core::upstream::{
    Account, AccountSettings, OpenContext, SettingError, UpstreamKind, UpstreamState,
};
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

/// Headers the client sets itself.
const RESERVED_HEADERS: &[&str] = &["x-api-key", "x-hmac-authorization", "authorization"];

/// One tenant's EspoCRM client; shared by the tenant's plugins granted it.
pub struct Client {
    rest: Rest,
    settings: Settings,
}

impl Client {
    pub fn new(context: &OpenContext<'_>, settings: Settings) -> Self {
        Self {
            rest: Rest::new(context, KIND, settings.limits, RESERVED_HEADERS),
            settings,
        }
    }

    /// The auth header of one request: the key, or the HMAC over its method
    /// and its path below `api/v1` (with its leading `/`).
    fn auth_header(
        &self,
        method: &str,
        path_below: &str,
    ) -> Result<(&'static str, String), RestError> {
        match &self.settings.auth {
            Auth::ApiKey(key) => Ok(("X-Api-Key", key.expose().to_owned())),
            Auth::Hmac {
                api_key,
                secret_key,
            } => signing::hmac_authorization(
                api_key.expose(),
                secret_key.expose(),
                method,
                path_below,
            )
            .map(|signed| ("X-Hmac-Authorization", signed))
            .ok_or_else(|| RestError::InvalidRequest("the secret key cannot key an HMAC".into())),
        }
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

impl RestClient for Client {
    const UPSTREAM: &'static str = "EspoCRM";
    const KIND: &'static str = KIND;

    /// Sends `request` with the key or the HMAC; a read that met a gateway
    /// failure is tried again (`read_retries`).
    async fn send(&self, request: ApiRequest, deadline: Instant) -> Result<Fetched, RestError> {
        let request = self.rest.prepare(request, &self.settings.api_base)?;
        let (name, value) = self.auth_header(
            request.method.as_str(),
            request.path_below(&self.settings.api_base),
        )?;
        self.rest
            .with_read_retries(&request.method, deadline, || async {
                let answer = self
                    .rest
                    .attempt(&request, deadline, |builder| {
                        Ok(builder.header(name, &value))
                    })
                    .await;
                Ok(answer)
            })
            .await
    }
}
