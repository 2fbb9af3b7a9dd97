//! Deciding: a pure function from what was read — the mirror of Google (with
//! this run's changes absorbed) and Advoware's side — to the list of writes.
//! Every rule of the sync is here, and nothing here talks to a host: the
//! table tests below run without one.
//!
//! The rules, in the order a reader meets them:
//! - An import an earlier run started is linked to the appointment it made
//!   (found by the number Advoware answered, or else by the fingerprint the
//!   import expected), never made again; one deleted in Advoware before its
//!   link is deleted in Google.
//! - Each appointment has one event: of several linked to it, the live one
//!   (then the one with the derived id) counts; the others are for the
//!   duplicates audit. An appointment an import claimed gets no second event.
//! - An appointment that is not this employee's (moved to another in
//!   Advoware) counts as gone from this calendar; nothing in Advoware changes.
//! - An appointment Advoware listed but could not read, or failed to read
//!   alone, is left alone: never taken as deleted.
//! - Per appointment, by fingerprints: see [`Rules::decide`].
//! - Events made in Google become appointments when Advoware may be written.
//! - Safeguards: an empty Advoware beside linked events, or more deletions
//!   than the configured share, stop the run before any write.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::event_id;
use super::read::AdvowareSide;
use crate::advoware_map::Termin;
use crate::google_map;
use crate::model::{Appointment, Visibility, berlin_moment};
use crate::settings::{ConflictPolicy, Settings};
use crate::state::{EmployeeState, Mirrored};

/// One write (or note) the run will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// New in Advoware: an event with the derived id.
    CreateGoogle { fr_nr: i64 },
    /// Advoware's version to Google: changed there, put back, or restored.
    UpdateGoogle { fr_nr: i64, event_id: String },
    /// Google's change to Advoware.
    UpdateAdvoware { fr_nr: i64, event_id: String },
    /// Deleted in Google: deleted in Advoware.
    DeleteAdvoware { fr_nr: i64, event_id: String },
    /// Gone from this employee's appointments (deleted, or given to another).
    DeleteGoogle { fr_nr: i64, event_id: String },
    /// Gone on both sides: only remembered.
    Forget { event_id: String },
    /// An earlier run's import made `fr_nr`: the event is linked to it.
    LinkImport { event_id: String, fr_nr: i64 },
    /// An earlier run's import was deleted in Advoware before its link.
    DropImport { event_id: String, fr_nr: i64 },
    /// An event made in Google becomes an appointment.
    Import { event_id: String },
}

impl Decision {
    pub fn fr_nr(&self) -> Option<i64> {
        match self {
            Decision::CreateGoogle { fr_nr }
            | Decision::UpdateGoogle { fr_nr, .. }
            | Decision::UpdateAdvoware { fr_nr, .. }
            | Decision::DeleteAdvoware { fr_nr, .. }
            | Decision::DeleteGoogle { fr_nr, .. }
            | Decision::LinkImport { fr_nr, .. }
            | Decision::DropImport { fr_nr, .. } => Some(*fr_nr),
            Decision::Forget { .. } | Decision::Import { .. } => None,
        }
    }

    pub fn event_id(&self) -> Option<&str> {
        match self {
            Decision::CreateGoogle { .. } => None,
            Decision::UpdateGoogle { event_id, .. }
            | Decision::UpdateAdvoware { event_id, .. }
            | Decision::DeleteAdvoware { event_id, .. }
            | Decision::DeleteGoogle { event_id, .. }
            | Decision::Forget { event_id }
            | Decision::LinkImport { event_id, .. }
            | Decision::DropImport { event_id, .. }
            | Decision::Import { event_id } => Some(event_id),
        }
    }

    /// The name `verify` shows.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::CreateGoogle { .. } => "CreateGoogle",
            Decision::UpdateGoogle { .. } => "UpdateGoogle",
            Decision::UpdateAdvoware { .. } => "UpdateAdvoware",
            Decision::DeleteAdvoware { .. } => "DeleteAdvoware",
            Decision::DeleteGoogle { .. } => "DeleteGoogle",
            Decision::Forget { .. } => "Forget",
            Decision::LinkImport { .. } => "LinkImport",
            Decision::DropImport { .. } => "DropImport",
            Decision::Import { .. } => "ImportToAdvoware",
        }
    }

    fn deletes(&self) -> bool {
        matches!(
            self,
            Decision::DeleteGoogle { .. } | Decision::DeleteAdvoware { .. }
        )
    }
}

