//! One employee's run: read both sides, decide per appointment, check the
//! safeguards, then write.
//!
//! Reading: Google incrementally with the stored sync token (in full on the
//! first run or after a 410, matching events by their `advoware_frnr`
//! property, never deleting and re-creating), Advoware over the configured
//! window. Deciding compares each side with the fingerprint stored at the
//! last sync, so only real changes count and the sync's own writes never do.
//! Nothing is written before every decision is made and the safeguards
//! passed: an empty Advoware answer beside linked events, or more deletions
//! than the configured share, stop the run with nothing deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bitbylaw_sdk::advoware;
use bitbylaw_sdk::google_calendar::{CalendarRef, Event, GoogleError, Mailbox};
use bitbylaw_sdk::lock::{self, Lease};
use bitbylaw_sdk::{Error, info, kv, metrics, warn};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::advoware_map::{self, Termin};
use crate::google_map;
use crate::model::{Appointment, Visibility, berlin_moment};
use crate::settings::{ConflictPolicy, Settings};
use crate::state::{
    EMPLOYEES_KEY, EmployeeState, Mirrored, PROP_ADVOWARE_HASH, PROP_FR_NR, PROP_GOOGLE_HASH,
    Report, lease_key, lock_name, report_key,
};

/// Why a run did not complete.
#[derive(Debug)]
pub enum RunError {
    /// A safeguard stopped it before any write; retrying will not help.
    Refused(String),
    /// An upstream or the store failed; a later run may succeed.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Refused(m) | RunError::Failed(m) => f.write_str(m),
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

/// Runs the sync of one employee under its lock; `Ok` with outcome
/// `skipped` when another run holds it.
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
    let Some(lease) =
        lock::acquire(&lock_name(kuerzel), settings.lock_ttl()).map_err(Error::from)?
    else {
        info!(
            "calendar sync of {} skipped: another run holds its lock",
            kuerzel
        );
        report.outcome = "skipped".into();
        metrics::counter_add("calendar_runs", &[("outcome", "skipped")], 1);
        return Ok(report);
    };
    remember_lease(kuerzel, &lease, settings.lock_ttl());
    let result = Run {
        settings,
        kuerzel: kuerzel.to_owned(),
        visibility: settings.visibility(full_content),
        mailbox: Mailbox::new(mailbox),
        lease: Some(&lease),
        extended_at: Instant::now(),
        report: &mut report,
    }
    .run();
    let _ = kv::delete(&lease_key(kuerzel));
    if let Err(error) = lease.release() {
        warn!(
            "could not release the lock of {}: {}",
            kuerzel,
            Error::from(error)
        );
    }
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

/// Advoware listing nothing beside linked events is an outage, not a wish to delete.
fn refuse_empty_advoware(
    kuerzel: &str,
    state: &EmployeeState,
    advoware: &AdvowareSide,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(), RunError> {
    let linked_in_window = state
        .events
        .values()
        .filter(|e| e.fr_nr.is_some() && !e.cancelled && e.overlaps(from, to))
        .count();
    if advoware.termine.is_empty() && advoware.unreadable.is_empty() && linked_in_window > 0 {
        return Err(RunError::Refused(format!(
            "Advoware listed no appointments for {kuerzel} while its calendar holds {linked_in_window} linked events in the window; nothing was changed"
        )));
    }
    Ok(())
}

/// More deletions than the configured share of the links stop the run.
fn refuse_mass_deletion(
    settings: &Settings,
    kuerzel: &str,
    state: &EmployeeState,
    plan: &[(i64, Option<String>, Action)],
) -> Result<(), RunError> {
    let deletions = plan
        .iter()
        .filter(|(_, _, action)| matches!(action, Action::DeleteGoogle | Action::DeleteAdvoware))
        .count();
    let linked = state
        .events
        .values()
        .filter(|e| e.fr_nr.is_some() && !e.cancelled)
        .count();
    if deletions > settings.max_delete_floor
        && deletions as f64 > settings.max_delete_share * linked as f64
    {
        return Err(RunError::Refused(format!(
            "the run would delete {deletions} of {linked} linked appointments of {kuerzel} (more than {:.0} %); nothing was deleted",
            settings.max_delete_share * 100.0
        )));
    }
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
    let mut report = Report::default();
    Run {
        settings,
        kuerzel: kuerzel.to_owned(),
        visibility: settings.visibility(full_content),
        mailbox: Mailbox::new(mailbox),
        lease: None,
        extended_at: Instant::now(),
        report: &mut report,
    }
    .verify()
}

/// Runs by outcome, run time per employee, writes per side and kind.
fn record_metrics(report: &Report) {
    metrics::counter_add("calendar_runs", &[("outcome", report.outcome.as_str())], 1);
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

/// Keeps the lease's token beside the lock, as long as it lives, so the
/// `locks` routes can list and release it.
fn remember_lease(kuerzel: &str, lease: &Lease, ttl: std::time::Duration) {
    let _ = kv::set(&lease_key(kuerzel), lease.token().as_bytes(), Some(ttl));
}

/// What to do about one appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// New in Advoware: create in Google.
    CreateGoogle,
    /// Write Advoware's version to Google (changed there, or put back).
    UpdateGoogle,
    /// Google's change goes to Advoware.
    UpdateAdvoware,
    DeleteAdvoware,
    DeleteGoogle,
    /// Deleted on both sides: only remember.
    Forget,
}

struct Run<'a> {
    settings: &'a Settings,
    kuerzel: String,
    visibility: Visibility,
    mailbox: Mailbox,
    /// None when only reading (`verify`).
    lease: Option<&'a Lease>,
    extended_at: Instant,
    report: &'a mut Report,
}

/// Advoware's side of one run.
struct AdvowareSide {
    /// Appointments in the window by `frNr`.
    termine: BTreeMap<i64, Termin>,
    /// Listed but unreadable: never taken as deleted.
    unreadable: BTreeSet<i64>,
}

impl Run<'_> {
    fn run(mut self) -> Result<(), RunError> {
        let mut state = EmployeeState::load(&self.kuerzel)?;
        let Some(calendar) = self.calendar(&mut state, true)? else {
            return Err(RunError::Failed("no calendar".into()));
        };
        let next_sync_token = self.read_google(&calendar, &mut state)?;
        let (from, to) = self.window();
        let mut advoware = self.read_advoware(from, to)?;
        refuse_empty_advoware(&self.kuerzel, &state, &advoware, from, to)?;
        self.resolve_started_imports(&calendar, &mut state, &advoware)?;
        let plan = self.plan(&state, &mut advoware, from, to)?;
        refuse_mass_deletion(self.settings, &self.kuerzel, &state, &plan)?;

        for (fr_nr, event_id, action) in plan {
            self.keep_lock()?;
            let termin = advoware.termine.get(&fr_nr);
            if let Err(error) = self.apply(
                &calendar,
                &mut state,
                fr_nr,
                termin,
                event_id.as_deref(),
                &action,
            ) {
                warn!(
                    "calendar sync of {}: appointment {} ({:?}) failed: {}",
                    self.kuerzel, fr_nr, action, error
                );
                self.report.note_failure(format!("{fr_nr}: {error}"));
            }
        }
        self.import_from_google(&calendar, &mut state, from, to)?;

        if let Some(token) = next_sync_token {
            state.sync_token = Some(token);
        }
        state.save(&self.kuerzel)?;
        info!(
            "calendar sync of {} done: {} writes to Google, {} to Advoware",
            self.kuerzel,
            self.report.google.total(),
            self.report.advoware.total();
            "conflicts" => self.report.conflicts,
            "failures" => self.report.failures.len()
        );
        Ok(())
    }

