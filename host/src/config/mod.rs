//! Host and tenant settings.
//!
//! The host file (`host.toml`) names the listener, the store and the runtime
//! limits; each tenant has a file of its own in `tenants_dir` (`<tenant>.toml`)
//! naming its plugins. Unknown keys are errors, secrets are only referenced
//! ([`SecretRef`]), and every error names the file and the key. Host settings
//! can be overridden by `BITBYLAW_<KEY>` variables, `__` separating sections:
//! `BITBYLAW_STORE__REDIS_URL=redis://...`. Every key is in `docs/configuration.md`.

mod access;
mod cron;
mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bitbylaw_core::upstream::{AccountSettings, UpstreamKind};
use ipnet::IpNet;
use serde::Deserialize;

pub use access::{ApiKeyConfig, ConsumerConfig, RouteRule, Routes, allowed};
pub use bitbylaw_core::secret::{Secret, SecretRef};
pub use cron::{CronExpr, parse_cron};
pub use load::{
    ConfigError, check_limits, check_subscription, is_identifier, is_version, load, load_host,
    load_tenant, parse_tenant, tenant_files, tenant_id,
};

/// Everything the host needs to start: its own settings and the tenants'.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: HostConfig,
    pub tenants: Vec<TenantConfig>,
    /// Tenant files that could not be read; reported, the others still run.
    pub broken: Vec<ConfigError>,
}

/// `host.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Address of the HTTP listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Folder of the tenant files, relative to the host file.
    #[serde(default = "defaults::tenants_dir")]
    pub tenants_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ingress: IngressConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub egress: EgressConfig,
    /// Limits every plugin gets unless its tenant file says otherwise.
    #[serde(default)]
    pub plugin_defaults: PluginLimits,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    #[serde(default)]
    pub components: ComponentsConfig,
    /// Folder the host file was read from; relative paths are taken from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `bitbylaw=debug,info`; `RUST_LOG` wins when set.
    #[serde(default = "defaults::log_filter")]
    pub filter: String,
    /// One line per request, event delivery and schedule run from the host
    /// itself (target `bitbylaw::access`), refused ones included.
    #[serde(default = "defaults::enabled")]
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: defaults::log_filter(),
            access: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// Peers whose `X-Consumer-*` headers (set by Kong) are believed. Everyone else must bring an API key.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            max_body_bytes: defaults::max_body_bytes(),
            shutdown_grace_ms: defaults::shutdown_grace_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `redis://host:port/db`. Without it the host keeps state in memory: not durable, not shared.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// A Redis Cluster instead: some of its nodes (`redis://host:port`), the
    /// client finds the rest. Excludes `redis_url`.
    #[serde(default)]
    pub redis_cluster: Vec<String>,
    /// The Redis password, if any; kept out of the URL so it never lands in a config file.
    #[serde(default)]
    pub redis_password: Option<SecretRef>,
    /// First part of every key, so several deployments can share one Redis.
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_cluster: Vec::new(),
            redis_password: None,
            key_prefix: defaults::key_prefix(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where compiled components are kept between restarts; relative to the host file.
    #[serde(default = "defaults::cache_dir")]
    pub cache_dir: PathBuf,
    /// Instances alive at once across all tenants (the pooling allocator's slots).
    #[serde(default = "defaults::max_instances")]
    pub max_instances: u32,
    /// Warm instances kept idle across all tenants and plugins (default: half of
    /// `max_instances`); each plugin keeps at most its own `max_idle_instances`.
    #[serde(default)]
    pub max_idle_instances: Option<usize>,
    /// Hard ceiling for one instance's linear memory; plugin limits must stay below it.
    #[serde(default = "defaults::max_memory_mb")]
    pub max_memory_mb: u64,
    /// How often a running guest yields to the scheduler (and can be stopped).
    #[serde(default = "defaults::epoch_tick_ms")]
    pub epoch_tick_ms: u64,
    /// What one instance may hold (each slot of the pool is sized for it): a
    /// component needing more is refused when it loads, so a plugin can
    /// never run the pool dry before `max_instances` are alive.
    #[serde(default)]
    pub slot: SlotConfig,
}

