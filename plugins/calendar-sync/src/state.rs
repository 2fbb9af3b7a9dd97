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
use sha2::{Digest, Sha256};

use crate::google_map;
use crate::model::Appointment;

/// Private property keys on every synced Google event.
pub const PROP_FR_NR: &str = "advoware_frnr";
pub const PROP_ADVOWARE_HASH: &str = "advoware_hash";
pub const PROP_GOOGLE_HASH: &str = "google_hash";
/// `1` while the event shows a private appointment (and so was made private
/// by the sync), `0` after: the sync then gives it back its default visibility.
pub const PROP_PRIVATE: &str = "advoware_private";
/// `1` while the event shows only the time (a private appointment, or a run
/// with `full_content = false`): its text in Google is not the appointment's,
/// so it never goes to Advoware.
pub const PROP_NEUTRAL: &str = "advoware_neutral";

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

/// How many values an employee's entries are spread over (by a hash of the
/// event id): a run rewrites only the values holding entries it changed, and
/// no value grows with the whole calendar.
pub const BUCKETS: usize = 32;

fn bucket_key(kuerzel: &str, bucket: usize) -> String {
    format!("state:{kuerzel}:{bucket}")
}

fn bucket_of(event_id: &str) -> usize {
    let digest = Sha256::digest(event_id.as_bytes());
    usize::from(u16::from_be_bytes([digest[0], digest[1]])) % BUCKETS
}

/// What `state:{kuerzel}` holds: the calendar and the sync token, saved after
/// the entries. Before the entries had values of their own it held them too
/// (`events`): such a state is read once and written in the new form.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Header {
    calendar_id: Option<String>,
    sync_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<BTreeMap<String, Mirrored>>,
}

#[derive(Debug, Clone, Default)]
pub struct EmployeeState {
    pub calendar_id: Option<String>,
    pub sync_token: Option<String>,
    /// Google event id → what the sync knows of it.
    pub events: BTreeMap<String, Mirrored>,
    /// Fingerprints of the buckets as stored (none: not stored), so a save
    /// writes only those that changed and deletes those now empty.
    stored: BTreeMap<usize, [u8; 16]>,
}

