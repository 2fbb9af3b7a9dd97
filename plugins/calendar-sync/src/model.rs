//! The one model both sides are mapped into: an appointment in Berlin local
//! time. Comparing the two sides, hashing what was synced and deciding what
//! changed all happen here, never on either side's raw fields.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Both systems are used in Germany: Advoware's times are Berlin local time.
pub const BERLIN: Tz = chrono_tz::Europe::Berlin;

/// Advoware writes an endless series with an end in this year (or later).
pub const ENDLESS_YEAR: i32 = 2037;

/// When an appointment takes place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Span {
    /// Berlin local times; for a series, the first occurrence.
    Timed {
        start: NaiveDateTime,
        end: NaiveDateTime,
    },
    /// Whole days; `end` is exclusive (the day after the last), as Google's.
    AllDay { first: NaiveDate, end: NaiveDate },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Frequency {
    pub fn rrule_name(self) -> &'static str {
        match self {
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
            Frequency::Yearly => "YEARLY",
        }
    }
}

/// What both sides can say about a series: every `interval` days, weeks,
/// months or years from the first occurrence, until a day (inclusive) or
/// without end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub frequency: Frequency,
    pub interval: u32,
    /// The last day an occurrence may start on; `None`: endless.
    pub until: Option<NaiveDate>,
}

impl Recurrence {
    /// Advoware's "endless" (an end in 2037 or later) and Google's (no end)
    /// are the same series; an interval of 0 means every time.
    pub fn normalised(mut self) -> Self {
        self.interval = self.interval.max(1);
        if self.until.is_some_and(|until| until.year() >= ENDLESS_YEAR) {
            self.until = None;
        }
        self
    }
}

/// An appointment as both sides can hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    pub span: Span,
    pub recurrence: Option<Recurrence>,
    pub title: String,
    pub notes: String,
    pub location: String,
}

/// What of an appointment reaches Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Title, notes and place as in Advoware.
    Full,
    /// Only the time, under this title (`full_content = false`).
    Neutral(String),
}

impl Appointment {
    /// A short fingerprint of the content: what the sync stores beside a link
    /// to tell later whether a side changed since.
    pub fn fingerprint(&self) -> String {
        // Serialising a struct keeps field order, so equal content gives equal bytes.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fingerprint of when it takes place only (span and series).
    pub fn when_fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(&(&self.span, &self.recurrence)).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fingerprint of the content with a mark beside it (a flag the
    /// content does not carry), distinct from [`Appointment::fingerprint`].
    pub fn fingerprint_marked(&self, mark: &str) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(0);
        bytes.extend_from_slice(mark.as_bytes());
        let digest = Sha256::digest(&bytes);
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The appointment as Google should show it.
    pub fn visible(&self, visibility: &Visibility) -> Appointment {
        match visibility {
            Visibility::Full => self.clone(),
            Visibility::Neutral(title) => Appointment {
                title: title.clone(),
                notes: String::new(),
                location: String::new(),
                ..self.clone()
            },
        }
    }

    /// The first day it touches (Berlin).
    pub fn first_day(&self) -> NaiveDate {
        match &self.span {
            Span::Timed { start, .. } => start.date(),
            Span::AllDay { first, .. } => *first,
        }
    }

    /// The last day it touches (Berlin): of the series' last occurrence, or
    /// `None` for an endless series.
    pub fn last_day(&self) -> Option<NaiveDate> {
        if let Some(recurrence) = &self.recurrence {
            return recurrence.until;
        }
        Some(match &self.span {
            Span::Timed { end, .. } => end.date(),
            Span::AllDay { end, .. } => end.pred_opt().unwrap_or(*end),
        })
    }

    /// Why Advoware cannot hold this appointment as it is, if it cannot: a
    /// series' occurrence must lie within one day, and a series must not end
    /// before it starts.
    pub fn advoware_cannot_hold(&self) -> Option<String> {
        let recurrence = self.recurrence.as_ref()?;
        let single_day = match &self.span {
            Span::Timed { start, end } => end.date() == start.date(),
            Span::AllDay { first, end } => first.succ_opt() == Some(*end),
        };
        if !single_day {
            return Some(
                "an occurrence of a series lasts past its day; Advoware's series end each occurrence the same day"
                    .into(),
            );
        }
        if recurrence
            .until
            .is_some_and(|until| until < self.first_day())
        {
            return Some("the series ends before its first occurrence".into());
        }
        None
    }
}

/// A Berlin local time as a moment. A time that does not exist (the hour
/// skipped on the last Sunday of March) moves forward by that hour; one that
/// exists twice (the last Sunday of October) is the first, summer-time one.
pub fn berlin_moment(local: NaiveDateTime) -> chrono::DateTime<Tz> {
    match BERLIN.from_local_datetime(&local) {
        chrono::LocalResult::Single(moment) => moment,
        chrono::LocalResult::Ambiguous(first, _) => first,
        chrono::LocalResult::None => {
            let later = local + Duration::hours(1);
            BERLIN
                .from_local_datetime(&later)
                .earliest()
                .unwrap_or_else(|| BERLIN.from_utc_datetime(&local))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn the_skipped_spring_hour_moves_forward_and_the_doubled_autumn_hour_is_summer_time() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let spring = berlin_moment(at("2026-03-29T02:30:00"));
        assert_eq!(spring.to_rfc3339(), "2026-03-29T03:30:00+02:00");
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let autumn = berlin_moment(at("2026-10-25T02:30:00"));
        assert_eq!(autumn.to_rfc3339(), "2026-10-25T02:30:00+02:00");
        let after = berlin_moment(at("2026-10-25T03:30:00"));
        assert_eq!(after.to_rfc3339(), "2026-10-25T03:30:00+01:00");
    }

    #[test]
    fn an_end_in_2037_is_endless() {
        let series = Recurrence {
            frequency: Frequency::Weekly,
            interval: 0,
            until: NaiveDate::from_ymd_opt(2037, 12, 31),
        }
        .normalised();
        assert_eq!(series.until, None);
        assert_eq!(series.interval, 1);
    }

    #[test]
    fn the_neutral_view_keeps_time_and_hides_text() {
        let appointment = Appointment {
            span: Span::Timed {
                start: at("2026-12-01T09:00:00"),
                end: at("2026-12-01T10:00:00"),
            },
            recurrence: None,
            title: "Mandant Müller".into(),
            notes: "Akte 12/26".into(),
            location: "Saal 3".into(),
        };
        let neutral = appointment.visible(&Visibility::Neutral("Termin".into()));
        assert_eq!(neutral.title, "Termin");
        assert!(neutral.notes.is_empty() && neutral.location.is_empty());
        assert_eq!(neutral.span, appointment.span);
        assert_ne!(neutral.fingerprint(), appointment.fingerprint());
    }
}
