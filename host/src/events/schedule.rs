//! Schedules: cron expressions (optional seconds field) from the plugins'
//! self-descriptions, overridable per tenant, evaluated in the configured time
//! zone. Every instance fires every tick; the one that takes the schedule's run
//! lease in the store runs it, unless the tick was already completed. The
//! completion (the latest completed tick) is recorded after the run, so a tick
//! whose runner died is run by another instance once the lease has expired:
//! at least once per tick, normally once, and never two runs of one schedule at
//! the same time. After downtime, the latest missed tick runs once at start.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capabilities::wit_handler as wit;
use crate::config::EventsConfig;
use crate::store::Store;
use crate::tenants::{Registry, ScheduleSpec, Tenant};

/// The run lease outlives the plugin's deadline by this much, so it only
/// expires when its holder died.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// How often an instance waiting for another's run checks again.
const LEASE_POLL: Duration = Duration::from_millis(250);

/// How long a tick's completion is remembered: well past [`GIVE_UP_AFTER`].
const DONE_KEPT: Duration = Duration::from_secs(24 * 3600);

/// A tick not run within this long (the schedule's runs kept taking longer
/// than its period, or the store was down) is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3600);

/// The first tick strictly after `after`, in `zone`'s wall-clock time.
pub fn next_tick(cron: &Cron, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&zone), false)
        .ok()
        .map(|tick| tick.with_timezone(&Utc))
}

/// The latest tick at or before `at`.
pub fn latest_tick(cron: &Cron, zone: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&at.with_timezone(&zone), true)
        .ok()
        .map(|tick| tick.with_timezone(&Utc))
}

/// The tick to run at start after downtime: the latest tick at or before `now`,
/// when the schedule ran before (`last`, ms) and has not run it. One tick, however
/// many were missed; none on the very first start.
pub fn missed_tick(
    cron: &Cron,
    zone: Tz,
    last: Option<i64>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let latest = latest_tick(cron, zone, now)?;
    (last? < latest.timestamp_millis()).then_some(latest)
}

/// Where a schedule keeps its leases and completions.
fn keys(prefix: &str, tenant: &str, spec: &ScheduleSpec) -> String {
    format!("{prefix}:{{{tenant}}}:sched:{}:{}:", spec.plugin, spec.name)
}

/// Where a schedule keeps its latest completed tick.
fn last_key(keys: &str) -> String {
    format!("{keys}last")
}

/// The latest completed tick (ms) under a schedule's `keys`, if it ever ran.
async fn last_completed(
    store: &Store,
    keys: &str,
) -> Result<Option<i64>, crate::store::StoreError> {
    Ok(store
        .get(&last_key(keys))
        .await?
        .and_then(|bytes| String::from_utf8_lossy(&bytes).parse::<i64>().ok()))
}

/// A schedule as operators see it.
#[derive(Debug, serde::Serialize)]
pub struct ScheduleView {
    pub plugin: String,
    pub name: String,
    pub cron: String,
    /// The latest completed tick (RFC 3339), across instances.
    pub last_completed: Option<String>,
    /// The next tick (RFC 3339).
    pub next: Option<String>,
}

/// Every schedule of `tenant` with its latest completed and next tick.
pub async fn overview(
    store: &Store,
    prefix: &str,
    config: &EventsConfig,
    tenant: &Tenant,
) -> Result<Vec<ScheduleView>, crate::store::StoreError> {
    let zone = Tz::from_str(&config.timezone).unwrap_or(chrono_tz::Europe::Berlin);
    let now = Utc::now();
    let mut views = Vec::with_capacity(tenant.schedules.len());
    for spec in &tenant.schedules {
        let last = last_completed(store, &keys(prefix, &tenant.id, spec))
            .await?
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        views.push(ScheduleView {
            plugin: spec.plugin.clone(),
            name: spec.name.clone(),
            cron: spec.expression.clone(),
            last_completed: last.map(|at| at.to_rfc3339()),
            next: next_tick(&spec.cron, zone, now).map(|at| at.to_rfc3339()),
        });
    }
    Ok(views)
}

