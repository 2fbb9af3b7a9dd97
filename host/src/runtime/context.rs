//! What the host knows about one plugin of one tenant, shared by all its instances.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::capabilities::http::{Egress, Origin};
use crate::config::Secret;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::store::{Scope, Store};

pub struct PluginContext {
    pub tenant: String,
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
    pub scope: Scope,
    pub store: Store,
    pub allowed_origins: HashSet<Origin>,
    pub egress: Egress,
    pub events: EventBus,
    pub metrics: Metrics,
    /// The tenant's Advoware client, when the tenant file grants it to this plugin.
    pub advoware: Option<Arc<crate::advoware::Client>>,
}
