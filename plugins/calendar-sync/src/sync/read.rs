//! Reading: the calendar, Google's changes into the mirror, Advoware's window,
//! and the appointments the plan needs that the window did not list. Nothing
//! here writes to an upstream (a calendar the employee lacks is made on the
//! first run, before anything is read).

use std::collections::{BTreeMap, BTreeSet};

use bitbylaw_sdk::google_calendar::{CalendarRef, GoogleError, Mailbox};
use bitbylaw_sdk::{Error, advoware, info};
use chrono::NaiveDate;
use serde_json::Value;

use super::{RunError, google_failed};
use crate::advoware_map::{self, Termin};
use crate::state::{EmployeeState, PROP_FR_NR, Report};

/// Advoware's side of one run.
#[derive(Debug, Default)]
pub struct AdvowareSide {
    /// Appointments by `frNr`: the window's, and those read alone.
    pub termine: BTreeMap<i64, Termin>,
    /// Listed or asked for, but not readable (malformed, or the read
    /// failed): never taken as deleted, left alone this run.
    pub unreadable: BTreeSet<i64>,
    /// Read alone and answered 404: deleted in Advoware.
    pub missing: BTreeSet<i64>,
    /// How many appointments the window listing held (readable or not).
    pub listed: usize,
}

/// The employee's calendar: the stored one, one of the configured name on
/// the mailbox's list, or (when `create`) a new one. A new calendar starts a
/// new state.
pub fn calendar(
    mailbox: &Mailbox,
    calendar_name: &str,
    kuerzel: &str,
    state: &mut EmployeeState,
    create: bool,
) -> Result<Option<CalendarRef>, RunError> {
    if let Some(id) = &state.calendar_id {
        return Ok(Some(mailbox.calendar(id.clone())));
    }
    let calendars = mailbox
        .calendars()
        .map_err(|e| google_failed("calendar list", e))?;
    let id = match calendars
        .into_iter()
        .find(|c| c.summary == calendar_name)
        .and_then(|c| c.id)
    {
        Some(id) => id,
        None if !create => return Ok(None),
        None => {
            let made = mailbox
                .create_calendar(calendar_name, Some("Europe/Berlin"))
                .map_err(|e| google_failed("calendar insert", e))?;
            made.id
                .ok_or_else(|| RunError::Failed("Google made a calendar without an id".into()))?
        }
    };
    info!("calendar sync of {} uses calendar {}", kuerzel, id);
    state.start_over(id.clone());
    Ok(Some(mailbox.calendar(id)))
}

/// Lists Google's changes into the mirror; the token to keep for next time.
pub fn google(
    calendar: &CalendarRef,
    state: &mut EmployeeState,
    report: &mut Report,
) -> Result<Option<String>, RunError> {
    let changes = match calendar.changes_since(state.sync_token.as_deref()) {
        Err(GoogleError::Gone(_)) => {
            info!(
                "calendar sync of {}: sync token expired, listing in full",
                report.kuerzel
            );
            state.sync_token = None;
            calendar.changes_since(None)
        }
        other => other,
    }
    .map_err(|e| google_failed("event list", e))?;
    if state.sync_token.is_none() {
        // A full listing is the whole truth: what it lacks is gone.
        report.full_listing = true;
        let listed: BTreeSet<&str> = changes
            .events
            .iter()
            .filter_map(|e| e.id.as_deref())
            .collect();
        state.events.retain(|id, _| listed.contains(id.as_str()));
    }
    for event in &changes.events {
        let Some(id) = event.id.clone() else { continue };
        if event.recurring_event_id.is_some() {
            report.note_unsupported(format!(
                "Google event {id}: a single occurrence of a series was moved or cancelled in Google; kept there, not carried to Advoware"
            ));
            continue;
        }
        let linked = event.private(PROP_FR_NR).is_some()
            || state.events.get(&id).is_some_and(|e| e.fr_nr.is_some());
        if !linked && event.is_cancelled() {
            state.events.remove(&id);
            continue;
        }
        state.events.entry(id).or_default().absorb(event);
    }
    Ok(changes.next_sync_token)
}

