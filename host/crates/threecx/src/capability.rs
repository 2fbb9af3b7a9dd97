//! `bitbylaw:plugin/threecx`: the tenant's 3CX through the host's client, for
//! plugins the tenant file grants a 3CX account.

use bitbylaw_bindings::http::Response;
use bitbylaw_bindings::threecx::{self, Error, Host, Request};
use bitbylaw_core::upstream::rest;
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::Client;

/// Serves the interface to every plugin; each call sees only the caller's grants.
pub fn add_to_linker<T: UpstreamState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    threecx::add_to_linker::<T, Calls>(linker, |state| ThreeCxCall(state.upstream_call()))
}

struct Calls;

impl HasData for Calls {
    type Data<'a> = ThreeCxCall<'a>;
}

/// One plugin's call, as this interface sees it.
pub struct ThreeCxCall<'a>(pub UpstreamCall<'a>);

impl Host for ThreeCxCall<'_> {
    async fn send(&mut self, request: Request) -> Result<Response, Error> {
        rest::serve::<Client>(&self.0, request).await
    }
}