/// What the run will do, and what it noticed while deciding.
#[derive(Debug, Default)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Appointments and events left alone, with why.
    pub unsupported: Vec<String>,
    pub conflicts: u32,
    /// The safeguard that stops the run before any write.
    pub refused: Option<String>,
}

/// The settings a plan depends on, for one employee and one run.
#[derive(Debug, Clone)]
pub struct Rules {
    pub kuerzel: String,
    pub write_to_advoware: bool,
    pub conflict_policy: ConflictPolicy,
    pub id_namespace: String,
    /// What this run shows in Google (the tenant's `full_content`, narrowed by a request).
    pub visibility: Visibility,
    pub neutral_title: String,
    pub max_delete_share: f64,
    pub max_delete_floor: usize,
    /// The Advoware window, first and last day.
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Rules {
    pub fn new(
        settings: &Settings,
        kuerzel: &str,
        full_content: bool,
        (from, to): (NaiveDate, NaiveDate),
    ) -> Self {
        Rules {
            kuerzel: kuerzel.to_owned(),
            write_to_advoware: settings.write_to_advoware,
            conflict_policy: settings.conflict_policy,
            id_namespace: settings.id_namespace.clone(),
            visibility: settings.visibility(full_content),
            neutral_title: settings.neutral_title.clone(),
            max_delete_share: settings.max_delete_share,
            max_delete_floor: settings.max_delete_floor,
            from,
            to,
        }
    }

    /// Whether Google shows only the time of `termin`: a neutral run, or a
    /// private appointment (whatever `full_content` says).
    pub fn hides_text(&self, termin: &Termin) -> bool {
        termin.private || matches!(self.visibility, Visibility::Neutral(_))
    }

    /// What Google shows of `termin`.
    pub fn shown(&self, termin: &Termin) -> Appointment {
        if termin.private {
            termin
                .appointment
                .visible(&Visibility::Neutral(self.neutral_title.clone()))
        } else {
            termin.appointment.visible(&self.visibility)
        }
    }

    /// The fingerprint of what Google holds after the sync wrote `termin`.
    pub fn google_fingerprint(&self, termin: &Termin) -> String {
        google_fingerprint(&self.shown(termin))
    }

    /// What of Google's `google` goes to Advoware: each part that differs
    /// from what the sync would show of `termin`; the text only when Google
    /// shows it (not for a private appointment or a neutral run).
    /// `shown_neutral`: Google was last given only the time (its text is not
    /// the appointment's, whatever this run shows).
    pub fn carried(
        &self,
        termin: &Termin,
        google: &Appointment,
        shown_neutral: bool,
    ) -> Appointment {
        let current = &termin.appointment;
        // Advoware's version as Google shows it: a part equal to it is unchanged in Google.
        let shown = google_map::read(&google_map::write(&self.shown(termin))).ok();
        let unchanged = |same: fn(&Appointment, &Appointment) -> bool| {
            shown.as_ref().is_some_and(|shown| same(shown, google))
        };
        let text = !self.hides_text(termin) && !shown_neutral;
        let pick = |changed: bool, google: &String, current: &String| {
            if text && changed {
                google.clone()
            } else {
                current.clone()
            }
        };
        Appointment {
            span: if unchanged(|a, b| a.span == b.span) {
                current.span.clone()
            } else {
                google.span.clone()
            },
            recurrence: if unchanged(|a, b| a.recurrence == b.recurrence) {
                current.recurrence.clone()
            } else {
                google.recurrence.clone()
            },
            title: pick(
                !unchanged(|a, b| a.title == b.title),
                &google.title,
                &current.title,
            ),
            notes: pick(
                !unchanged(|a, b| a.notes == b.notes),
                &google.notes,
                &current.notes,
            ),
            location: pick(
                !unchanged(|a, b| a.location == b.location),
                &google.location,
                &current.location,
            ),
        }
    }

    /// The whole plan.
    pub fn plan(&self, state: &EmployeeState, advoware: &AdvowareSide) -> Plan {
        let mut plan = Plan {
            refused: self.empty_advoware(state, advoware),
            ..Plan::default()
        };
        let linked = self.linked(state, &mut plan);
        let (claimed, resolved) = self.earlier_imports(state, advoware, &linked, &mut plan);

        let numbers: BTreeSet<i64> = advoware
            .termine
            .keys()
            .chain(linked.keys())
            .copied()
            .collect();
        for fr_nr in numbers {
            let entry = linked.get(&fr_nr).map(|(id, e)| (id.as_str(), *e));
            if entry.is_none() && claimed.contains(&fr_nr) {
                // An import made it; its link comes with the import's.
                continue;
            }
            let termin = advoware.termine.get(&fr_nr);
            let ours = termin.filter(|t| t.shown_to(&self.kuerzel));
            if termin.is_none() && entry.is_some() {
                if advoware.unreadable.contains(&fr_nr) {
                    push_note(
                        &mut plan.unsupported,
                        format!("appointment {fr_nr}: Advoware could not be read; left alone"),
                    );
                    continue;
                }
                if !advoware.missing.contains(&fr_nr) {
                    // Not read this run: out of the window and unchanged in Google.
                    continue;
                }
            }
            if let Some(decision) = self.decide(fr_nr, ours, entry, &mut plan) {
                plan.decisions.push(decision);
            }
        }

        for (id, entry) in &state.events {
            if entry.fr_nr.is_some()
                || entry.cancelled
                || entry.gone
                || entry.import_made.is_some()
                || resolved.contains(id.as_str())
                || !entry.overlaps(self.from, self.to)
            {
                continue;
            }
            let Some(content) = &entry.pending else {
                if let Some(why) = &entry.unsupported {
                    push_note(
                        &mut plan.unsupported,
                        format!("Google event {id}: not imported ({why})"),
                    );
                }
                continue;
            };
            if !self.write_to_advoware {
                continue;
            }
            if let Some(why) = content.advoware_cannot_hold() {
                push_note(
                    &mut plan.unsupported,
                    format!("Google event {id}: not imported ({why})"),
                );
                continue;
            }
            plan.decisions.push(Decision::Import {
                event_id: id.clone(),
            });
        }

        if plan.refused.is_none() {
            plan.refused = self.mass_deletion(state, &plan.decisions);
        }
        plan
    }

    /// Each appointment's event. Of several linked to one appointment the
    /// live one counts, then the one with the derived id; the others are the
    /// duplicates audit's.
    fn linked<'s>(
        &self,
        state: &'s EmployeeState,
        plan: &mut Plan,
    ) -> BTreeMap<i64, (String, &'s Mirrored)> {
        let mut linked: BTreeMap<i64, (String, &Mirrored)> = BTreeMap::new();
        for (id, entry) in &state.events {
            let Some(fr_nr) = entry.fr_nr else { continue };
            if entry.gone {
                continue;
            }
            let own = event_id(&self.id_namespace, fr_nr);
            let rank = |id: &str, e: &Mirrored| (!e.cancelled, id == own);
            match linked.get(&fr_nr) {
                Some((kept, kept_entry)) => {
                    if !entry.cancelled && !kept_entry.cancelled {
                        push_note(
                            &mut plan.unsupported,
                            format!(
                                "Google events {kept} and {id} are both linked to appointment {fr_nr}; see the duplicates audit"
                            ),
                        );
                    }
                    if rank(id, entry) > rank(kept, kept_entry) {
                        linked.insert(fr_nr, (id.clone(), entry));
                    }
                }
                None => {
                    linked.insert(fr_nr, (id.clone(), entry));
                }
            }
        }
        linked
    }

