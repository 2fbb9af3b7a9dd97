//! The bitbylaw plugin host.
//!
//! One request travels: [`ingress`] (tenant, route, limits) → [`runtime`]
//! (instance pool, deadline, memory limit) → the plugin → [`capabilities`]
//! (what the plugin may call) → [`store`], [`events`] or outbound HTTP.
//! [`host::Host`] ties them together; [`server::run`] serves it until shutdown.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = bitbylaw::config::load("deploy/demo/host.toml")?;
//! let host = bitbylaw::host::Host::start(config).await?;
//! let listener = tokio::net::TcpListener::bind(host.config().listen).await?;
//! bitbylaw::server::run(listener, host, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod capabilities;
pub mod cli;
pub mod components;
pub mod config;
pub mod events;
mod heap;
pub mod host;
pub mod ids;
pub mod ingress;
pub mod pins;
pub mod reload;
pub mod runtime;
pub mod server;
mod startup;
pub mod systemd;
pub mod telemetry;
pub mod tenants;
pub mod traffic;
pub mod upstreams;

pub use bitbylaw_core::{egress, metrics, store};