    /// What a run would do now, without writing anything.
    fn verify(mut self) -> Result<Verification, RunError> {
        let mut state = EmployeeState::load(&self.kuerzel)?;
        let calendar = self.calendar(&mut state, false)?;
        if let Some(calendar) = &calendar {
            self.read_google(calendar, &mut state)?;
        }
        let (from, to) = self.window();
        let mut advoware = self.read_advoware(from, to)?;
        let empty = refuse_empty_advoware(&self.kuerzel, &state, &advoware, from, to).err();
        let plan = self.plan(&state, &mut advoware, from, to)?;
        let mass = refuse_mass_deletion(self.settings, &self.kuerzel, &state, &plan).err();
        let planned = plan
            .into_iter()
            .map(|(fr_nr, event_id, action)| Planned {
                fr_nr: Some(fr_nr),
                event_id,
                action: format!("{action:?}"),
            })
            .chain(
                state
                    .events
                    .iter()
                    .filter(|(_, e)| e.fr_nr.is_none() && !e.cancelled && e.pending.is_some())
                    .filter(|(_, e)| e.overlaps(from, to))
                    .map(|(id, _)| Planned {
                        fr_nr: None,
                        event_id: Some(id.clone()),
                        action: if self.settings.write_to_advoware {
                            "ImportToAdvoware".into()
                        } else {
                            "NotImported (write_to_advoware is off)".into()
                        },
                    }),
            )
            .collect();
        Ok(Verification {
            kuerzel: self.kuerzel.clone(),
            calendar_id: state.calendar_id.clone(),
            advoware_appointments: advoware.termine.len(),
            linked_events: state
                .events
                .values()
                .filter(|e| e.fr_nr.is_some() && !e.cancelled)
                .count(),
            planned,
            refused: empty.or(mass).map(|e| e.to_string()),
            unsupported: self.report.unsupported.clone(),
        })
    }

