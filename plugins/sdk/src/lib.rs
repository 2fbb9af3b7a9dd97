//! Write a bitbylaw plugin in a few lines.
//!
//! The host speaks the `bitbylaw:plugin` WIT world (`wit/plugin.wit`); this crate
//! wraps the generated bindings in plain Rust: a [`Plugin`] trait, typed
//! [`Request`]/[`Response`] helpers with JSON, an [`Error`] that turns into a
//! JSON error response, logging macros, and one module per host capability.
//!
//! ```ignore
//! use bitbylaw_sdk::{Description, Error, Plugin, Request, Response, Router};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn describe() -> Description {
//!         Description::new("hello", env!("CARGO_PKG_VERSION"))
//!     }
//!
//!     fn routes() -> Router {
//!         Router::new().get("/hello/{name}", greet)
//!     }
//! }
//!
//! fn greet(request: Request) -> Result<Response, Error> {
//!     let name = request.require_param("name")?;
//!     Ok(Response::json(200, &serde_json::json!({ "greeting": format!("Hallo, {name}!") })))
//! }
//!
//! bitbylaw_sdk::export_plugin!(Hello);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`.

// Lets the generated bindings name this crate the same way inside and outside of it.
extern crate self as bitbylaw_sdk;

/// The raw bindings generated from `wit/plugin.wit`. Prefer the wrappers below.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "bitbylaw_sdk::bindings",
        runtime_path: "bitbylaw_sdk::__private::wit_bindgen::rt",
    });
}

mod builder;
mod error;
mod logging;
mod plugin;
mod request;
mod response;
mod router;

pub mod advoware;
pub mod config;
pub mod espocrm;
pub mod events;
pub mod google_calendar;
pub mod http;
pub mod inbox;
pub mod kv;
pub mod lock;
pub mod metrics;
#[cfg(feature = "phone")]
pub mod phone;
pub mod rate_limit;
pub mod rest;
pub mod secrets;
pub mod sync;
pub mod threecx;

pub use error::Error;
pub use logging::{Level, log};
pub use plugin::{
    Description, Event, EventHandler, HandlerError, Plugin, ScheduleHandler, Subscriptions, Tick,
};
pub use request::Request;
pub use response::Response;
pub use router::{Handler, Router};

/// The store's error, as returned by [`kv`], [`lock`], [`rate_limit`] and [`events`].
pub use bindings::bitbylaw::plugin::types::StoreError;

/// Items the macros need; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{describe, dispatch_event, dispatch_http, dispatch_schedule};
    pub use wit_bindgen;
}

/// Exports a type implementing [`Plugin`] as the component's `handler`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __BitbylawExport;

        impl $crate::bindings::exports::bitbylaw::plugin::handler::Guest for __BitbylawExport {
            fn describe() -> $crate::bindings::exports::bitbylaw::plugin::handler::Description {
                $crate::__private::describe::<$plugin>()
            }

            fn handle_http(
                request: $crate::bindings::exports::bitbylaw::plugin::handler::Request,
            ) -> $crate::bindings::exports::bitbylaw::plugin::handler::Response {
                $crate::__private::dispatch_http::<$plugin>(request)
            }

            fn handle_event(
                event: $crate::bindings::exports::bitbylaw::plugin::handler::Event,
            ) -> ::core::result::Result<
                (),
                $crate::bindings::exports::bitbylaw::plugin::handler::HandlerError,
            > {
                $crate::__private::dispatch_event::<$plugin>(event)
            }

            fn handle_schedule(
                tick: $crate::bindings::exports::bitbylaw::plugin::handler::Tick,
            ) -> ::core::result::Result<
                (),
                $crate::bindings::exports::bitbylaw::plugin::handler::HandlerError,
            > {
                $crate::__private::dispatch_schedule::<$plugin>(tick)
            }
        }

        $crate::bindings::export_raw!(__BitbylawExport);
    };
}
