//! Between the WIT records and google-calendar3's models. Times arrive as
//! RFC 3339 text and leave as UTC (`…Z`): google-calendar3 keeps `dateTime`
//! in UTC, so an offset a plugin gave survives only as the event's `timeZone`.

use std::collections::HashMap;

use bitbylaw_bindings::google_calendar as wit;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use google_calendar3::api;

use crate::GoogleError;

pub(crate) fn event_to_api(event: wit::Event) -> Result<api::Event, GoogleError> {
    Ok(api::Event {
        id: event.id,
        status: event.status,
        summary: event.summary,
        description: event.description,
        location: event.location,
        start: event.start.map(time_to_api).transpose()?,
        end: event.end.map(time_to_api).transpose()?,
        recurrence: (!event.recurrence.is_empty()).then_some(event.recurrence),
        recurring_event_id: event.recurring_event_id,
        original_start_time: event.original_start.map(time_to_api).transpose()?,
        extended_properties: (!event.private_properties.is_empty()).then(|| {
            api::EventExtendedProperties {
                private: Some(event.private_properties.into_iter().collect()),
                shared: None,
            }
        }),
        transparency: event.transparency,
        visibility: event.visibility,
        // Read only: Google sets them.
        etag: None,
        updated: None,
        ..Default::default()
    })
}

pub(crate) fn event_from_api(event: api::Event) -> wit::Event {
    let mut private: Vec<(String, String)> = event
        .extended_properties
        .and_then(|properties| properties.private)
        .map(|map: HashMap<String, String>| map.into_iter().collect())
        .unwrap_or_default();
    private.sort();
    wit::Event {
        id: event.id,
        status: event.status,
        summary: event.summary,
        description: event.description,
        location: event.location,
        start: event.start.and_then(time_from_api),
        end: event.end.and_then(time_from_api),
        recurrence: event.recurrence.unwrap_or_default(),
        recurring_event_id: event.recurring_event_id,
        original_start: event.original_start_time.and_then(time_from_api),
        private_properties: private,
        transparency: event.transparency,
        visibility: event.visibility,
        etag: event.etag,
        updated: event.updated.map(rfc3339),
    }
}

fn time_to_api(time: wit::EventTime) -> Result<api::EventDateTime, GoogleError> {
    Ok(match time {
        wit::EventTime::Date(day) => api::EventDateTime {
            date: Some(parse_date(&day.date)?),
            time_zone: day.time_zone,
            ..Default::default()
        },
        wit::EventTime::DateTime(timed) => api::EventDateTime {
            date_time: Some(parse_moment(&timed.date_time)?),
            time_zone: timed.time_zone,
            ..Default::default()
        },
    })
}

fn time_from_api(time: api::EventDateTime) -> Option<wit::EventTime> {
    if let Some(moment) = time.date_time {
        return Some(wit::EventTime::DateTime(wit::Timed {
            date_time: rfc3339(moment),
            time_zone: time.time_zone,
        }));
    }
    time.date.map(|date| {
        wit::EventTime::Date(wit::Day {
            date: date.format("%Y-%m-%d").to_string(),
            time_zone: time.time_zone,
        })
    })
}

pub(crate) fn calendar_to_api(calendar: wit::Calendar) -> api::Calendar {
    api::Calendar {
        id: calendar.id,
        summary: Some(calendar.summary),
        description: calendar.description,
        time_zone: calendar.time_zone,
        ..Default::default()
    }
}

pub(crate) fn calendar_from_api(calendar: api::Calendar) -> wit::Calendar {
    wit::Calendar {
        id: calendar.id,
        summary: calendar.summary.unwrap_or_default(),
        description: calendar.description,
        time_zone: calendar.time_zone,
    }
}

pub(crate) fn calendar_from_list(entry: api::CalendarListEntry) -> wit::Calendar {
    wit::Calendar {
        id: entry.id,
        summary: entry.summary_override.or(entry.summary).unwrap_or_default(),
        description: entry.description,
        time_zone: entry.time_zone,
    }
}

/// An RFC 3339 moment as google-calendar3 takes it.
pub(crate) fn parse_moment(text: &str) -> Result<DateTime<Utc>, GoogleError> {
    DateTime::parse_from_rfc3339(text)
        .map(|moment| moment.with_timezone(&Utc))
        .map_err(|e| GoogleError::Invalid(format!("`{text}` is not an RFC 3339 time: {e}")))
}

fn parse_date(text: &str) -> Result<NaiveDate, GoogleError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| GoogleError::Invalid(format!("`{text}` is not a date (YYYY-MM-DD): {e}")))
}

/// Sub-second digits only when there are any: `updated` keeps Google's
/// milliseconds, which decide `last_change_wins` against Advoware's seconds.
fn rfc3339(moment: DateTime<Utc>) -> String {
    moment.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_in_utc() {
        let event = wit::Event {
            id: Some("abc123def".into()),
            status: Some("confirmed".into()),
            summary: Some("Termin".into()),
            description: None,
            location: Some("Raum 1".into()),
            start: Some(wit::EventTime::DateTime(wit::Timed {
                date_time: "2026-12-24T09:00:00+01:00".into(),
                time_zone: Some("Europe/Berlin".into()),
            })),
            end: Some(wit::EventTime::Date(wit::Day {
                date: "2026-12-25".into(),
                time_zone: None,
            })),
            recurrence: vec!["RRULE:FREQ=WEEKLY".into()],
            recurring_event_id: None,
            original_start: None,
            private_properties: vec![("advoware".into(), "4711".into())],
            transparency: None,
            visibility: None,
            etag: Some("\"dropped\"".into()),
            updated: None,
        };
        let back = event_from_api(event_to_api(event).unwrap());
        let Some(wit::EventTime::DateTime(start)) = &back.start else {
            panic!("{:?}", back.start)
        };
        assert_eq!(start.date_time, "2026-12-24T08:00:00Z");
        assert_eq!(start.time_zone.as_deref(), Some("Europe/Berlin"));
        assert!(
            matches!(&back.end, Some(wit::EventTime::Date(day)) if day.date == "2026-12-25"),
            "{:?}",
            back.end
        );
        assert_eq!(
            back.private_properties,
            [("advoware".into(), "4711".into())]
        );
        assert_eq!(back.etag, None, "etags are Google's, never sent");
    }

    #[test]
    fn bad_times_are_invalid() {
        assert!(matches!(
            parse_moment("24.12.2026 09:00"),
            Err(GoogleError::Invalid(_))
        ));
        assert!(matches!(
            parse_date("2026-13-01"),
            Err(GoogleError::Invalid(_))
        ));
    }
}
