//! `bitbylaw:plugin/espocrm`: the tenant's EspoCRM through the host's client,
//! for plugins the tenant file grants an EspoCRM account.

use bitbylaw_bindings::espocrm::{self, Error, Host, Request, SignatureError as WitSignatureError};
use bitbylaw_bindings::http::Response;
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::{ApiRequest, Client, EspoCrmError, SignatureError};

/// Serves the interface to every plugin; each call sees only the caller's grants.
pub fn add_to_linker<T: UpstreamState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    espocrm::add_to_linker::<T, Calls>(linker, |state| EspoCrmCall(state.upstream_call()))
}

struct Calls;

impl HasData for Calls {
    type Data<'a> = EspoCrmCall<'a>;
}

/// One plugin's call, as this interface sees it.
pub struct EspoCrmCall<'a>(pub UpstreamCall<'a>);

impl EspoCrmCall<'_> {
    fn client(&self) -> Result<&Client, String> {
        let call = &self.0;
        call.grants.client::<Client>().ok_or_else(|| {
            format!(
                "plugin `{}` of tenant `{}` may not use EspoCRM: grant it an account of kind `espocrm` in the tenant file (`upstreams = [\"<name>\"]`)",
                call.plugin, call.tenant
            )
        })
    }
}

impl Host for EspoCrmCall<'_> {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        let client = self.client().map_err(Error::NotConfigured)?;
        let call = &self.0;
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
                    "EspoCRM request failed"
                );
                Err(error.into())
            }
        }
    }

    async fn verify_webhook(
        &mut self,
        webhook: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), WitSignatureError> {
        let client = self.client().map_err(WitSignatureError::NotConfigured)?;
        match client.verify_webhook(&webhook, &headers, &body) {
            None => Err(WitSignatureError::NotConfigured(format!(
                "the EspoCRM account has no webhook `{webhook}` (it has: {}); add `[upstreams.<name>.webhooks.\"{webhook}\"]` with EspoCRM's webhook id and secret",
                client.webhook_names().join(", ")
            ))),
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(match error {
                SignatureError::Missing => WitSignatureError::Missing,
                SignatureError::Malformed(m) => WitSignatureError::Malformed(m),
                SignatureError::Mismatch(m) => WitSignatureError::Mismatch(m),
            }),
        }
    }
}

impl From<EspoCrmError> for Error {
    fn from(error: EspoCrmError) -> Self {
        match error {
            EspoCrmError::InvalidRequest(m) => Error::InvalidRequest(m),
            EspoCrmError::Timeout => Error::Timeout,
            EspoCrmError::Connection(m) => Error::Connection(m),
            EspoCrmError::TooLarge(n) => Error::TooLarge(n),
        }
    }
}