/// What one plugin instance may hold. `hello` in Rust is 3 core instances,
/// 1 memory and 2 tables; in Python (componentize-py 0.25) 14, 1 and 2. The
/// pool reserves `max_instances` times each figure.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    #[serde(default = "defaults::slot_core_instances")]
    pub core_instances: u32,
    #[serde(default = "defaults::slot_memories")]
    pub memories: u32,
    #[serde(default = "defaults::slot_tables")]
    pub tables: u32,
}

impl Default for SlotConfig {
    fn default() -> Self {
        Self {
            core_instances: defaults::slot_core_instances(),
            memories: defaults::slot_memories(),
            tables: defaults::slot_tables(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: defaults::cache_dir(),
            max_instances: defaults::max_instances(),
            max_idle_instances: None,
            max_memory_mb: defaults::max_memory_mb(),
            epoch_tick_ms: defaults::epoch_tick_ms(),
            slot: SlotConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Longest an outbound request may take, whatever the plugin asks for.
    #[serde(default = "defaults::egress_timeout_ms")]
    pub max_timeout_ms: u64,
    /// Largest outbound response body handed to a plugin.
    #[serde(default = "defaults::egress_max_response_bytes")]
    pub max_response_bytes: u64,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: defaults::egress_timeout_ms(),
            max_response_bytes: defaults::egress_max_response_bytes(),
        }
    }
}

/// The component store: plugin components by name and version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentsConfig {
    /// Folder of stored components (`<package>/<version>.wasm`), relative to the host file.
    #[serde(default = "defaults::components_dir")]
    pub dir: PathBuf,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        Self {
            dir: defaults::components_dir(),
        }
    }
}

/// Watching tenant files and their components for changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often tenant files and their components are checked; 0 turns reloading off.
    /// Polling rather than file events: it also sees changes that arrive through
    /// mounted volumes and symlink swaps (as with Kubernetes config maps).
    #[serde(default = "defaults::reload_poll_ms")]
    pub poll_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            poll_ms: defaults::reload_poll_ms(),
        }
    }
}

/// What operators' tools read: `/metrics` and the detail of `/ready`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Bearer token for `/metrics` and the detail of `/ready`. Without it,
    /// `/metrics` is open (keep the listener private) and `/ready` answers only
    /// its status; a bare `/ready` is always open, for probes.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Most series one tenant's plugins may keep on `/metrics` (the
    /// `metrics` interface); further ones are dropped with a warning.
    #[serde(default = "defaults::plugin_series_per_tenant")]
    pub plugin_series_per_tenant: usize,
    /// A plugin series unused this long leaves `/metrics` and frees its place.
    #[serde(default = "defaults::plugin_series_idle_s")]
    pub plugin_series_idle_s: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            token: None,
            plugin_series_per_tenant: defaults::plugin_series_per_tenant(),
            plugin_series_idle_s: defaults::plugin_series_idle_s(),
        }
    }
}

/// The admin API (`/admin/...`): off unless a token is configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for the admin routes.
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// Event delivery and schedules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// An event taken by an instance that then died is given to another after this long.
    /// Must exceed every subscriber's `deadline_ms`, or slow handlers get their events stolen.
    #[serde(default = "defaults::visibility_timeout_ms")]
    pub visibility_timeout_ms: u64,
    /// Event and schedule calls running at once in this host instance, across all tenants;
    /// keeps a flood of events from starving HTTP ingress.
    #[serde(default = "defaults::events_max_concurrent")]
    pub max_concurrent: usize,
    /// Events kept per topic stream (approximate trimming).
    #[serde(default = "defaults::max_stream_length")]
    pub max_stream_length: usize,
    /// Dead letters kept per tenant.
    #[serde(default = "defaults::max_dead_letters")]
    pub max_dead_letters: usize,
    /// How long one read waits for new events before checking for shutdown.
    #[serde(default = "defaults::read_block_ms")]
    pub read_block_ms: u64,
    /// How often due retries are moved back into delivery.
    #[serde(default = "defaults::retry_poll_ms")]
    pub retry_poll_ms: u64,
    /// Time zone schedules are evaluated in (IANA name).
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// Name of this instance as a consumer; default: host name, process id and a random suffix.
    #[serde(default)]
    pub consumer_name: Option<String>,
    /// Delivery settings every subscription gets unless its tenant file says otherwise.
    #[serde(default)]
    pub subscription_defaults: SubscriptionSettings,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            visibility_timeout_ms: defaults::visibility_timeout_ms(),
            max_concurrent: defaults::events_max_concurrent(),
            max_stream_length: defaults::max_stream_length(),
            max_dead_letters: defaults::max_dead_letters(),
            read_block_ms: defaults::read_block_ms(),
            retry_poll_ms: defaults::retry_poll_ms(),
            timezone: defaults::timezone(),
            consumer_name: None,
            subscription_defaults: SubscriptionSettings::default(),
        }
    }
}

