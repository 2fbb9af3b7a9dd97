//! The host side of the plugin world (`wit/plugin.wit`).
//!
//! Only this crate runs `bindgen!`; the host's capabilities and every upstream
//! kind implement the generated `Host` traits from here. Each interface is
//! added to a linker on its own (`<interface>::add_to_linker`), so an upstream
//! kind can serve its interface from its own crate with its own view of the
//! host state.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "plugin",
        imports: {
            "bitbylaw:plugin/kv": async,
            "bitbylaw:plugin/lock": async,
            "bitbylaw:plugin/rate-limit": async,
            "bitbylaw:plugin/events": async,
            "bitbylaw:plugin/http": async,
            "bitbylaw:plugin/advoware": async,
            "bitbylaw:plugin/google-calendar": async,
            "bitbylaw:plugin/espocrm": async,
            "bitbylaw:plugin/threecx": async,
        },
        exports: { default: async },
    });
}

pub use generated::bitbylaw::plugin::*;
pub use generated::exports::bitbylaw::plugin::handler;
pub use generated::{Plugin, PluginPre};
