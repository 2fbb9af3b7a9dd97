//! Writing: each decision of the plan carried out, the lease checked before
//! each, and what was written taken into the mirror. A decision that fails
//! is reported and retried next run; a lost lease stops the run.
//!
//! Writes keep what the sync does not own. In Google an event is patched with
//! the sync's fields only (title, notes, place, times, series, status, its
//! links), so attendees, reminders, colour and the like that a person set
//! stay; visibility is the sync's only for private appointments. In
//! Advoware an update sends the record as read just before, with only the
//! parts that changed replaced, and only if nobody changed it since the run
//! read it.

use bitbylaw_sdk::google_calendar::{CalendarRef, Event, GoogleError};
use bitbylaw_sdk::{Error, advoware, info, warn};
use serde_json::Value;

use super::lease::Fence;
use super::plan::{Decision, Rules, google_fingerprint};
use super::read::{self, AdvowareSide, Alone};
use super::{RunError, event_id, google_failed};
use crate::advoware_map::{self, Termin};
use crate::google_map;
use crate::model::Appointment;
use crate::state::{
    EmployeeState, Mirrored, PROP_ADVOWARE_HASH, PROP_FR_NR, PROP_GOOGLE_HASH, PROP_NEUTRAL,
    PROP_PRIVATE, Report,
};

pub struct Apply<'r> {
    pub rules: &'r Rules,
    pub calendar: &'r CalendarRef,
    pub fence: &'r mut Fence,
    pub report: &'r mut Report,
}

