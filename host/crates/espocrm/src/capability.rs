//! `bitbylaw:plugin/espocrm`: the tenant's EspoCRM through the host's client,
//! for plugins the tenant file grants an EspoCRM account.

use bitbylaw_bindings::espocrm::{self, Error, Host, Request, SignatureError as WitSignatureError};
use bitbylaw_bindings::http::Response;
use bitbylaw_bindings::types::RestError;
use bitbylaw_core::upstream::rest;
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::{Client, SignatureError};

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

impl Host for EspoCrmCall<'_> {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        rest::serve::<Client>(&self.0, request)
            .await
            .map_err(narrow)
    }

    async fn verify_webhook(
        &mut self,
        webhook: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), WitSignatureError> {
        let client = rest::granted::<Client>(&self.0).map_err(WitSignatureError::NotConfigured)?;
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

/// The interface's 0.1 error has the cases EspoCRM meets; the EspoCRM client
/// signs no token in and keeps nothing in the store, so it never answers the
/// other two.
fn narrow(error: RestError) -> Error {
    match error {
        RestError::NotConfigured(m) => Error::NotConfigured(m),
        RestError::InvalidRequest(m) => Error::InvalidRequest(m),
        RestError::Timeout => Error::Timeout,
        RestError::Connection(m) | RestError::Unauthorized(m) | RestError::Unavailable(m) => {
            Error::Connection(m)
        }
        RestError::TooLarge(n) => Error::TooLarge(n),
    }
}