/// Starts one task per schedule of `tenant`; they stop with `token`.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    tracker: &TaskTracker,
    registry: &Arc<Registry>,
    tenant: &Tenant,
    store: &Store,
    prefix: &str,
    config: &EventsConfig,
    global: Arc<Semaphore>,
    token: CancellationToken,
) {
    let zone = Tz::from_str(&config.timezone).unwrap_or(chrono_tz::Europe::Berlin);
    for spec in &tenant.schedules {
        let runner = Runner {
            registry: registry.clone(),
            tenant: tenant.id.clone(),
            spec: spec.clone(),
            store: store.clone(),
            zone,
            keys: keys(prefix, &tenant.id, spec),
            instance: format!(
                "{}-{}",
                config.consumer_name.as_deref().unwrap_or("host"),
                uuid::Uuid::new_v4().simple()
            ),
            global: global.clone(),
            token: token.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(runner.run());
    }
}

struct Runner {
    registry: Arc<Registry>,
    tenant: String,
    spec: ScheduleSpec,
    store: Store,
    zone: Tz,
    keys: String,
    instance: String,
    global: Arc<Semaphore>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Runner {
    async fn run(self) {
        let runner = Arc::new(self);
        let now = Utc::now();
        runner.catch_up(now).await;
        let mut after = now;
        loop {
            let Some(tick) = next_tick(&runner.spec.cron, runner.zone, after) else {
                tracing::warn!(tenant = %runner.tenant, schedule = %runner.spec.name, "schedule has no further ticks");
                return;
            };
            // Sleep in steps, so a wall-clock jump does not leave us far off.
            loop {
                let left = (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    () = runner.token.cancelled() => return,
                    () = tokio::time::sleep(left.min(Duration::from_secs(60))) => {}
                }
            }
            let fire = runner.clone();
            runner.tracker.spawn(async move { fire.fire(tick).await });
            after = tick;
        }
    }

    /// Runs the latest missed tick once, if the schedule ran before and missed one.
    async fn catch_up(&self, now: DateTime<Utc>) {
        let last = match last_completed(&self.store, &self.keys).await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %error, "cannot read the schedule's last tick");
                return;
            }
        };
        if let Some(missed) = missed_tick(&self.spec.cron, self.zone, last, now) {
            tracing::info!(tenant = %self.tenant, schedule = %self.spec.name, %missed, "running the latest missed tick");
            self.fire(missed).await;
        } else if last.is_none() {
            // First start: nothing was missed; remember where we are.
            if let Some(latest) = latest_tick(&self.spec.cron, self.zone, now) {
                let _ = self
                    .store
                    .set(
                        &last_key(&self.keys),
                        latest.timestamp_millis().to_string().as_bytes(),
                        None,
                    )
                    .await;
            }
        }
    }

    /// Runs `tick` here unless another instance does or did: waits while
    /// another holds the run lease (its run, or an earlier tick's), and runs it
    /// when the tick is still not completed once the lease is free.
    async fn fire(&self, tick: DateTime<Utc>) {
        let at = tick.timestamp_millis();
        let started = tokio::time::Instant::now();
        loop {
            match self.completed(at).await {
                Ok(true) => return,
                Ok(false) => match self.try_run(at).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %error, "cannot take the schedule's run lease; trying again")
                    }
                },
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %error, "cannot read the schedule's last run; trying again")
                }
            }
            if started.elapsed() > GIVE_UP_AFTER {
                tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %tick, "tick not run within an hour; given up");
                return;
            }
            tokio::select! {
                () = self.token.cancelled() => return,
                () = tokio::time::sleep(LEASE_POLL) => {}
            }
        }
    }

    /// Whether tick `at` was completed (by any instance).
    async fn completed(&self, at: i64) -> Result<bool, crate::store::StoreError> {
        Ok(self.store.get(&self.done_key(at)).await?.is_some())
    }

    fn done_key(&self, at: i64) -> String {
        format!("{}done:{at}", self.keys)
    }

    /// Takes the run lease and runs tick `at` if still not completed; false
    /// when another instance holds the lease.
    async fn try_run(&self, at: i64) -> Result<bool, crate::store::StoreError> {
        let plugin = self
            .registry
            .current()
            .tenant(&self.tenant)
            .and_then(|tenant| tenant.plugins.get(&self.spec.plugin).cloned());
        let Some(plugin) = plugin else {
            return Ok(true); // taken out meanwhile: nothing to run
        };
        let Ok(_permit) = self.global.clone().acquire_owned().await else {
            return Ok(true);
        };
        let lease_key = format!("{}running", self.keys);
        let lease = Duration::from_millis(plugin.pool().limits().deadline_ms) + LEASE_MARGIN;
        if !self
            .store
            .lock_acquire(&lease_key, &self.instance, lease)
            .await?
        {
            return Ok(false);
        }
        // Under the lease: no one else runs now, so the check cannot race a run.
        let done = match self.completed(at).await {
            Ok(done) => done,
            Err(error) => {
                let _ = self.store.lock_release(&lease_key, &self.instance).await;
                return Err(error);
            }
        };
        if !done {
            self.call(&plugin, at).await;
            if let Err(error) = self.record_completed(at).await {
                tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %error, "cannot record the completed tick; it may run again");
            }
        }
        let _ = self.store.lock_release(&lease_key, &self.instance).await;
        Ok(true)
    }

    /// Marks tick `at` completed, and moves the latest completed tick (what the
    /// catch-up after downtime looks at) forward. Ticks can complete out of
    /// order (one waited for a dead instance's lease), so each has its marker.
    async fn record_completed(&self, at: i64) -> Result<(), crate::store::StoreError> {
        self.store
            .set(&self.done_key(at), b"1", Some(DONE_KEPT))
            .await?;
        let last = last_completed(&self.store, &self.keys).await?;
        if last.is_none_or(|last| last < at) {
            self.store
                .set(&last_key(&self.keys), at.to_string().as_bytes(), None)
                .await?;
        }
        Ok(())
    }

    async fn call(&self, plugin: &crate::runtime::LoadedPlugin, at: i64) {
        let tick = wit::Tick {
            name: self.spec.name.clone(),
            scheduled_at: u64::try_from(at).unwrap_or(0),
        };
        let started = tokio::time::Instant::now();
        let outcome = match plugin.handle_schedule(tick).await {
            Ok(Ok(())) => "done",
            Ok(Err(error)) => {
                tracing::warn!(tenant = %self.tenant, plugin = %self.spec.plugin, schedule = %self.spec.name, ?error, "schedule run failed");
                "failed"
            }
            Err(error) => {
                tracing::error!(tenant = %self.tenant, plugin = %self.spec.plugin, schedule = %self.spec.name, %error, "schedule run crashed");
                "crashed"
            }
        };
        tracing::info!(
            target: crate::telemetry::ACCESS,
            tenant = %self.tenant,
            plugin = %self.spec.plugin,
            schedule = %self.spec.name,
            scheduled_at = at,
            outcome,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "schedule run"
        );
    }
}