/// Retries and concurrency of one subscription.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// Deliveries before an event goes to the dead letters (the first one included).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Each further retry waits this many times longer.
    #[serde(default = "defaults::backoff_factor")]
    pub backoff_factor: f64,
    /// Longest wait between two attempts.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Each delay varies by up to this share either way, so retries of many events spread out.
    #[serde(default = "defaults::backoff_jitter")]
    pub backoff_jitter: f64,
    /// Events of this subscription handled at once per host instance.
    #[serde(default = "defaults::subscription_concurrency")]
    pub concurrency: usize,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            backoff_base_ms: defaults::backoff_base_ms(),
            backoff_factor: defaults::backoff_factor(),
            backoff_max_ms: defaults::backoff_max_ms(),
            backoff_jitter: defaults::backoff_jitter(),
            concurrency: defaults::subscription_concurrency(),
        }
    }
}

/// `[plugins.<name>.subscriptions."<topic>"]` in a tenant file: overrides of `events.subscription_defaults`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionOverrides {
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_factor: Option<f64>,
    pub backoff_max_ms: Option<u64>,
    pub backoff_jitter: Option<f64>,
    pub concurrency: Option<usize>,
}

impl SubscriptionOverrides {
    pub fn apply(&self, defaults: &SubscriptionSettings) -> SubscriptionSettings {
        SubscriptionSettings {
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            backoff_base_ms: self.backoff_base_ms.unwrap_or(defaults.backoff_base_ms),
            backoff_factor: self.backoff_factor.unwrap_or(defaults.backoff_factor),
            backoff_max_ms: self.backoff_max_ms.unwrap_or(defaults.backoff_max_ms),
            backoff_jitter: self.backoff_jitter.unwrap_or(defaults.backoff_jitter),
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
        }
    }
}

/// `[plugins.<name>.schedules.<schedule>]` in a tenant file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleOverride {
    /// Replaces the plugin's own cron expression.
    #[serde(default)]
    pub cron: Option<CronExpr>,
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
}

/// How a plugin's instances live.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// Warm instances serve calls one at a time and are recycled after a budget.
    #[default]
    Pooled,
    /// A new instance for every call: nothing survives from one call to the next.
    Fresh,
}

/// Per-plugin limits. In `plugin_defaults` every key has a default; in a tenant
/// file each key is optional and falls back to `plugin_defaults`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    #[serde(default)]
    pub instance_mode: InstanceMode,
    /// Longest a single call may run; then the caller gets 504 and the instance is dropped.
    #[serde(default = "defaults::deadline_ms")]
    pub deadline_ms: u64,
    /// Most linear memory one instance may grow to; past it the call fails.
    #[serde(default = "defaults::memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// Calls a warm instance serves before it is replaced.
    #[serde(default = "defaults::max_calls_per_instance")]
    pub max_calls_per_instance: u32,
    /// A warm instance whose memory grew past this is replaced after its call.
    #[serde(default = "defaults::recycle_memory_mb")]
    pub recycle_memory_mb: u64,
    /// Warm instances kept idle per plugin.
    #[serde(default = "defaults::max_idle_instances")]
    pub max_idle_instances: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            instance_mode: InstanceMode::default(),
            deadline_ms: defaults::deadline_ms(),
            memory_limit_mb: defaults::memory_limit_mb(),
            max_calls_per_instance: defaults::max_calls_per_instance(),
            recycle_memory_mb: defaults::recycle_memory_mb(),
            max_idle_instances: defaults::max_idle_instances(),
        }
    }
}

/// The same limits with every key optional, as written in a tenant file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitOverrides {
    pub instance_mode: Option<InstanceMode>,
    pub deadline_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub max_calls_per_instance: Option<u32>,
    pub recycle_memory_mb: Option<u64>,
    pub max_idle_instances: Option<usize>,
}

