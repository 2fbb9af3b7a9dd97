//! What a plugin may call: one module per WIT interface of `wit/plugin.wit`.
//!
//! Each module implements the generated `Host` trait for [`HostState`], using
//! only the plugin's own context ([`PluginContext`]) and the current call
//! ([`CallContext`]), so every capability is scoped to one tenant and plugin by
//! construction. Errors a guest should handle are WIT variants; nothing here traps.

pub mod advoware;
pub mod config;
pub mod events;
pub mod http;
pub mod kv;
pub mod lock;
pub mod log;
pub mod rate_limit;

use wasmtime::component::{HasSelf, Linker};

use crate::runtime::HostState;

/// The bindings generated from the WIT world; only this module runs `bindgen!`.
pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: {
            "bitbylaw:plugin/kv": async,
            "bitbylaw:plugin/lock": async,
            "bitbylaw:plugin/rate-limit": async,
            "bitbylaw:plugin/events": async,
            "bitbylaw:plugin/http": async,
            "bitbylaw:plugin/advoware": async,
        },
        exports: { default: async },
    });
}

pub use generated::Plugin as PluginBindings;
pub use generated::PluginPre as PluginBindingsPre;
pub use generated::bitbylaw::plugin::types::StoreError as WitStoreError;
pub use generated::exports::bitbylaw::plugin::handler as wit_handler;

/// Adds WASI (clocks, random, stderr for panic messages) and every bitbylaw interface.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    generated::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl generated::bitbylaw::plugin::types::Host for HostState {}

impl From<crate::store::StoreError> for WitStoreError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(m) => WitStoreError::Unavailable(m),
            crate::store::StoreError::Invalid(m) => WitStoreError::Invalid(m),
        }
    }
}
