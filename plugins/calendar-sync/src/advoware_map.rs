//! Advoware's appointments (Termine) to and from the canonical model.
//!
//! The quirks of real Advoware data (`../shared/reference/upstreams.md`): dates
//! come as `YYYY-MM-DD` or with a time part; a missing start time means 09:00;
//! an all-day appointment (`dauertermin`) ends at 23:59 of its last day; a
//! series keeps the end of the whole series in `datumBis` (2037 for an
//! endless one) and each occurrence ends the same day; `turnusArt` 1–4 is
//! daily, weekly, monthly, yearly every `turnus`.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::{Value, json};

use crate::model::{Appointment, ENDLESS_YEAR, Frequency, Recurrence, Span};

/// The owner of an appointment shown in every employee's calendar.
pub const FIRM_WIDE: &str = "ALLE";

/// One appointment as read from Advoware.
#[derive(Debug, Clone, PartialEq)]
pub struct Termin {
    pub fr_nr: i64,
    pub appointment: Appointment,
    /// `zuletztGeaendertAm`, Berlin local time.
    pub modified: Option<NaiveDateTime>,
    /// `kuerzel` (else `anwalt`), upper case; [`FIRM_WIDE`] for everyone's.
    pub owner: String,
    /// `privat`: Google shows only that the time is taken.
    pub private: bool,
    /// The record as Advoware sent it: a write sends it back with only the
    /// sync's own fields changed, so nothing else is lost when `PUT` replaces.
    pub record: Value,
}

impl Termin {
    /// Never written from Google: Advoware's special entries (negative
    /// numbers) and firm-wide appointments, which one employee's calendar
    /// must not change for everyone (a change there is put back).
    pub fn read_only(&self) -> bool {
        self.fr_nr < 0 || self.firm_wide()
    }

    pub fn firm_wide(&self) -> bool {
        self.owner == FIRM_WIDE
    }

    /// Whether the appointment belongs in `kuerzel`'s calendar (its own, or everyone's).
    pub fn shown_to(&self, kuerzel: &str) -> bool {
        self.firm_wide() || self.owner.is_empty() || self.owner == kuerzel
    }

    /// What the sync remembers of the Advoware side: the content, and
    /// whether it is private (so a change of `privat` alone is a change).
    pub fn fingerprint(&self) -> String {
        if self.private {
            self.appointment.fingerprint_marked("private")
        } else {
            self.appointment.fingerprint()
        }
    }
}

const DEFAULT_START: NaiveTime = match NaiveTime::from_hms_opt(9, 0, 0) {
    Some(time) => time,
    None => NaiveTime::MIN,
};

