//! Google Calendar events to and from the canonical model.
//!
//! Timed events are written in Berlin time with `timeZone: Europe/Berlin`;
//! all-day events as dates with Google's exclusive end. A series becomes one
//! `RRULE` (FREQ, INTERVAL, UNTIL: in UTC for timed events, a date for
//! all-day ones). A Google series is taken only if it means the same
//! occurrences as such a rule: `COUNT` or a `BYDAY` that names the start's own
//! weekday are fine (checked by expanding both with the `rrule` crate),
//! while several weekdays, `EXDATE`/`RDATE` lines, or a moved or cancelled
//! single occurrence are reported as [`Unsupported`] and never carried over.

use std::str::FromStr;

use bitbylaw_sdk::google_calendar::{Day, Event, EventTime, Timed};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::model::{Appointment, BERLIN, Frequency, Recurrence, Span, berlin_moment};

/// Why an event cannot be expressed in the canonical model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// How many occurrences are compared when checking a rule.
const CHECKED_OCCURRENCES: u16 = 500;

/// The fields of an event the sync owns, from the content (no id or
/// private properties): what an insert sends and what a patch changes.
pub fn write(appointment: &Appointment) -> Event {
    let (start, end) = match &appointment.span {
        Span::Timed { start, end } => (timed(*start), timed(*end)),
        Span::AllDay { first, end } => (day(*first), day(*end)),
    };
    let mut event = Event::empty();
    event.start = Some(start);
    event.end = Some(end);
    event.summary = Some(appointment.title.clone());
    // Empty rather than absent: in a patch, absent would keep an old text.
    event.description = Some(appointment.notes.clone());
    event.location = Some(appointment.location.clone());
    event.status = Some("confirmed".into());
    if let Some(recurrence) = &appointment.recurrence {
        event.recurrence = vec![rrule_line(recurrence, &appointment.span)];
    }
    event
}

/// A day, with the zone Google wants on a series' start (and gets on every one).
fn day(date: NaiveDate) -> EventTime {
    EventTime::Date(Day {
        date: date.format("%Y-%m-%d").to_string(),
        time_zone: Some("Europe/Berlin".into()),
    })
}

fn timed(local: NaiveDateTime) -> EventTime {
    EventTime::DateTime(Timed {
        date_time: berlin_moment(local).to_rfc3339(),
        time_zone: Some("Europe/Berlin".into()),
    })
}

/// `RRULE:FREQ=…[;INTERVAL=n][;UNTIL=…]`.
fn rrule_line(recurrence: &Recurrence, span: &Span) -> String {
    let mut line = format!("RRULE:FREQ={}", recurrence.frequency.rrule_name());
    if recurrence.interval > 1 {
        line.push_str(&format!(";INTERVAL={}", recurrence.interval));
    }
    if let Some(until) = recurrence.until {
        line.push_str(";UNTIL=");
        line.push_str(&until_value(until, span));
    }
    line
}

/// A timed series ends with the last moment of its last day in UTC; an
/// all-day one with the date, as RFC 5545 asks for a date start.
fn until_value(until: NaiveDate, span: &Span) -> String {
    match span {
        Span::AllDay { .. } => until.format("%Y%m%d").to_string(),
        Span::Timed { .. } => utc_end_of(until).format("%Y%m%dT%H%M%SZ").to_string(),
    }
}

fn utc_end_of(day: NaiveDate) -> DateTime<Utc> {
    let last = day.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN));
    berlin_moment(last).with_timezone(&Utc)
}