/// `GET appointments?kuerzel=&from=&to=`: the window, by `frNr`.
pub fn advoware_window(
    kuerzel: &str,
    from: NaiveDate,
    to: NaiveDate,
    report: &mut Report,
) -> Result<AdvowareSide, RunError> {
    let answer = advoware::Request::new("GET", "appointments")
        .query("kuerzel", kuerzel)
        .query("from", from.format("%Y-%m-%d").to_string())
        .query("to", to.format("%Y-%m-%d").to_string())
        .send()
        .map_err(|e| RunError::Failed(format!("Advoware appointments: {}", Error::from(e))))?;
    if !answer.is_success() {
        return Err(RunError::Failed(format!(
            "Advoware answered {} to the appointment list",
            answer.status
        )));
    }
    let listed: Vec<Value> = answer
        .json()
        .map_err(|e| RunError::Failed(format!("Advoware's appointment list: {e}")))?;
    let mut side = AdvowareSide {
        listed: listed.len(),
        ..AdvowareSide::default()
    };
    for value in &listed {
        match advoware_map::read(value) {
            Ok(termin) => {
                side.termine.insert(termin.fr_nr, termin);
            }
            Err(why) => {
                if let Some(fr_nr) = advoware_map::created_number(value) {
                    side.unreadable.insert(fr_nr);
                }
                report.note_unsupported(format!("Advoware: {why}"));
            }
        }
    }
    Ok(side)
}

/// What reading one appointment alone found.
pub enum Alone {
    Found(Termin),
    /// 404: deleted.
    Missing,
    /// Advoware answered with something that is not an appointment.
    Malformed(String),
    /// Advoware failed: nothing is concluded from it this run.
    Failed(String),
}

/// `GET appointments/{frNr}`.
pub fn appointment(fr_nr: i64) -> Alone {
    let answer = match advoware::Request::new("GET", format!("appointments/{fr_nr}")).send() {
        Ok(answer) => answer,
        Err(error) => {
            return Alone::Failed(format!(
                "Advoware appointment {fr_nr}: {}",
                Error::from(error)
            ));
        }
    };
    match answer.status {
        404 => Alone::Missing,
        200..=299 => match answer.json::<Value>() {
            Ok(value) => match advoware_map::read(&value) {
                Ok(termin) => Alone::Found(termin),
                Err(why) => Alone::Malformed(why),
            },
            Err(error) => Alone::Malformed(format!("Advoware appointment {fr_nr}: {error}")),
        },
        status => Alone::Failed(format!("Advoware answered {status} to appointment {fr_nr}")),
    }
}

/// Reads alone what the plan needs and the window did not list: linked
/// appointments that left it (moved out, deleted, or given to another
/// employee) while their event is in the window or changed in Google, and
/// appointments an earlier run's import made.
pub fn advoware_beyond_window(
    side: &mut AdvowareSide,
    state: &EmployeeState,
    from: NaiveDate,
    to: NaiveDate,
    report: &mut Report,
) {
    let wanted: BTreeSet<i64> = state
        .events
        .values()
        .filter(|e| !e.gone)
        .filter_map(|e| match (e.fr_nr, e.import_made) {
            (Some(fr_nr), _) if e.overlaps(from, to) || e.changed_in_google() => Some(fr_nr),
            (None, Some(made)) => Some(made),
            _ => None,
        })
        .filter(|fr_nr| !side.termine.contains_key(fr_nr) && !side.unreadable.contains(fr_nr))
        .collect();
    for fr_nr in wanted {
        match appointment(fr_nr) {
            Alone::Found(termin) => {
                side.termine.insert(fr_nr, termin);
            }
            Alone::Missing => {
                side.missing.insert(fr_nr);
            }
            Alone::Malformed(why) => {
                side.unreadable.insert(fr_nr);
                report.note_unsupported(format!("Advoware: {why}; left alone"));
            }
            Alone::Failed(why) => {
                side.unreadable.insert(fr_nr);
                report.note_failure(format!("{fr_nr}: left alone this run: {why}"));
            }
        }
    }
}
