//! What the sync keeps per employee in the tenant's store, and the report of
//! each run.
//!
//! The truth about a link lives in Google: every synced event holds, in its
//! private properties, the Advoware `frNr` and fingerprints of both sides'
//! content as last synced. The store keeps a *mirror* of those properties
//! (and of the content of events changed in Google but not yet handled) so
//! an incremental run, which only sees what changed in Google, still knows
//! every link. Mirror and sync token are saved together at the end of a run;
//! a run cut short starts again from the previous pair and sees its own
//! writes as changes whose fingerprints match, so nothing is done twice.

use std::collections::BTreeMap;

use bitbylaw_sdk::google_calendar::Event;
use bitbylaw_sdk::{Error, kv};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::google_map;
use crate::model::Appointment;

/// Private property keys on every synced Google event.
pub const PROP_FR_NR: &str = "advoware_frnr";
pub const PROP_ADVOWARE_HASH: &str = "advoware_hash";
pub const PROP_GOOGLE_HASH: &str = "google_hash";
/// `1` while the event shows a private appointment (and so was made private
/// by the sync), `0` after: the sync then gives it back its default visibility.
pub const PROP_PRIVATE: &str = "advoware_private";

/// The employees that ever ran (for the status and audit routes).
pub const EMPLOYEES_KEY: &str = "employees";

pub fn state_key(kuerzel: &str) -> String {
    format!("state:{kuerzel}")
}

pub fn report_key(kuerzel: &str) -> String {
    format!("run:{kuerzel}")
}

/// The token of the lease a run holds, kept while it lives.
pub fn lease_key(kuerzel: &str) -> String {
    format!("lease:{kuerzel}")
}

pub fn lock_name(kuerzel: &str) -> String {
    format!("calendar_sync:lock:{kuerzel}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmployeeState {
    pub calendar_id: Option<String>,
    pub sync_token: Option<String>,
    /// Google event id → what the sync knows of it.
    pub events: BTreeMap<String, Mirrored>,
}

/// One Google event of the employee's calendar, as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Mirrored {
    /// The linked appointment; none for an event made in Google and not (yet) imported.
    pub fr_nr: Option<i64>,
    /// Fingerprint of the Advoware side when last synced.
    pub synced_advoware: Option<String>,
    /// Fingerprint of the Google side when last synced.
    pub synced_google: Option<String>,
    /// Fingerprint of the Google side as last seen; none when Advoware could
    /// not hold it ([`Mirrored::unsupported`]).
    pub current_google: Option<String>,
    pub cancelled: bool,
    /// The linked appointment is known deleted: nothing left to do.
    #[serde(default)]
    pub gone: bool,
    pub etag: Option<String>,
    /// Google's `updated`, RFC 3339.
    pub updated: Option<String>,
    /// First and last day (Berlin) of the content as last seen; none for an endless series' end.
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    /// The content, kept only while a change made in Google waits to be handled.
    pub pending: Option<Appointment>,
    /// Why the content cannot go to Advoware.
    pub unsupported: Option<String>,
    /// Set before an import is sent to Advoware: the fingerprint the new
    /// appointment will have, so a run cut short after the POST links the
    /// appointment it made instead of making another.
    pub import_started: Option<String>,
    /// The appointment the import made, stored as soon as Advoware answered:
    /// a run cut short before the link reached Google links this one, even
    /// when it was changed in Advoware meanwhile (its fingerprint then no
    /// longer matches `import_started`).
    #[serde(default)]
    pub import_made: Option<i64>,
    /// The sync made the event private (it shows a private appointment).
    #[serde(default)]
    pub shown_private: bool,
}

impl Mirrored {
    pub fn changed_in_google(&self) -> bool {
        self.cancelled || self.current_google.is_none() || self.current_google != self.synced_google
    }

    /// Whether the event shows on a day from `from` to `to`; unknown days count as yes.
    pub fn overlaps(&self, from: NaiveDate, to: NaiveDate) -> bool {
        match self.first_day {
            Some(first) => first <= to && self.last_day.is_none_or(|last| last >= from),
            None => true,
        }
    }

    /// Takes in what Google says of the event now; keeps what only the sync knows.
    pub fn absorb(&mut self, event: &Event) {
        self.cancelled = event.is_cancelled();
        self.etag = event.etag.clone();
        self.updated = event.updated.clone();
        if self.cancelled {
            // Google guarantees little more than the id of a deleted event:
            // the link and the last content stay as known.
            self.pending = None;
            if let Some(fr_nr) = event
                .private(PROP_FR_NR)
                .and_then(|n| n.trim().parse().ok())
            {
                self.fr_nr = Some(fr_nr);
            }
            return;
        }
        // Live again (restored, or its appointment came back): not gone.
        self.gone = false;
        self.shown_private = event.private(PROP_PRIVATE) == Some("1");
        let content = google_map::read(event);
        self.fr_nr = event
            .private(PROP_FR_NR)
            .and_then(|n| n.trim().parse().ok());
        self.synced_advoware = event.private(PROP_ADVOWARE_HASH).map(str::to_owned);
        self.synced_google = event.private(PROP_GOOGLE_HASH).map(str::to_owned);
        match content {
            Ok(appointment) => {
                self.current_google = Some(appointment.fingerprint());
                self.first_day = Some(appointment.first_day());
                self.last_day = appointment.last_day();
                self.unsupported = None;
                let waiting = self.fr_nr.is_none() || self.current_google != self.synced_google;
                self.pending = waiting.then_some(appointment);
            }
            Err(google_map::Unsupported(why)) => {
                self.current_google = None;
                self.first_day = None;
                self.last_day = None;
                self.pending = None;
                self.unsupported = Some(why);
            }
        }
        if self.fr_nr.is_some() {
            self.import_started = None;
            self.import_made = None;
        }
    }
}

impl EmployeeState {
    pub fn load(kuerzel: &str) -> Result<Self, Error> {
        Ok(kv::get_json(&state_key(kuerzel))?.unwrap_or_default())
    }

    pub fn save(&self, kuerzel: &str) -> Result<(), Error> {
        kv::set_json(&state_key(kuerzel), self, None)
    }
}

/// Writes of one kind to one side.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Writes {
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
    /// Google only: events put back (undeleted or changed back).
    pub restored: u32,
    /// Google only: links written to an event made in Google.
    pub linked: u32,
}

impl Writes {
    pub fn total(&self) -> u32 {
        self.created + self.updated + self.deleted + self.restored + self.linked
    }
}

/// What one run of one employee did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub kuerzel: String,
    /// `ok`, `partial` (some appointments failed, see `failures`), `failed` or `skipped`.
    pub outcome: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub full_content: bool,
    /// Google listed in full (first run, or the sync token expired).
    pub full_listing: bool,
    pub google: Writes,
    pub advoware: Writes,
    pub conflicts: u32,
    pub error: Option<String>,
    /// Appointments left alone, with why (at most [`Report::LISTED`]).
    pub unsupported: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    /// How many unsupported items and failures a report names.
    pub const LISTED: usize = 20;

    pub fn note_unsupported(&mut self, what: String) {
        if self.unsupported.len() < Self::LISTED {
            self.unsupported.push(what);
        }
    }

    pub fn note_failure(&mut self, what: String) {
        if self.failures.len() < Self::LISTED {
            self.failures.push(what);
        }
        self.outcome = "partial".into();
    }
}