    /// Imports earlier runs started: linked to what they made, or dropped
    /// with it. Returns the appointments they claim (no second event for
    /// them) and the events they resolve (not imported again).
    fn earlier_imports<'s>(
        &self,
        state: &'s EmployeeState,
        advoware: &AdvowareSide,
        linked: &BTreeMap<i64, (String, &Mirrored)>,
        plan: &mut Plan,
    ) -> (BTreeSet<i64>, BTreeSet<&'s str>) {
        let mut claimed: BTreeSet<i64> = state
            .events
            .values()
            .filter(|e| e.fr_nr.is_none() && !e.gone)
            .filter_map(|e| e.import_made)
            .collect();
        let mut resolved = BTreeSet::new();
        for (id, entry) in &state.events {
            if entry.fr_nr.is_some() || entry.gone {
                continue;
            }
            let made = match (entry.import_made, &entry.import_started) {
                // Advoware answered: that appointment, whatever it holds now.
                (Some(fr_nr), _) => {
                    if advoware.missing.contains(&fr_nr) {
                        plan.decisions.push(Decision::DropImport {
                            event_id: id.clone(),
                            fr_nr,
                        });
                        continue;
                    }
                    match advoware.termine.get(&fr_nr) {
                        Some(termin) => termin,
                        // Not read this run: waits, never made twice.
                        None => continue,
                    }
                }
                // Cut short before the answer: the appointment it expected, if it exists.
                (None, Some(expected)) => match advoware.termine.values().find(|t| {
                    !linked.contains_key(&t.fr_nr)
                        && !claimed.contains(&t.fr_nr)
                        && t.shown_to(&self.kuerzel)
                        && &t.fingerprint() == expected
                }) {
                    Some(termin) => termin,
                    // The POST never arrived: imported again below.
                    None => continue,
                },
                (None, None) => continue,
            };
            claimed.insert(made.fr_nr);
            resolved.insert(id.as_str());
            if entry.pending.is_some() {
                plan.decisions.push(Decision::LinkImport {
                    event_id: id.clone(),
                    fr_nr: made.fr_nr,
                });
            }
        }
        (claimed, resolved)
    }

    /// What to do about one appointment, from both sides and the
    /// fingerprints of the last sync:
    /// - new in Advoware: created in Google; gone from Advoware (or given
    ///   to another employee): deleted in Google, or forgotten when Google
    ///   deleted it too;
    /// - only Advoware changed (or Google shows something other than what
    ///   the sync would write now): Google updated;
    /// - Google changed: carried to Advoware when it may be written and
    ///   the appointment is this employee's own (not firm-wide, not a
    ///   special entry) and Advoware can hold the change; otherwise put back;
    /// - both changed: the conflict policy decides.
    pub fn decide(
        &self,
        fr_nr: i64,
        termin: Option<&Termin>,
        entry: Option<(&str, &Mirrored)>,
        plan: &mut Plan,
    ) -> Option<Decision> {
        let (termin, (id, entry)) = match (termin, entry) {
            (None, None) => return None,
            (Some(_), None) => return Some(Decision::CreateGoogle { fr_nr }),
            (None, Some((id, entry))) => {
                let event_id = id.to_owned();
                return Some(if entry.cancelled {
                    Decision::Forget { event_id }
                } else {
                    Decision::DeleteGoogle { fr_nr, event_id }
                });
            }
            (Some(termin), Some(entry)) => (termin, entry),
        };
        let event_id = id.to_owned();
        let advoware_changed =
            entry.synced_advoware.as_deref() != Some(termin.fingerprint().as_str());
        if !entry.changed_in_google() {
            let stale = entry.synced_google.as_deref()
                != Some(self.google_fingerprint(termin).as_str())
                || entry.shown_private != termin.private;
            return (advoware_changed || stale)
                .then_some(Decision::UpdateGoogle { fr_nr, event_id });
        }
        let writable = self.write_to_advoware && !termin.read_only();
        if !writable || (!entry.cancelled && entry.pending.is_none()) {
            if let Some(why) = &entry.unsupported {
                push_note(
                    &mut plan.unsupported,
                    format!(
                        "appointment {fr_nr}: the change in Google cannot go to Advoware ({why}); put back"
                    ),
                );
            } else if self.write_to_advoware && termin.firm_wide() {
                push_note(
                    &mut plan.unsupported,
                    format!(
                        "appointment {fr_nr} is firm-wide ({}): changed in one calendar, put back from Advoware",
                        crate::advoware_map::FIRM_WIDE
                    ),
                );
            }
            return Some(Decision::UpdateGoogle { fr_nr, event_id });
        }
        let google_wins = if !advoware_changed {
            true
        } else {
            plan.conflicts += 1;
            match self.conflict_policy {
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
            }
        };
        Some(match (google_wins, entry.cancelled) {
            (false, _) => Decision::UpdateGoogle { fr_nr, event_id },
            (true, true) => Decision::DeleteAdvoware { fr_nr, event_id },
            (true, false) => Decision::UpdateAdvoware { fr_nr, event_id },
        })
    }

    /// Advoware listing nothing beside linked events is an outage, not a wish to delete.
    pub fn empty_advoware(&self, state: &EmployeeState, advoware: &AdvowareSide) -> Option<String> {
        let linked_in_window = state
            .events
            .values()
            .filter(|e| e.fr_nr.is_some() && !e.cancelled && !e.gone)
            .filter(|e| e.overlaps(self.from, self.to))
            .count();
        (advoware.listed == 0 && linked_in_window > 0).then(|| {
            format!(
                "Advoware listed no appointments for {} while its calendar holds {linked_in_window} linked events in the window; nothing was changed",
                self.kuerzel
            )
        })
    }

    /// More deletions than the configured share of the links stop the run.
    fn mass_deletion(&self, state: &EmployeeState, decisions: &[Decision]) -> Option<String> {
        let deletions = decisions.iter().filter(|d| d.deletes()).count();
        let linked = state
            .events
            .values()
            .filter(|e| e.fr_nr.is_some() && !e.cancelled && !e.gone)
            .count();
        (deletions > self.max_delete_floor
            && deletions as f64 > self.max_delete_share * linked as f64)
            .then(|| {
                format!(
                    "the run would delete {deletions} of {linked} linked appointments of {} (more than {:.0} %); nothing was deleted",
                    self.kuerzel,
                    self.max_delete_share * 100.0
                )
            })
    }
}

