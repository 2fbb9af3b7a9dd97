//! Requests by tenant, plugin and status over the last minutes, for the
//! dashboard. The routes' own counters (`RouteMetrics`, the ones `/metrics`
//! shows) are sampled every [`EVERY`], and once more when the dashboard asks,
//! into a ring covering [`KEPT_FOR_MS`], so the request path pays nothing for
//! it. Each host instance shows what it served.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use crate::host::Host;
use crate::tenants::Deployment;

/// How often the counters are read.
pub const EVERY: Duration = Duration::from_secs(10);

/// How far back the samples go (one older sample stays, as the baseline).
const KEPT_FOR_MS: u64 = 15 * 60 * 1000;

/// At most this many samples, however often the dashboard asks.
const MOST_SAMPLES: usize = 400;

/// `(tenant, plugin, status)` → requests answered so far.
type Totals = HashMap<(String, String, u16), u64>;

#[derive(Default)]
pub struct Traffic {
    samples: Mutex<VecDeque<(u64, Totals)>>,
}

/// One series of the answer: a tenant's plugin's requests of one status,
/// counted per step.
#[derive(Debug, serde::Serialize)]
pub struct Series {
    pub tenant: String,
    pub plugin: String,
    pub status: u16,
    /// `[end of the step in ms since the epoch, requests in the step]`.
    pub points: Vec<(u64, u64)>,
}

impl Traffic {
    /// Reads every route's counters of `deployment` now.
    pub fn sample(&self, deployment: &Deployment, now_ms: u64) {
        let mut totals = Totals::new();
        for tenant in deployment.tenants() {
            for entry in tenant.routes.entries() {
                let plugin = &entry.plugin.context().name;
                for (status, count) in entry.metrics.totals() {
                    *totals
                        .entry((tenant.id.clone(), plugin.clone(), status))
                        .or_default() += count;
                }
            }
        }
        let mut samples = bitbylaw_core::sync::lock(&self.samples);
        samples.push_back((now_ms, totals));
        let horizon = now_ms.saturating_sub(KEPT_FOR_MS);
        while samples.len() > MOST_SAMPLES || samples.get(1).is_some_and(|(at, _)| *at <= horizon) {
            samples.pop_front();
        }
    }

    /// The requests of each step between samples, per tenant, plugin and
    /// status; steps without requests are left out.
    pub fn series(&self) -> Vec<Series> {
        let samples = bitbylaw_core::sync::lock(&self.samples);
        let mut series: HashMap<(String, String, u16), Vec<(u64, u64)>> = HashMap::new();
        for pair in samples.iter().collect::<Vec<_>>().windows(2) {
            let ((_, before), (at, after)) = (pair[0], pair[1]);
            for (key, total) in after {
                // A counter that went down (a tenant removed and added again)
                // starts over: count what is there.
                let previous = before.get(key).copied().unwrap_or(0);
                let step = if *total >= previous {
                    total - previous
                } else {
                    *total
                };
                if step > 0 {
                    series.entry(key.clone()).or_default().push((*at, step));
                }
            }
        }
        let mut series: Vec<Series> = series
            .into_iter()
            .map(|((tenant, plugin, status), points)| Series {
                tenant,
                plugin,
                status,
                points,
            })
            .collect();
        series.sort_by(|a, b| {
            (&a.tenant, &a.plugin, a.status).cmp(&(&b.tenant, &b.plugin, b.status))
        });
        series
    }
}

/// Samples `host`'s traffic every [`EVERY`] while the host lives.
pub async fn sample_while_alive(host: Weak<Host>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Some(host) = host.upgrade() else {
            return;
        };
        host.traffic()
            .sample(&host.registry().current(), crate::events::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(entries: &[(&str, u16, u64)]) -> Totals {
        entries
            .iter()
            .map(|(plugin, status, n)| (("t".to_owned(), (*plugin).to_owned(), *status), *n))
            .collect()
    }

    #[test]
    fn steps_are_the_differences_between_samples() {
        let traffic = Traffic::default();
        {
            let mut samples = traffic.samples.lock().unwrap();
            samples.push_back((0, totals(&[("a", 200, 5)])));
            samples.push_back((10_000, totals(&[("a", 200, 8), ("a", 500, 1)])));
            samples.push_back((20_000, totals(&[("a", 200, 8), ("a", 500, 1)])));
            samples.push_back((30_000, totals(&[("a", 200, 2)])));
        }
        let series = traffic.series();
        let points: Vec<(u16, Vec<(u64, u64)>)> =
            series.into_iter().map(|s| (s.status, s.points)).collect();
        assert_eq!(
            points,
            vec![
                (200, vec![(10_000, 3), (30_000, 2)]),
                (500, vec![(10_000, 1)])
            ]
        );
    }
}