/// Reads an event's content. Cancelled events are read as well (their
/// status is the caller's business).
pub fn read(event: &Event) -> Result<Appointment, Unsupported> {
    if event.recurring_event_id.is_some() {
        return Err(Unsupported(
            "a single occurrence of a series changed or cancelled in Google".into(),
        ));
    }
    let (start, end) = match (&event.start, &event.end) {
        (Some(start), Some(end)) => (start, end),
        _ => return Err(Unsupported("the event has no start or end".into())),
    };
    let span = match (start, end) {
        (EventTime::Date(first), EventTime::Date(end)) => {
            let (first, end) = (date(&first.date)?, date(&end.date)?);
            Span::AllDay {
                first,
                end: end.max(first.succ_opt().unwrap_or(first)),
            }
        }
        (EventTime::DateTime(start), EventTime::DateTime(end)) => {
            let (start, end) = (local(start)?, local(end)?);
            Span::Timed {
                start,
                end: end.max(start),
            }
        }
        _ => {
            return Err(Unsupported(
                "start and end are not both dates or both times".into(),
            ));
        }
    };
    let recurrence = recurrence(&event.recurrence, &span)?;
    if recurrence.is_some()
        && let Some(EventTime::DateTime(start)) = &event.start
    {
        same_berlin_time_throughout(start, &event.recurrence)?;
    }
    Ok(Appointment {
        span,
        recurrence,
        title: event
            .summary
            .clone()
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
        notes: event
            .description
            .clone()
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
        location: event
            .location
            .clone()
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    })
}

fn date(text: &str) -> Result<NaiveDate, Unsupported> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Unsupported(format!("`{text}` is not a date")))
}

/// A moment as Berlin local time, whatever zone Google gave it in.
fn local(timed: &Timed) -> Result<NaiveDateTime, Unsupported> {
    DateTime::parse_from_rfc3339(&timed.date_time)
        .map(|moment| moment.with_timezone(&BERLIN).naive_local())
        .map_err(|_| Unsupported(format!("`{}` is not an RFC 3339 time", timed.date_time)))
}

/// The one `RRULE` line, if it says what Advoware's turnus can.
fn recurrence(lines: &[String], span: &Span) -> Result<Option<Recurrence>, Unsupported> {
    let mut rules = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
        match name.split(';').next().unwrap_or_default() {
            "RRULE" => rules.push(value),
            "EXDATE" | "RDATE" | "EXRULE" => {
                return Err(Unsupported(format!(
                    "the series has {name} lines (single occurrences left out or added)"
                )));
            }
            other => return Err(Unsupported(format!("unknown recurrence line `{other}`"))),
        }
    }
    let rule = match rules.as_slice() {
        [] => return Ok(None),
        [rule] => *rule,
        _ => return Err(Unsupported("the series has several RRULE lines".into())),
    };
    let mut frequency = None;
    let mut interval = 1;
    let mut until = None;
    // Parts that may narrow the rule; the expansion check decides whether they do.
    let mut narrowed = false;
    let mut count: Option<u32> = None;
    for part in rule.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key.to_ascii_uppercase().as_str() {
            "FREQ" => {
                frequency = Some(match value {
                    "DAILY" => Frequency::Daily,
                    "WEEKLY" => Frequency::Weekly,
                    "MONTHLY" => Frequency::Monthly,
                    "YEARLY" => Frequency::Yearly,
                    other => {
                        return Err(Unsupported(format!(
                            "a series repeating {other}: Advoware repeats daily, weekly, monthly or yearly"
                        )));
                    }
                })
            }
            "INTERVAL" => {
                interval = value
                    .parse()
                    .map_err(|_| Unsupported(format!("INTERVAL `{value}` is not a number")))?
            }
            "UNTIL" => until = Some(until_day(value)?),
            "COUNT" => {
                narrowed = true;
                count = Some(
                    value
                        .parse()
                        .map_err(|_| Unsupported(format!("COUNT `{value}` is not a number")))?,
                );
            }
            "BYDAY" | "BYMONTHDAY" | "BYMONTH" | "WKST" => narrowed = true,
            other => {
                return Err(Unsupported(format!(
                    "the series uses {other}, which Advoware cannot express"
                )));
            }
        }
    }
    let frequency = frequency.ok_or_else(|| Unsupported("the RRULE has no FREQ".into()))?;
    let mut candidate = Recurrence {
        frequency,
        interval,
        until,
    };
    if narrowed {
        // A series with COUNT is finite however long: it is expanded to its
        // last occurrence (which becomes UNTIL), never taken as endless.
        let limit = match count {
            Some(count) => u16::try_from(count).map_err(|_| {
                Unsupported(format!(
                    "a series of {count} occurrences is too long to check"
                ))
            })?,
            None => CHECKED_OCCURRENCES,
        }
        .max(CHECKED_OCCURRENCES);
        let original = expand(rule, span, limit)?;
        if original.limited && count.is_none() {
            // Endless: compare as far as we look.
        } else if let Some(last) = original.dates.last() {
            candidate.until = Some(last.with_timezone(&BERLIN).date_naive());
        }
        let simple = expand(
            rrule_line(&candidate, span).trim_start_matches("RRULE:"),
            span,
            limit,
        )?;
        if simple.dates != original.dates {
            return Err(Unsupported(format!(
                "the series `{rule}` has occurrences a plain every-{interval}-{} rule has not",
                frequency.rrule_name().to_lowercase()
            )));
        }
    }
    Ok(Some(candidate.normalised()))
}