impl Apply<'_> {
    /// Every decision in order; only a lost lease (or a store that cannot
    /// keep an import's progress) ends the run early.
    pub fn all(
        &mut self,
        decisions: &[Decision],
        state: &mut EmployeeState,
        advoware: &AdvowareSide,
    ) -> Result<(), RunError> {
        for decision in decisions {
            self.fence.check()?;
            if let Err(error) = self.one(decision, state, advoware) {
                if matches!(error, RunError::LeaseLost(_)) {
                    return Err(error);
                }
                let what = match (decision.fr_nr(), decision.event_id()) {
                    (Some(fr_nr), _) => fr_nr.to_string(),
                    (None, Some(id)) => format!("Google event {id}"),
                    (None, None) => "?".into(),
                };
                warn!(
                    "calendar sync of {}: {} ({}) failed: {}",
                    self.rules.kuerzel,
                    what,
                    decision.name(),
                    error
                );
                self.report.note_failure(format!("{what}: {error}"));
            }
        }
        Ok(())
    }

    fn one(
        &mut self,
        decision: &Decision,
        state: &mut EmployeeState,
        advoware: &AdvowareSide,
    ) -> Result<(), RunError> {
        let termin = |fr_nr: &i64| {
            advoware
                .termine
                .get(fr_nr)
                .ok_or_else(|| RunError::Failed(format!("appointment {fr_nr} was not read")))
        };
        match decision {
            Decision::CreateGoogle { fr_nr } => self.create_google(state, termin(fr_nr)?),
            Decision::UpdateGoogle { fr_nr, event_id } => {
                self.update_google(state, termin(fr_nr)?, event_id)
            }
            Decision::UpdateAdvoware { fr_nr, event_id } => {
                self.update_advoware(state, termin(fr_nr)?, event_id)
            }
            Decision::DeleteAdvoware { fr_nr, event_id } => {
                self.delete_advoware(state, *fr_nr, event_id)
            }
            Decision::DeleteGoogle { event_id, .. } => self.delete_google(state, event_id),
            Decision::Forget { event_id } => {
                if let Some(entry) = state.events.get_mut(event_id) {
                    entry.gone = true;
                    entry.pending = None;
                }
                Ok(())
            }
            Decision::LinkImport { event_id, fr_nr } => {
                self.link_import(state, termin(fr_nr)?, event_id)
            }
            Decision::DropImport { event_id, fr_nr } => {
                info!(
                    "calendar sync of {}: appointment {} imported from Google was deleted in Advoware before its link",
                    self.rules.kuerzel, fr_nr
                );
                self.delete_google(state, event_id)
            }
            Decision::Import { event_id } => self.import(state, event_id),
        }
    }

    /// The event for Advoware's `termin`: the fields the sync owns and its
    /// links; `was_private`: the event shows a private appointment now;
    /// `google_when`: when the event takes place now (as
    /// [`Appointment::when_fingerprint`]) — if that is what the sync would
    /// write, start, end and series are left out (Google keeps its offsets).
    fn google_event(&self, termin: &Termin, was_private: bool, google_when: Option<&str>) -> Event {
        let shown = self.rules.shown(termin);
        let mut written = google_map::write(&shown);
        let unchanged = google_map::read(&written)
            .is_ok_and(|wanted| google_when == Some(wanted.when_fingerprint().as_str()));
        if unchanged {
            written.start = None;
            written.end = None;
            written.recurrence.clear();
        }
        let mut event = written
            .with_private(PROP_FR_NR, termin.fr_nr.to_string())
            .with_private(PROP_ADVOWARE_HASH, termin.fingerprint())
            .with_private(PROP_GOOGLE_HASH, google_fingerprint(&shown))
            .with_private(PROP_NEUTRAL, neutral_flag(self.rules.hides_text(termin)));
        if termin.private {
            event.visibility = Some("private".into());
            event = event.with_private(PROP_PRIVATE, "1");
        } else if was_private {
            event.visibility = Some("default".into());
            event = event.with_private(PROP_PRIVATE, "0");
        }
        event
    }

    /// Creates the event with the id derived from the `frNr`; one that exists
    /// (made by an interrupted run, or deleted in Google) is patched and so
    /// restored, never made twice.
    fn create_google(
        &mut self,
        state: &mut EmployeeState,
        termin: &Termin,
    ) -> Result<(), RunError> {
        let id = event_id(&self.rules.id_namespace, termin.fr_nr);
        let mut event = self.google_event(termin, false, None).with_id(id.clone());
        event.transparency = Some("opaque".into());
        let written = match self.calendar.insert(&event) {
            Ok(written) => {
                self.report.google.created += 1;
                written
            }
            Err(GoogleError::Conflict(_)) => {
                self.fence.check()?;
                let existing = self
                    .calendar
                    .get(&id)
                    .map_err(|e| google_failed("get", e))?;
                let was_private = existing.private(PROP_PRIVATE) == Some("1");
                let when = google_map::read(&existing)
                    .ok()
                    .map(|a| a.when_fingerprint());
                let written = self
                    .calendar
                    .patch(
                        &id,
                        &self.google_event(termin, was_private, when.as_deref()),
                        existing.etag.as_deref(),
                    )
                    .map_err(|e| google_failed("patch", e))?;
                self.report.google.restored += 1;
                written
            }
            Err(e) => return Err(google_failed("insert", e)),
        };
        state.events.entry(id).or_default().absorb(&written);
        Ok(())
    }

    /// Advoware's version to Google.
    fn update_google(
        &mut self,
        state: &mut EmployeeState,
        termin: &Termin,
        id: &str,
    ) -> Result<(), RunError> {
        let entry = state.events.get(id).cloned().unwrap_or_default();
        let event = self.google_event(termin, entry.shown_private, entry.when.as_deref());
        let restored = entry.cancelled || entry.changed_in_google();
        if self.patch(state, id, &event, entry.etag.as_deref(), "patch")? {
            if restored {
                self.report.google.restored += 1;
            } else {
                self.report.google.updated += 1;
            }
        }
        Ok(())
    }

    /// Patches the event (only if it still has `etag`) and takes in what
    /// Google answers; false when it changed meanwhile (412): the next run
    /// sees that change.
    fn patch(
        &mut self,
        state: &mut EmployeeState,
        id: &str,
        event: &Event,
        etag: Option<&str>,
        what: &str,
    ) -> Result<bool, RunError> {
        match self.calendar.patch(id, event, etag) {
            Ok(written) => {
                state
                    .events
                    .entry(id.to_owned())
                    .or_default()
                    .absorb(&written);
                Ok(true)
            }
            Err(GoogleError::PreconditionFailed(_)) => Ok(false),
            Err(e) => Err(google_failed(what, e)),
        }
    }

    /// Google's change to Advoware, then Google brought in line with what
    /// Advoware holds.
    fn update_advoware(
        &mut self,
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
        let merged = self.rules.carried(termin, &google, entry.shown_neutral);
        if let Some(why) = merged.advoware_cannot_hold() {
            self.report.note_unsupported(format!(
                "appointment {}: the change in Google cannot go to Advoware ({why}); put back",
                termin.fr_nr
            ));
            return self.update_google(state, termin, id);
        }
        let stored = if merged == termin.appointment {
            termin.clone()
        } else {
            match self.write_advoware(termin, &merged)? {
                Some(stored) => stored,
                // Changed or deleted in Advoware meanwhile: the next run decides.
                None => return Ok(()),
            }
        };
        self.link(state, id, &entry, &stored, &google)
    }

    /// `PUT appointments/{frNr}` of the record read just now with `merged`'s
    /// changed parts; `None` when it changed since the run read it.
    fn write_advoware(
        &mut self,
        termin: &Termin,
        merged: &Appointment,
    ) -> Result<Option<Termin>, RunError> {
        let fresh = match read::appointment(termin.fr_nr) {
            Alone::Found(fresh) => fresh,
            Alone::Missing => return Ok(None),
            Alone::Malformed(why) | Alone::Failed(why) => return Err(RunError::Failed(why)),
        };
        if fresh.fingerprint() != termin.fingerprint() || fresh.modified != termin.modified {
            info!(
                "calendar sync of {}: appointment {} changed in Advoware during the run; the next run decides",
                self.rules.kuerzel, termin.fr_nr
            );
            return Ok(None);
        }
        let body = advoware_map::write_over(&fresh.record, &fresh.appointment, merged);
        self.fence.check()?;
        let answer = advoware::Request::new("PUT", format!("appointments/{}", termin.fr_nr))
            .json(&body)?
            .send()
            .map_err(|e| RunError::Failed(format!("Advoware update: {}", Error::from(e))))?;
        if !answer.is_success() {
            return Err(RunError::Failed(format!(
                "Advoware answered {} to updating appointment {}: {}",
                answer.status,
                termin.fr_nr,
                clip(&answer.body)
            )));
        }
        self.report.advoware.updated += 1;
        let stored = answer
            .json::<Value>()
            .ok()
            .and_then(|v| advoware_map::read(&v).ok())
            .filter(|t| t.fr_nr == termin.fr_nr)
            .unwrap_or_else(|| Termin {
                appointment: merged.clone(),
                ..fresh
            });
        Ok(Some(stored))
    }

    /// Writes the link of a Google event (content `google`) to Advoware's
    /// `stored`; the event is patched in full when it should show something else.
    fn link(
        &mut self,
        state: &mut EmployeeState,
        id: &str,
        entry: &Mirrored,
        stored: &Termin,
        google: &Appointment,
    ) -> Result<(), RunError> {
        // After the Advoware write or the import before it: the lease once more.
        self.fence.check()?;
        let wanted = self.rules.google_fingerprint(stored);
        let patch = if wanted == google.fingerprint() && stored.private == entry.shown_private {
            Event::empty()
                .with_private(PROP_FR_NR, stored.fr_nr.to_string())
                .with_private(PROP_ADVOWARE_HASH, stored.fingerprint())
                .with_private(PROP_GOOGLE_HASH, wanted)
                .with_private(PROP_NEUTRAL, neutral_flag(self.rules.hides_text(stored)))
        } else {
            self.google_event(
                stored,
                entry.shown_private,
                Some(&google.when_fingerprint()),
            )
        };
        // Changed again meanwhile (false): the next run links it (the fingerprints find it).
        if self.patch(state, id, &patch, entry.etag.as_deref(), "link")? {
            self.report.google.linked += 1;
        }
        Ok(())
    }

    fn delete_advoware(
        &mut self,
        state: &mut EmployeeState,
        fr_nr: i64,
        id: &str,
    ) -> Result<(), RunError> {
        let answer = advoware::Request::new("DELETE", format!("appointments/{fr_nr}"))
            .send()
            .map_err(|e| RunError::Failed(format!("Advoware delete: {}", Error::from(e))))?;
        if !answer.is_success() && answer.status != 404 {
            return Err(RunError::Failed(format!(
                "Advoware answered {} to deleting appointment {fr_nr}",
                answer.status
            )));
        }
        self.report.advoware.deleted += 1;
        if let Some(entry) = state.events.get_mut(id) {
            entry.gone = true;
            entry.pending = None;
        }
        Ok(())
    }

    fn delete_google(&mut self, state: &mut EmployeeState, id: &str) -> Result<(), RunError> {
        let etag = state.events.get(id).and_then(|e| e.etag.clone());
        match self.calendar.delete(id, etag.as_deref()) {
            Ok(()) | Err(GoogleError::NotFound(_) | GoogleError::Gone(_)) => {
                self.report.google.deleted += 1;
                if let Some(entry) = state.events.get_mut(id) {
                    entry.cancelled = true;
                    entry.gone = true;
                    entry.pending = None;
                    entry.import_started = None;
                    entry.import_made = None;
                }
                Ok(())
            }
            // Changed in Google meanwhile: the next run looks again.
            Err(GoogleError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(google_failed("delete", e)),
        }
    }

    /// Links an appointment an earlier run's import made.
    fn link_import(
        &mut self,
        state: &mut EmployeeState,
        termin: &Termin,
        id: &str,
    ) -> Result<(), RunError> {
        let Some(entry) = state.events.get_mut(id) else {
            return Ok(());
        };
        // Found: if the link cannot reach Google now, the next run links
        // this one too, and no run imports the event again meanwhile.
        entry.import_made = Some(termin.fr_nr);
        let entry = entry.clone();
        let Some(google) = entry.pending.clone() else {
            return Ok(());
        };
        info!(
            "calendar sync of {}: linking appointment {} imported by an earlier run",
            self.rules.kuerzel, termin.fr_nr
        );
        self.link(state, id, &entry, termin, &google)
    }

    /// An event made in Google becomes an appointment. The store remembers
    /// the import before the `POST` and the number as soon as Advoware
    /// answers, so a run cut short anywhere links what it made instead of
    /// making another.
    fn import(&mut self, state: &mut EmployeeState, id: &str) -> Result<(), RunError> {
        let Some(entry) = state.events.get(id).cloned() else {
            return Ok(());
        };
        let Some(content) = entry.pending.clone() else {
            return Ok(());
        };
        let body = advoware_map::write(&content, &self.rules.kuerzel);
        let expected = advoware_map::read(&{
            let mut v = body.clone();
            v["frNr"] = Value::from(0);
            v
        })
        .map(|t| t.fingerprint())
        .unwrap_or_default();
        if let Some(mirrored) = state.events.get_mut(id) {
            mirrored.import_started = Some(expected);
        }
        self.fence.check()?;
        state.save(&self.rules.kuerzel)?;
        let answer = advoware::Request::new("POST", "appointments")
            .json(&body)?
            .send()
            .map_err(|e| RunError::Failed(format!("Advoware create: {}", Error::from(e))))?;
        if !answer.is_success() {
            // A refusal made nothing; a 5xx (or 408, 429) may have been
            // answered after Advoware made it: the mark stays, and the next
            // run finds that appointment by its fingerprint before importing.
            let refused =
                (400..500).contains(&answer.status) && !matches!(answer.status, 408 | 429);
            if refused && let Some(mirrored) = state.events.get_mut(id) {
                mirrored.import_started = None;
            }
            return Err(RunError::Failed(format!(
                "Advoware answered {} to creating an appointment: {}",
                answer.status,
                clip(&answer.body)
            )));
        }
        let fr_nr = answer
            .json::<Value>()
            .ok()
            .as_ref()
            .and_then(advoware_map::created_number)
            .ok_or_else(|| {
                RunError::Failed(format!(
                    "Advoware's answer to the create names no `frNr`: {}",
                    clip(&answer.body)
                ))
            })?;
        self.report.advoware.created += 1;
        // Made: remember which, before anything that may fail.
        if let Some(mirrored) = state.events.get_mut(id) {
            mirrored.import_made = Some(fr_nr);
        }
        self.fence.check()?;
        state.save(&self.rules.kuerzel)?;
        info!(
            "calendar sync of {}: Google event {} is now appointment {}",
            self.rules.kuerzel, id, fr_nr
        );
        // What Advoware made of it, read back for the fingerprint.
        let stored = match read::appointment(fr_nr) {
            Alone::Found(termin) => termin,
            Alone::Missing | Alone::Malformed(_) | Alone::Failed(_) => {
                return Err(RunError::Failed(format!(
                    "appointment {fr_nr}, made from Google event {id}, could not be read back; it is linked next run"
                )));
            }
        };
        let Some(entry) = state.events.get(id).cloned() else {
            return Ok(());
        };
        self.link(state, id, &entry, &stored, &content)
    }
}

fn neutral_flag(neutral: bool) -> &'static str {
    if neutral { "1" } else { "0" }
}

fn clip(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}