/// One Google event of the employee's calendar, as last seen.
///
/// Stored without what is unset (absent fields read as unset), so a synced
/// entry takes about 260 bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Mirrored {
    /// The linked appointment; none for an event made in Google and not (yet) imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fr_nr: Option<i64>,
    /// Fingerprint of the Advoware side when last synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_advoware: Option<String>,
    /// Fingerprint of the Google side when last synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_google: Option<String>,
    /// Fingerprint of the Google side as last seen; none when Advoware could
    /// not hold it ([`Mirrored::unsupported`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_google: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The linked appointment is known deleted: nothing left to do.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Google's `updated`, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// First and last day (Berlin) of the content as last seen; none for an endless series' end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_day: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_day: Option<NaiveDate>,
    /// The content, kept only while a change made in Google waits to be handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Appointment>,
    /// Why the content cannot go to Advoware.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// Set before an import is sent to Advoware: the fingerprint the new
    /// appointment will have, so a run cut short after the POST links the
    /// appointment it made instead of making another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_started: Option<String>,
    /// The appointment the import made, stored as soon as Advoware answered:
    /// a run cut short before the link reached Google links this one, even
    /// when it was changed in Advoware meanwhile (its fingerprint then no
    /// longer matches `import_started`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_made: Option<i64>,
    /// When the event takes place as last seen ([`Appointment::when_fingerprint`]):
    /// a write that would not change it leaves Google's start and end alone
    /// (so an event in the repeated autumn hour keeps its offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The sync wrote only the time to the event (neutral title, no text).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shown_neutral: bool,
    /// The sync made the event private (it shows a private appointment).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
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
        self.shown_neutral = event.private(PROP_NEUTRAL) == Some("1");
        let content = google_map::read(event);
        self.fr_nr = event
            .private(PROP_FR_NR)
            .and_then(|n| n.trim().parse().ok());
        self.synced_advoware = event.private(PROP_ADVOWARE_HASH).map(str::to_owned);
        self.synced_google = event.private(PROP_GOOGLE_HASH).map(str::to_owned);
        match content {
            Ok(appointment) => {
                self.current_google = Some(appointment.fingerprint());
                self.when = Some(appointment.when_fingerprint());
                self.first_day = Some(appointment.first_day());
                self.last_day = appointment.last_day();
                self.unsupported = None;
                let waiting = self.fr_nr.is_none() || self.current_google != self.synced_google;
                self.pending = waiting.then_some(appointment);
            }
            Err(google_map::Unsupported(why)) => {
                self.current_google = None;
                self.when = None;
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
    /// The calendar the sync uses, without reading the entries.
    pub fn calendar_of(kuerzel: &str) -> Result<Option<String>, Error> {
        Ok(kv::get_json::<Header>(&state_key(kuerzel))?.and_then(|h| h.calendar_id))
    }

    pub fn load(kuerzel: &str) -> Result<Self, Error> {
        let Some(header) = kv::get_json::<Header>(&state_key(kuerzel))? else {
            return Ok(Self::default());
        };
        let mut state = EmployeeState {
            calendar_id: header.calendar_id,
            sync_token: header.sync_token,
            ..Self::default()
        };
        if let Some(events) = header.events {
            // The old form: every bucket is written at the next save.
            state.events = events;
            return Ok(state);
        }
        for bucket in 0..BUCKETS {
            let key = bucket_key(kuerzel, bucket);
            let Some(bytes) = kv::get(&key)? else {
                continue;
            };
            let entries: BTreeMap<String, Mirrored> =
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Internal(format!(
                        "stored value `{key}` is not the expected JSON: {e}"
                    ))
                })?;
            state.stored.insert(bucket, fingerprint(&bytes));
            state.events.extend(entries);
        }
        Ok(state)
    }

    /// Saves the buckets that changed, then the header: a save cut short
    /// leaves the previous sync token beside newer entries, which the next
    /// run lists again and takes in again, as after any run cut short.
    pub fn save(&mut self, kuerzel: &str) -> Result<(), Error> {
        for (bucket, bytes) in self.buckets() {
            let key = bucket_key(kuerzel, bucket);
            match bytes {
                Some(bytes) => {
                    let stored = fingerprint(&bytes);
                    if self.stored.get(&bucket) != Some(&stored) {
                        kv::set(&key, &bytes, None)?;
                        self.stored.insert(bucket, stored);
                    }
                }
                None => {
                    if self.stored.remove(&bucket).is_some() {
                        kv::delete(&key)?;
                    }
                }
            }
        }
        let header = Header {
            calendar_id: self.calendar_id.clone(),
            sync_token: self.sync_token.clone(),
            events: None,
        };
        kv::set_json(&state_key(kuerzel), &header, None)
    }

    /// Each bucket's entries as stored (none for an empty bucket).
    fn buckets(&self) -> Vec<(usize, Option<Vec<u8>>)> {
        let mut buckets: Vec<BTreeMap<&str, &Mirrored>> = vec![BTreeMap::new(); BUCKETS];
        for (id, entry) in &self.events {
            buckets[bucket_of(id)].insert(id, entry);
        }
        buckets
            .into_iter()
            .enumerate()
            .map(|(bucket, entries)| {
                let bytes =
                    (!entries.is_empty()).then(|| serde_json::to_vec(&entries).unwrap_or_default());
                (bucket, bytes)
            })
            .collect()
    }

    /// A new calendar: nothing known of it yet (the old buckets are emptied
    /// at the next save).
    pub fn start_over(&mut self, calendar_id: String) {
        self.calendar_id = Some(calendar_id);
        self.sync_token = None;
        self.events.clear();
    }

    /// Drops what no later run needs, so the state stays bounded however
    /// long the calendar's history: entries whose appointment and event are
    /// both gone, and entries that ended before the window (`from`) with
    /// nothing waiting. Google keeps their links; a later change there brings
    /// an entry back. A linked event whose id is not the one derived from its
    /// appointment (an event made in Google and imported) is kept until it is
    /// gone: were it dropped, an appointment moved back into the window in
    /// Advoware would be created in Google a second time (the derived id would
    /// not meet it). Returns how many were dropped.
    pub fn prune(&mut self, from: NaiveDate, namespace: &str) -> usize {
        let before = self.events.len();
        self.events.retain(|id, entry| {
            let past = entry.last_day.is_some_and(|last| last < from);
            let waiting = entry.import_started.is_some()
                || entry.import_made.is_some()
                || (entry.fr_nr.is_some() && entry.changed_in_google());
            let foreign_id = entry
                .fr_nr
                .is_some_and(|fr_nr| *id != crate::sync::event_id(namespace, fr_nr));
            // Kept: not gone, and still ahead, waiting, or an imported event's.
            !entry.gone && (!past || waiting || foreign_id)
        });
        before - self.events.len()
    }

    /// The bytes the largest bucket and all buckets take in the store.
    #[cfg(test)]
    pub fn stored_size(&self) -> (usize, usize) {
        self.buckets()
            .into_iter()
            .filter_map(|(_, bytes)| bytes.map(|b| b.len()))
            .fold((0, 0), |(largest, total), size| {
                (largest.max(size), total + size)
            })
    }
}

