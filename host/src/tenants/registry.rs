//! Which tenants exist and which plugins each runs: an immutable [`Deployment`]
//! behind an atomic pointer. Readers take a snapshot per request; a change
//! builds a new deployment and swaps it in, so in-flight calls finish on the
//! plugins they started with and new calls see the new ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::{RouteTable, ScheduleSpec, Subscription};
use crate::config::{Routes, Secret, SubscriptionSettings};
use crate::runtime::LoadedPlugin;

/// Two tenants claim the same way in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error("tenants `{0}` and `{1}` share an API key")]
    SharedApiKey(String, String),
    #[error("tenants `{0}` and `{1}` both claim Kong consumer `{2}`")]
    SharedKongConsumer(String, String, String),
}

pub struct Registry {
    current: ArcSwap<Deployment>,
}

impl Registry {
    pub fn new(deployment: Deployment) -> Self {
        Self {
            current: ArcSwap::from_pointee(deployment),
        }
    }

    /// The deployment as of now; hold it for the length of one request.
    pub fn current(&self) -> Arc<Deployment> {
        self.current.load_full()
    }

    pub fn replace(&self, deployment: Deployment) {
        self.current.store(Arc::new(deployment));
    }

    /// Takes the tenant with `id` out of the deployment.
    pub fn remove_tenant(&self, id: &str) -> Result<(), DeploymentError> {
        self.update(id, None)
    }

    /// Puts `tenant` in place of the tenant with the same id (or adds it).
    /// Calls already running keep the plugins they started with.
    pub fn swap_tenant(&self, tenant: Arc<Tenant>) -> Result<(), DeploymentError> {
        let id = tenant.id.clone();
        self.update(&id, Some(tenant))
    }

    /// The next deployment: the current one without tenant `id`, plus `with`.
    /// Built from the current one and retried if another change won the race;
    /// when the result is not a valid deployment nothing changes.
    fn update(&self, id: &str, with: Option<Arc<Tenant>>) -> Result<(), DeploymentError> {
        let mut outcome = Ok(());
        self.current.rcu(|current| {
            let tenants = current
                .tenants
                .values()
                .filter(|other| other.id != id)
                .cloned()
                .chain(with.clone())
                .collect();
            match Deployment::new(tenants) {
                Ok(next) => {
                    outcome = Ok(());
                    Arc::new(next)
                }
                Err(error) => {
                    outcome = Err(error);
                    current.clone()
                }
            }
        });
        outcome
    }
}

/// One tenant with its loaded plugins, routes, subscriptions and schedules.
pub struct Tenant {
    pub id: String,
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub routes: RouteTable,
    pub api_keys: Vec<Credential<Secret>>,
    pub kong_consumers: Vec<Credential<String>>,
    pub subscriptions: Vec<Subscription>,
    pub schedules: Vec<ScheduleSpec>,
    /// Settings for a subscription this tenant does not list (should not happen).
    pub default_subscription: SubscriptionSettings,
    /// Request rate through the ingress, when limited.
    pub rate: Option<RateLimit>,
    /// Plugin calls running at once in this host instance, when limited.
    pub instances: Option<Arc<tokio::sync::Semaphore>>,
    /// The stored bytes its plugins share (`limits.stored_bytes`).
    pub quota: crate::store::Quota,
}

/// A way in to a tenant (an API key, a Kong consumer) and the routes it opens.
#[derive(Debug, Clone)]
pub struct Credential<T> {
    pub id: T,
    /// `None`: every route of the tenant.
    pub routes: Routes,
}

/// A tenant's ingress bucket and its store key, built once when the tenant loads.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub bucket: crate::store::Bucket,
    pub key: String,
}

impl Tenant {
    /// Delivery settings of `plugin`'s subscription to `topic`.
    pub fn subscription_settings(&self, plugin: &str, topic: &str) -> SubscriptionSettings {
        self.subscriptions
            .iter()
            .find(|s| s.plugin == plugin && s.topic == topic)
            .map(|s| s.settings.clone())
            .unwrap_or_else(|| self.default_subscription.clone())
    }
}

/// All tenants, indexed for tenant resolution.
pub struct Deployment {
    tenants: HashMap<String, Arc<Tenant>>,
    /// sha256 of each API key → tenant, key and routes; the key itself is
    /// compared in constant time after lookup.
    api_keys: HashMap<[u8; 32], (String, Credential<Secret>)>,
    kong_consumers: HashMap<String, (String, Routes)>,
}

impl Deployment {
    /// Indexes the tenants; an API key or Kong consumer claimed by two tenants is an error.
    pub fn new(tenants: Vec<Arc<Tenant>>) -> Result<Self, DeploymentError> {
        let mut deployment = Self::empty();
        for tenant in tenants {
            deployment.try_add(tenant)?;
        }
        Ok(deployment)
    }

    pub fn empty() -> Self {
        Self {
            tenants: HashMap::new(),
            api_keys: HashMap::new(),
            kong_consumers: HashMap::new(),
        }
    }

    /// Adds `tenant` unless one of its API keys or Kong consumers is already
    /// another tenant's; then nothing changes.
    pub fn try_add(&mut self, tenant: Arc<Tenant>) -> Result<(), DeploymentError> {
        for key in &tenant.api_keys {
            if let Some((other, _)) = self.api_keys.get(&key_digest(key.id.expose()))
                && *other != tenant.id
            {
                return Err(DeploymentError::SharedApiKey(
                    other.clone(),
                    tenant.id.clone(),
                ));
            }
        }
        for consumer in &tenant.kong_consumers {
            if let Some((other, _)) = self.kong_consumers.get(&consumer.id)
                && *other != tenant.id
            {
                return Err(DeploymentError::SharedKongConsumer(
                    other.clone(),
                    tenant.id.clone(),
                    consumer.id.clone(),
                ));
            }
        }
        for key in &tenant.api_keys {
            self.api_keys.insert(
                key_digest(key.id.expose()),
                (tenant.id.clone(), key.clone()),
            );
        }
        for consumer in &tenant.kong_consumers {
            self.kong_consumers.insert(
                consumer.id.clone(),
                (tenant.id.clone(), consumer.routes.clone()),
            );
        }
        self.tenants.insert(tenant.id.clone(), tenant);
        Ok(())
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    /// The tenant owning `key`, compared in constant time once found by digest.
    /// The tenant owning `key` and the routes the key opens, compared in
    /// constant time once found by digest.
    pub fn tenant_by_api_key(&self, key: &str) -> Option<(&Arc<Tenant>, &Routes)> {
        use subtle::ConstantTimeEq;
        let (tenant, expected) = self.api_keys.get(&key_digest(key))?;
        let equal: bool = expected.id.expose().as_bytes().ct_eq(key.as_bytes()).into();
        if equal {
            Some((self.tenants.get(tenant)?, &expected.routes))
        } else {
            None
        }
    }

    /// The tenant Kong's `consumer` is, and the routes it opens.
    pub fn tenant_by_kong_consumer(&self, consumer: &str) -> Option<(&Arc<Tenant>, &Routes)> {
        let (tenant, routes) = self.kong_consumers.get(consumer)?;
        Some((self.tenants.get(tenant)?, routes))
    }
}

fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
