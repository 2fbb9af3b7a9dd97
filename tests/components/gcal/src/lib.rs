//! The `google-calendar` interface behind routes, for the host's tests. Every
//! route acts as the mailbox in its path, on `?calendar=` (default `primary`).
//! Success answers 200 with JSON; a WIT error answers 200 with
//! `{"error": "<variant>", "message": ...}`, so tests see the variant itself.
//!
//! - `GET /gcal/{mailbox}/ping`: one cheap call (the calendar itself)
//! - `GET /gcal/{mailbox}/changes?sync=<token>&max=<n>`: every page since the token
//! - `POST /gcal/{mailbox}/events` `{"id"?, "summary", "start", "end", "zone"}`
//! - `GET|PATCH|DELETE /gcal/{mailbox}/events/{id}?if_match=<etag>` (PATCH: `{"summary"}`)
//! - `GET|POST /gcal/{mailbox}/calendars` (POST: `{"summary"}`)

use bitbylaw_sdk::google_calendar::{Event, GoogleError, ListQuery, Mailbox};
use bitbylaw_sdk::{Description, Error, Plugin, Request, Response, Router};
use serde_json::{Value, json};

struct Gcal;

impl Plugin for Gcal {
    fn describe() -> Description {
        Description::new("gcal", "0.1.0")
    }

    fn routes() -> Router {
        Router::new()
            .get("/gcal/{mailbox}/ping", ping)
            .get("/gcal/{mailbox}/changes", changes)
            .post("/gcal/{mailbox}/events", insert)
            .get("/gcal/{mailbox}/events/{id}", get)
            .patch("/gcal/{mailbox}/events/{id}", patch)
            .delete("/gcal/{mailbox}/events/{id}", delete)
            .get("/gcal/{mailbox}/calendars", calendars)
            .post("/gcal/{mailbox}/calendars", create_calendar)
    }
}

fn answer(result: Result<Value, GoogleError>) -> Result<Response, Error> {
    let body = match result {
        Ok(value) => value,
        Err(error) => {
            let (variant, message) = match error {
                GoogleError::NotConfigured(m) => ("not-configured", m),
                GoogleError::NotFound(m) => ("not-found", m),
                GoogleError::Gone(m) => ("gone", m),
                GoogleError::Conflict(m) => ("conflict", m),
                GoogleError::PreconditionFailed(m) => ("precondition-failed", m),
                GoogleError::RateLimited(m) => ("rate-limited", m),
                GoogleError::Unauthorized(m) => ("unauthorized", m),
                GoogleError::Invalid(m) => ("invalid", m),
                GoogleError::Unavailable(m) => ("unavailable", m),
            };
            json!({ "error": variant, "message": message })
        }
    };
    Ok(Response::json(200, &body))
}

fn mailbox(request: &Request) -> Result<Mailbox, Error> {
    Ok(Mailbox::new(request.require_param("mailbox")?))
}

fn calendar_id(request: &Request) -> String {
    request.query("calendar").unwrap_or("primary").to_owned()
}

fn event_json(event: &Event) -> Value {
    json!({
        "id": event.id,
        "status": event.status,
        "summary": event.summary,
        "etag": event.etag,
        "private": event.private_properties,
    })
}

fn ping(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    answer(
        calendar
            .details()
            .map(|c| json!({ "id": c.id, "summary": c.summary })),
    )
}

fn changes(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    let sync = request.query("sync").filter(|s| !s.is_empty());
    let Some(max) = request.query("max").and_then(|m| m.parse::<u32>().ok()) else {
        return answer(calendar.changes_since(sync).map(|changes| {
            json!({
                "events": changes.events.iter().map(event_json).collect::<Vec<_>>(),
                "next_sync_token": changes.next_sync_token,
            })
        }));
    };
    // Page by page, as a plugin with small pages would.
    let mut query = ListQuery {
        sync_token: sync.map(str::to_owned),
        page_token: None,
        time_min: None,
        time_max: None,
        max_results: Some(max),
        show_deleted: sync.is_none(),
        single_events: false,
        private_property: Vec::new(),
    };
    let mut events = Vec::new();
    let mut pages = 0;
    loop {
        let page = match calendar.list(&query) {
            Ok(page) => page,
            Err(error) => return answer(Err(error)),
        };
        pages += 1;
        events.extend(page.events.iter().map(event_json));
        match page.next_page_token {
            Some(next) => query.page_token = Some(next),
            None => {
                return answer(Ok(json!({
                    "events": events,
                    "pages": pages,
                    "next_sync_token": page.next_sync_token,
                })));
            }
        }
    }
}

fn insert(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    let body: Value = request.json()?;
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    let mut event = Event::timed(&text("start"), &text("end"), &text("zone"))
        .with_summary(text("summary"))
        .with_private("source", "gcal-test");
    if let Some(id) = body["id"].as_str() {
        event = event.with_id(id);
    }
    answer(calendar.insert(&event).map(|e| event_json(&e)))
}

fn get(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    answer(
        calendar
            .get(request.require_param("id")?)
            .map(|e| event_json(&e)),
    )
}

fn patch(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    let body: Value = request.json()?;
    let change = Event::empty().with_summary(body["summary"].as_str().unwrap_or_default());
    answer(
        calendar
            .patch(
                request.require_param("id")?,
                &change,
                request.query("if_match"),
            )
            .map(|e| event_json(&e)),
    )
}

fn delete(request: Request) -> Result<Response, Error> {
    let calendar = mailbox(&request)?.calendar(calendar_id(&request));
    answer(
        calendar
            .delete(request.require_param("id")?, request.query("if_match"))
            .map(|()| json!({ "deleted": true })),
    )
}

fn calendars(request: Request) -> Result<Response, Error> {
    let mailbox = mailbox(&request)?;
    answer(mailbox.calendars().map(|calendars| {
        json!(
            calendars
                .iter()
                .map(|c| json!({ "id": c.id, "summary": c.summary }))
                .collect::<Vec<_>>()
        )
    }))
}

fn create_calendar(request: Request) -> Result<Response, Error> {
    let mailbox = mailbox(&request)?;
    let body: Value = request.json()?;
    answer(
        mailbox
            .create_calendar(
                body["summary"].as_str().unwrap_or_default(),
                Some("Europe/Berlin"),
            )
            .map(|c| json!({ "id": c.id, "summary": c.summary })),
    )
}

bitbylaw_sdk::export_plugin!(Gcal);
