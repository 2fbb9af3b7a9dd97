//! Prometheus metrics for `/metrics`. Labels name tenants, plugins and routes,
//! never request contents or secrets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    plugin: String,
    route: String,
    status: u16,
}

/// A request refused before a plugin: the tenant when known (empty when the
/// caller was not recognised), the status, and the refusal's code
/// (`unauthorized`, `not_found`, `rate_limited`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    tenant: String,
    status: u16,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    tenant: String,
    plugin: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    tenant: String,
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    tenant: String,
    plugin: String,
    topic: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    tenant: String,
    plugin: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamMethodLabels {
    tenant: String,
    kind: String,
    account: String,
    /// The API method, e.g. `events.list`.
    method: String,
    /// `ok`, or the error the plugin got (`not_found`, `rate_limited`, ...);
    /// empty for retries.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    tenant: String,
    /// The kind of account (`advoware`, ...), so every kind shares one family.
    kind: String,
    /// The account's name in the tenant file.
    account: String,
    outcome: String,
}

/// Which upstream account a figure is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLabel {
    pub tenant: String,
    pub kind: String,
    pub account: String,
}

/// One subscription's delivery figures, set before each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionGauges {
    pub backlog: u64,
    pub in_flight: u64,
    pub retrying: u64,
    pub dead: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    ready: Gauge,
    broken_tenants: Gauge,
    request_duration: HistogramFamily<RouteLabels>,
    guest_traps: Family<PluginLabels, Counter>,
    out_of_memory: Family<PluginLabels, Counter>,
    deadline_hits: Family<PluginLabels, Counter>,
    egress_refused: Family<PluginLabels, Counter>,
    instantiation: HistogramFamily<PluginLabels>,
    events: Family<EventLabels, Counter>,
    emitted: Family<SubscriptionLabels, Counter>,
    /// The same counts, readable: which plugin emits which topic (the
    /// dashboard's flow view draws its arrows from them).
    emitters: std::sync::Mutex<HashMap<SubscriptionLabels, u64>>,
    event_latency: HistogramFamily<SubscriptionLabels>,
    backlog: Family<SubscriptionLabels, Gauge>,
    in_flight: Family<SubscriptionLabels, Gauge>,
    retrying: Family<SubscriptionLabels, Gauge>,
    dead: Family<SubscriptionLabels, Gauge>,
    upstream_tokens: Family<UpstreamLabels, Counter>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_calls: Family<UpstreamMethodLabels, Counter>,
    upstream_retries: Family<UpstreamMethodLabels, Counter>,
    upstream_quota_wait: Family<UpstreamLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    groups_recreated: Family<TenantLabels, Counter>,
    stored_bytes: Family<TenantLabels, Gauge>,
    plugin_counters: Family<Vec<(String, String)>, Counter>,
    plugin_histograms: HistogramFamily<Vec<(String, String)>>,
    /// Each tenant's plugin series and when each was last used, to cap how
    /// many a tenant's plugins can keep and let unused ones go.
    plugin_series: std::sync::Mutex<HashMap<String, SeriesUse>>,
    plugin_limits: PluginSeriesLimits,
}

/// A plugin series (its labels) → when it was last used.
type SeriesUse = HashMap<Vec<(String, String)>, Instant>;

/// How many series one tenant's plugins may keep, and how long one unused
/// stays. A plugin labelling by request data fills its own tenant's share and
/// nothing else; `/metrics` holds at most tenants × `per_tenant` plugin series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginSeriesLimits {
    pub per_tenant: usize,
    pub idle: Duration,
}

impl Default for PluginSeriesLimits {
    fn default() -> Self {
        Self {
            per_tenant: 1_000,
            idle: Duration::from_secs(3_600),
        }
    }
}

/// What a plugin asked of its own metrics that the host refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginMetricRefused(pub String);

fn plugin_buckets() -> Histogram {
    // 1 ms to ~35 min: call durations to whole sync runs.
    Histogram::new(exponential_buckets(0.001, 2.0, 22))
}