/// The fingerprint of what Google holds after the sync wrote `shown`.
pub fn google_fingerprint(shown: &Appointment) -> String {
    google_map::read(&google_map::write(shown))
        .map(|a| a.fingerprint())
        .unwrap_or_default()
}

fn push_note(notes: &mut Vec<String>, note: String) {
    if notes.len() < crate::state::Report::LISTED {
        notes.push(note);
    }
}

/// The rules as table tests: each row is what was read, and what the plan
/// must decide. The cases the convergence property test found, and the
/// cases of the integrity issue (firm-wide, private, moved, unreadable,
/// imports cut short), are rows here.
#[cfg(test)]
mod tests {
    use bitbylaw_sdk::google_calendar::Event;
    use serde_json::{Value, json};

    use super::*;
    use crate::advoware_map;
    use crate::model::Span;
    use crate::state::{PROP_ADVOWARE_HASH, PROP_FR_NR, PROP_GOOGLE_HASH, PROP_PRIVATE};

    fn rules() -> Rules {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        Rules {
            kuerzel: "SB".into(),
            write_to_advoware: true,
            conflict_policy: ConflictPolicy::AdvowareWins,
            id_namespace: "t".into(),
            visibility: Visibility::Full,
            neutral_title: "Termin".into(),
            max_delete_share: 0.5,
            max_delete_floor: 10,
            from: day(1),
            to: day(31),
        }
    }