/// UNTIL as the Berlin day it ends on: a date, a UTC time, or a floating local time.
fn until_day(value: &str) -> Result<NaiveDate, Unsupported> {
    let refused = || Unsupported(format!("UNTIL `{value}` is not a date or time"));
    if value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d").map_err(|_| refused());
    }
    let (text, utc) = match value.strip_suffix('Z') {
        Some(text) => (text, true),
        None => (value, false),
    };
    let moment = NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").map_err(|_| refused())?;
    Ok(if utc {
        Utc.from_utc_datetime(&moment)
            .with_timezone(&BERLIN)
            .date_naive()
    } else {
        moment.date()
    })
}

/// The rule's occurrences from the span's start (at most `limit`).
fn expand(rule: &str, span: &Span, limit: u16) -> Result<rrule::RRuleResult, Unsupported> {
    let start = match span {
        Span::Timed { start, .. } => *start,
        Span::AllDay { first, .. } => first.and_time(NaiveTime::MIN),
    };
    expand_in(
        rule,
        "Europe/Berlin",
        berlin_moment(start).naive_local(),
        limit,
    )
}

/// A series Google keeps in another zone repeats at that zone's wall-clock
/// time; Advoware's repeat at one Berlin time. They mean the same only when
/// every occurrence falls at the same Berlin time (another zone with Berlin's
/// rules, or a series that never crosses a change of daylight saving time that
/// the two zones make on different days). Anything else is reported, never
/// shifted.
fn same_berlin_time_throughout(start: &Timed, lines: &[String]) -> Result<(), Unsupported> {
    let Some(zone) = start.time_zone.as_deref().filter(|z| *z != "Europe/Berlin") else {
        return Ok(());
    };
    let tz = chrono_tz::Tz::from_str(zone)
        .map_err(|_| Unsupported(format!("the series is in an unknown time zone `{zone}`")))?;
    let moment = DateTime::parse_from_rfc3339(&start.date_time)
        .map_err(|_| Unsupported(format!("`{}` is not an RFC 3339 time", start.date_time)))?;
    let local = moment.with_timezone(&tz).naive_local();
    let Some(rule) = lines.iter().find_map(|line| line.strip_prefix("RRULE:")) else {
        return Ok(());
    };
    let occurrences = expand_in(rule, zone, local, CHECKED_OCCURRENCES)?;
    let berlin = |moment: &DateTime<rrule::Tz>| moment.with_timezone(&BERLIN).time();
    let Some(first) = occurrences.dates.first().map(berlin) else {
        return Ok(());
    };
    match occurrences.dates.iter().find(|d| berlin(d) != first) {
        Some(moved) => Err(Unsupported(format!(
            "the series repeats at {} {zone} time, which is not one Berlin time (on {} it is {}); Advoware's series keep one",
            local.format("%H:%M"),
            moved.with_timezone(&BERLIN).format("%Y-%m-%d"),
            berlin(moved).format("%H:%M"),
        ))),
        None => Ok(()),
    }
}

