//! `bitbylaw:plugin/advoware`: the tenant's Advoware API through the host's
//! client, for plugins the tenant file grants an Advoware account.

use bitbylaw_bindings::advoware::{self, Error, Host, Request};
use bitbylaw_bindings::http::Response;
use bitbylaw_core::upstream::rest;
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::Client;

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
        rest::serve::<Client>(&self.0, request).await
    }
}
