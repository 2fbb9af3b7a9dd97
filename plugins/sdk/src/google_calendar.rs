//! The tenant's Google Calendar, acting as one mailbox per call.
//!
//! The host holds the service-account key, the tokens (one per mailbox,
//! shared by every plugin and host instance) and the quotas; a plugin names
//! the mailbox and the calendar. Needs an account of kind `google` in the
//! tenant file granted to the plugin (`upstreams = ["<account>"]`); without it
//! every call answers `NotConfigured`.
//!
//! ```ignore
//! let calendar = google_calendar::Mailbox::new("anna@kanzlei.de").calendar("primary");
//! let changes = calendar.changes_since(Some(&sync_token))?;   // every page
//! calendar.insert(&Event::timed("2026-12-24T09:00:00+01:00", "2026-12-24T10:00:00+01:00", "Europe/Berlin"))?;
//! ```

use crate::Error;
use crate::bindings::bitbylaw::plugin::google_calendar as wit;

pub use wit::{Calendar, Day, Error as GoogleError, Event, EventPage, EventTime, ListQuery, Timed};

/// A mailbox the plugin acts as.
#[derive(Debug, Clone)]
pub struct Mailbox {
    subject: String,
}

impl Mailbox {
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
        }
    }

    /// One of the mailbox's calendars (`primary` is its own).
    pub fn calendar(&self, id: impl Into<String>) -> CalendarRef {
        CalendarRef {
            subject: self.subject.clone(),
            id: id.into(),
        }
    }

    /// The calendars on the mailbox's calendar list.
    pub fn calendars(&self) -> Result<Vec<Calendar>, GoogleError> {
        wit::list_calendars(&self.subject)
    }

    /// Creates a secondary calendar owned by the mailbox.
    pub fn create_calendar(
        &self,
        summary: &str,
        time_zone: Option<&str>,
    ) -> Result<Calendar, GoogleError> {
        wit::insert_calendar(
            &self.subject,
            &Calendar {
                id: None,
                summary: summary.to_owned(),
                description: None,
                time_zone: time_zone.map(str::to_owned),
            },
        )
    }
}

/// One calendar, as one mailbox sees it.
#[derive(Debug, Clone)]
pub struct CalendarRef {
    subject: String,
    id: String,
}

/// Every change since a sync token (or every event, without one), and the
/// token for next time.
#[derive(Debug, Clone)]
pub struct Changes {
    pub events: Vec<Event>,
    pub next_sync_token: Option<String>,
}

impl CalendarRef {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The calendar itself (summary, time zone).
    pub fn details(&self) -> Result<Calendar, GoogleError> {
        wit::get_calendar(&self.subject, &self.id)
    }

    /// One page, as asked.
    pub fn list(&self, query: &ListQuery) -> Result<EventPage, GoogleError> {
        wit::list_events(&self.subject, &self.id, query)
    }

    /// Every page of an incremental listing since `sync_token` (a full one,
    /// cancelled events included, without). `Err(Gone)` means the token
    /// expired: forget the sync state and call again with `None`.
    pub fn changes_since(&self, sync_token: Option<&str>) -> Result<Changes, GoogleError> {
        let mut query = ListQuery {
            sync_token: sync_token.map(str::to_owned),
            page_token: None,
            time_min: None,
            time_max: None,
            // Google's largest page: fewer calls for a full listing.
            max_results: Some(2500),
            show_deleted: sync_token.is_none(),
            single_events: false,
            private_property: Vec::new(),
        };
        let mut events = Vec::new();
        loop {
            let page = self.list(&query)?;
            events.extend(page.events);
            match page.next_page_token {
                Some(next) => query.page_token = Some(next),
                None => {
                    return Ok(Changes {
                        events,
                        next_sync_token: page.next_sync_token,
                    });
                }
            }
        }
    }

    pub fn get(&self, event_id: &str) -> Result<Event, GoogleError> {
        wit::get_event(&self.subject, &self.id, event_id)
    }

    /// Creates `event`; with an `id` of its own the call is idempotent
    /// (`Conflict` when it exists, cancelled or not).
    pub fn insert(&self, event: &Event) -> Result<Event, GoogleError> {
        wit::insert_event(&self.subject, &self.id, event)
    }

    /// Changes the fields `event` sets; with `if_match` only that version.
    pub fn patch(
        &self,
        event_id: &str,
        event: &Event,
        if_match: Option<&str>,
    ) -> Result<Event, GoogleError> {
        wit::patch_event(&self.subject, &self.id, event_id, event, if_match)
    }

    /// Replaces the event; with `if_match` only that version.
    pub fn update(
        &self,
        event_id: &str,
        event: &Event,
        if_match: Option<&str>,
    ) -> Result<Event, GoogleError> {
        wit::update_event(&self.subject, &self.id, event_id, event, if_match)
    }

    pub fn delete(&self, event_id: &str, if_match: Option<&str>) -> Result<(), GoogleError> {
        wit::delete_event(&self.subject, &self.id, event_id, if_match)
    }
}

impl Event {
    /// An event with nothing set: the start of a patch, or of a new event.
    pub fn empty() -> Self {
        Self {
            id: None,
            status: None,
            summary: None,
            description: None,
            location: None,
            start: None,
            end: None,
            recurrence: Vec::new(),
            recurring_event_id: None,
            original_start: None,
            private_properties: Vec::new(),
            transparency: None,
            visibility: None,
            etag: None,
            updated: None,
        }
    }

    /// A timed event from `start` to `end` (RFC 3339) in `time_zone`.
    pub fn timed(start: &str, end: &str, time_zone: &str) -> Self {
        let at = |moment: &str| {
            Some(EventTime::DateTime(Timed {
                date_time: moment.to_owned(),
                time_zone: Some(time_zone.to_owned()),
            }))
        };
        Self {
            start: at(start),
            end: at(end),
            ..Self::empty()
        }
    }

    /// An all-day event from `first` to `last_exclusive` (`YYYY-MM-DD`).
    pub fn all_day(first: &str, last_exclusive: &str) -> Self {
        Self {
            start: Some(EventTime::Date(Day {
                date: first.to_owned(),
                time_zone: None,
            })),
            end: Some(EventTime::Date(Day {
                date: last_exclusive.to_owned(),
                time_zone: None,
            })),
            ..Self::empty()
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn with_summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }

    /// Sets a private extended property (this calendar's own string map).
    pub fn with_private(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.private_properties.retain(|(k, _)| *k != key);
        self.private_properties.push((key, value.into()));
        self
    }

    /// The private extended property `key`.
    pub fn private(&self, key: &str) -> Option<&str> {
        self.private_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_cancelled(&self) -> bool {
        self.status.as_deref() == Some("cancelled")
    }
}

impl From<GoogleError> for Error {
    fn from(error: GoogleError) -> Self {
        match error {
            GoogleError::NotConfigured(m) => Error::Internal(m),
            GoogleError::NotFound(m) => Error::NotFound(m),
            GoogleError::Gone(m) => Error::Conflict(format!("sync token expired: {m}")),
            GoogleError::Conflict(m) => Error::Conflict(m),
            GoogleError::PreconditionFailed(m) => {
                Error::Conflict(format!("changed meanwhile: {m}"))
            }
            GoogleError::RateLimited(m) => Error::Unavailable(format!("Google quota: {m}")),
            GoogleError::Unauthorized(m) => {
                Error::BadGateway(format!("Google sign-in failed: {m}"))
            }
            GoogleError::Invalid(m) => Error::BadGateway(format!("Google refused the call: {m}")),
            GoogleError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
