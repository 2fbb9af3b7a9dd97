//! The host: store, runtime, registry and the shared services, built from config.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use anyhow::Context as _;

use crate::capabilities::http::{Egress, Origin};
use crate::config::{Config, HostConfig, Secret, TenantConfig};
use crate::events::schedule::{ScheduleSpec, parse_cron};
use crate::events::{EventBus, MemoryBus, RedisBus, Subscription};
use crate::ingress::RouteTable;
use crate::metrics::Metrics;
use crate::runtime::{
    Deployment, LoadedPlugin, PluginContext, RateLimit, Registry, Runtime, Tenant,
};
use crate::store::{MemoryStore, RedisStore, Scope, Store};

pub struct Host {
    config: HostConfig,
    store: Store,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    metrics: Metrics,
    egress: Egress,
    events: EventBus,
    admin_token: Option<Secret>,
    loaded: AtomicBool,
    broken: Mutex<BTreeMap<String, String>>,
    /// Stops the tenant-file watcher when the host goes away.
    watcher: CancellationToken,
    /// What the watcher knows of the tenant files.
    disk: Mutex<crate::reload::DiskState>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.watcher.cancel();
    }
}

impl Host {
    /// Connects the store, compiles the plugins and loads every tenant. A broken
    /// host config fails; a broken tenant is logged and reported in
    /// [`Host::broken_tenants`] (errors name file and key), and the others run.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let Config {
            host: config,
            tenants,
            broken,
        } = config;
        let store = connect_store(&config).await?;
        let runtime = Runtime::new(
            &config.runtime,
            config.base_dir.join(&config.runtime.cache_dir),
        )?;
        let egress = Egress::new(&config.egress).context("creating the outbound HTTP client")?;
        let metrics = Metrics::new();
        let prefix = &config.store.key_prefix;
        let events = match &store {
            Store::Redis(redis) => EventBus::Redis(RedisBus::new(
                redis.clone(),
                prefix,
                &config.events,
                metrics.clone(),
            )),
            Store::Memory(_) => EventBus::Memory(MemoryBus::new(
                store.clone(),
                prefix,
                &config.events,
                metrics.clone(),
            )),
        };
        let registry = Arc::new(Registry::new(
            Deployment::new(Vec::new()).map_err(anyhow::Error::msg)?,
        ));
        let admin_token = config
            .admin
            .token
            .as_ref()
            .map(|reference| reference.resolve(&config.base_dir))
            .transpose()
            .map_err(|e| anyhow::anyhow!("key `admin.token`: {e}"))?;
        let host = Arc::new(Self {
            config,
            store,
            runtime,
            registry,
            metrics,
            egress,
            events,
            admin_token,
            loaded: AtomicBool::new(false),
            broken: Mutex::new(BTreeMap::new()),
            watcher: CancellationToken::new(),
            disk: Mutex::new(crate::reload::DiskState::default()),
        });
        for error in broken {
            let id = crate::config::tenant_id(&error.file);
            host.mark_broken(&id, error.to_string());
        }
        let tenants_dir = host.config.base_dir.join(&host.config.tenants_dir);
        let watching = host.config.reload.poll_ms > 0;
        if watching {
            // Before loading: a file edited while the tenants load is then seen as changed.
            let mut disk = host.disk();
            disk.known = disk.scan(&tenants_dir, &host.component_store_dir());
        }
        let mut loaded = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            match host.load_tenant(tenant).await {
                Ok(tenant) => loaded.push(Arc::new(tenant)),
                Err(error) => host.mark_broken(&tenant.id, format!("{error:#}")),
            }
        }
        host.registry
            .replace(Deployment::new(loaded.clone()).map_err(|e| anyhow::anyhow!("tenants: {e}"))?);
        for tenant in &loaded {
            host.events
                .run_tenant(&host.registry, tenant)
                .await
                .with_context(|| format!("starting event delivery for tenant `{}`", tenant.id))?;
        }
        host.loaded.store(true, Ordering::Release);
        if watching {
            tokio::spawn(crate::reload::watch(
                Arc::downgrade(&host),
                tenants_dir,
                host.component_store_dir(),
                std::time::Duration::from_millis(host.config.reload.poll_ms),
                host.watcher.clone(),
            ));
        }
        Ok(host)
    }

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
            None,
        ));
        LoadedPlugin::load(
            &self.runtime,
            &component,
            digest,
            context,
            self.config.plugin_defaults.clone(),
        )
        .await
    }

    /// The file of tenant `id`.
    pub fn tenant_file(&self, id: &str) -> std::path::PathBuf {
        self.config
            .base_dir
            .join(&self.config.tenants_dir)
            .join(format!("{id}.toml"))
    }

    /// Pins `plugin` of `tenant` to `pin` (a store version, or a component file):
    /// checks and swaps it in, then writes the tenant file (keeping its comments
    /// and layout). Nothing is written when the new version cannot serve.
    /// Returns the pin it replaced.
    pub async fn pin_plugin(&self, tenant: &str, plugin: &str, pin: &Pin) -> anyhow::Result<Pin> {
        let file = self.tenant_file(tenant);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut document: toml_edit::DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        let table = document
            .get_mut("plugins")
            .and_then(|p| p.get_mut(plugin))
            .and_then(|t| t.as_table_like_mut())
            .ok_or_else(|| anyhow::anyhow!("tenant `{tenant}` has no plugin `{plugin}`"))?;
        let previous = match (
            table.get("version").and_then(|v| v.as_str()),
            table.get("component").and_then(|v| v.as_str()),
        ) {
            (Some(version), _) => Pin::Version(version.to_owned()),
            (None, Some(component)) => Pin::Component(component.to_owned()),
            (None, None) => {
                anyhow::bail!("plugin `{plugin}` of tenant `{tenant}` names no component")
            }
        };
        table.remove("version");
        table.remove("component");
        match pin {
            Pin::Version(version) => table.insert("version", toml_edit::value(version.as_str())),
            Pin::Component(component) => {
                table.insert("component", toml_edit::value(component.as_str()))
            }
        };
        let text = document.to_string();
        let config = crate::config::parse_tenant(&file, tenant, &text)?;
        self.reload_tenant(&config).await?;
        crate::components::write_atomically(&file, text.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
        // Our own write: the watcher need not load it again.
        self.disk().record(&file, &self.component_store_dir());
        tracing::info!(%tenant, %plugin, from = %previous, to = %pin, "plugin version switched");
        Ok(previous)
    }

    /// The component store's folder (`components.dir`).
    pub fn component_store_dir(&self) -> std::path::PathBuf {
        self.config.base_dir.join(&self.config.components.dir)
    }

    /// Tenants whose config or plugins could not be loaded, with the reason.
    /// A tenant that was running before keeps running its last good version.
    pub fn broken_tenants(&self) -> BTreeMap<String, String> {
        self.lock_broken().clone()
    }

    fn mark_broken(&self, tenant: &str, error: String) {
        tracing::error!(%tenant, %error, "tenant not loaded");
        self.lock_broken().insert(tenant.to_owned(), error);
    }

    fn lock_broken(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        crate::sync::lock(&self.broken)
    }

    /// What the watcher knows of the tenant files.
    pub(crate) fn disk(&self) -> std::sync::MutexGuard<'_, crate::reload::DiskState> {
        crate::sync::lock(&self.disk)
    }

    /// Reads a tenant file again and swaps the tenant in; on any error the
    /// tenant is reported broken and its running version (if any) keeps serving.
    pub async fn reload_tenant_file(&self, file: &std::path::Path) {
        let id = crate::config::tenant_id(file);
        let config = match crate::config::load_tenant(file) {
            Ok(config) => config,
            Err(error) => return self.mark_broken(&id, error.to_string()),
        };
        match self.reload_tenant(&config).await {
            Ok(()) => tracing::info!(tenant = %id, "tenant reloaded"),
            Err(error) => self.mark_broken(&id, format!("{error:#}")),
        }
    }

    /// Takes a tenant out (its file was deleted): no more requests, events or ticks.
    pub fn remove_tenant(&self, id: &str) {
        if let Err(error) = self.registry.remove_tenant(id) {
            tracing::error!(tenant = %id, %error, "cannot remove tenant");
            return;
        }
        self.events.stop_tenant(id);
        self.lock_broken().remove(id);
        tracing::info!(tenant = %id, "tenant removed");
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The admin API's bearer token; `None` keeps the admin API off.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True once every tenant of the config has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Loads `config` and swaps it in for the tenant of the same id, atomically:
    /// requests in flight finish on the old plugins, new ones get the new.
    pub async fn reload_tenant(&self, config: &TenantConfig) -> anyhow::Result<()> {
        let tenant = self.load_tenant(config).await?;
        let tenant = Arc::new(tenant);
        self.registry
            .swap_tenant(tenant.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.file.display()))?;
        self.events
            .run_tenant(&self.registry, &tenant)
            .await
            .with_context(|| format!("restarting event delivery for tenant `{}`", tenant.id))?;
        self.lock_broken().remove(&tenant.id);
        Ok(())
    }

    /// Builds a tenant from its config: secrets, components, routes.
    pub async fn load_tenant(&self, config: &TenantConfig) -> anyhow::Result<Tenant> {
        let file = config.file.display();
        let api_keys = config
            .api_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                key.resolve(&config.base_dir)
                    .map_err(|e| anyhow::anyhow!("{file}: key `api_keys[{index}]`: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let advoware = config
            .advoware
            .as_ref()
            .map(|settings| {
                crate::advoware::Settings::resolve(settings, &config.base_dir)
                    .map_err(|(key, e)| anyhow::anyhow!("{file}: key `advoware.{key}`: {e}"))
            })
            .transpose()?
            .map(|settings| {
                crate::advoware::Client::new(
                    &config.id,
                    settings,
                    self.egress.clone(),
                    self.store.clone(),
                    &self.config.store.key_prefix,
                    self.metrics.clone(),
                )
            })
            .transpose()?;
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
            let granted = advoware.as_ref().filter(|_| plugin_config.advoware);
            let context = Arc::new(self.plugin_context(config, name, plugin_config, granted)?);
            let (component_path, source) =
                plugin_config.component_path(name, &config.base_dir, &self.component_store_dir());
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
            let plugin = LoadedPlugin::load(&self.runtime, &component, digest, context, limits)
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
            kong_consumers: config.kong_consumers.clone(),
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
        })
    }

    /// The plugin's topics with their settings; overrides must name declared topics.
    fn subscriptions(
        &self,
        tenant: &TenantConfig,
        name: &str,
        config: &crate::config::PluginConfig,
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
        plugin: &crate::config::PluginConfig,
        advoware: Option<&Arc<crate::advoware::Client>>,
    ) -> anyhow::Result<PluginContext> {
        let file = tenant.file.display();
        let config = plugin
            .config
            .iter()
            .map(|(key, value)| {
                crate::runtime::config_value_to_string(value)
                    .map(|text| (key.clone(), text))
                    .map_err(|e| anyhow::anyhow!("{file}: key `plugins.{name}.config.{key}`: {e}"))
            })
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
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
        let allowed_origins = plugin
            .allowed_origins
            .iter()
            .map(|origin| Origin::parse(origin).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<HashSet<_>>>()?;
        Ok(self.context(
            &tenant.id,
            name,
            config,
            secrets,
            allowed_origins,
            advoware.cloned(),
        ))
    }

    /// A plugin's context: its own settings, and the host's shared parts.
    fn context(
        &self,
        tenant: &str,
        name: &str,
        config: BTreeMap<String, String>,
        secrets: BTreeMap<String, Secret>,
        allowed_origins: HashSet<Origin>,
        advoware: Option<Arc<crate::advoware::Client>>,
    ) -> PluginContext {
        PluginContext {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            config,
            secrets,
            scope: Scope::new(&self.config.store.key_prefix, tenant, name),
            store: self.store.clone(),
            allowed_origins,
            egress: self.egress.clone(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            advoware,
        }
    }
}

/// What a tenant's plugin runs: a version from the component store or a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    Version(String),
    Component(String),
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Version(version) => write!(f, "version {version}"),
            Pin::Component(file) => write!(f, "component {file}"),
        }
    }
}

/// The plugin's schedules as the tenant wants them: its own cron or the tenant's, or none.
fn schedules_of(
    tenant: &TenantConfig,
    name: &str,
    config: &crate::config::PluginConfig,
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
            .and_then(|o| o.cron.clone())
            .unwrap_or_else(|| schedule.cron.clone());
        let cron = parse_cron(&expression).map_err(|e| {
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

async fn connect_store(config: &HostConfig) -> anyhow::Result<Store> {
    match &config.store.redis_url {
        Some(url) => {
            let password = config
                .store
                .redis_password
                .as_ref()
                .map(|reference| reference.resolve(&config.base_dir))
                .transpose()
                .map_err(|e| anyhow::anyhow!("key `store.redis_password`: {e}"))?;
            let store = RedisStore::connect(url, password.as_ref())
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?;
            tracing::info!(%url, "state store: Redis");
            Ok(Store::Redis(store))
        }
        None => {
            tracing::warn!(
                "state store: in memory (no `store.redis_url`): state is lost on restart and not shared between host instances"
            );
            Ok(Store::Memory(MemoryStore::new()))
        }
    }
}