fn fingerprint(bytes: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(bytes);
    let mut short = [0; 16];
    short.copy_from_slice(&digest[..16]);
    short
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

#[cfg(test)]
mod tests {
    use chrono::Days;

    use super::*;

    /// An entry as a synced event leaves it: linked, both fingerprints, etag.
    fn synced(fr_nr: i64, first: NaiveDate, last: Option<NaiveDate>) -> Mirrored {
        let hash = format!("{:024x}", fr_nr * 7919);
        Mirrored {
            fr_nr: Some(fr_nr),
            synced_advoware: Some(hash.clone()),
            synced_google: Some(hash.clone()),
            current_google: Some(hash),
            etag: Some(format!("\"{}\"", 3_181_161_784_712_000 + fr_nr)),
            updated: Some("2026-12-04T12:25:30.432Z".into()),
            first_day: Some(first),
            last_day: last,
            ..Mirrored::default()
        }
    }

    /// Five years of a busy calendar: 12 appointments a day, planned up to a
    /// year ahead, one in ten deleted later, a new endless series every month;
    /// a run every day with the default window (30 days back, 365 ahead).
    /// The state never holds more than the window's entries plus the series:
    /// at most 1.5 MiB in all and 64 KiB in its largest value, far below the
    /// store's 4 MiB for one value, and it does not grow from year to year.
    #[test]
    fn five_years_of_a_busy_calendar_stay_bounded() {
        let start = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let mut state = EmployeeState::default();
        let mut next = 0i64;
        let (mut largest, mut total, mut most) = (0, 0, 0);
        let mut total_by_year = Vec::new();
        for day in 0..5 * 365u64 {
            let today = start + Days::new(day);
            for i in 0..12u64 {
                next += 1;
                let first = today + Days::new((i * 31 + day * 7) % 366);
                state.events.insert(
                    crate::sync::event_id("t", next),
                    synced(next, first, Some(first)),
                );
                if next % 10 == 0 {
                    let deleted = crate::sync::event_id("t", next - 5);
                    if let Some(entry) = state.events.get_mut(&deleted) {
                        entry.cancelled = true;
                        entry.gone = true;
                    }
                }
            }
            if day % 30 == 0 {
                next += 1;
                state
                    .events
                    .insert(crate::sync::event_id("t", next), synced(next, today, None));
            }
            state.prune(today - Days::new(30), "t");
            most = most.max(state.events.len());
            // Measured weekly (serialising every bucket is the test's cost, not the run's).
            if day % 7 == 0 || day % 365 == 364 {
                let (big, all) = state.stored_size();
                (largest, total) = (largest.max(big), total.max(all));
                if day % 365 == 364 {
                    total_by_year.push(all);
                }
            }
        }
        println!(
            "five years: at most {most} entries, {total} bytes in all, {largest} in one value; at each year's end {total_by_year:?}"
        );
        assert!(total <= 1536 * 1024, "{total} bytes in all");
        assert!(largest <= 64 * 1024, "{largest} bytes in one value");
        assert!(most <= 366 * 12 + 61 + 12 * 31, "{most} entries");
        // The last years hold no more than the second: only the series grow.
        let growth = total_by_year[4] as f64 / total_by_year[1] as f64;
        assert!(growth < 1.05, "{total_by_year:?}");
    }

    #[test]
    fn what_no_run_needs_is_dropped_and_what_waits_is_kept() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        let mut state = EmployeeState::default();
        let past = synced(1, day(1), Some(day(2)));
        let mut gone = synced(2, day(20), Some(day(20)));
        gone.cancelled = true;
        gone.gone = true;
        let mut changed_in_google = synced(3, day(1), Some(day(2)));
        changed_in_google.current_google = Some("other".into());
        let mut importing = Mirrored {
            first_day: Some(day(1)),
            last_day: Some(day(1)),
            ..Mirrored::default()
        };
        importing.import_made = Some(9);
        let endless = synced(5, day(1), None);
        let current = synced(6, day(20), Some(day(21)));
        let imported = synced(7, day(1), Some(day(2)));
        let id = |fr_nr| crate::sync::event_id("t", fr_nr);
        for (key, entry) in [
            (id(1), past),
            (id(2), gone),
            (id(3), changed_in_google),
            ("importing".to_owned(), importing),
            (id(5), endless),
            (id(6), current),
            // Made in Google, imported as 7: its id is not 7's derived one.
            ("madeingoogle".to_owned(), imported),
        ] {
            state.events.insert(key, entry);
        }
        assert_eq!(state.prune(day(10), "t"), 2);
        let mut kept: Vec<String> = state.events.keys().cloned().collect();
        kept.sort();
        let mut expected = vec![
            id(3),
            id(5),
            id(6),
            "importing".to_owned(),
            "madeingoogle".to_owned(),
        ];
        expected.sort();
        assert_eq!(kept, expected, "past (1) and gone (2) dropped");
    }

    #[test]
    fn a_change_to_one_entry_rewrites_one_value() {
        let mut state = EmployeeState::default();
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        for n in 0..500 {
            state
                .events
                .insert(format!("adv{n:025}"), synced(n, first, Some(first)));
        }
        let before = state.buckets();
        assert!(before.iter().filter(|(_, b)| b.is_some()).count() > BUCKETS / 2);
        if let Some(entry) = state.events.get_mut("adv0000000000000000000000042") {
            entry.etag = Some("\"new\"".into());
        }
        let after = state.buckets();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 1);
        // Absent fields read as unset: an entry is small.
        let one = serde_json::to_vec(&synced(1, first, Some(first))).unwrap();
        assert!(one.len() < 300, "{} bytes", one.len());
        let back: Mirrored = serde_json::from_slice(&one).unwrap();
        assert_eq!(back, synced(1, first, Some(first)));
    }
}