/// `YYYY-MM-DD`, optionally with a time part after it.
fn date(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// `HH:MM[:SS[.f]]`, or a date-time whose time part counts; none when absent or empty.
fn time(value: Option<&Value>) -> Option<NaiveTime> {
    let text = value?.as_str()?.trim();
    let text = text.split_once('T').map_or(text, |(_, time)| time);
    let text = text.trim_end_matches('Z');
    ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"]
        .iter()
        .find_map(|format| NaiveTime::parse_from_str(text, format).ok())
}

fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// Reads one appointment; an error names what is missing or malformed.
pub fn read(value: &Value) -> Result<Termin, String> {
    let fr_nr = number(value.get("frNr")).ok_or("no `frNr`")?;
    let first = value
        .get("datum")
        .and_then(date)
        .ok_or_else(|| format!("appointment {fr_nr}: `datum` is missing or not a date"))?;
    let last = value.get("datumBis").and_then(date).unwrap_or(first);
    let all_day = number(value.get("dauertermin")) == Some(1);
    let recurrence = match number(value.get("turnusArt")) {
        Some(kind @ 1..=4) => Some(
            Recurrence {
                frequency: match kind {
                    1 => Frequency::Daily,
                    2 => Frequency::Weekly,
                    3 => Frequency::Monthly,
                    _ => Frequency::Yearly,
                },
                interval: u32::try_from(number(value.get("turnus")).unwrap_or(1)).unwrap_or(1),
                until: Some(last.max(first)),
            }
            .normalised(),
        ),
        _ => None,
    };
    let start_time = time(value.get("uhrzeitVon")).unwrap_or(DEFAULT_START);
    let end_time = time(value.get("uhrzeitBis"));
    let span = match (all_day, &recurrence) {
        (true, None) => Span::AllDay {
            first,
            end: last.max(first).succ_opt().unwrap_or(last),
        },
        // A series' `datumBis` is the end of the series; each occurrence is one day.
        (true, Some(_)) => Span::AllDay {
            first,
            end: first.succ_opt().unwrap_or(first),
        },
        (false, None) => {
            let start = first.and_time(start_time);
            let end = match end_time {
                Some(end_time) => last.and_time(end_time),
                // Without an end time: an hour after the start time, on the end date.
                None => last.and_time(start_time) + Duration::hours(1),
            };
            Span::Timed {
                start,
                end: end.max(start),
            }
        }
        (false, Some(_)) => {
            let start = first.and_time(start_time);
            let day_end = first.and_hms_opt(23, 59, 0).unwrap_or(start);
            let end = match end_time {
                Some(end_time) => first.and_time(end_time),
                None => (start + Duration::hours(1)).min(day_end),
            };
            Span::Timed {
                start,
                end: end.max(start),
            }
        }
    };
    let modified = value
        .get("zuletztGeaendertAm")
        .and_then(Value::as_str)
        .and_then(|text| {
            let text = text.trim_end_matches('Z');
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()
        });
    let owner = [value.get("kuerzel"), value.get("anwalt")]
        .into_iter()
        .map(|v| text(v).trim().to_uppercase())
        .find(|owner| !owner.is_empty())
        .unwrap_or_default();
    Ok(Termin {
        fr_nr,
        appointment: Appointment {
            span,
            recurrence,
            title: text(value.get("text")),
            notes: text(value.get("notiz")),
            location: text(value.get("ort")),
        },
        modified,
        owner,
        private: number(value.get("privat")).is_some_and(|p| p != 0),
        record: value.clone(),
    })
}

/// The number a `POST appointments` answered: `{"frNr": N}` as the reference
/// says, a bare number, or the whole new record.
pub fn created_number(answer: &Value) -> Option<i64> {
    match answer {
        Value::Object(_) => number(answer.get("frNr")),
        other => number(Some(other)),
    }
}

fn day(date: NaiveDate) -> String {
    date.format("%Y-%m-%dT00:00:00").to_string()
}

fn clock(time: NaiveTime) -> String {
    time.format("%H:%M:%S").to_string()
}

/// The body of a `POST appointments` for `kuerzel`. The appointment must be
/// one Advoware can hold ([`Appointment::advoware_cannot_hold`]).
pub fn write(appointment: &Appointment, kuerzel: &str) -> Value {
    let mut body = owned_fields(appointment);
    body["kuerzel"] = json!(kuerzel);
    body["anwalt"] = json!(kuerzel);
    body
}

/// The body of a `PUT appointments/{frNr}`: the record as read, with the
/// fields of the parts that differ from `before` replaced by `after`'s. The
/// owner, `privat`, `erinnerung` and every field the sync does not know stay
/// as they are, and so does a part that did not change (a time in the spring
/// gap is not rewritten when only the title changed).
pub fn write_over(record: &Value, before: &Appointment, after: &Appointment) -> Value {
    let fields = owned_fields(after);
    let mut body = match record {
        Value::Object(_) => record.clone(),
        _ => json!({}),
    };
    let mut take = |keys: &[&str]| {
        for key in keys {
            body[*key] = fields[*key].clone();
        }
    };
    if before.span != after.span || before.recurrence != after.recurrence {
        take(&[
            "datum",
            "uhrzeitVon",
            "datumBis",
            "uhrzeitBis",
            "dauertermin",
            "turnus",
            "turnusArt",
        ]);
    }
    if before.title != after.title {
        take(&["text"]);
    }
    if before.notes != after.notes {
        take(&["notiz"]);
    }
    if before.location != after.location {
        take(&["ort"]);
    }
    body
}

/// The fields the sync owns, as Advoware writes them.
fn owned_fields(appointment: &Appointment) -> Value {
    let endless = NaiveDate::from_ymd_opt(ENDLESS_YEAR, 12, 31).unwrap_or(NaiveDate::MAX);
    let series_end = appointment
        .recurrence
        .as_ref()
        .map(|r| r.until.unwrap_or(endless));
    let (datum, von, datum_bis, bis, all_day) = match &appointment.span {
        Span::Timed { start, end } => (
            start.date(),
            start.time(),
            series_end.unwrap_or(end.date()),
            end.time(),
            0,
        ),
        Span::AllDay { first, end } => (
            *first,
            NaiveTime::MIN,
            series_end.unwrap_or_else(|| end.pred_opt().unwrap_or(*first)),
            NaiveTime::from_hms_opt(23, 59, 0).unwrap_or(NaiveTime::MIN),
            1,
        ),
    };
    let (turnus, turnus_art) = match &appointment.recurrence {
        None => (0, 0),
        Some(recurrence) => (
            recurrence.interval,
            match recurrence.frequency {
                Frequency::Daily => 1,
                Frequency::Weekly => 2,
                Frequency::Monthly => 3,
                Frequency::Yearly => 4,
            },
        ),
    };
    json!({
        "text": appointment.title,
        "notiz": appointment.notes,
        "ort": appointment.location,
        "datum": day(datum),
        "uhrzeitVon": clock(von),
        "datumBis": day(datum_bis),
        "uhrzeitBis": clock(bis),
        "dauertermin": all_day,
        "turnus": turnus,
        "turnusArt": turnus_art,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Span;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    #[test]
    fn a_timed_appointment_with_time_parts_in_every_form() {
        let termin = read(&json!({
            "frNr": 4711, "kuerzel": "SB", "text": "Verhandlung", "notiz": null, "ort": "LG Berlin",
            "datum": "2026-12-01T00:00:00", "uhrzeitVon": "1899-12-30T09:30:00",
            "datumBis": "2026-12-01", "uhrzeitBis": "11:15",
            "zuletztGeaendertAm": "2026-11-30T17:02:11.25",
        }))
        .unwrap();
        assert_eq!(termin.fr_nr, 4711);
        assert_eq!(
            termin.appointment.span,
            Span::Timed {
                start: at("2026-12-01T09:30"),
                end: at("2026-12-01T11:15")
            }
        );
        assert_eq!(termin.appointment.notes, "");
        assert_eq!(
            termin.modified,
            Some(at("2026-11-30T17:02") + Duration::milliseconds(11_250))
        );
    }

    #[test]
    fn a_missing_start_time_means_nine_and_a_missing_end_an_hour_later() {
        let termin = read(&json!({ "frNr": 1, "datum": "2026-12-01" })).unwrap();
        assert_eq!(
            termin.appointment.span,
            Span::Timed {
                start: at("2026-12-01T09:00"),
                end: at("2026-12-01T10:00")
            }
        );
    }

    #[test]
    fn an_all_day_appointment_ending_at_2359_ends_the_next_day_exclusive() {
        let one = read(&json!({
            "frNr": 2, "datum": "2026-12-24", "datumBis": "2026-12-24",
            "uhrzeitBis": "23:59:00", "dauertermin": 1,
        }))
        .unwrap();
        assert_eq!(
            one.appointment.span,
            Span::AllDay {
                first: date("2026-12-24"),
                end: date("2026-12-25")
            }
        );
        let several = read(&json!({
            "frNr": 3, "datum": "2026-12-28", "datumBis": "2027-01-02", "dauertermin": true,
        }))
        .unwrap();
        assert_eq!(
            several.appointment.span,
            Span::AllDay {
                first: date("2026-12-28"),
                end: date("2027-01-03")
            }
        );
    }

    #[test]
    fn a_multi_day_timed_appointment_keeps_both_ends() {
        let termin = read(&json!({
            "frNr": 4, "datum": "2026-12-01", "uhrzeitVon": "14:00:00",
            "datumBis": "2026-12-03", "uhrzeitBis": "12:00:00",
        }))
        .unwrap();
        assert_eq!(
            termin.appointment.span,
            Span::Timed {
                start: at("2026-12-01T14:00"),
                end: at("2026-12-03T12:00")
            }
        );
        assert_eq!(termin.appointment.last_day(), Some(date("2026-12-03")));
    }

    #[test]
    fn every_turnus_art_and_the_series_end_in_datum_bis() {
        for (kind, frequency) in [
            (1, Frequency::Daily),
            (2, Frequency::Weekly),
            (3, Frequency::Monthly),
            (4, Frequency::Yearly),
        ] {
            let termin = read(&json!({
                "frNr": 5, "datum": "2026-12-01", "uhrzeitVon": "08:00:00", "uhrzeitBis": "08:30:00",
                "datumBis": "2027-06-30", "turnus": 2, "turnusArt": kind,
            }))
            .unwrap();
            assert_eq!(
                termin.appointment.recurrence,
                Some(Recurrence {
                    frequency,
                    interval: 2,
                    until: Some(date("2027-06-30"))
                }),
                "turnusArt {kind}"
            );
            // Each occurrence lasts its own day only.
            assert_eq!(
                termin.appointment.span,
                Span::Timed {
                    start: at("2026-12-01T08:00"),
                    end: at("2026-12-01T08:30")
                }
            );
        }
        let none = read(&json!({ "frNr": 6, "datum": "2026-12-01", "turnusArt": 0, "turnus": 3 }))
            .unwrap();
        assert_eq!(none.appointment.recurrence, None);
    }

    #[test]
    fn a_series_ending_in_2037_is_endless_and_written_back_as_2037() {
        let termin = read(&json!({
            "frNr": 7, "datum": "2026-01-05", "uhrzeitVon": "10:00:00", "uhrzeitBis": "10:30:00",
            "datumBis": "2037-12-31T00:00:00", "turnus": 1, "turnusArt": 2,
        }))
        .unwrap();
        assert_eq!(termin.appointment.recurrence.as_ref().unwrap().until, None);
        let body = write(&termin.appointment, "SB");
        assert_eq!(body["datumBis"], "2037-12-31T00:00:00");
        assert_eq!(body["turnusArt"], 2);
    }

    #[test]
    fn an_all_day_series_is_one_day_per_occurrence() {
        let termin = read(&json!({
            "frNr": 8, "datum": "2026-12-07", "datumBis": "2027-03-01", "dauertermin": 1,
            "uhrzeitBis": "23:59:00", "turnus": 1, "turnusArt": 2,
        }))
        .unwrap();
        assert_eq!(
            termin.appointment.span,
            Span::AllDay {
                first: date("2026-12-07"),
                end: date("2026-12-08")
            }
        );
        assert_eq!(
            termin.appointment.recurrence.as_ref().unwrap().until,
            Some(date("2027-03-01"))
        );
    }

    #[test]
    fn writing_and_reading_back_gives_the_same_appointment() {
        let cases = [
            json!({ "frNr": 1, "datum": "2026-12-01", "uhrzeitVon": "09:00:00", "datumBis": "2026-12-02", "uhrzeitBis": "17:00:00", "text": "a", "notiz": "b", "ort": "c" }),
            json!({ "frNr": 2, "datum": "2026-12-24", "datumBis": "2026-12-26", "dauertermin": 1 }),
            json!({ "frNr": 3, "datum": "2026-12-01", "uhrzeitVon": "08:00:00", "uhrzeitBis": "08:30:00", "datumBis": "2037-12-31", "turnus": 3, "turnusArt": 1 }),
            json!({ "frNr": 4, "datum": "2026-12-01", "datumBis": "2027-12-01", "dauertermin": 1, "turnus": 1, "turnusArt": 4 }),
        ];
        for case in cases {
            let termin = read(&case).unwrap();
            let mut written = write(&termin.appointment, "SB");
            written["frNr"] = case["frNr"].clone();
            assert_eq!(
                read(&written).unwrap().appointment,
                termin.appointment,
                "{case}"
            );
        }
    }

    #[test]
    fn a_record_without_a_date_is_refused_by_name() {
        let error = read(&json!({ "frNr": 9, "text": "kaputt" })).unwrap_err();
        assert!(error.contains("9") && error.contains("datum"), "{error}");
        assert!(read(&json!({ "datum": "2026-12-01" })).is_err());
    }
}