impl PluginLimitOverrides {
    pub fn apply(&self, defaults: &PluginLimits) -> PluginLimits {
        PluginLimits {
            instance_mode: self.instance_mode.unwrap_or(defaults.instance_mode),
            deadline_ms: self.deadline_ms.unwrap_or(defaults.deadline_ms),
            memory_limit_mb: self.memory_limit_mb.unwrap_or(defaults.memory_limit_mb),
            max_calls_per_instance: self
                .max_calls_per_instance
                .unwrap_or(defaults.max_calls_per_instance),
            recycle_memory_mb: self.recycle_memory_mb.unwrap_or(defaults.recycle_memory_mb),
            max_idle_instances: self
                .max_idle_instances
                .unwrap_or(defaults.max_idle_instances),
        }
    }
}

/// `tenants/<id>.toml`: one law firm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// From the file name; letters, digits, `-` and `_`.
    #[serde(skip)]
    pub id: String,
    /// Kong consumers (their `custom_id` or `username`) that are this tenant;
    /// `{ name = ..., routes = [...] }` limits one to some routes.
    #[serde(default)]
    pub kong_consumers: Vec<ConsumerConfig>,
    /// The host's own API keys for this tenant, for use without Kong;
    /// `{ key = ..., routes = [...] }` limits one to some routes.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Put before every route of this tenant's plugins, e.g. `/firm-a`.
    #[serde(default)]
    pub route_prefix: String,
    /// What one tenant may use of the host, so it cannot crowd out the others.
    #[serde(default)]
    pub limits: TenantLimits,
    /// The firm's accounts with upstream systems, by name: `[upstreams.<name>]`
    /// with a `kind` and the kind's settings. Read into [`TenantConfig::accounts`].
    #[serde(default, rename = "upstreams")]
    pub(crate) upstream_tables: BTreeMap<String, toml::Table>,
    /// The older form of an Advoware account: `[advoware]` is read as
    /// `[upstreams.advoware]` with `kind = "advoware"`.
    #[serde(default, rename = "advoware")]
    pub(crate) legacy_advoware: Option<toml::Table>,
    /// Every upstream account, parsed and checked (secrets still unread).
    #[serde(skip)]
    pub accounts: BTreeMap<String, AccountConfig>,
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Folder the tenant file was read from; relative paths are taken from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file itself, for error messages.
    #[serde(skip)]
    pub file: PathBuf,
}

/// A plugin's own settings as the guest gets them: strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSettings(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for PluginSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, toml::Value>::deserialize(deserializer)?;
        table
            .into_iter()
            .map(|(key, value)| {
                setting_text(&value)
                    .map(|text| (key.clone(), text))
                    .map_err(|e| serde::de::Error::custom(format!("key `{key}`: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(PluginSettings)
    }
}

/// Plugin settings reach the guest as strings: scalars as text, tables and lists as JSON.
fn setting_text(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(n) => n.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => serde_json::to_string(value)
            .map_err(|e| format!("cannot be given to the plugin as JSON: {e}"))?,
    })
}

/// One upstream account of a tenant, parsed by its kind.
#[derive(Clone)]
pub struct AccountConfig {
    pub kind: &'static dyn UpstreamKind,
    pub settings: Arc<dyn AccountSettings>,
    /// Where it stands in the tenant file (`upstreams.<name>`, or `advoware`),
    /// for error messages.
    pub section: String,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("kind", &self.kind.name())
            .field("settings", &self.settings)
            .field("section", &self.section)
            .finish()
    }
}

/// `[limits]` in a tenant file. Absent keys mean no limit.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Requests per second through the ingress (token bucket refill, shared by all
    /// host instances through the store). Above it: 429.
    pub requests_per_second: Option<f64>,
    /// Requests allowed in a burst (bucket size); default: `requests_per_second` rounded up.
    pub burst: Option<u32>,
    /// Plugin calls (each on its own instance) running at once for this tenant in one
    /// host instance. Above it: 503 with `Retry-After`.
    pub max_concurrent_instances: Option<usize>,
    /// Bytes the tenant's plugins may keep in `kv` (keys' names plus values or
    /// set members, shared by all plugins). Growth past it answers
    /// `store-error.invalid`. Default 64 MiB.
    pub stored_bytes: Option<u64>,
}

impl TenantLimits {
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.unwrap_or(defaults::STORED_BYTES)
    }
}

