//! Schedules: cron expressions (optional seconds field) from the plugins'
//! self-descriptions, overridable per tenant, evaluated in the configured time
//! zone. Each tick runs once across all host instances: the first instance to
//! claim the tick in the store runs it. After downtime, the latest missed tick
//! runs once at start, not once per missed tick.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capabilities::wit_handler as wit;
use crate::config::EventsConfig;
use crate::runtime::{Registry, Tenant};
use crate::store::Store;

/// How long a tick's claim is kept: long past any clock skew between instances.
const CLAIM_TTL: Duration = Duration::from_secs(600);

/// A schedule of one plugin of one tenant, as it will run.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub plugin: String,
    pub name: String,
    pub expression: String,
    pub cron: Cron,
}

/// Parses a cron expression with five or six fields (seconds first when six).
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| format!("invalid cron expression `{expression}`: {e}"))
}

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
            keys: format!(
                "{prefix}:{{{}}}:sched:{}:{}:",
                tenant.id, spec.plugin, spec.name
            ),
            instance: uuid::Uuid::new_v4().simple().to_string(),
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
        let last_key = format!("{}last", self.keys);
        let last = match self.store.get(&last_key).await {
            Ok(value) => {
                value.and_then(|bytes| String::from_utf8_lossy(&bytes).parse::<i64>().ok())
            }
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
                        &last_key,
                        latest.timestamp_millis().to_string().as_bytes(),
                        None,
                    )
                    .await;
            }
        }
    }

    async fn fire(&self, tick: DateTime<Utc>) {
        let at = tick.timestamp_millis();
        let claim = format!("{}tick:{at}", self.keys);
        match self
            .store
            .lock_acquire(&claim, &self.instance, CLAIM_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => return, // another instance runs this tick
            Err(error) => {
                tracing::warn!(tenant = %self.tenant, schedule = %self.spec.name, %error, "cannot claim the tick; skipped here");
                return;
            }
        }
        let last_key = format!("{}last", self.keys);
        let _ = self
            .store
            .set(&last_key, at.to_string().as_bytes(), None)
            .await;
        let Ok(_permit) = self.global.clone().acquire_owned().await else {
            return;
        };
        let plugin = self
            .registry
            .current()
            .tenant(&self.tenant)
            .and_then(|tenant| tenant.plugins.get(&self.spec.plugin).cloned());
        let Some(plugin) = plugin else {
            return;
        };
        let tick = wit::Tick {
            name: self.spec.name.clone(),
            scheduled_at: u64::try_from(at).unwrap_or(0),
        };
        match plugin.handle_schedule(tick).await {
            Ok(Ok(())) => {
                tracing::debug!(tenant = %self.tenant, plugin = %self.spec.plugin, schedule = %self.spec.name, "schedule ran")
            }
            Ok(Err(error)) => {
                tracing::warn!(tenant = %self.tenant, plugin = %self.spec.plugin, schedule = %self.spec.name, ?error, "schedule run failed")
            }
            Err(error) => {
                tracing::error!(tenant = %self.tenant, plugin = %self.spec.plugin, schedule = %self.spec.name, %error, "schedule run crashed")
            }
        }
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