    fn window(&self) -> (NaiveDate, NaiveDate) {
        let today = Utc::now().with_timezone(&crate::model::BERLIN).date_naive();
        (
            today - chrono::Days::new(u64::from(self.settings.days_back)),
            today + chrono::Days::new(u64::from(self.settings.days_ahead)),
        )
    }

    /// Extends the lock after a third of its lifetime; a run that lost it stops.
    fn keep_lock(&mut self) -> Result<(), RunError> {
        let ttl = self.settings.lock_ttl();
        let Some(lease) = self.lease else {
            return Ok(());
        };
        if self.extended_at.elapsed() < ttl / 3 {
            return Ok(());
        }
        match lease.extend(ttl) {
            Ok(true) => {
                self.extended_at = Instant::now();
                remember_lease(&self.kuerzel, lease, ttl);
                Ok(())
            }
            Ok(false) => Err(RunError::Failed(format!(
                "the lock of {} expired during the run",
                self.kuerzel
            ))),
            Err(error) => Err(Error::from(error).into()),
        }
    }

    /// The employee's calendar: the stored one, one of the configured name
    /// on the mailbox's list, or a new one.
    fn calendar(
        &mut self,
        state: &mut EmployeeState,
        create: bool,
    ) -> Result<Option<CalendarRef>, RunError> {
        if let Some(id) = &state.calendar_id {
            return Ok(Some(self.mailbox.calendar(id.clone())));
        }
        let calendars = self
            .mailbox
            .calendars()
            .map_err(|e| google_failed("calendar list", e))?;
        let id = match calendars
            .into_iter()
            .find(|c| c.summary == self.settings.calendar_name)
            .and_then(|c| c.id)
        {
            Some(id) => id,
            None if !create => return Ok(None),
            None => {
                let made = self
                    .mailbox
                    .create_calendar(&self.settings.calendar_name, Some("Europe/Berlin"))
                    .map_err(|e| google_failed("calendar insert", e))?;
                made.id.ok_or_else(|| {
                    RunError::Failed("Google made a calendar without an id".into())
                })?
            }
        };
        info!("calendar sync of {} uses calendar {}", self.kuerzel, id);
        *state = EmployeeState {
            calendar_id: Some(id.clone()),
            ..EmployeeState::default()
        };
        if create {
            state.save(&self.kuerzel)?;
        }
        Ok(Some(self.mailbox.calendar(id)))
    }