/// The rule's occurrences from `start`, a wall-clock time in `zone`.
fn expand_in(
    rule: &str,
    zone: &str,
    start: NaiveDateTime,
    limit: u16,
) -> Result<rrule::RRuleResult, Unsupported> {
    // The crate wants a UTC UNTIL beside a zoned start: a date becomes the end of that day.
    let rule: String = rule
        .split(';')
        .map(|part| match part.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("UNTIL") && value.len() == 8 => {
                match NaiveDate::parse_from_str(value, "%Y%m%d") {
                    Ok(day) => format!("UNTIL={}", utc_end_of(day).format("%Y%m%dT%H%M%SZ")),
                    Err(_) => part.to_owned(),
                }
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";");
    let text = format!(
        "DTSTART;TZID={zone}:{}\nRRULE:{rule}",
        start.format("%Y%m%dT%H%M%S")
    );
    let set = rrule::RRuleSet::from_str(&text)
        .map_err(|e| Unsupported(format!("the RRULE `{rule}` does not parse: {e}")))?;
    Ok(set.all(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Visibility;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn timed(start: &str, end: &str) -> Appointment {
        Appointment {
            span: Span::Timed {
                start: at(start),
                end: at(end),
            },
            recurrence: None,
            title: "Verhandlung".into(),
            notes: "Akte 7/26".into(),
            location: "LG Berlin".into(),
        }
    }

    fn start_of(event: &Event) -> String {
        match event.start.as_ref().unwrap() {
            EventTime::DateTime(timed) => timed.date_time.clone(),
            EventTime::Date(day) => day.date.clone(),
        }
    }

    fn series(frequency: Frequency, interval: u32, until: Option<&str>) -> Option<Recurrence> {
        Some(Recurrence {
            frequency,
            interval,
            until: until.map(day),
        })
    }

    #[test]
    fn winter_and_summer_times_carry_their_offsets() {
        let winter = write(&timed("2026-12-01T09:00", "2026-12-01T10:00"));
        assert_eq!(start_of(&winter), "2026-12-01T09:00:00+01:00");
        let summer = write(&timed("2026-07-01T09:00", "2026-07-01T10:00"));
        assert_eq!(start_of(&summer), "2026-07-01T09:00:00+02:00");
    }

    #[test]
    fn both_dst_changes_round_trip_or_move_forward_by_the_skipped_hour() {
        // Last Sunday of March: 02:30 does not exist; Google gets 03:30 summer time.
        let spring = write(&timed("2026-03-29T02:30", "2026-03-29T04:00"));
        assert_eq!(start_of(&spring), "2026-03-29T03:30:00+02:00");
        assert_eq!(
            read(&spring).unwrap().span,
            Span::Timed {
                start: at("2026-03-29T03:30"),
                end: at("2026-03-29T04:00")
            }
        );
        // Around it, times keep their wall-clock value.
        let before = timed("2026-03-29T01:30", "2026-03-29T03:15");
        assert_eq!(read(&write(&before)).unwrap(), before);
        // Last Sunday of October: 02:30 happens twice; the first (summer time) is taken.
        let autumn = timed("2026-10-25T02:30", "2026-10-25T03:30");
        let event = write(&autumn);
        assert_eq!(start_of(&event), "2026-10-25T02:30:00+02:00");
        assert_eq!(read(&event).unwrap(), autumn);
    }

    #[test]
    fn a_time_given_in_another_zone_is_read_as_berlin_time() {
        let mut event = write(&timed("2026-12-01T09:00", "2026-12-01T10:00"));
        event.start = Some(EventTime::DateTime(Timed {
            date_time: "2026-12-01T08:00:00Z".into(),
            time_zone: Some("UTC".into()),
        }));
        assert_eq!(
            read(&event).unwrap().span,
            Span::Timed {
                start: at("2026-12-01T09:00"),
                end: at("2026-12-01T10:00")
            }
        );
    }

    #[test]
    fn all_day_and_multi_day_events_use_exclusive_dates() {
        let appointment = Appointment {
            span: Span::AllDay {
                first: day("2026-12-24"),
                end: day("2026-12-27"),
            },
            ..timed("2026-12-01T09:00", "2026-12-01T10:00")
        };
        let event = write(&appointment);
        assert_eq!(start_of(&event), "2026-12-24");
        assert!(matches!(&event.end, Some(EventTime::Date(end)) if end.date == "2026-12-27"));
        assert_eq!(read(&event).unwrap(), appointment);
    }

    #[test]
    fn series_are_written_with_utc_until_and_read_back() {
        let mut weekly = timed("2026-12-01T08:00", "2026-12-01T08:30");
        weekly.recurrence = series(Frequency::Weekly, 2, Some("2027-06-30"));
        let event = write(&weekly);
        // 23:59:59 Berlin summer time on 30 June is 21:59:59 UTC.
        assert_eq!(
            event.recurrence,
            vec!["RRULE:FREQ=WEEKLY;INTERVAL=2;UNTIL=20270630T215959Z"]
        );
        assert_eq!(read(&event).unwrap(), weekly);

        let mut endless = timed("2026-12-01T08:00", "2026-12-01T08:30");
        endless.recurrence = series(Frequency::Monthly, 1, None);
        let event = write(&endless);
        assert_eq!(event.recurrence, vec!["RRULE:FREQ=MONTHLY"]);
        assert_eq!(read(&event).unwrap(), endless);

        let mut yearly_all_day = Appointment {
            span: Span::AllDay {
                first: day("2026-12-01"),
                end: day("2026-12-02"),
            },
            ..timed("2026-12-01T09:00", "2026-12-01T10:00")
        };
        yearly_all_day.recurrence = series(Frequency::Yearly, 1, Some("2030-12-01"));
        let event = write(&yearly_all_day);
        assert_eq!(event.recurrence, vec!["RRULE:FREQ=YEARLY;UNTIL=20301201"]);
        assert_eq!(read(&event).unwrap(), yearly_all_day);

        let mut daily = timed("2026-12-01T08:00", "2026-12-01T08:30");
        daily.recurrence = series(Frequency::Daily, 3, Some("2026-12-31"));
        assert_eq!(read(&write(&daily)).unwrap(), daily);
    }

    #[test]
    fn the_written_rules_expand_as_meant() {
        // Checked with the rrule crate: every second week from 1 Dec, last on 29 Dec.
        let mut weekly = timed("2026-12-01T08:00", "2026-12-01T08:30");
        weekly.recurrence = series(Frequency::Weekly, 2, Some("2026-12-31"));
        let line = write(&weekly).recurrence[0].clone();
        let result = expand(
            line.trim_start_matches("RRULE:"),
            &weekly.span,
            CHECKED_OCCURRENCES,
        )
        .unwrap();
        let days: Vec<String> = result
            .dates
            .iter()
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .collect();
        assert_eq!(
            days,
            ["2026-12-01 08:00", "2026-12-15 08:00", "2026-12-29 08:00"]
        );
    }

    #[test]
    fn count_and_a_byday_of_the_start_weekday_become_a_plain_rule() {
        let mut event = write(&timed("2026-12-01T08:00", "2026-12-01T08:30"));
        // 2026-12-01 is a Tuesday; Google's UI writes BYDAY for weekly series.
        event.recurrence = vec!["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=3".into()];
        assert_eq!(
            read(&event).unwrap().recurrence,
            series(Frequency::Weekly, 1, Some("2026-12-15"))
        );
        event.recurrence = vec!["RRULE:FREQ=WEEKLY;WKST=MO;BYDAY=TU".into()];
        assert_eq!(
            read(&event).unwrap().recurrence,
            series(Frequency::Weekly, 1, None)
        );
    }

    #[test]
    fn a_series_in_another_zone_is_taken_only_when_its_berlin_time_never_moves() {
        let in_zone = |start: &str, zone: &str, rule: &str| {
            let mut event = write(&timed("2027-03-01T15:00", "2027-03-01T16:00"));
            event.start = Some(EventTime::DateTime(Timed {
                date_time: start.into(),
                time_zone: Some(zone.into()),
            }));
            event.end = Some(EventTime::DateTime(Timed {
                date_time: start.replace("T09:", "T10:").replace("T15:", "T16:"),
                time_zone: Some(zone.into()),
            }));
            event.recurrence = vec![rule.into()];
            read(&event)
        };
        // New York changes to summer time on 14 March 2027, Berlin on 28 March:
        // 09:00 in New York is 15:00 in Berlin, then 14:00 for two weeks.
        let Unsupported(why) = in_zone(
            "2027-03-01T09:00:00-05:00",
            "America/New_York",
            "RRULE:FREQ=WEEKLY;UNTIL=20270430T215959Z",
        )
        .unwrap_err();
        assert!(
            why.contains("America/New_York") && why.contains("14:00"),
            "{why}"
        );
        // Vienna keeps Berlin's rules: the same series.
        let vienna = in_zone(
            "2027-03-01T15:00:00+01:00",
            "Europe/Vienna",
            "RRULE:FREQ=WEEKLY;UNTIL=20270430T215959Z",
        )
        .unwrap();
        assert_eq!(
            vienna.recurrence,
            series(Frequency::Weekly, 1, Some("2027-04-30"))
        );
        assert_eq!(
            vienna.span,
            Span::Timed {
                start: at("2027-03-01T15:00"),
                end: at("2027-03-01T16:00")
            }
        );
        // New York in summer only: one Berlin time throughout.
        let summer = in_zone(
            "2027-04-05T09:00:00-04:00",
            "America/New_York",
            "RRULE:FREQ=WEEKLY;UNTIL=20270628T215959Z",
        )
        .unwrap();
        assert_eq!(
            summer.span,
            Span::Timed {
                start: at("2027-04-05T15:00"),
                end: at("2027-04-05T16:00")
            }
        );
    }

    #[test]
    fn a_series_of_500_or_more_occurrences_stays_finite() {
        let mut event = write(&timed("2026-12-01T08:00", "2026-12-01T08:30"));
        event.recurrence = vec!["RRULE:FREQ=DAILY;COUNT=600".into()];
        // 600 days from 1 December 2026: the last on 22 July 2028.
        assert_eq!(
            read(&event).unwrap().recurrence,
            series(Frequency::Daily, 1, Some("2028-07-22"))
        );
        event.recurrence = vec!["RRULE:FREQ=DAILY;COUNT=500".into()];
        assert_eq!(
            read(&event).unwrap().recurrence,
            series(Frequency::Daily, 1, Some("2028-04-13"))
        );
        event.recurrence = vec!["RRULE:FREQ=DAILY;COUNT=70000".into()];
        assert!(read(&event).is_err());
    }

    #[test]
    fn series_advoware_cannot_express_are_reported_not_bent() {
        let mut event = write(&timed("2026-12-01T08:00", "2026-12-01T08:30"));
        for (lines, says) in [
            (vec!["RRULE:FREQ=WEEKLY;BYDAY=TU,TH"], "occurrences"),
            (vec!["RRULE:FREQ=HOURLY"], "HOURLY"),
            (vec!["RRULE:FREQ=MONTHLY;BYSETPOS=-1;BYDAY=FR"], "BYSETPOS"),
            (
                vec![
                    "RRULE:FREQ=WEEKLY",
                    "EXDATE;TZID=Europe/Berlin:20261208T080000",
                ],
                "EXDATE",
            ),
            (vec!["RRULE:FREQ=WEEKLY", "RRULE:FREQ=DAILY"], "several"),
        ] {
            event.recurrence = lines.iter().map(|l| l.to_string()).collect();
            let Unsupported(why) = read(&event).unwrap_err();
            assert!(why.contains(says), "{lines:?}: {why}");
        }
        let mut moved = write(&timed("2026-12-08T09:00", "2026-12-08T09:30"));
        moved.recurring_event_id = Some("abcdef".into());
        assert!(read(&moved).is_err());
    }

    #[test]
    fn the_neutral_view_writes_no_text() {
        let event = write(
            &timed("2026-12-01T09:00", "2026-12-01T10:00")
                .visible(&Visibility::Neutral("Termin".into())),
        );
        assert_eq!(event.summary.as_deref(), Some("Termin"));
        assert_eq!(event.description.as_deref(), Some(""));
        assert_eq!(event.location.as_deref(), Some(""));
    }
}
