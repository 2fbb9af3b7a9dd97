//! One employee's run, in phases: take the lock, **read** both sides and the
//! state ([`read`]), **plan** every write with a pure function ([`plan`]),
//! check the safeguards, then **apply** the plan with the lease checked
//! before each write ([`apply`]), and save the state, fenced the same way
//! ([`lease`]).

mod apply;
mod lease;
pub mod plan;
pub mod read;

use std::time::Instant;

use bitbylaw_sdk::google_calendar::{GoogleError, Mailbox};
use bitbylaw_sdk::lock;
use bitbylaw_sdk::{Error, info, kv, metrics};
use chrono::{NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use lease::{Holder, LIVE_FOR};

use crate::settings::Settings;
use crate::state::{EMPLOYEES_KEY, EmployeeState, Report, lock_name, report_key};
use apply::Apply;
use lease::Fence;
use plan::Rules;

/// Why a run did not complete.
#[derive(Debug)]
pub enum RunError {
    /// A safeguard stopped it before any write; retrying will not help.
    Refused(String),
    /// An upstream or the store failed; a later run may succeed.
    Failed(String),
    /// Its lease was lost (ran out, or freed by an operator): it stopped
    /// before its next write, since another run may be writing now.
    LeaseLost(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Refused(m) | RunError::Failed(m) | RunError::LeaseLost(m) => f.write_str(m),
        }
    }
}

impl From<Error> for RunError {
    fn from(error: Error) -> Self {
        RunError::Failed(error.to_string())
    }
}

fn google_failed(what: &str, error: GoogleError) -> RunError {
    RunError::Failed(format!("Google {what}: {}", Error::from(error)))
}

/// The Google event id for an Advoware appointment: base32hex of
/// `sha256("{namespace}:{frNr}")`, so a retried or repeated create finds the
/// event it made (409) instead of making a second one.
pub fn event_id(namespace: &str, fr_nr: i64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = Sha256::digest(format!("{namespace}:{fr_nr}").as_bytes());
    let mut id = String::from("adv");
    // 25 characters of 5 bits each from the first 16 bytes.
    let mut bits: u128 = 0;
    for byte in &digest[..16] {
        bits = (bits << 8) | u128::from(*byte);
    }
    for i in 0..25 {
        let index = ((bits >> (i * 5)) & 31) as usize;
        id.push(char::from(ALPHABET[index]));
    }
    id
}

/// The Advoware window of a run started today (Berlin).
fn window(settings: &Settings) -> (NaiveDate, NaiveDate) {
    let today = Utc::now().with_timezone(&crate::model::BERLIN).date_naive();
    (
        today - chrono::Days::new(u64::from(settings.days_back)),
        today + chrono::Days::new(u64::from(settings.days_ahead)),
    )
}

/// Runs the sync of one employee (`kuerzel` in its one form, upper case)
/// under its lock; `Ok` with outcome `skipped` when another run holds it.
pub fn run_employee(
    settings: &Settings,
    kuerzel: &str,
    full_content: bool,
) -> Result<Report, RunError> {
    let started = Instant::now();
    let mut report = Report {
        kuerzel: kuerzel.to_owned(),
        outcome: "ok".into(),
        started_at: Utc::now().to_rfc3339(),
        full_content,
        ..Report::default()
    };
    let Some(mailbox) = settings.mailbox(kuerzel) else {
        return Err(RunError::Refused(format!(
            "employee {kuerzel} has no mailbox in the setting `mailboxes`"
        )));
    };
    let Some(lease) = lock::hold(&lock_name(kuerzel), settings.lock_ttl()).map_err(Error::from)?
    else {
        info!(
            "calendar sync of {} skipped: another run holds its lock",
            kuerzel
        );
        report.outcome = "skipped".into();
        metrics::counter_add(
            "calendar_runs",
            &[("employee", kuerzel), ("outcome", "skipped")],
            1,
        );
        return Ok(report);
    };
    let mut fence = Fence::held(lease, kuerzel);
    let rules = Rules::new(settings, kuerzel, full_content, window(settings));
    let result = run(
        settings,
        &rules,
        &Mailbox::new(mailbox),
        &mut fence,
        &mut report,
    );
    fence.release();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Err(error) = &result {
        report.outcome = "failed".into();
        report.error = Some(error.to_string());
    }
    record_metrics(&report);
    // The report is for people looking; failing to keep it fails nothing.
    let _ = kv::set_json(&report_key(kuerzel), &report, None);
    let _ = kv::set_add(EMPLOYEES_KEY, &[kuerzel.to_owned()]);
    result.map(|()| report)
}