    /// Lists Google's changes into the mirror; the token to keep for next time.
    fn read_google(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
    ) -> Result<Option<String>, RunError> {
        let changes = match calendar.changes_since(state.sync_token.as_deref()) {
            Err(GoogleError::Gone(_)) => {
                info!(
                    "calendar sync of {}: sync token expired, listing in full",
                    self.kuerzel
                );
                state.sync_token = None;
                calendar.changes_since(None)
            }
            other => other,
        }
        .map_err(|e| google_failed("event list", e))?;
        if state.sync_token.is_none() {
            // A full listing is the whole truth: what it lacks is gone.
            self.report.full_listing = true;
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
                self.report.note_unsupported(format!(
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

    fn read_advoware(&mut self, from: NaiveDate, to: NaiveDate) -> Result<AdvowareSide, RunError> {
        let answer = advoware::Request::new("GET", "appointments")
            .query("kuerzel", self.kuerzel.as_str())
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
            termine: BTreeMap::new(),
            unreadable: BTreeSet::new(),
        };
        for value in &listed {
            match advoware_map::read(value) {
                Ok(termin) => {
                    side.termine.insert(termin.fr_nr, termin);
                }
                Err(why) => {
                    if let Some(fr_nr) = value.get("frNr").and_then(Value::as_i64) {
                        side.unreadable.insert(fr_nr);
                    }
                    self.report.note_unsupported(format!("Advoware: {why}"));
                }
            }
        }
        Ok(side)
    }

    /// One appointment read alone (one that left the window, or was deleted).
    fn read_termin(&self, fr_nr: i64) -> Result<Option<Termin>, RunError> {
        let answer = advoware::Request::new("GET", format!("appointments/{fr_nr}"))
            .send()
            .map_err(|e| {
                RunError::Failed(format!("Advoware appointment {fr_nr}: {}", Error::from(e)))
            })?;
        match answer.status {
            404 => Ok(None),
            200..=299 => {
                let value: Value = answer
                    .json()
                    .map_err(|e| RunError::Failed(format!("Advoware appointment {fr_nr}: {e}")))?;
                advoware_map::read(&value)
                    .map(Some)
                    .map_err(RunError::Failed)
            }
            status => Err(RunError::Failed(format!(
                "Advoware answered {status} to appointment {fr_nr}"
            ))),
        }
    }

    /// Links appointments an earlier, interrupted run imported from Google.
    fn resolve_started_imports(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        advoware: &AdvowareSide,
    ) -> Result<(), RunError> {
        let started: Vec<(String, Option<String>, Option<i64>)> = state
            .events
            .iter()
            .filter(|(_, e)| e.fr_nr.is_none())
            .filter(|(_, e)| e.import_started.is_some() || e.import_made.is_some())
            .map(|(id, e)| (id.clone(), e.import_started.clone(), e.import_made))
            .collect();
        for (event_id, fingerprint, made_fr_nr) in started {
            let linked: BTreeSet<i64> = state.events.values().filter_map(|e| e.fr_nr).collect();
            let made = match made_fr_nr {
                // Advoware answered: that appointment, whatever it holds now.
                Some(fr_nr) => match advoware.termine.get(&fr_nr) {
                    Some(termin) => Some(termin.clone()),
                    // Moved out of the window, or deleted since.
                    None => match self.read_termin(fr_nr)? {
                        Some(termin) => Some(termin),
                        None => {
                            self.drop_deleted_import(calendar, state, &event_id, fr_nr);
                            continue;
                        }
                    },
                },
                None => advoware
                    .termine
                    .values()
                    .find(|t| {
                        !linked.contains(&t.fr_nr)
                            && Some(t.appointment.fingerprint()) == fingerprint
                    })
                    .cloned(),
            };
            if let (Some(termin), Some(entry)) = (&made, state.events.get_mut(&event_id)) {
                // Found: if the link cannot reach Google now, the next run links
                // this one too, and no run imports the event again meanwhile.
                entry.import_made = Some(termin.fr_nr);
            }
            match made {
                Some(termin) => {
                    info!(
                        "calendar sync of {}: linking appointment {} imported by an interrupted run",
                        self.kuerzel, termin.fr_nr
                    );
                    let Some(mirrored) = state.events.get(&event_id).cloned() else {
                        continue;
                    };
                    let Some(content) = mirrored.pending.clone() else {
                        continue;
                    };
                    let fr_nr = termin.fr_nr;
                    let stored = &termin.appointment;
                    if let Err(error) = self.link(
                        calendar, state, &event_id, &mirrored, fr_nr, &content, stored,
                    ) {
                        self.report.note_failure(format!(
                            "linking {fr_nr} to Google event {event_id}: {error}"
                        ));
                    }
                }
                None => {
                    // The POST never arrived: import again below.
                    if let Some(entry) = state.events.get_mut(&event_id) {
                        entry.import_started = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// An appointment imported from Google and deleted in Advoware before the
    /// import was linked: deleted in Google too, as any deletion in Advoware.
    fn drop_deleted_import(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        event_id: &str,
        fr_nr: i64,
    ) {
        let etag = state.events.get(event_id).and_then(|e| e.etag.clone());
        match calendar.delete(event_id, etag.as_deref()) {
            Ok(()) | Err(GoogleError::NotFound(_) | GoogleError::Gone(_)) => {
                self.report.google.deleted += 1;
                if let Some(entry) = state.events.get_mut(event_id) {
                    entry.cancelled = true;
                    entry.gone = true;
                    entry.pending = None;
                    entry.import_started = None;
                    entry.import_made = None;
                }
            }
            // Changed in Google meanwhile: the next run looks again.
            Err(GoogleError::PreconditionFailed(_)) => {}
            Err(error) => {
                let error = google_failed("delete", error);
                self.report.note_failure(format!(
                    "Google event {event_id}, whose appointment {fr_nr} was deleted in Advoware: {error}"
                ));
            }
        }
    }

    /// Decides for every appointment known on either side.
    fn plan(
        &mut self,
        state: &EmployeeState,
        advoware: &mut AdvowareSide,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(i64, Option<String>, Action)>, RunError> {
        // Each appointment's event; a second event linked to the same one is a duplicate for the audit.
        let mut linked: BTreeMap<i64, (String, Mirrored)> = BTreeMap::new();
        for (id, entry) in &state.events {
            let Some(fr_nr) = entry.fr_nr else { continue };
            if entry.gone {
                continue;
            }
            let own = event_id(&self.settings.id_namespace, fr_nr);
            // The event with the derived id first, then one not deleted.
            let rank = |id: &str, e: &Mirrored| (id == own, !e.cancelled);
            match linked.get(&fr_nr) {
                Some((kept, kept_entry)) => {
                    if !entry.cancelled && !kept_entry.cancelled {
                        self.report.note_unsupported(format!(
                            "Google events {kept} and {id} are both linked to appointment {fr_nr}; see the duplicates audit"
                        ));
                    }
                    if rank(id, entry) > rank(kept, kept_entry) {
                        linked.insert(fr_nr, (id.clone(), entry.clone()));
                    }
                }
                None => {
                    linked.insert(fr_nr, (id.clone(), entry.clone()));
                }
            }
        }
        // Linked appointments missing from the window listing: moved out of it, or deleted.
        for (fr_nr, (_, entry)) in &linked {
            if advoware.termine.contains_key(fr_nr)
                || advoware.unreadable.contains(fr_nr)
                || !entry.overlaps(from, to) && !entry.changed_in_google()
            {
                continue;
            }
            if let Some(termin) = self.read_termin(*fr_nr)? {
                advoware.termine.insert(*fr_nr, termin);
            }
        }
        let mut plan = Vec::new();
        let numbers: BTreeSet<i64> = advoware
            .termine
            .keys()
            .chain(linked.keys())
            .copied()
            .collect();
        for fr_nr in numbers {
            let termin = advoware.termine.get(&fr_nr);
            let entry = linked.get(&fr_nr);
            if termin.is_none()
                && entry.is_some_and(|(_, e)| !e.overlaps(from, to) && !e.changed_in_google())
            {
                continue;
            }
            if let Some(action) = self.decide(termin, entry.map(|(_, e)| e)) {
                plan.push((fr_nr, entry.map(|(id, _)| id.clone()), action));
            }
        }
        Ok(plan)
    }

    /// What to do about one appointment, from both sides and the fingerprints
    /// of the last sync.
    fn decide(&mut self, termin: Option<&Termin>, entry: Option<&Mirrored>) -> Option<Action> {
        let (termin, entry) = match (termin, entry) {
            (None, None) => return None,
            (Some(_), None) => return Some(Action::CreateGoogle),
            (None, Some(entry)) => {
                return Some(if entry.cancelled {
                    Action::Forget
                } else {
                    Action::DeleteGoogle
                });
            }
            (Some(termin), Some(entry)) => (termin, entry),
        };
        let advoware_changed =
            entry.synced_advoware.as_deref() != Some(termin.appointment.fingerprint().as_str());
        let google_changed = entry.changed_in_google();
        if !google_changed {
            let wanted = self.google_fingerprint(&termin.appointment);
            let stale = entry.synced_google.as_deref() != Some(wanted.as_str());
            return (advoware_changed || stale).then_some(Action::UpdateGoogle);
        }
        let writable = self.settings.write_to_advoware && !termin.read_only();
        if !writable || (!entry.cancelled && entry.pending.is_none()) {
            if let Some(why) = &entry.unsupported {
                self.report.note_unsupported(format!(
                    "appointment {}: the change in Google cannot go to Advoware ({why}); put back",
                    termin.fr_nr
                ));
            }
            return Some(Action::UpdateGoogle);
        }
        let google_action = if entry.cancelled {
            Action::DeleteAdvoware
        } else {
            Action::UpdateAdvoware
        };
        if !advoware_changed {
            return Some(google_action);
        }
        self.report.conflicts += 1;
        let google_later = match self.settings.conflict_policy {
            ConflictPolicy::AdvowareWins => false,
            ConflictPolicy::LastChangeWins => {
                let google = entry
                    .updated
                    .as_deref()
                    .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                    .map(|u| u.with_timezone(&Utc));
                let advoware = termin
                    .modified
                    .map(|m| berlin_moment(m).with_timezone(&Utc));
                matches!((google, advoware), (Some(g), Some(a)) if g > a)
            }
        };
        info!(
            "calendar sync of {}: appointment {} changed on both sides; {} wins",
            self.kuerzel,
            termin.fr_nr,
            if google_later { "Google" } else { "Advoware" }
        );
        Some(if google_later {
            google_action
        } else {
            Action::UpdateGoogle
        })
    }

    /// The fingerprint of what Google holds after writing `appointment`.
    fn google_fingerprint(&self, appointment: &Appointment) -> String {
        let event = google_map::write(&appointment.visible(&self.visibility));
        google_map::read(&event)
            .map(|a| a.fingerprint())
            .unwrap_or_default()
    }

    /// The event to write for `appointment` (Advoware's content at `advoware`
    /// fingerprint), with its link.
    fn google_event(&self, fr_nr: i64, appointment: &Appointment, advoware: &str) -> Event {
        let event = google_map::write(&appointment.visible(&self.visibility));
        let google = google_map::read(&event)
            .map(|a| a.fingerprint())
            .unwrap_or_default();
        event
            .with_private(PROP_FR_NR, fr_nr.to_string())
            .with_private(PROP_ADVOWARE_HASH, advoware)
            .with_private(PROP_GOOGLE_HASH, google)
    }

    fn apply(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        fr_nr: i64,
        termin: Option<&Termin>,
        event_id: Option<&str>,
        action: &Action,
    ) -> Result<(), RunError> {
        match (action, termin, event_id) {
            (Action::CreateGoogle, Some(termin), _) => self.create_google(calendar, state, termin),
            (Action::UpdateGoogle, Some(termin), Some(id)) => {
                let entry = state.events.get(id).cloned().unwrap_or_default();
                let event = self.google_event(
                    fr_nr,
                    &termin.appointment,
                    &termin.appointment.fingerprint(),
                );
                match calendar.update(id, &event, entry.etag.as_deref()) {
                    Ok(written) => {
                        if entry.cancelled || entry.changed_in_google() {
                            self.report.google.restored += 1;
                        } else {
                            self.report.google.updated += 1;
                        }
                        state
                            .events
                            .entry(id.to_owned())
                            .or_default()
                            .absorb(&written);
                        Ok(())
                    }
                    // Changed in Google since it was listed: the next run sees that change.
                    Err(GoogleError::PreconditionFailed(_)) => Ok(()),
                    Err(e) => Err(google_failed("update", e)),
                }
            }
            (Action::UpdateAdvoware, Some(termin), Some(id)) => {
                self.update_advoware(calendar, state, termin, id)
            }
            (Action::DeleteAdvoware, Some(termin), Some(id)) => {
                let answer =
                    advoware::Request::new("DELETE", format!("appointments/{}", termin.fr_nr))
                        .send()
                        .map_err(|e| {
                            RunError::Failed(format!("Advoware delete: {}", Error::from(e)))
                        })?;
                if !answer.is_success() && answer.status != 404 {
                    return Err(RunError::Failed(format!(
                        "Advoware answered {} to deleting appointment {}",
                        answer.status, termin.fr_nr
                    )));
                }
                self.report.advoware.deleted += 1;
                if let Some(entry) = state.events.get_mut(id) {
                    entry.gone = true;
                    entry.pending = None;
                }
                Ok(())
            }
            (Action::DeleteGoogle, None, Some(id)) => {
                let etag = state.events.get(id).and_then(|e| e.etag.clone());
                match calendar.delete(id, etag.as_deref()) {
                    Ok(()) | Err(GoogleError::NotFound(_) | GoogleError::Gone(_)) => {
                        self.report.google.deleted += 1;
                        if let Some(entry) = state.events.get_mut(id) {
                            entry.cancelled = true;
                            entry.gone = true;
                            entry.pending = None;
                        }
                        Ok(())
                    }
                    Err(GoogleError::PreconditionFailed(_)) => Ok(()),
                    Err(e) => Err(google_failed("delete", e)),
                }
            }
            (Action::Forget, None, Some(id)) => {
                if let Some(entry) = state.events.get_mut(id) {
                    entry.gone = true;
                    entry.pending = None;
                }
                Ok(())
            }
            _ => Err(RunError::Failed(format!(
                "no way to {action:?} appointment {fr_nr}"
            ))),
        }
    }

    /// Creates the event with the id derived from the `frNr`; one that exists
    /// (made by an interrupted run, or deleted in Google) is written over and
    /// so restored, never made twice.
    fn create_google(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        termin: &Termin,
    ) -> Result<(), RunError> {
        let id = event_id(&self.settings.id_namespace, termin.fr_nr);
        let event = self
            .google_event(
                termin.fr_nr,
                &termin.appointment,
                &termin.appointment.fingerprint(),
            )
            .with_id(id.clone());
        let written = match calendar.insert(&event) {
            Ok(written) => {
                self.report.google.created += 1;
                written
            }
            Err(GoogleError::Conflict(_)) => {
                let existing = calendar.get(&id).map_err(|e| google_failed("get", e))?;
                let written = calendar
                    .update(&id, &event, existing.etag.as_deref())
                    .map_err(|e| google_failed("update", e))?;
                self.report.google.restored += 1;
                written
            }
            Err(e) => return Err(google_failed("insert", e)),
        };
        state.events.entry(id).or_default().absorb(&written);
        Ok(())
    }

    /// Carries a change made in Google to Advoware, then brings Google in
    /// line (text stays Advoware's when Google shows only neutral titles).
    fn update_advoware(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        termin: &Termin,
        id: &str,
    ) -> Result<(), RunError> {
        let Some(entry) = state.events.get(id).cloned() else {
            return Ok(());
        };
        let Some(google) = entry.pending.clone() else {
            return Ok(());
        };
        let merged = match self.visibility {
            Visibility::Full => google.clone(),
            Visibility::Neutral(_) => Appointment {
                span: google.span.clone(),
                recurrence: google.recurrence.clone(),
                ..termin.appointment.clone()
            },
        };
        if let Some(why) = merged.advoware_cannot_hold() {
            self.report.note_unsupported(format!(
                "appointment {}: the change in Google cannot go to Advoware ({why}); put back",
                termin.fr_nr
            ));
            let event = self.google_event(
                termin.fr_nr,
                &termin.appointment,
                &termin.appointment.fingerprint(),
            );
            return match calendar.update(id, &event, entry.etag.as_deref()) {
                Ok(written) => {
                    self.report.google.restored += 1;
                    state
                        .events
                        .entry(id.to_owned())
                        .or_default()
                        .absorb(&written);
                    Ok(())
                }
                Err(GoogleError::PreconditionFailed(_)) => Ok(()),
                Err(e) => Err(google_failed("update", e)),
            };
        }
        let stored = if merged == termin.appointment {
            termin.appointment.clone()
        } else {
            let body = advoware_map::write(&merged, &self.kuerzel);
            let answer = advoware::Request::new("PUT", format!("appointments/{}", termin.fr_nr))
                .json(&body)?
                .send()
                .map_err(|e| RunError::Failed(format!("Advoware update: {}", Error::from(e))))?;
            if !answer.is_success() {
                return Err(RunError::Failed(format!(
                    "Advoware answered {} to updating appointment {}: {}",
                    answer.status,
                    termin.fr_nr,
                    String::from_utf8_lossy(&answer.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )));
            }
            self.report.advoware.updated += 1;
            answer
                .json::<Value>()
                .ok()
                .and_then(|v| advoware_map::read(&v).ok())
                .map_or(merged, |t| t.appointment)
        };
        self.link(calendar, state, id, &entry, termin.fr_nr, &google, &stored)
    }

    /// Writes the link of a Google event (content `google`) to the Advoware
    /// appointment `fr_nr` holding `stored`; the event is rewritten when it
    /// should show something else.
    #[allow(clippy::too_many_arguments)]
    fn link(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        id: &str,
        entry: &Mirrored,
        fr_nr: i64,
        google: &Appointment,
        stored: &Appointment,
    ) -> Result<(), RunError> {
        let advoware = stored.fingerprint();
        let wanted = self.google_fingerprint(stored);
        let result = if wanted == google.fingerprint() {
            let patch = Event::empty()
                .with_private(PROP_FR_NR, fr_nr.to_string())
                .with_private(PROP_ADVOWARE_HASH, advoware)
                .with_private(PROP_GOOGLE_HASH, wanted);
            calendar.patch(id, &patch, entry.etag.as_deref())
        } else {
            let event = self.google_event(fr_nr, stored, &advoware);
            calendar.update(id, &event, entry.etag.as_deref())
        };
        match result {
            Ok(written) => {
                self.report.google.linked += 1;
                state
                    .events
                    .entry(id.to_owned())
                    .or_default()
                    .absorb(&written);
                Ok(())
            }
            // Changed again meanwhile: the next run links it (the fingerprints find it).
            Err(GoogleError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(google_failed("link", e)),
        }
    }

    /// Events made in Google (not linked) become Advoware appointments, when
    /// writing to Advoware is allowed.
    fn import_from_google(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(), RunError> {
        let candidates: Vec<String> = state
            .events
            .iter()
            // An import Advoware answered waits for its link, never made twice.
            .filter(|(_, e)| e.fr_nr.is_none() && !e.cancelled && e.import_made.is_none())
            .filter(|(_, e)| e.overlaps(from, to))
            .map(|(id, _)| id.clone())
            .collect();
        for id in candidates {
            let Some(entry) = state.events.get(&id).cloned() else {
                continue;
            };
            let Some(content) = entry.pending.clone() else {
                if let Some(why) = &entry.unsupported {
                    self.report
                        .note_unsupported(format!("Google event {id}: not imported ({why})"));
                }
                continue;
            };
            if !self.settings.write_to_advoware {
                continue;
            }
            if let Some(why) = content.advoware_cannot_hold() {
                self.report
                    .note_unsupported(format!("Google event {id}: not imported ({why})"));
                continue;
            }
            self.keep_lock()?;
            if let Err(error) = self.import(calendar, state, &id, &entry, &content) {
                warn!(
                    "calendar sync of {}: importing Google event {} failed: {}",
                    self.kuerzel, id, error
                );
                self.report
                    .note_failure(format!("Google event {id}: {error}"));
            }
        }
        Ok(())
    }

    fn import(
        &mut self,
        calendar: &CalendarRef,
        state: &mut EmployeeState,
        id: &str,
        entry: &Mirrored,
        content: &Appointment,
    ) -> Result<(), RunError> {
        let body = advoware_map::write(content, &self.kuerzel);
        let expected = advoware_map::read(&{
            let mut v = body.clone();
            v["frNr"] = Value::from(0);
            v
        })
        .map(|t| t.appointment.fingerprint())
        .unwrap_or_default();
        // Remember the import before sending it: a run cut short after the
        // POST then links what it made instead of making it again.
        if let Some(mirrored) = state.events.get_mut(id) {
            mirrored.import_started = Some(expected);
        }
        state.save(&self.kuerzel)?;
        let answer = advoware::Request::new("POST", "appointments")
            .json(&body)?
            .send()
            .map_err(|e| RunError::Failed(format!("Advoware create: {}", Error::from(e))))?;
        if !answer.is_success() {
            if let Some(mirrored) = state.events.get_mut(id) {
                mirrored.import_started = None;
            }
            return Err(RunError::Failed(format!(
                "Advoware answered {} to creating an appointment: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        let created: Value = answer
            .json()
            .map_err(|e| RunError::Failed(format!("Advoware's answer to the create: {e}")))?;
        let termin = advoware_map::read(&created).map_err(RunError::Failed)?;
        self.report.advoware.created += 1;
        // Made: remember which, before the link that may not reach Google.
        if let Some(mirrored) = state.events.get_mut(id) {
            mirrored.import_made = Some(termin.fr_nr);
        }
        state.save(&self.kuerzel)?;
        info!(
            "calendar sync of {}: Google event {} is now appointment {}",
            self.kuerzel, id, termin.fr_nr
        );
        self.link(
            calendar,
            state,
            id,
            entry,
            termin.fr_nr,
            content,
            &termin.appointment,
        )
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
