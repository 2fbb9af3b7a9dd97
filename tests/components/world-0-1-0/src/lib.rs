//! A plugin built against the world as it was before `events.emit-all`,
//! `events.max-attempts` and `types.rest-request` (its own copy in `wit/`,
//! without the SDK, which follows the current world). `GET /old-world/ping`
//! logs, emits an event with the old `emit` and answers 200;
//! `GET /old-world/{advoware|espocrm}?path=<path>` sends a GET with the old
//! interfaces' own request records and answers what came back, or the
//! error's case: proof that the host loads and serves a component of the
//! previous world (docs/plugins/writing-plugins.md, "World versions").

// The bindings generated here export functions by symbol name, which the
// workspace lint counts as unsafe code; the SDK keeps this out of plugin crates.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

use bitbylaw::plugin::{advoware, espocrm, events, http, log};
use exports::bitbylaw::plugin::handler::{
    Description, Event, Guest, HandlerError, Request, Response, Route, Tick,
};

struct OldWorld;

impl Guest for OldWorld {
    fn describe() -> Description {
        Description {
            name: "world-0-1-0".into(),
            version: "0.1.0".into(),
            routes: [
                "/old-world/ping",
                "/old-world/advoware",
                "/old-world/espocrm",
            ]
            .into_iter()
            .map(|path| Route {
                method: "GET".into(),
                path: path.into(),
            })
            .collect(),
            topics: vec!["old_world.pinged".into()],
            schedules: Vec::new(),
        }
    }

    fn handle_http(request: Request) -> Response {
        let path = request
            .query
            .iter()
            .find(|(name, _)| name == "path")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        if request.route == "/old-world/advoware" {
            let sent = advoware::send(&advoware::Request {
                method: "GET".into(),
                path,
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            });
            return passed_on(sent.map_err(|error| match error {
                advoware::Error::NotConfigured(_) => "not-configured",
                advoware::Error::InvalidRequest(_) => "invalid-request",
                advoware::Error::Unauthorized(_) => "unauthorized",
                advoware::Error::Timeout => "timeout",
                advoware::Error::Connection(_) => "connection",
                advoware::Error::TooLarge(_) => "too-large",
                advoware::Error::Unavailable(_) => "unavailable",
            }));
        }
        if request.route == "/old-world/espocrm" {
            let sent = espocrm::send(&espocrm::Request {
                method: "GET".into(),
                path,
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            });
            return passed_on(sent.map_err(|error| match error {
                espocrm::Error::NotConfigured(_) => "not-configured",
                espocrm::Error::InvalidRequest(_) => "invalid-request",
                espocrm::Error::Timeout => "timeout",
                espocrm::Error::Connection(_) => "connection",
                espocrm::Error::TooLarge(_) => "too-large",
            }));
        }
        log::log(log::Level::Info, "pinged by the old world", &[]);
        let emitted = events::emit("old_world.pinged", request.request_id.as_bytes());
        let body = match emitted {
            Ok(()) => r#"{"world":"0.1.0 before emit-all","emitted":true}"#.to_owned(),
            Err(_) => r#"{"world":"0.1.0 before emit-all","emitted":false}"#.to_owned(),
        };
        Response {
            status: if emitted.is_ok() { 200 } else { 503 },
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    }

    fn handle_event(_event: Event) -> Result<(), HandlerError> {
        Ok(())
    }

    fn handle_schedule(tick: Tick) -> Result<(), HandlerError> {
        Err(HandlerError::Permanent(format!(
            "no schedule {}",
            tick.name
        )))
    }
}

/// The upstream's answer as it came, or 502 with the error's case.
fn passed_on(sent: Result<http::Response, &str>) -> Response {
    match sent {
        Ok(answer) => Response {
            status: answer.status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: answer.body,
        },
        Err(case) => Response {
            status: 502,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(r#"{{"error":"{case}"}}"#).into_bytes(),
        },
    }
}

export!(OldWorld);
