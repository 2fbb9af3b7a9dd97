//! `bitbylaw:plugin/advoware`: the tenant's Advoware API through the host's
//! client, for plugins the tenant file grants an Advoware account.

use bitbylaw_bindings::advoware::{self, Error, Host, Request};
use bitbylaw_bindings::http::Response;
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::{AdvowareError, ApiRequest, Client};

/// Serves the interface to every plugin; each call sees only the caller's grants.
pub fn add_to_linker<T: UpstreamState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    advoware::add_to_linker::<T, Calls>(linker, |state| AdvowareCall(state.upstream_call()))
}

struct Calls;

impl HasData for Calls {
    type Data<'a> = AdvowareCall<'a>;
}

/// One plugin's call, as this interface sees it.
pub struct AdvowareCall<'a>(pub UpstreamCall<'a>);

impl Host for AdvowareCall<'_> {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        let call = &self.0;
        let Some(client) = call.grants.client::<Client>() else {
            return Err(Error::NotConfigured(format!(
                "plugin `{}` of tenant `{}` may not use Advoware: grant it an account of kind `advoware` in the tenant file (`upstreams = [\"<name>\"]`)",
                call.plugin, call.tenant
            )));
        };
        let request = ApiRequest::from_wit(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
            request.timeout_ms,
        );
        match client.send(request, call.deadline).await {
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
