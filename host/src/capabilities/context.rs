//! What the host knows about one plugin of one tenant, shared by all its instances.

use std::collections::{BTreeMap, HashSet};

use bitbylaw_core::upstream::Grants;

use std::sync::Arc;

use bitbylaw_core::secret::Secret;

use super::Emitter;
use crate::egress::{Egress, Origin};
use crate::metrics::Metrics;
use crate::store::{Quota, Scope, Store};

pub struct PluginContext {
    pub tenant: String,
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub scope: Scope,
    /// The tenant's allowance of stored bytes, shared by all its plugins.
    pub quota: Quota,
    pub store: Store,
    pub allowed_origins: HashSet<Origin>,
    pub egress: Egress,
    /// Where `events.emit` goes: the host's event bus.
    pub events: Arc<dyn Emitter>,
    pub metrics: Metrics,
    /// The upstream accounts the tenant file grants this plugin, opened.
    pub grants: Grants,
}