    fn termin(fr_nr: i64, change: Value) -> Termin {
        let mut record = json!({
            "frNr": fr_nr, "kuerzel": "SB", "text": format!("Termin {fr_nr}"),
            "datum": "2026-12-10", "uhrzeitVon": "09:00:00", "uhrzeitBis": "10:00:00",
        });
        for (key, value) in change.as_object().unwrap() {
            record[key] = value.clone();
        }
        advoware_map::read(&record).unwrap()
    }

    /// The event the sync wrote for `termin`, as Google lists it.
    fn written(rules: &Rules, termin: &Termin) -> Event {
        let shown = rules.shown(termin);
        google_map::write(&shown)
            .with_id(event_id(&rules.id_namespace, termin.fr_nr))
            .with_private(PROP_FR_NR, termin.fr_nr.to_string())
            .with_private(PROP_ADVOWARE_HASH, termin.fingerprint())
            .with_private(PROP_GOOGLE_HASH, google_fingerprint(&shown))
            .with_private(PROP_PRIVATE, if termin.private { "1" } else { "0" })
    }

    fn mirrored(event: &Event) -> Mirrored {
        let mut entry = Mirrored::default();
        entry.absorb(event);
        entry
    }

    fn cancelled(mut event: Event) -> Event {
        event.status = Some("cancelled".into());
        event
    }

    /// The entry of `termin`'s event after a person deleted it in Google
    /// (Google lists little more than the id of a deleted event).
    fn deleted_in_google(rules: &Rules, termin: &Termin) -> Mirrored {
        let mut entry = mirrored(&written(rules, termin));
        entry.absorb(&cancelled(
            Event::empty().with_id(event_id(&rules.id_namespace, termin.fr_nr)),
        ));
        entry
    }

    /// An event a person made in Google.
    fn made_in_google(title: &str) -> Event {
        Event::timed(
            "2026-12-11T09:00:00+01:00",
            "2026-12-11T10:00:00+01:00",
            "Europe/Berlin",
        )
        .with_summary(title)
    }

    struct Case {
        state: EmployeeState,
        advoware: AdvowareSide,
    }

    impl Case {
        fn new() -> Self {
            Case {
                state: EmployeeState::default(),
                advoware: AdvowareSide::default(),
            }
        }

        fn listed(mut self, termin: Termin) -> Self {
            self.advoware.listed += 1;
            self.advoware.termine.insert(termin.fr_nr, termin);
            self
        }

        /// Read alone (not in the window listing).
        fn read_alone(mut self, termin: Termin) -> Self {
            self.advoware.termine.insert(termin.fr_nr, termin);
            self
        }

        fn event(mut self, id: &str, entry: Mirrored) -> Self {
            self.state.events.insert(id.into(), entry);
            self
        }