fn request_buckets() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Event latency: fine steps in the few-milliseconds range the goals are about.
fn latency_buckets() -> Histogram {
    Histogram::new([
        0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015,
        0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

fn instantiation_buckets() -> Histogram {
    // 5 µs to ~20 ms.
    Histogram::new(exponential_buckets(0.000005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_plugin_limits(PluginSeriesLimits::default())
    }

    /// With other limits on plugin series (`[ops]` in the host file).
    pub fn with_plugin_limits(plugin_limits: PluginSeriesLimits) -> Self {
        let mut registry = Registry::with_prefix("bitbylaw");
        let requests = Family::<RequestLabels, Counter>::default();
        let refused = Family::<RefusedLabels, Counter>::default();
        let ready = Gauge::default();
        let broken_tenants = Gauge::default();
        registry.register(
            "ready",
            "1 when the host answers /ready with 200 (store reachable, tenants loaded), else 0",
            Listed(ready.clone()),
        );
        registry.register(
            "broken_tenants",
            "Tenants whose file or plugins could not be loaded (the running version, if any, keeps serving)",
            Listed(broken_tenants.clone()),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(request_buckets);
        let guest_traps = Family::<PluginLabels, Counter>::default();
        let out_of_memory = Family::<PluginLabels, Counter>::default();
        let deadline_hits = Family::<PluginLabels, Counter>::default();
        let egress_refused = Family::<PluginLabels, Counter>::default();
        let instantiation: HistogramFamily<PluginLabels> =
            Family::new_with_constructor(instantiation_buckets);
        registry.register(
            "http_requests",
            "HTTP requests served by plugins",
            Listed(requests.clone()),
        );
        registry.register(
            "http_refused",
            "HTTP requests the host refused before a plugin (no tenant, no route, too large, over the rate, no instance free)",
            Listed(refused.clone()),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to plugin answer",
            Listed(request_duration.clone()),
        );
        registry.register(
            "guest_traps",
            "Plugin calls that ended in a trap",
            Listed(guest_traps.clone()),
        );
        registry.register(
            "out_of_memory",
            "Plugin calls and instantiations that passed the plugin's memory limit (calls count as traps too)",
            Listed(out_of_memory.clone()),
        );
        registry.register(
            "deadline_hits",
            "Plugin calls stopped at their deadline",
            Listed(deadline_hits.clone()),
        );
        registry.register(
            "egress_refused",
            "Outbound requests refused by the allowlist",
            Listed(egress_refused.clone()),
        );
        registry.register(
            "instantiation_duration_seconds",
            "Time to create a plugin instance",
            Listed(instantiation.clone()),
        );
        let events = Family::<EventLabels, Counter>::default();
        let emitted = Family::<SubscriptionLabels, Counter>::default();
        registry.register(
            "events_emitted",
            "Events emitted by plugins, by tenant, emitting plugin and topic",
            Listed(emitted.clone()),
        );
        let event_latency: HistogramFamily<SubscriptionLabels> =
            Family::new_with_constructor(latency_buckets);
        let backlog = Family::<SubscriptionLabels, Gauge>::default();
        let in_flight = Family::<SubscriptionLabels, Gauge>::default();
        let retrying = Family::<SubscriptionLabels, Gauge>::default();
        let dead = Family::<SubscriptionLabels, Gauge>::default();
        registry.register(
            "events_handled",
            "Event deliveries by outcome (done, retry, dead)",
            Listed(events.clone()),
        );
        registry.register(
            "event_latency_seconds",
            "Time from emit to the end of a successful delivery",
            Listed(event_latency.clone()),
        );
        registry.register(
            "events_backlog",
            "Events not yet taken by any instance",
            Listed(backlog.clone()),
        );
        registry.register(
            "events_in_flight",
            "Events taken and not yet done",
            Listed(in_flight.clone()),
        );
        registry.register(
            "events_retrying",
            "Events waiting for their next attempt",
            Listed(retrying.clone()),
        );
        registry.register(
            "events_dead",
            "Events in the dead letters",
            Listed(dead.clone()),
        );
        let groups_recreated = Family::<TenantLabels, Counter>::default();
        registry.register(
            "event_groups_recreated",
            "Consumer groups created again after Redis lost them (data loss, fail-over to an empty replica)",
            Listed(groups_recreated.clone()),
        );
        let stored_bytes = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "tenant_stored_bytes",
            "Bytes a tenant's plugins keep in kv, as counted against limits.stored_bytes",
            Listed(stored_bytes.clone()),
        );
        let upstream_calls = Family::<UpstreamMethodLabels, Counter>::default();
        registry.register(
            "upstream_calls",
            "Calls of upstream APIs by kind, method and outcome as the plugin saw it (after the host's retries)",
            Listed(upstream_calls.clone()),
        );
        let upstream_retries = Family::<UpstreamMethodLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Attempts of upstream calls sent again (quota refusals, 5xx, broken connections)",
            Listed(upstream_retries.clone()),
        );
        let upstream_quota_wait =
            Family::<UpstreamLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "upstream_quota_wait_seconds",
            "Time calls waited for room in the account's shared quota buckets",
            Listed(upstream_quota_wait.clone()),
        );
        let upstream_tokens = Family::<UpstreamLabels, Counter>::default();
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_token_requests",
            "Token requests of upstream accounts by kind and outcome (ok, refused, failed)",
            Listed(upstream_tokens.clone()),
        );
        registry.register(
            "upstream_requests",
            "Requests to upstream APIs by kind and outcome (2xx, 3xx, 4xx except 401, 401, 5xx, timeout, connection, too_large)",
            Listed(upstream_requests.clone()),
        );
        let plugin_counters = Family::<Vec<(String, String)>, Counter>::default();
        let plugin_histograms: HistogramFamily<Vec<(String, String)>> =
            Family::new_with_constructor(plugin_buckets);
        registry.register(
            "plugin_counter",
            "Counters plugins keep themselves (metrics interface), by tenant, plugin, name and the plugin's labels",
            Listed(plugin_counters.clone()),
        );
        registry.register(
            "plugin_histogram",
            "Observations plugins record themselves (metrics interface), by tenant, plugin, name and the plugin's labels",
            Listed(plugin_histograms.clone()),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                refused,
                ready,
                broken_tenants,
                request_duration,
                guest_traps,
                out_of_memory,
                deadline_hits,
                egress_refused,
                instantiation,
                events,
                emitted,
                emitters: std::sync::Mutex::new(HashMap::new()),
                event_latency,
                backlog,
                in_flight,
                retrying,
                dead,
                upstream_tokens,
                upstream_requests,
                upstream_calls,
                upstream_retries,
                upstream_quota_wait,
                groups_recreated,
                stored_bytes,
                plugin_counters,
                plugin_histograms,
                plugin_series: std::sync::Mutex::new(HashMap::new()),
                plugin_limits,
            }),
        }
    }

    /// The request figures of one route, recorded without building labels per
    /// request (the ingress keeps one per route of a tenant's table).
    pub fn route(&self, tenant: &str, plugin: &str, route: &str) -> RouteMetrics {
        RouteMetrics {
            labels: RouteLabels {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
                route: route.to_owned(),
            },
            metrics: self.clone(),
            duration: std::sync::OnceLock::new(),
            by_status: std::sync::RwLock::new(Vec::new()),
        }
    }

    pub fn guest_trap(&self, tenant: &str, plugin: &str) {
        self.inner
            .guest_traps
            .get_or_create(&labels(tenant, plugin))
            .inc();
    }

    pub fn out_of_memory(&self, tenant: &str, plugin: &str) {
        self.inner
            .out_of_memory
            .get_or_create(&labels(tenant, plugin))
            .inc();
    }

    pub fn deadline_hit(&self, tenant: &str, plugin: &str) {
        self.inner
            .deadline_hits
            .get_or_create(&labels(tenant, plugin))
            .inc();
    }

    pub fn egress_refused(&self, tenant: &str, plugin: &str) {
        self.inner
            .egress_refused
            .get_or_create(&labels(tenant, plugin))
            .inc();
    }

    pub fn instantiated(&self, tenant: &str, plugin: &str, elapsed: Duration) {
        self.inner
            .instantiation
            .get_or_create(&labels(tenant, plugin))
            .observe(elapsed.as_secs_f64());
    }

    /// `count` events of `topic` emitted by `plugin`.
    pub fn events_emitted(&self, tenant: &str, plugin: &str, topic: &str, count: u64) {
        let labels = SubscriptionLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            topic: topic.to_owned(),
        };
        self.inner.emitted.get_or_create(&labels).inc_by(count);
        *crate::sync::lock(&self.inner.emitters)
            .entry(labels)
            .or_default() += count;
    }

    /// `(plugin, topic, events)` of what `tenant`'s plugins emitted since the start.
    pub fn emitters(&self, tenant: &str) -> Vec<(String, String, u64)> {
        let mut found: Vec<_> = crate::sync::lock(&self.inner.emitters)
            .iter()
            .filter(|(labels, _)| labels.tenant == tenant)
            .map(|(labels, count)| (labels.plugin.clone(), labels.topic.clone(), *count))
            .collect();
        found.sort();
        found
    }

    /// One event delivery ended with `outcome` (`done`, `retry`, `dead`);
    /// `emitted_at_us` in µs since the epoch. Builds the labels each time:
    /// a reader of one subscription keeps a [`SubscriptionMetrics`] instead.
    pub fn event_handled(
        &self,
        tenant: &str,
        plugin: &str,
        topic: &str,
        outcome: &str,
        emitted_at_us: u64,
    ) {
        self.subscription(tenant, plugin, topic)
            .handled(outcome, emitted_at_us);
    }

    /// One subscription's delivery figures, recorded without building labels
    /// per event (the Redis bus keeps one per subscription it reads).
    pub fn subscription(&self, tenant: &str, plugin: &str, topic: &str) -> SubscriptionMetrics {
        SubscriptionMetrics {
            labels: SubscriptionLabels {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
                topic: topic.to_owned(),
            },
            metrics: self.clone(),
            by_outcome: Default::default(),
            latency: std::sync::OnceLock::new(),
        }
    }

    /// Sets the delivery gauges of one subscription (done before each scrape).
    pub fn subscription_stats(
        &self,
        tenant: &str,
        plugin: &str,
        topic: &str,
        stats: SubscriptionGauges,
    ) {
        let labels = SubscriptionLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            topic: topic.to_owned(),
        };
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner
            .backlog
            .get_or_create(&labels)
            .set(as_gauge(stats.backlog));
        self.inner
            .in_flight
            .get_or_create(&labels)
            .set(as_gauge(stats.in_flight));
        self.inner
            .retrying
            .get_or_create(&labels)
            .set(as_gauge(stats.retrying));
        self.inner
            .dead
            .get_or_create(&labels)
            .set(as_gauge(stats.dead));
    }

    /// Sets what `tenant`'s plugins keep in kv (done before each scrape).
    pub fn tenant_stored_bytes(&self, tenant: &str, bytes: u64) {
        self.inner
            .stored_bytes
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A consumer group of `tenant` was gone and created again.
    pub fn event_group_recreated(&self, tenant: &str) {
        self.inner
            .groups_recreated
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    /// A token request of an upstream account ended with `outcome` (ok, refused, failed).
    pub fn upstream_token(&self, account: &UpstreamLabel, outcome: &str) {
        self.inner
            .upstream_tokens
            .get_or_create(&upstream(account, outcome))
            .inc();
    }

    /// A request to an upstream API ended with `outcome` (a status class or a failure).
    pub fn upstream_request(&self, account: &UpstreamLabel, outcome: &str) {
        self.inner
            .upstream_requests
            .get_or_create(&upstream(account, outcome))
            .inc();
    }

    /// An upstream API call ended, for the plugin, with `outcome`.
    pub fn upstream_call(&self, account: &UpstreamLabel, method: &str, outcome: &str) {
        self.inner
            .upstream_calls
            .get_or_create(&upstream_method(account, method, outcome))
            .inc();
    }

    /// An upstream API call is sent again.
    pub fn upstream_retry(&self, account: &UpstreamLabel, method: &str) {
        self.inner
            .upstream_retries
            .get_or_create(&upstream_method(account, method, ""))
            .inc();
    }

    /// A call waited this long for room in the account's quota.
    pub fn upstream_quota_wait(&self, account: &UpstreamLabel, waited: Duration) {
        self.inner
            .upstream_quota_wait
            .get_or_create(&upstream(account, ""))
            .inc_by(waited.as_secs_f64());
    }

    /// Adds to a plugin's counter; `labels` are checked by the caller.
    pub fn plugin_counter(
        &self,
        labels: Vec<(String, String)>,
        value: u64,
    ) -> Result<(), PluginMetricRefused> {
        self.admit_plugin_series(&labels)?;
        self.inner
            .plugin_counters
            .get_or_create(&labels)
            .inc_by(value);
        Ok(())
    }

    /// Records one observation in a plugin's histogram.
    pub fn plugin_observe(
        &self,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), PluginMetricRefused> {
        if !value.is_finite() {
            return Err(PluginMetricRefused(format!(
                "{value} is not a number to observe"
            )));
        }
        self.admit_plugin_series(&labels)?;
        self.inner
            .plugin_histograms
            .get_or_create(&labels)
            .observe(value);
        Ok(())
    }

    /// Takes a series in (or marks it used): within its tenant's share, after
    /// letting go of the tenant's series unused for `idle` when the share is full.
    fn admit_plugin_series(&self, labels: &[(String, String)]) -> Result<(), PluginMetricRefused> {
        let tenant = labels
            .iter()
            .find(|(key, _)| key == "tenant")
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        let now = Instant::now();
        let mut all = crate::sync::lock(&self.inner.plugin_series);
        let series = all.entry(tenant.to_owned()).or_default();
        if let Some(used) = series.get_mut(labels) {
            *used = now;
            return Ok(());
        }
        let limits = self.inner.plugin_limits;
        if series.len() >= limits.per_tenant {
            self.let_go_idle(series, now);
        }
        if series.len() >= limits.per_tenant {
            return Err(PluginMetricRefused(format!(
                "the tenant's plugins already keep {} series (ops.plugin_series_per_tenant)",
                limits.per_tenant
            )));
        }
        series.insert(labels.to_vec(), now);
        Ok(())
    }

    /// Drops the series of `series` unused for the idle time from `/metrics`.
    fn let_go_idle(&self, series: &mut SeriesUse, now: Instant) {
        let idle = self.inner.plugin_limits.idle;
        series.retain(|labels, used| {
            let keep = now.saturating_duration_since(*used) < idle;
            if !keep {
                self.inner.plugin_counters.remove(labels);
                self.inner.plugin_histograms.remove(labels);
            }
            keep
        });
    }

    /// How many plugin series `tenant` keeps now.
    pub fn plugin_series_of(&self, tenant: &str) -> usize {
        crate::sync::lock(&self.inner.plugin_series)
            .get(tenant)
            .map_or(0, HashMap::len)
    }

    /// The host's state as `/ready` sees it, set at each scrape.
    pub fn host_state(&self, ready: bool, broken_tenants: usize) {
        self.inner.ready.set(i64::from(ready));
        self.inner
            .broken_tenants
            .set(i64::try_from(broken_tenants).unwrap_or(i64::MAX));
    }

    /// A request refused before a plugin answered; `tenant` empty when the
    /// caller was not recognised. `reason` is one of the host's refusal codes,
    /// so the series stay few.
    pub fn http_refused(&self, tenant: &str, status: u16, reason: &'static str) {
        self.inner
            .refused
            .get_or_create(&RefusedLabels {
                tenant: tenant.to_owned(),
                status,
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes as is.
    /// Plugin series unused for the idle time are left out from now on.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        {
            let now = Instant::now();
            let mut all = crate::sync::lock(&self.inner.plugin_series);
            for series in all.values_mut() {
                self.let_go_idle(series, now);
            }
            all.retain(|_, series| !series.is_empty());
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// A metric listed in the exposition before its first series: every
/// family's `# HELP` and `# TYPE` are on `/metrics` from the start, so a
/// dashboard or an alert finds the name (and `tests/deploy.rs` can check
/// them) before the event it counts has happened.
#[derive(Debug)]
struct Listed<M>(M);

impl<M: prometheus_client::encoding::EncodeMetric> prometheus_client::encoding::EncodeMetric
    for Listed<M>
{
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// One route's request counter (by status) and duration histogram, taken from
/// the families once and then updated in place. Series appear on first use.
pub struct RouteMetrics {
    labels: RouteLabels,
    metrics: Metrics,
    duration: std::sync::OnceLock<Histogram>,
    by_status: std::sync::RwLock<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    /// Requests answered so far, by status (for the dashboard's traffic).
    pub fn totals(&self) -> Vec<(u16, u64)> {
        self.by_status
            .read()
            .map(|seen| seen.iter().map(|(status, c)| (*status, c.get())).collect())
            .unwrap_or_default()
    }

    /// One request answered with `status` after `elapsed`.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let inner = &self.metrics.inner;
        self.duration
            .get_or_init(|| inner.request_duration.get_or_create(&self.labels).clone())
            .observe(elapsed.as_secs_f64());
        // Counted under the read guard: no clone of the handle (two atomic
        // operations on a shared count) per request.
        let counted = self.by_status.read().ok().is_some_and(|seen| {
            seen.iter()
                .find(|(s, _)| *s == status)
                .map(|(_, c)| c.inc())
                .is_some()
        });
        if counted {
            return;
        }
        let counter = {
            let counter = inner
                .requests
                .get_or_create(&RequestLabels {
                    tenant: self.labels.tenant.clone(),
                    plugin: self.labels.plugin.clone(),
                    route: self.labels.route.clone(),
                    status,
                })
                .clone();
            if let Ok(mut seen) = self.by_status.write() {
                seen.push((status, counter.clone()));
            }
            counter
        };
        counter.inc();
    }
}

/// One subscription's outcome counters and emit-to-done latency, taken from
/// the families on first use and then updated in place.
pub struct SubscriptionMetrics {
    labels: SubscriptionLabels,
    metrics: Metrics,
    /// `done`, `retry`, `dead`.
    by_outcome: [std::sync::OnceLock<Counter>; 3],
    latency: std::sync::OnceLock<Histogram>,
}

impl SubscriptionMetrics {
    const OUTCOMES: [&'static str; 3] = ["done", "retry", "dead"];

    /// One delivery ended with `outcome`; `emitted_at_us` in µs since the epoch.
    pub fn handled(&self, outcome: &str, emitted_at_us: u64) {
        let inner = &self.metrics.inner;
        let counter = |outcome: &str| {
            inner
                .events
                .get_or_create(&EventLabels {
                    tenant: self.labels.tenant.clone(),
                    plugin: self.labels.plugin.clone(),
                    topic: self.labels.topic.clone(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        match Self::OUTCOMES.iter().position(|known| *known == outcome) {
            Some(i) => self.by_outcome[i].get_or_init(|| counter(outcome)).inc(),
            None => counter(outcome).inc(),
        };
        if outcome == "done" {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or_default();
            let latency = now_us.saturating_sub(emitted_at_us) as f64 / 1_000_000.0;
            self.latency
                .get_or_init(|| inner.event_latency.get_or_create(&self.labels).clone())
                .observe(latency);
        }
    }
}

fn labels(tenant: &str, plugin: &str) -> PluginLabels {
    PluginLabels {
        tenant: tenant.to_owned(),
        plugin: plugin.to_owned(),
    }
}

fn upstream_method(account: &UpstreamLabel, method: &str, outcome: &str) -> UpstreamMethodLabels {
    UpstreamMethodLabels {
        tenant: account.tenant.clone(),
        kind: account.kind.clone(),
        account: account.account.clone(),
        method: method.to_owned(),
        outcome: outcome.to_owned(),
    }
}

fn upstream(account: &UpstreamLabel, outcome: &str) -> UpstreamLabels {
    UpstreamLabels {
        tenant: account.tenant.clone(),
        kind: account.kind.clone(),
        account: account.account.clone(),
        outcome: outcome.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(tenant: &str, n: usize) -> Vec<(String, String)> {
        vec![
            ("tenant".into(), tenant.into()),
            ("plugin".into(), "p".into()),
            ("name".into(), "calls".into()),
            ("caller".into(), format!("c{n}")),
        ]
    }

    /// One tenant's plugin labelling by request data (50,000 series) fills its
    /// own share only: another tenant's series stay, and it can add new ones;
    /// `/metrics` stays small.
    #[test]
    fn a_plugin_making_50000_series_leaves_another_tenants_intact() {
        let metrics = Metrics::with_plugin_limits(PluginSeriesLimits {
            per_tenant: 1_000,
            idle: Duration::from_secs(3_600),
        });
        for n in 0..5 {
            metrics.plugin_counter(series("quiet", n), 1).unwrap();
        }
        let refused = (0..50_000)
            .filter(|n| metrics.plugin_counter(series("noisy", *n), 1).is_err())
            .count();
        assert_eq!(refused, 49_000);
        assert_eq!(metrics.plugin_series_of("noisy"), 1_000);
        for n in 0..10 {
            metrics.plugin_counter(series("quiet", n), 1).unwrap();
        }
        assert_eq!(metrics.plugin_series_of("quiet"), 10);
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"bitbylaw_plugin_counter_total{tenant="quiet",plugin="p",name="calls",caller="c4"} 2"#),
            "the quiet tenant's series are intact"
        );
        assert!(text.len() < 1024 * 1024, "{} bytes", text.len());
    }

    #[test]
    fn unused_series_expire_and_free_their_share() {
        let metrics = Metrics::with_plugin_limits(PluginSeriesLimits {
            per_tenant: 3,
            idle: Duration::ZERO,
        });
        for n in 0..3 {
            metrics.plugin_counter(series("t", n), 1).unwrap();
        }
        // Idle at once here: a fourth takes the place of the unused three.
        metrics.plugin_counter(series("t", 3), 1).unwrap();
        assert_eq!(metrics.plugin_series_of("t"), 1);
        let text = metrics.render().unwrap();
        assert!(!text.contains(r#"caller="c0""#), "{text}");
        assert_eq!(metrics.plugin_series_of("t"), 0, "let go at the scrape");
    }
}
