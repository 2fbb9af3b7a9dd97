//! Prometheus metrics for `/metrics`. Labels name tenants, plugins and routes,
//! never request contents or secrets.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    plugin: String,
    route: String,
    status: u16,
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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    guest_traps: Family<PluginLabels, Counter>,
    deadline_hits: Family<PluginLabels, Counter>,
    egress_refused: Family<PluginLabels, Counter>,
    instantiation: HistogramFamily<PluginLabels>,
}

fn request_buckets() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
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
        let mut registry = Registry::with_prefix("bitbylaw");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(request_buckets);
        let guest_traps = Family::<PluginLabels, Counter>::default();
        let deadline_hits = Family::<PluginLabels, Counter>::default();
        let egress_refused = Family::<PluginLabels, Counter>::default();
        let instantiation: HistogramFamily<PluginLabels> =
            Family::new_with_constructor(instantiation_buckets);
        registry.register(
            "http_requests",
            "HTTP requests served by plugins",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to plugin answer",
            request_duration.clone(),
        );
        registry.register(
            "guest_traps",
            "Plugin calls that ended in a trap",
            guest_traps.clone(),
        );
        registry.register(
            "deadline_hits",
            "Plugin calls stopped at their deadline",
            deadline_hits.clone(),
        );
        registry.register(
            "egress_refused",
            "Outbound requests refused by the allowlist",
            egress_refused.clone(),
        );
        registry.register(
            "instantiation_duration_seconds",
            "Time to create a plugin instance",
            instantiation.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                guest_traps,
                deadline_hits,
                egress_refused,
                instantiation,
            }),
        }
    }

    pub fn request(&self, tenant: &str, plugin: &str, route: &str, status: u16, elapsed: Duration) {
        let route_labels = RouteLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            route: route.to_owned(),
        };
        self.inner
            .request_duration
            .get_or_create(&route_labels)
            .observe(elapsed.as_secs_f64());
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                tenant: route_labels.tenant,
                plugin: route_labels.plugin,
                route: route_labels.route,
                status,
            })
            .inc();
    }

    pub fn guest_trap(&self, tenant: &str, plugin: &str) {
        self.inner
            .guest_traps
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

    /// The OpenMetrics text exposition, which Prometheus scrapes as is.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

fn labels(tenant: &str, plugin: &str) -> PluginLabels {
    PluginLabels {
        tenant: tenant.to_owned(),
        plugin: plugin.to_owned(),
    }
}
