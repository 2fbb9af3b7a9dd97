//! Building a [`Tenant`] from its file: open its upstream accounts, give each
//! plugin its context (settings, secrets, origins, grants), load the
//! components, and collect routes, subscriptions and schedules. Nothing is
//! swapped in here; the caller decides.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use bitbylaw_core::upstream::{Account, Grants, OpenContext};

use super::{Credential, RateLimit, RouteTable, ScheduleSpec, Subscription, Tenant};
use crate::capabilities::{Emitter, PluginContext};
use crate::config::{HostConfig, PluginConfig, Secret, TenantConfig, TenantLimits};
use crate::egress::{Egress, Origin};
use crate::metrics::Metrics;
use crate::runtime::{LoadedPlugin, Runtime};
use crate::store::{Quota, Scope, Store};

/// The host's shared parts a tenant is built from.
pub struct Assembler<'a> {
    pub config: &'a HostConfig,
    pub store: &'a Store,
    pub runtime: &'a Runtime,
    pub egress: &'a Egress,
    pub events: &'a Arc<dyn Emitter>,
    pub metrics: &'a Metrics,
}

impl Assembler<'_> {
    /// Compiles `bytes` and checks them as a plugin: the component must fit the
    /// bitbylaw world and start and describe itself without trapping. Nothing
    /// is stored or swapped; this is what an upload goes through first.
    pub async fn check_component(&self, bytes: bytes::Bytes) -> anyhow::Result<LoadedPlugin> {
        let (component, digest) = self.runtime.load_component_bytes(bytes).await?;
        let context = Arc::new(self.context(
            "_check",
            "_check",
            BTreeMap::new(),
            BTreeMap::new(),
            HashSet::new(),
            Grants::default(),
        ));
        LoadedPlugin::load(
            self.runtime,
            &component,
            digest,
            context,
            self.config.plugin_defaults.clone(),
        )
        .await
    }

    /// Builds a tenant from its config: secrets, components, routes.
    pub async fn tenant(&self, config: &TenantConfig) -> anyhow::Result<Tenant> {
        let file = config.file.display();
        let api_keys = config
            .api_keys
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let key = entry
                    .key()
                    .resolve(&config.base_dir)
                    .map_err(|e| anyhow::anyhow!("{file}: key `api_keys[{index}]`: {e}"))?;
                Ok(Credential {
                    id: key,
                    routes: entry.routes(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let accounts = self.open_accounts(config)?;
        let mut plugins = BTreeMap::new();
        let mut routes = RouteTable::default();
        let mut subscriptions = Vec::new();
        let mut schedules = Vec::new();
        for (name, plugin_config) in config.plugins.iter().filter(|(_, p)| p.enabled) {
            let key = format!("plugins.{name}");
            let limits = plugin_config.limits.apply(&self.config.plugin_defaults);
            crate::config::check_limits(
                &config.file,
                &format!("{key}.limits"),
                &limits,
                self.config.runtime.max_memory_mb,
            )?;
            let mut grants = Grants::default();
            for account in &plugin_config.upstreams {
                if let Some((kind, client)) = accounts.get(account) {
                    grants
                        .grant(kind, account, client.clone())
                        .map_err(|e| anyhow::anyhow!("{file}: key `{key}.upstreams`: {e}"))?;
                }
            }
            let context = Arc::new(self.plugin_context(config, name, plugin_config, grants)?);
            let (component_path, source) = crate::components::plugin_component(
                plugin_config,
                name,
                &config.base_dir,
                &self.component_store_dir(),
            );
            let (component, digest) = self
                .runtime
                .load_component(&component_path)
                .await
                .with_context(|| {
                    format!(
                        "{file}: key `{key}.{source}`: `{}`",
                        component_path.display()
                    )
                })?;
            let plugin = LoadedPlugin::load(self.runtime, &component, digest, context, limits)
                .await
                .with_context(|| {
                    format!(
                        "{file}: key `{key}.{source}`: `{}`",
                        component_path.display()
                    )
                })?;
            let plugin = Arc::new(plugin);
            let prefix = plugin_config
                .route_prefix
                .as_deref()
                .unwrap_or(&config.route_prefix);
            routes
                .add_plugin(name, &plugin, prefix, &plugin_config.disabled_routes)
                .map_err(|e| anyhow::anyhow!("{file}: key `{key}`: {e}"))?;
            tracing::info!(
                tenant = %config.id,
                plugin = %name,
                version = %plugin.description.version,
                digest = %&plugin.digest[..12],
                routes = plugin.description.routes.len(),
                "plugin loaded"
            );
            subscriptions.extend(self.subscriptions(config, name, plugin_config, &plugin)?);
            schedules.extend(schedules_of(config, name, plugin_config, &plugin)?);
            plugins.insert(name.clone(), plugin);
        }
        Ok(Tenant {
            id: config.id.clone(),
            plugins,
            routes,
            api_keys,
            kong_consumers: config
                .kong_consumers
                .iter()
                .map(|consumer| Credential {
                    id: consumer.name().to_owned(),
                    routes: consumer.routes(),
                })
                .collect(),
            subscriptions,
            schedules,
            default_subscription: self.config.events.subscription_defaults.clone(),
            rate: config.limits.requests_per_second.map(|rate| RateLimit {
                bucket: crate::store::Bucket {
                    capacity: config
                        .limits
                        .burst
                        .unwrap_or_else(|| rate.ceil() as u32)
                        .max(1),
                    refill_per_second: rate,
                },
                key: format!(
                    "{}rate",
                    Scope::new(&self.config.store.key_prefix, &config.id, "ingress").base()
                ),
            }),
            instances: config
                .limits
                .max_concurrent_instances
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            quota: self.quota(config),
        })
    }

    /// Opens every upstream account of the tenant (reads its secrets, builds its
    /// client), by name.
    fn open_accounts(
        &self,
        config: &TenantConfig,
    ) -> anyhow::Result<BTreeMap<String, (&'static str, Account)>> {
        let file = config.file.display();
        config
            .accounts
            .iter()
            .map(|(name, account)| {
                let context = OpenContext {
                    tenant: &config.id,
                    account: name,
                    base_dir: &config.base_dir,
                    store: self.store,
                    key_prefix: &self.config.store.key_prefix,
                    egress: self.egress,
                    metrics: self.metrics,
                };
                let client = account.settings.open(&context).map_err(|error| {
                    let key = match &error.key {
                        Some(key) => format!("{}.{key}", account.section),
                        None => account.section.clone(),
                    };
                    anyhow::anyhow!("{file}: key `{key}`: {}", error.message)
                })?;
                Ok((name.clone(), (account.kind.name(), client)))
            })
            .collect()
    }

    /// The plugin's topics with their settings; overrides must name declared topics.
    fn subscriptions(
        &self,
        tenant: &TenantConfig,
        name: &str,
        config: &PluginConfig,
        plugin: &LoadedPlugin,
    ) -> anyhow::Result<Vec<Subscription>> {
        let topics = &plugin.description.topics;
        if let Some(unknown) = config
            .subscriptions
            .keys()
            .find(|topic| !topics.contains(topic))
        {
            anyhow::bail!(
                "{}: key `plugins.{name}.subscriptions.{unknown}`: the plugin does not subscribe to this topic (it does to: {})",
                tenant.file.display(),
                topics.join(", ")
            );
        }
        let deadline = plugin.pool().limits().deadline_ms;
        if deadline >= self.config.events.visibility_timeout_ms && !topics.is_empty() {
            anyhow::bail!(
                "{}: key `plugins.{name}.limits.deadline_ms`: must be shorter than events.visibility_timeout_ms ({}) for a plugin that handles events",
                tenant.file.display(),
                self.config.events.visibility_timeout_ms
            );
        }
        topics
            .iter()
            .map(|topic| {
                let settings = config
                    .subscriptions
                    .get(topic)
                    .map(|o| o.apply(&self.config.events.subscription_defaults))
                    .unwrap_or_else(|| self.config.events.subscription_defaults.clone());
                crate::config::check_subscription(
                    &tenant.file,
                    &format!("plugins.{name}.subscriptions.{topic}"),
                    &settings,
                )?;
                Ok(Subscription {
                    plugin: name.to_owned(),
                    topic: topic.clone(),
                    settings,
                })
            })
            .collect()
    }

    fn plugin_context(
        &self,
        tenant: &TenantConfig,
        name: &str,
        plugin: &PluginConfig,
        grants: Grants,
    ) -> anyhow::Result<PluginContext> {
        let file = tenant.file.display();
        let config = plugin.config.0.clone();
        let secrets = plugin
            .secrets
            .iter()
            .map(|(key, reference)| {
                reference
                    .resolve(&tenant.base_dir)
                    .map(|secret| (key.clone(), secret))
                    .map_err(|e| anyhow::anyhow!("{file}: key `plugins.{name}.secrets.{key}`: {e}"))
            })
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        let allowed_origins = plugin.allowed_origins.iter().cloned().collect();
        let mut context = self.context(&tenant.id, name, config, secrets, allowed_origins, grants);
        context.quota = self.quota(tenant);
        Ok(context)
    }

    fn quota(&self, tenant: &TenantConfig) -> Quota {
        Quota::new(
            &self.config.store.key_prefix,
            &tenant.id,
            tenant.limits.stored_bytes(),
        )
    }

    /// A plugin's context: its own settings, and the host's shared parts
    /// (with the default quota; a tenant's own is set by `plugin_context`).
    fn context(
        &self,
        tenant: &str,
        name: &str,
        config: BTreeMap<String, String>,
        secrets: BTreeMap<String, Secret>,
        allowed_origins: HashSet<Origin>,
        grants: Grants,
    ) -> PluginContext {
        PluginContext {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            config,
            secrets,
            scope: Scope::new(&self.config.store.key_prefix, tenant, name),
            quota: Quota::new(
                &self.config.store.key_prefix,
                tenant,
                TenantLimits::default().stored_bytes(),
            ),
            store: self.store.clone(),
            allowed_origins,
            egress: self.egress.clone(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            grants,
        }
    }

    /// The component store's folder (`components.dir`).
    fn component_store_dir(&self) -> std::path::PathBuf {
        self.config.base_dir.join(&self.config.components.dir)
    }
}

/// The plugin's schedules as the tenant wants them: its own cron or the tenant's, or none.
fn schedules_of(
    tenant: &TenantConfig,
    name: &str,
    config: &PluginConfig,
    plugin: &LoadedPlugin,
) -> anyhow::Result<Vec<ScheduleSpec>> {
    let declared = &plugin.description.schedules;
    if let Some(unknown) = config
        .schedules
        .keys()
        .find(|s| !declared.iter().any(|d| &d.name == *s))
    {
        anyhow::bail!(
            "{}: key `plugins.{name}.schedules.{unknown}`: the plugin declares no such schedule",
            tenant.file.display()
        );
    }
    let mut specs = Vec::new();
    for schedule in declared {
        let overriding = config.schedules.get(&schedule.name);
        if overriding.is_some_and(|o| !o.enabled) {
            continue;
        }
        let expression = overriding
            .and_then(|o| o.cron.as_ref())
            .map(|cron| cron.text.clone())
            .unwrap_or_else(|| schedule.cron.clone());
        let cron = crate::config::parse_cron(&expression).map_err(|e| {
            anyhow::anyhow!(
                "{}: key `plugins.{name}` (schedule `{}`): {e}",
                tenant.file.display(),
                schedule.name
            )
        })?;
        specs.push(ScheduleSpec {
            plugin: name.to_owned(),
            name: schedule.name.clone(),
            expression,
            cron,
        });
    }
    Ok(specs)
}