/// `Utc.with_ymd_and_hms` for tests and examples.
pub fn utc(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cron;

    fn ticks(expression: &str, from: DateTime<Utc>, count: usize) -> Vec<String> {
        let cron = parse_cron(expression).unwrap();
        let mut after = from;
        (0..count)
            .map(|_| {
                after = next_tick(&cron, chrono_tz::Europe::Berlin, after).unwrap();
                after.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn local_time_stays_right_across_spring_forward() {
        // 2026-03-29 02:00 CET → 03:00 CEST: 09:00 local moves from 08:00Z to 07:00Z.
        let from = utc(2026, 3, 27, 12, 0, 0).unwrap();
        assert_eq!(
            ticks("0 9 * * *", from, 3),
            vec![
                "2026-03-28T08:00:00+00:00",
                "2026-03-29T07:00:00+00:00",
                "2026-03-30T07:00:00+00:00"
            ]
        );
    }

    #[test]
    fn local_time_stays_right_across_fall_back() {
        // 2026-10-25 03:00 CEST → 02:00 CET: 09:00 local moves from 07:00Z to 08:00Z.
        let from = utc(2026, 10, 23, 12, 0, 0).unwrap();
        assert_eq!(
            ticks("0 0 9 * * *", from, 3),
            vec![
                "2026-10-24T07:00:00+00:00",
                "2026-10-25T08:00:00+00:00",
                "2026-10-26T08:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_runs_once_right_after_it() {
        // 02:30 does not exist on 2026-03-29; the job runs at 03:00 CEST (01:00Z) that day.
        let from = utc(2026, 3, 28, 12, 0, 0).unwrap();
        assert_eq!(
            ticks("30 2 * * *", from, 2),
            vec!["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn a_fixed_time_in_the_autumn_overlap_runs_once() {
        // 02:30 happens twice on 2026-10-25 (00:30Z in CEST, 01:30Z in CET): run the first only.
        let from = utc(2026, 10, 24, 12, 0, 0).unwrap();
        assert_eq!(
            ticks("30 2 * * *", from, 2),
            vec!["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn latest_tick_finds_the_missed_one() {
        let cron = parse_cron("0 */15 * * * *").unwrap();
        let at = utc(2026, 11, 27, 10, 7, 0).unwrap();
        let latest = latest_tick(&cron, chrono_tz::Europe::Berlin, at).unwrap();
        assert_eq!(latest.to_rfc3339(), "2026-11-27T10:00:00+00:00");
    }

    #[test]
    fn after_downtime_only_the_latest_missed_tick_runs() {
        let cron = parse_cron("0 0 * * * *").unwrap(); // hourly
        let zone = chrono_tz::Europe::Berlin;
        let now = utc(2026, 11, 27, 15, 20, 0).unwrap();
        let last_run = utc(2026, 11, 27, 11, 0, 0).unwrap().timestamp_millis();
        // Down since 11:00: 12, 13, 14 and 15 o'clock were missed; only 15:00 runs.
        let missed = missed_tick(&cron, zone, Some(last_run), now).unwrap();
        assert_eq!(missed.to_rfc3339(), "2026-11-27T15:00:00+00:00");
        // Ran at 15:00 already: nothing to catch up.
        let ran = utc(2026, 11, 27, 15, 0, 0).unwrap().timestamp_millis();
        assert_eq!(missed_tick(&cron, zone, Some(ran), now), None);
        // First start ever: nothing was missed.
        assert_eq!(missed_tick(&cron, zone, None, now), None);
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
    }
}
