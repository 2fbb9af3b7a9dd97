//! `advoware`: the tenant's Advoware API through the host's client
//! ([`crate::advoware`]), for plugins the tenant file grants `advoware = true`.

use std::time::Duration;

use super::generated::bitbylaw::plugin::advoware::{Error, Host, Request};
use super::generated::bitbylaw::plugin::http::Response;
use crate::advoware::{AdvowareError, ApiRequest};
use crate::runtime::HostState;

impl Host for HostState {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        let plugin = &self.plugin;
        let Some(client) = plugin.advoware.clone() else {
            return Err(Error::NotConfigured(format!(
                "plugin `{}` of tenant `{}` may not use Advoware: grant it with `advoware = true` and an `[advoware]` section in the tenant file",
                plugin.name, plugin.tenant
            )));
        };
        let request = ApiRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body.map(Into::into),
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        match client.send(request, self.call.deadline).await {
            Ok(answer) => Ok(answer.into()),
            Err(error) => {
                tracing::warn!(
                    tenant = %plugin.tenant,
                    plugin = %plugin.name,
                    request_id = %self.call.request_id,
                    %error,
                    "Advoware request failed"
                );
                Err(error.into())
            }
        }
    }
}

impl From<AdvowareError> for Error {
    fn from(error: AdvowareError) -> Self {
        match error {
            AdvowareError::InvalidRequest(m) => Error::InvalidRequest(m),
            AdvowareError::Unauthorized(m) => Error::Unauthorized(m),
            AdvowareError::Timeout => Error::Timeout,
            AdvowareError::Connection(m) => Error::Connection(m),
            AdvowareError::TooLarge(n) => Error::TooLarge(n),
            AdvowareError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
