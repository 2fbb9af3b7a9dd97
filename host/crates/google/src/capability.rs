//! `bitbylaw:plugin/google-calendar`: the tenant's Google Calendar through the
//! host's client, for plugins the tenant file grants a Google account.

use bitbylaw_bindings::google_calendar::{
    self, Calendar, Error, Event, EventPage, Host, ListQuery,
};
use bitbylaw_core::upstream::{UpstreamCall, UpstreamState};
use wasmtime::component::{HasData, Linker};

use crate::convert::{
    calendar_from_api, calendar_from_list, calendar_to_api, event_from_api, event_to_api,
};
use crate::{Change, Client, GoogleError};

/// Serves the interface to every plugin; each call sees only the caller's grants.
pub fn add_to_linker<T: UpstreamState>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    google_calendar::add_to_linker::<T, Calls>(linker, |state| GoogleCall(state.upstream_call()))
}

struct Calls;

impl HasData for Calls {
    type Data<'a> = GoogleCall<'a>;
}

/// One plugin's call, as this interface sees it.
pub struct GoogleCall<'a>(pub UpstreamCall<'a>);

impl GoogleCall<'_> {
    fn client(&self) -> Result<&Client, Error> {
        let call = &self.0;
        call.grants.client::<Client>().ok_or_else(|| {
            Error::NotConfigured(format!(
                "plugin `{}` of tenant `{}` may not use Google Calendar: grant it an account of kind `google` in the tenant file (`upstreams = [\"<name>\"]`)",
                call.plugin, call.tenant
            ))
        })
    }

    /// A patch or an update of one event.
    async fn change(
        &self,
        method: &str,
        subject: &str,
        calendar_id: &str,
        event_id: &str,
        event: Event,
        change: Change<'_>,
    ) -> Result<Event, Error> {
        let client = self.client()?;
        // A patch that sets the start sets the series with it: an empty list
        // then clears a recurrence (a WIT list cannot say "leave it" apart
        // from "none", and a time without its series means something else).
        let clears_series = !change.replace && event.start.is_some() && event.recurrence.is_empty();
        let result = match event_to_api(event) {
            Ok(mut event) => {
                if clears_series {
                    event.recurrence = Some(Vec::new());
                }
                client
                    .change_event(
                        subject,
                        calendar_id,
                        event_id,
                        event,
                        change,
                        self.0.deadline,
                    )
                    .await
                    .map(event_from_api)
            }
            Err(error) => Err(error),
        };
        self.answer(method, result)
    }

    /// The plugin's answer, with failures logged under the call's ids.
    fn answer<T>(&self, method: &str, result: Result<T, GoogleError>) -> Result<T, Error> {
        result.map_err(|error| {
            let call = &self.0;
            tracing::info!(
                tenant = %call.tenant,
                plugin = %call.plugin,
                request_id = %call.request_id,
                %method,
                %error,
                "Google Calendar call failed"
            );
            error.into()
        })
    }
}

impl Host for GoogleCall<'_> {
    async fn list_events(
        &mut self,
        subject: String,
        calendar_id: String,
        query: ListQuery,
    ) -> Result<EventPage, Error> {
        let client = self.client()?;
        let query = crate::ListQuery {
            sync_token: query.sync_token,
            page_token: query.page_token,
            time_min: query.time_min,
            time_max: query.time_max,
            max_results: query.max_results,
            show_deleted: query.show_deleted,
            single_events: query.single_events,
            private_property: query.private_property,
        };
        let result = client
            .list_events(&subject, &calendar_id, &query, self.0.deadline)
            .await
            .map(|events| EventPage {
                events: events
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .map(event_from_api)
                    .collect(),
                next_page_token: events.next_page_token.filter(|t| !t.is_empty()),
                next_sync_token: events.next_sync_token.filter(|t| !t.is_empty()),
            });
        self.answer("events.list", result)
    }

    async fn get_event(
        &mut self,
        subject: String,
        calendar_id: String,
        event_id: String,
    ) -> Result<Event, Error> {
        let client = self.client()?;
        let result = client
            .get_event(&subject, &calendar_id, &event_id, self.0.deadline)
            .await
            .map(event_from_api);
        self.answer("events.get", result)
    }

    async fn insert_event(
        &mut self,
        subject: String,
        calendar_id: String,
        event: Event,
    ) -> Result<Event, Error> {
        let client = self.client()?;
        let result = match event_to_api(event) {
            Ok(event) => client
                .insert_event(&subject, &calendar_id, event, self.0.deadline)
                .await
                .map(event_from_api),
            Err(error) => Err(error),
        };
        self.answer("events.insert", result)
    }

    async fn patch_event(
        &mut self,
        subject: String,
        calendar_id: String,
        event_id: String,
        event: Event,
        if_match: Option<String>,
    ) -> Result<Event, Error> {
        let change = Change {
            replace: false,
            if_match: if_match.as_deref(),
        };
        self.change(
            "events.patch",
            &subject,
            &calendar_id,
            &event_id,
            event,
            change,
        )
        .await
    }

    async fn update_event(
        &mut self,
        subject: String,
        calendar_id: String,
        event_id: String,
        event: Event,
        if_match: Option<String>,
    ) -> Result<Event, Error> {
        let change = Change {
            replace: true,
            if_match: if_match.as_deref(),
        };
        self.change(
            "events.update",
            &subject,
            &calendar_id,
            &event_id,
            event,
            change,
        )
        .await
    }

    async fn delete_event(
        &mut self,
        subject: String,
        calendar_id: String,
        event_id: String,
        if_match: Option<String>,
    ) -> Result<(), Error> {
        let client = self.client()?;
        let result = client
            .delete_event(
                &subject,
                &calendar_id,
                &event_id,
                if_match.as_deref(),
                self.0.deadline,
            )
            .await;
        self.answer("events.delete", result)
    }

    async fn list_calendars(&mut self, subject: String) -> Result<Vec<Calendar>, Error> {
        let client = self.client()?;
        let result = client
            .list_calendars(&subject, self.0.deadline)
            .await
            .map(|entries| entries.into_iter().map(calendar_from_list).collect());
        self.answer("calendarList.list", result)
    }

    async fn get_calendar(
        &mut self,
        subject: String,
        calendar_id: String,
    ) -> Result<Calendar, Error> {
        let client = self.client()?;
        let result = client
            .get_calendar(&subject, &calendar_id, self.0.deadline)
            .await
            .map(calendar_from_api);
        self.answer("calendars.get", result)
    }

    async fn insert_calendar(
        &mut self,
        subject: String,
        calendar: Calendar,
    ) -> Result<Calendar, Error> {
        let client = self.client()?;
        let result = client
            .insert_calendar(&subject, calendar_to_api(calendar), self.0.deadline)
            .await
            .map(calendar_from_api);
        self.answer("calendars.insert", result)
    }
}

impl From<GoogleError> for Error {
    fn from(error: GoogleError) -> Self {
        match error {
            GoogleError::NotFound(m) => Error::NotFound(m),
            GoogleError::Gone(m) => Error::Gone(m),
            GoogleError::Conflict(m) => Error::Conflict(m),
            GoogleError::PreconditionFailed(m) => Error::PreconditionFailed(m),
            GoogleError::RateLimited(m) => Error::RateLimited(m),
            GoogleError::Unauthorized(m) => Error::Unauthorized(m),
            GoogleError::Invalid(m) => Error::Invalid(m),
            GoogleError::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