/// `[plugins.<name>]` in a tenant file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A component file (`.wasm`), relative to the tenant file. Either this or `version`.
    #[serde(default)]
    pub component: Option<PathBuf>,
    /// A version from the component store (`components.dir/<package>/<version>.wasm`).
    #[serde(default)]
    pub version: Option<String>,
    /// The component's name in the store; default: the plugin's name.
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Overrides the tenant's `route_prefix` for this plugin.
    #[serde(default)]
    pub route_prefix: Option<String>,
    /// Routes of the plugin not to serve, as `"METHOD /path"` or `"/path"` (all methods).
    #[serde(default)]
    pub disabled_routes: Vec<String>,
    /// Origins (`https://host[:port]`) the plugin may call.
    #[serde(default)]
    pub allowed_origins: Vec<crate::egress::Origin>,
    /// The tenant's upstream accounts (`[upstreams.<name>]`) the plugin may use,
    /// at most one per kind.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// The older form of `upstreams = ["advoware"]`, for the `[advoware]` account.
    #[serde(default)]
    pub advoware: bool,
    /// `[plugins.<name>.limits]`: overrides of the host's `plugin_defaults`.
    #[serde(default)]
    pub limits: PluginLimitOverrides,
    /// The plugin's own settings, handed to it through the `config` interface:
    /// scalars as text, tables and lists as JSON.
    #[serde(default)]
    pub config: PluginSettings,
    /// The plugin's secrets, handed to it through the `secrets` interface.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Per topic the plugin subscribes to: retries and concurrency.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, SubscriptionOverrides>,
    /// Per schedule the plugin declares: another cron expression, or off.
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleOverride>,
}

mod defaults {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    pub fn plugin_series_per_tenant() -> usize {
        1_000
    }

    pub fn plugin_series_idle_s() -> u64 {
        3_600
    }

    /// 64 MiB: far above what a sync's bookkeeping needs, far below what
    /// would hurt a shared Redis.
    pub const STORED_BYTES: u64 = 64 << 20;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn tenants_dir() -> PathBuf {
        PathBuf::from("tenants")
    }
    pub fn log_filter() -> String {
        "info".into()
    }
    // Webhook payloads and proxied documents stay well below this; larger is likely abuse.
    pub fn max_body_bytes() -> usize {
        2 * 1024 * 1024
    }
    pub fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub fn key_prefix() -> String {
        "bitbylaw".into()
    }
    pub fn cache_dir() -> PathBuf {
        PathBuf::from(".cache/components")
    }
    pub fn max_instances() -> u32 {
        256
    }
    pub fn max_memory_mb() -> u64 {
        512
    }
    // 10 ms: fine enough to stop a runaway guest promptly, coarse enough to cost nothing.
    pub fn slot_core_instances() -> u32 {
        16
    }

    pub fn slot_memories() -> u32 {
        2
    }

    pub fn slot_tables() -> u32 {
        4
    }

    pub fn epoch_tick_ms() -> u64 {
        10
    }
    pub fn egress_timeout_ms() -> u64 {
        30_000
    }
    pub fn egress_max_response_bytes() -> u64 {
        16 * 1024 * 1024
    }
    pub fn deadline_ms() -> u64 {
        30_000
    }
    pub fn memory_limit_mb() -> u64 {
        64
    }
    pub fn max_calls_per_instance() -> u32 {
        10_000
    }
    pub fn recycle_memory_mb() -> u64 {
        32
    }
    pub fn max_idle_instances() -> usize {
        4
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn components_dir() -> PathBuf {
        PathBuf::from("components")
    }
    pub fn reload_poll_ms() -> u64 {
        1_000
    }
    pub fn visibility_timeout_ms() -> u64 {
        60_000
    }
    pub fn events_max_concurrent() -> usize {
        32
    }
    pub fn max_stream_length() -> usize {
        100_000
    }
    pub fn max_dead_letters() -> usize {
        10_000
    }
    pub fn read_block_ms() -> u64 {
        1_000
    }
    pub fn retry_poll_ms() -> u64 {
        100
    }
    pub fn timezone() -> String {
        "Europe/Berlin".into()
    }
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn backoff_base_ms() -> u64 {
        1_000
    }
    pub fn backoff_factor() -> f64 {
        2.0
    }
    pub fn backoff_max_ms() -> u64 {
        300_000
    }
    pub fn backoff_jitter() -> f64 {
        0.2
    }
    pub fn subscription_concurrency() -> usize {
        8
    }
}
