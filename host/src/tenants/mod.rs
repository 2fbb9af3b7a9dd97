//! The tenants the host serves: what each runs ([`Tenant`]), all of them as one
//! immutable [`Deployment`] swapped atomically ([`Registry`]), how a tenant is
//! built from its file ([`assemble`]), its route table ([`routes`]), and what
//! the host knows of the tenant files on disk ([`files`]).
//!
//! Everything here sits above the runtime and capabilities and below the event
//! bus and the ingress, which read tenants but never build them.

pub mod assemble;
pub mod files;
mod registry;
mod routes;

use croner::Cron;

pub use assemble::Assembler;
pub use registry::{Credential, Deployment, DeploymentError, RateLimit, Registry, Tenant};
pub use routes::{RouteEntry, RouteError, RouteMatch, RouteTable};

use crate::config::SubscriptionSettings;

/// A plugin's interest in a topic, with its delivery settings.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub plugin: String,
    pub topic: String,
    pub settings: SubscriptionSettings,
}

/// A schedule of one plugin of one tenant, as it will run.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub plugin: String,
    pub name: String,
    pub expression: String,
    pub cron: Cron,
}