        fn synced(self, rules: &Rules, termin: &Termin) -> Self {
            let id = event_id(&rules.id_namespace, termin.fr_nr);
            self.event(&id, mirrored(&written(rules, termin)))
        }

        fn plan(&self, rules: &Rules) -> Plan {
            rules.plan(&self.state, &self.advoware)
        }
    }

    fn id(fr_nr: i64) -> String {
        event_id("t", fr_nr)
    }

    #[test]
    fn new_changed_and_unchanged_appointments() {
        let rules = rules();
        let (a, b, c) = (
            termin(1, json!({})),
            termin(2, json!({})),
            termin(3, json!({})),
        );
        let case = Case::new()
            .listed(a.clone())
            .listed(b.clone())
            .listed(termin(2, json!({ "text": "verlegt" })))
            .listed(c.clone())
            .synced(&rules, &b)
            .synced(&rules, &c);
        assert_eq!(
            case.plan(&rules).decisions,
            [
                Decision::CreateGoogle { fr_nr: 1 },
                Decision::UpdateGoogle {
                    fr_nr: 2,
                    event_id: id(2)
                },
            ],
            "new: created; changed in Advoware: updated; unchanged: nothing"
        );
    }

    #[test]
    fn a_change_in_google_goes_to_advoware_unless_the_appointment_is_firm_wide() {
        let rules = rules();
        for (owner, expected) in [
            (
                "SB",
                Decision::UpdateAdvoware {
                    fr_nr: 1,
                    event_id: id(1),
                },
            ),
            (
                "ALLE",
                Decision::UpdateGoogle {
                    fr_nr: 1,
                    event_id: id(1),
                },
            ),
        ] {
            let appointment = termin(1, json!({ "kuerzel": owner }));
            let edited = written(&rules, &appointment).with_summary("in Google geändert");
            let plan = Case::new()
                .listed(appointment)
                .event(&id(1), mirrored(&edited))
                .plan(&rules);
            assert_eq!(plan.decisions, [expected], "owner {owner}");
        }
        // Deleted in one employee's Google: a firm-wide appointment is put back, never deleted for all.
        let firm_wide = termin(1, json!({ "kuerzel": "ALLE" }));
        let plan = Case::new()
            .listed(firm_wide.clone())
            .event(&id(1), deleted_in_google(&rules, &firm_wide))
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::UpdateGoogle {
                fr_nr: 1,
                event_id: id(1)
            }]
        );
        let own = termin(1, json!({}));
        let plan = Case::new()
            .listed(own.clone())
            .event(&id(1), deleted_in_google(&rules, &own))
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::DeleteAdvoware {
                fr_nr: 1,
                event_id: id(1)
            }]
        );
    }

    #[test]
    fn a_private_appointment_shows_only_its_time_whatever_full_content_says() {
        let rules = rules();
        let public = termin(1, json!({ "notiz": "Mandant Müller", "ort": "Kanzlei" }));
        let private = termin(
            1,
            json!({ "notiz": "Mandant Müller", "ort": "Kanzlei", "privat": true }),
        );
        let shown = rules.shown(&private);
        assert_eq!(
            (
                shown.title.as_str(),
                shown.notes.as_str(),
                shown.location.as_str()
            ),
            ("Termin", "", "")
        );
        assert_eq!(shown.span, private.appointment.span);
        assert!(rules.hides_text(&private) && !rules.hides_text(&public));
        // Made private in Advoware after it was synced: Google is rewritten.
        let plan = Case::new()
            .listed(private.clone())
            .synced(&rules, &public)
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::UpdateGoogle {
                fr_nr: 1,
                event_id: id(1)
            }]
        );
        // Synced as private: quiet.
        let plan = Case::new()
            .listed(private.clone())
            .synced(&rules, &private)
            .plan(&rules);
        assert_eq!(plan.decisions, []);
    }

    #[test]
    fn an_appointment_given_to_another_employee_leaves_this_calendar_only() {
        let rules = rules();
        let before = termin(1, json!({}));
        let moved = termin(1, json!({ "kuerzel": "MK" }));
        let plan = Case::new()
            .read_alone(moved.clone())
            .synced(&rules, &before)
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::DeleteGoogle {
                fr_nr: 1,
                event_id: id(1)
            }]
        );
        // Deleted in Google meanwhile: only forgotten, never deleted in Advoware.
        let plan = Case::new()
            .read_alone(moved.clone())
            .event(&id(1), deleted_in_google(&rules, &before))
            .plan(&rules);
        assert_eq!(plan.decisions, [Decision::Forget { event_id: id(1) }]);
        // Never created here when listed by mistake.
        let plan = Case::new().listed(moved).plan(&rules);
        assert_eq!(plan.decisions, []);
    }

    #[test]
    fn an_appointment_that_cannot_be_read_is_never_taken_as_deleted() {
        let rules = rules();
        let known = termin(1, json!({}));
        let mut case = Case::new()
            .listed(termin(2, json!({})))
            .synced(&rules, &known);
        case.advoware.unreadable.insert(1);
        case.advoware.listed += 1;
        let plan = case.plan(&rules);
        assert_eq!(plan.decisions, [Decision::CreateGoogle { fr_nr: 2 }]);
        assert!(
            plan.unsupported.iter().any(|n| n.contains("appointment 1")),
            "{:?}",
            plan.unsupported
        );
        // Not read at all (out of the window, unchanged): left as it is.
        let plan = Case::new()
            .listed(termin(2, json!({})))
            .synced(&rules, &known)
            .plan(&rules);
        assert_eq!(plan.decisions, [Decision::CreateGoogle { fr_nr: 2 }]);
        // Read alone and answered 404: deleted.
        let mut case = Case::new()
            .listed(termin(2, json!({})))
            .synced(&rules, &known);
        case.advoware.missing.insert(1);
        assert_eq!(
            case.plan(&rules).decisions,
            [
                Decision::DeleteGoogle {
                    fr_nr: 1,
                    event_id: id(1)
                },
                Decision::CreateGoogle { fr_nr: 2 },
            ]
        );
    }

    #[test]
    fn imports_cut_short_are_linked_or_dropped_never_made_twice() {
        let rules = rules();
        let new = || mirrored(&made_in_google("neu"));
        // Advoware answered with the number: that appointment, even changed since.
        let mut entry = new();
        entry.import_made = Some(7);
        let made = termin(7, json!({ "text": "geändert in Advoware" }));
        let plan = Case::new()
            .listed(made)
            .event("g1", entry.clone())
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::LinkImport {
                event_id: "g1".into(),
                fr_nr: 7
            }],
            "linked, and no event of its own for 7"
        );
        // Deleted in Advoware before the link: the event goes too.
        let mut case = Case::new()
            .listed(termin(1, json!({})))
            .event("g1", entry.clone());
        case.advoware.missing.insert(7);
        assert_eq!(
            case.plan(&rules).decisions,
            [
                Decision::DropImport {
                    event_id: "g1".into(),
                    fr_nr: 7
                },
                Decision::CreateGoogle { fr_nr: 1 },
            ]
        );
        // Not readable this run: waits; neither imported again nor given a second event.
        let mut case = Case::new().listed(termin(1, json!({}))).event("g1", entry);
        case.advoware.unreadable.insert(7);
        assert_eq!(
            case.plan(&rules).decisions,
            [Decision::CreateGoogle { fr_nr: 1 }]
        );

        // Cut short before the answer: found by the fingerprint it expected...
        let content = google_map::read(&made_in_google("neu")).unwrap();
        let sent = advoware_map::write(&content, "SB");
        let mut record = sent.clone();
        record["frNr"] = json!(9);
        let arrived = advoware_map::read(&record).unwrap();
        let mut started = new();
        started.import_started = Some(arrived.fingerprint());
        let plan = Case::new()
            .listed(arrived)
            .event("g1", started.clone())
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::LinkImport {
                event_id: "g1".into(),
                fr_nr: 9
            }]
        );
        // ...or, when the POST never arrived, imported again.
        let plan = Case::new()
            .listed(termin(1, json!({})))
            .event("g1", started)
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [
                Decision::CreateGoogle { fr_nr: 1 },
                Decision::Import {
                    event_id: "g1".into()
                }
            ]
        );
        // Not imported at all while Advoware may not be written.
        let quiet = Rules {
            write_to_advoware: false,
            ..rules.clone()
        };
        let plan = Case::new()
            .listed(termin(1, json!({})))
            .event("g1", new())
            .plan(&quiet);
        assert_eq!(plan.decisions, [Decision::CreateGoogle { fr_nr: 1 }]);
    }

    #[test]
    fn of_two_events_linked_to_one_appointment_the_live_one_counts() {
        let rules = rules();
        let appointment = termin(1, json!({}));
        let derived = cancelled(written(&rules, &appointment));
        let copy = written(&rules, &appointment).with_id("other");
        let plan = Case::new()
            .listed(appointment.clone())
            .event(&id(1), mirrored(&derived))
            .event("other", mirrored(&copy))
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [],
            "the live copy is in line; the cancelled one is not restored"
        );
        let changed = termin(1, json!({ "text": "neu" }));
        let plan = Case::new()
            .listed(changed)
            .event(&id(1), mirrored(&derived))
            .event("other", mirrored(&copy))
            .plan(&rules);
        assert_eq!(
            plan.decisions,
            [Decision::UpdateGoogle {
                fr_nr: 1,
                event_id: "other".into()
            }]
        );
    }

    #[test]
    fn conflicts_follow_the_policy() {
        let rules = rules();
        let before = termin(1, json!({}));
        let now = termin(
            1,
            json!({ "text": "Advoware", "zuletztGeaendertAm": "2026-12-01T10:00:00" }),
        );
        let mut edited = written(&rules, &before).with_summary("Google");
        edited.updated = Some("2026-12-01T10:00:01.500Z".into());
        let case = Case::new().listed(now).event(&id(1), mirrored(&edited));
        let plan = case.plan(&rules);
        assert_eq!(
            (plan.decisions.clone(), plan.conflicts),
            (
                vec![Decision::UpdateGoogle {
                    fr_nr: 1,
                    event_id: id(1)
                }],
                1
            )
        );
        let later = Rules {
            conflict_policy: ConflictPolicy::LastChangeWins,
            ..rules
        };
        assert_eq!(
            case.plan(&later).decisions,
            [Decision::UpdateAdvoware {
                fr_nr: 1,
                event_id: id(1)
            }]
        );
    }

    #[test]
    fn only_the_parts_changed_in_google_go_to_advoware() {
        let rules = rules();
        // 02:30 on the last Sunday of March does not exist; Google shows 03:30.
        let gap = termin(
            1,
            json!({ "datum": "2026-03-29", "uhrzeitVon": "02:30:00", "uhrzeitBis": "04:00:00" }),
        );
        let mut google = google_map::read(&google_map::write(&rules.shown(&gap))).unwrap();
        assert_ne!(
            google.span, gap.appointment.span,
            "Google shows the moved time"
        );
        google.title = "nur der Titel".into();
        let carried = rules.carried(&gap, &google, false);
        assert_eq!(
            carried.span, gap.appointment.span,
            "the time in the gap is not rewritten"
        );
        assert_eq!(carried.title, "nur der Titel");
        assert_eq!(carried.notes, gap.appointment.notes);

        // A moved time goes; text stays Advoware's when Google does not show it.
        let private = termin(2, json!({ "privat": 1, "notiz": "vertraulich" }));
        let mut google = google_map::read(&google_map::write(&rules.shown(&private))).unwrap();
        let moved = Span::Timed {
            start: NaiveDate::from_ymd_opt(2026, 12, 10)
                .unwrap()
                .and_hms_opt(11, 0, 0)
                .unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 10)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap(),
        };
        google.span = moved.clone();
        google.title = "Neuer Titel".into();
        let carried = rules.carried(&private, &google, true);
        assert_eq!(carried.span, moved);
        assert_eq!(
            (carried.title.as_str(), carried.notes.as_str()),
            ("Termin 2", "vertraulich")
        );

        // Shown neutral by an earlier run (`full_content = false`), moved in
        // Google, now a full run: the neutral title is not the appointment's.
        let public = termin(3, json!({ "notiz": "Akte 3/26" }));
        let neutral = Rules {
            visibility: Visibility::Neutral("Termin".into()),
            ..rules.clone()
        };
        let mut google = google_map::read(&google_map::write(&neutral.shown(&public))).unwrap();
        google.span = moved.clone();
        let carried = rules.carried(&public, &google, true);
        assert_eq!(carried.span, moved);
        assert_eq!(
            (carried.title.as_str(), carried.notes.as_str()),
            ("Termin 3", "Akte 3/26"),
            "nothing of the neutral view reaches Advoware"
        );
        assert_eq!(
            rules.carried(&public, &google, false).title,
            "Termin",
            "without the mark it would"
        );
    }

    #[test]
    fn the_safeguards_stop_the_run() {
        let rules = rules();
        let mut case = Case::new();
        for fr_nr in 1..=30 {
            case = case.synced(&rules, &termin(fr_nr, json!({})));
        }
        let refused = case.plan(&rules).refused.unwrap();
        assert!(refused.contains("listed no appointments"), "{refused}");
        case = case.listed(termin(1, json!({})));
        for fr_nr in 2..=30 {
            case.advoware.missing.insert(fr_nr);
        }
        let refused = case.plan(&rules).refused.unwrap();
        assert!(refused.contains("would delete 29 of 30"), "{refused}");
    }
}
