//! What a plugin may call: one module per WIT interface of `wit/plugin.wit`
//! that the host serves itself. Upstream accounts (`advoware`, ...) are served
//! by their kinds' crates ([`crate::upstreams`]).
//!
//! Each instance's store carries a [`HostState`]: the plugin's own context
//! ([`PluginContext`], shared by its instances) and the current call
//! ([`CallContext`]). Each module implements the generated `Host` trait for it,
//! so every capability is scoped to one tenant and plugin by construction.
//! Errors a guest should handle are WIT variants; nothing here traps. The
//! host-side logic is plain async Rust, tested without Wasm in
//! `tests/capability_host_side.rs` (and through real components in `tests/capabilities.rs`).

pub mod config;
mod context;
pub mod events;
pub mod http;
pub mod kv;
pub mod lock;
pub mod log;
pub mod metrics;
pub mod rate_limit;
mod state;

use wasmtime::component::{HasSelf, Linker};

use bitbylaw_bindings as wit;

pub use context::PluginContext;
pub use events::Emitter;
pub use state::{CallContext, HostState};

pub use bitbylaw_bindings::handler as wit_handler;
pub use bitbylaw_bindings::types::StoreError as WitStoreError;
pub use bitbylaw_bindings::{Plugin as PluginBindings, PluginPre as PluginBindingsPre};

/// Adds WASI (clocks, random, stderr for panic messages), every interface the
/// host serves itself, and every upstream kind's.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    type Own = HasSelf<HostState>;
    fn own(state: &mut HostState) -> &mut HostState {
        state
    }
    wit::types::add_to_linker::<HostState, Own>(linker, own)?;
    wit::log::add_to_linker::<HostState, Own>(linker, own)?;
    wit::config::add_to_linker::<HostState, Own>(linker, own)?;
    wit::secrets::add_to_linker::<HostState, Own>(linker, own)?;
    wit::kv::add_to_linker::<HostState, Own>(linker, own)?;
    wit::lock::add_to_linker::<HostState, Own>(linker, own)?;
    wit::rate_limit::add_to_linker::<HostState, Own>(linker, own)?;
    wit::events::add_to_linker::<HostState, Own>(linker, own)?;
    wit::metrics::add_to_linker::<HostState, Own>(linker, own)?;
    wit::http::add_to_linker::<HostState, Own>(linker, own)?;
    crate::upstreams::add_to_linker(linker)?;
    Ok(())
}

impl wit::types::Host for HostState {}

/// A store result as the guest sees it.
pub trait IntoWit<T> {
    fn wit(self) -> Result<T, WitStoreError>;
}

impl<T> IntoWit<T> for Result<T, crate::store::StoreError> {
    fn wit(self) -> Result<T, WitStoreError> {
        self.map_err(|error| match error {
            crate::store::StoreError::Unavailable(m) => WitStoreError::Unavailable(m),
            crate::store::StoreError::Invalid(m) => WitStoreError::Invalid(m),
        })
    }
}