fn run(
    settings: &Settings,
    rules: &Rules,
    mailbox: &Mailbox,
    fence: &mut Fence,
    report: &mut Report,
) -> Result<(), RunError> {
    // Read.
    let mut state = EmployeeState::load(&rules.kuerzel)?;
    let known_calendar = state.calendar_id.clone();
    let Some(calendar) = read::calendar(
        mailbox,
        &settings.calendar_name,
        &rules.kuerzel,
        &mut state,
        true,
    )?
    else {
        return Err(RunError::Failed("no calendar".into()));
    };
    if known_calendar.is_none() {
        fence.check()?;
        state.save(&rules.kuerzel)?;
    }
    let next_sync_token = read::google(&calendar, &mut state, report)?;
    let mut advoware = read::advoware_window(&rules.kuerzel, rules.from, rules.to, report)?;
    if let Some(why) = rules.empty_advoware(&state, &advoware) {
        return Err(RunError::Refused(why));
    }
    read::advoware_beyond_window(&mut advoware, &state, rules.from, rules.to, report);

    // Plan.
    let plan = rules.plan(&state, &advoware);
    for note in &plan.unsupported {
        report.note_unsupported(note.clone());
    }
    report.conflicts += plan.conflicts;
    if let Some(why) = plan.refused {
        return Err(RunError::Refused(why));
    }

    // Apply, then save what the writes left in the mirror.
    Apply {
        rules,
        calendar: &calendar,
        fence,
        report,
    }
    .all(&plan.decisions, &mut state, &advoware)?;
    if let Some(token) = next_sync_token {
        state.sync_token = Some(token);
    }
    state.prune(rules.from, &rules.id_namespace);
    fence.check()?;
    state.save(&rules.kuerzel)?;
    info!(
        "calendar sync of {} done: {} writes to Google, {} to Advoware",
        rules.kuerzel,
        report.google.total(),
        report.advoware.total();
        "conflicts" => report.conflicts,
        "failures" => report.failures.len()
    );
    Ok(())
}

/// What `verify` says a run would do.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub kuerzel: String,
    pub calendar_id: Option<String>,
    pub advoware_appointments: usize,
    pub linked_events: usize,
    pub planned: Vec<Planned>,
    /// The safeguard that would stop the run.
    pub refused: Option<String>,
    pub unsupported: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Planned {
    pub fr_nr: Option<i64>,
    pub event_id: Option<String>,
    pub action: String,
}

/// What a run of `kuerzel` would do now; writes nothing, takes no lock.
pub fn verify_employee(
    settings: &Settings,
    kuerzel: &str,
    full_content: bool,
) -> Result<Verification, RunError> {
    let Some(mailbox) = settings.mailbox(kuerzel) else {
        return Err(RunError::Refused(format!(
            "employee {kuerzel} has no mailbox in the setting `mailboxes`"
        )));
    };
    let rules = Rules::new(settings, kuerzel, full_content, window(settings));
    let mut report = Report::default();
    let mut state = EmployeeState::load(kuerzel)?;
    let calendar = read::calendar(
        &Mailbox::new(mailbox),
        &settings.calendar_name,
        kuerzel,
        &mut state,
        false,
    )?;
    if let Some(calendar) = &calendar {
        read::google(calendar, &mut state, &mut report)?;
    }
    let mut advoware = read::advoware_window(kuerzel, rules.from, rules.to, &mut report)?;
    read::advoware_beyond_window(&mut advoware, &state, rules.from, rules.to, &mut report);
    let plan = rules.plan(&state, &advoware);
    let mut unsupported = report.unsupported;
    unsupported.extend(plan.unsupported);
    let planned = plan
        .decisions
        .iter()
        .map(|decision| Planned {
            fr_nr: decision.fr_nr(),
            event_id: decision.event_id().map(str::to_owned),
            action: decision.name().into(),
        })
        .chain(
            // Events Advoware would get if it could be written.
            state
                .events
                .iter()
                .filter(|_| !settings.write_to_advoware)
                .filter(|(_, e)| e.fr_nr.is_none() && !e.cancelled && e.pending.is_some())
                .filter(|(_, e)| e.overlaps(rules.from, rules.to))
                .map(|(id, _)| Planned {
                    fr_nr: None,
                    event_id: Some(id.clone()),
                    action: "NotImported (write_to_advoware is off)".into(),
                }),
        )
        .collect();
    Ok(Verification {
        kuerzel: kuerzel.to_owned(),
        calendar_id: state.calendar_id.clone(),
        advoware_appointments: advoware.termine.len(),
        linked_events: state
            .events
            .values()
            .filter(|e| e.fr_nr.is_some() && !e.cancelled && !e.gone)
            .count(),
        planned,
        refused: plan.refused,
        unsupported,
    })
}

/// Runs by employee and outcome (the alert `CalendarSyncFailing` reads them),
/// run time per employee, writes per side and kind.
fn record_metrics(report: &Report) {
    metrics::counter_add(
        "calendar_runs",
        &[
            ("employee", report.kuerzel.as_str()),
            ("outcome", report.outcome.as_str()),
        ],
        1,
    );
    metrics::observe(
        "calendar_run_seconds",
        &[("employee", report.kuerzel.as_str())],
        report.duration_ms as f64 / 1000.0,
    );
    for (side, writes) in [("google", &report.google), ("advoware", &report.advoware)] {
        for (kind, count) in [
            ("created", writes.created),
            ("updated", writes.updated),
            ("deleted", writes.deleted),
            ("restored", writes.restored),
            ("linked", writes.linked),
        ] {
            if count > 0 {
                metrics::counter_add(
                    "calendar_writes",
                    &[("side", side), ("kind", kind)],
                    u64::from(count),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_base32hex_stable_and_distinct() {
        let id = event_id("firm-a", 4711);
        assert_eq!(id, event_id("firm-a", 4711));
        assert_ne!(id, event_id("firm-a", 4712));
        assert_ne!(id, event_id("firm-b", 4711));
        assert_eq!(id.len(), 28);
        assert!(
            id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='v')),
            "{id}"
        );
    }
}
