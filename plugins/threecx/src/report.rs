//! What 3CX posts when a call ends (the template's `ReportCall`): read from
//! JSON or a form, with 3CX's names or ours, and checked. 3CX's own formats
//! of time and duration vary with version and locale, so each is read in the
//! forms it is known to take, and a report that cannot be read is refused
//! with the field and the value that were not understood.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// 3CX's `[CallType]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallType {
    Inbound,
    Outbound,
    /// Inbound, nobody took it.
    Missed,
    /// Outbound, nobody answered.
    Notanswered,
}

impl CallType {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            "missed" => Some(Self::Missed),
            "notanswered" | "not answered" | "unanswered" => Some(Self::Notanswered),
            _ => None,
        }
    }

    pub fn answered(self) -> bool {
        matches!(self, Self::Inbound | Self::Outbound)
    }

    pub fn inbound(self) -> bool {
        matches!(self, Self::Inbound | Self::Missed)
    }
}

/// One report: one segment of a call, as one agent had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub call_type: CallType,
    /// The other party's number, as 3CX gave it.
    pub number: String,
    pub name: String,
    /// The extension that had the call.
    pub agent: String,
    pub duration_s: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The screen pop's `entity_id` (`<type>:<id>`), when the lookup found one.
    pub entity_id: Option<String>,
}

/// A call longer than a day is no call.
const MAX_DURATION_S: u64 = 24 * 3600;

/// Each field under our name and 3CX's variable name.
const FIELDS: [(&str, &str); 9] = [
    ("call_type", "CallType"),
    ("number", "Number"),
    ("name", "Name"),
    ("agent", "Agent"),
    ("duration", "Duration"),
    ("date_time", "DateTime"),
    ("start_utc", "CallStartTimeUTC"),
    ("end_utc", "CallEndTimeUTC"),
    ("entity_id", "EntityId"),
];

/// Reads a report from the request body (JSON object, or a form).
pub fn read(content_type: Option<&str>, body: &[u8]) -> Result<Report, String> {
    let pairs: Vec<(String, String)> =
        if content_type.is_some_and(|t| t.to_ascii_lowercase().contains("x-www-form-urlencoded")) {
            form_urlencoded::parse(body).into_owned().collect()
        } else {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| format!("the body is neither a form nor JSON: {e}"))?;
            let serde_json::Value::Object(object) = value else {
                return Err("the body must be a JSON object".into());
            };
            object
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect()
        };
    let get = |ours: &str| -> Option<String> {
        let theirs = FIELDS
            .iter()
            .find(|(o, _)| *o == ours)
            .map_or(ours, |(_, t)| *t);
        pairs
            .iter()
            .find(|(k, _)| k == ours || k.eq_ignore_ascii_case(theirs))
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let call_type = get("call_type").ok_or("`call_type` is missing")?;
    let call_type = CallType::parse(&call_type).ok_or_else(|| {
        format!("`call_type` `{call_type}` is not Inbound, Outbound, Missed or Notanswered")
    })?;
    let number = get("number").ok_or("`number` is missing")?;
    let agent = get("agent").ok_or("`agent` is missing")?;
    let start_text = get("start_utc").ok_or("`start_utc` is missing")?;
    let start =
        utc(&start_text).ok_or_else(|| format!("`start_utc` `{start_text}` is not a time"))?;
    let duration_s = match get("duration") {
        Some(text) => {
            duration(&text).ok_or_else(|| format!("`duration` `{text}` is not a duration"))?
        }
        None => 0,
    };
    if duration_s > MAX_DURATION_S {
        return Err(format!("`duration` {duration_s} s is longer than a day"));
    }
    let end = match get("end_utc") {
        Some(text) => utc(&text).ok_or_else(|| format!("`end_utc` `{text}` is not a time"))?,
        None => start + chrono::Duration::seconds(i64::try_from(duration_s).unwrap_or(0)),
    };
    if end < start {
        return Err(format!("`end_utc` {end} is before `start_utc` {start}"));
    }
    Ok(Report {
        call_type,
        number: number.chars().take(64).collect(),
        name: get("name").unwrap_or_default().chars().take(200).collect(),
        agent: agent.chars().take(32).collect(),
        duration_s,
        start,
        end,
        entity_id: get("entity_id").map(|id| id.chars().take(128).collect()),
    })
}

/// A UTC time as 3CX writes it: RFC 3339, or `YYYY-MM-DD HH:MM:SS` (with
/// `T`, with fractions), or with a date `DD.MM.YYYY` or `MM/DD/YYYY`; years
/// 2000 to 2199 only (chrono reads six-digit years, and arithmetic on those
/// overflows).
pub fn utc(text: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    parse_utc(text).filter(|time| (2000..2200).contains(&time.year()))
}

fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    let bare = text.trim_end_matches('Z');
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%d.%m.%Y %H:%M:%S",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %I:%M:%S %p",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(bare, format).ok())
    .map(|time| time.and_utc())
}

/// A duration: `HH:MM:SS` (or `MM:SS`), seconds, or ISO 8601 (`PT1M30S`,
/// as the XAPI writes `CallTime`).
pub fn duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.0).then(|| seconds.round() as u64);
    }
    if let Some(iso) = text.strip_prefix("PT") {
        let mut total = 0.0;
        let mut number = String::new();
        for c in iso.chars() {
            match c {
                'H' | 'M' | 'S' => {
                    let n: f64 = number.parse().ok()?;
                    total += n * match c {
                        'H' => 3600.0,
                        'M' => 60.0,
                        _ => 1.0,
                    };
                    number.clear();
                }
                c if c.is_ascii_digit() || c == '.' => number.push(c),
                _ => return None,
            }
        }
        return number.is_empty().then(|| total.round() as u64);
    }
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.split('.').next().unwrap_or(p).parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [h, m, s] => Some(h * 3600 + m * 60 + s),
        [m, s] => Some(m * 60 + s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_from_json_with_either_names_and_from_a_form() {
        let json = br#"{"CallType":"Inbound","Number":"0171 1234567","Name":"Anna","Agent":"101",
            "Duration":"00:02:05","CallStartTimeUTC":"2026-12-04 10:00:00","CallEndTimeUTC":"2026-12-04 10:02:05","EntityId":"Contact:abc"}"#;
        let report = read(Some("application/json"), json).unwrap();
        assert_eq!(report.call_type, CallType::Inbound);
        assert_eq!(report.duration_s, 125);
        assert_eq!(report.start.to_rfc3339(), "2026-12-04T10:00:00+00:00");
        assert_eq!(report.entity_id.as_deref(), Some("Contact:abc"));
        let form = b"call_type=Missed&number=%2B491711234567&agent=102&duration=0&start_utc=2026-12-04T10%3A00%3A00Z";
        let report = read(Some("application/x-www-form-urlencoded"), form).unwrap();
        assert_eq!(report.call_type, CallType::Missed);
        assert_eq!(report.end, report.start);
        assert_eq!(report.entity_id, None);
    }

    #[test]
    fn a_report_that_cannot_be_read_names_the_field() {
        for (body, says) in [
            (&br#"{"Number":"1","Agent":"1","CallStartTimeUTC":"2026-12-04 10:00:00"}"#[..], "`call_type` is missing"),
            (br#"{"CallType":"Weird","Number":"1","Agent":"1","CallStartTimeUTC":"x"}"#, "`call_type` `Weird`"),
            (br#"{"CallType":"Inbound","Number":"1","Agent":"1","CallStartTimeUTC":"gestern"}"#, "`start_utc` `gestern`"),
            (br#"{"CallType":"Inbound","Number":"1","Agent":"1","CallStartTimeUTC":"2026-12-04 10:00:00","Duration":"lang"}"#, "`duration` `lang`"),
            (br#"[1]"#, "JSON object"),
        ] {
            let error = read(None, body).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn durations_and_times_in_3cx_forms() {
        assert_eq!(duration("00:01:30"), Some(90));
        assert_eq!(duration("01:30"), Some(90));
        assert_eq!(duration("90"), Some(90));
        assert_eq!(duration("PT1M30.4S"), Some(90));
        assert_eq!(duration("PT2H"), Some(7200));
        assert_eq!(duration("P1D"), None);
        assert_eq!(utc("+262143-12-31 23:59:59"), None);
        assert_eq!(utc("1970-01-01T00:00:00Z"), None);
        let huge = br#"{"CallType":"Inbound","Number":"1","Agent":"1","CallStartTimeUTC":"2026-12-04 10:00:00","Duration":"9223372036854775807"}"#;
        assert!(read(None, huge).unwrap_err().contains("longer than a day"));
        for text in [
            "2026-12-04T10:00:00Z",
            "2026-12-04 10:00:00",
            "2026-12-04T10:00:00.000",
            "04.12.2026 10:00:00",
            "12/04/2026 10:00:00 AM",
        ] {
            assert_eq!(
                utc(text).map(|t| t.to_rfc3339()).as_deref(),
                Some("2026-12-04T10:00:00+00:00"),
                "{text}"
            );
        }
    }
}
