//! A plugin built against the world as it was before `events.emit-all` and
//! `events.max-attempts` (its own copy in `wit/`, without the SDK, which
//! follows the current world). `GET /old-world/ping` logs, emits an event with
//! the old `emit` and answers 200: proof that the host loads and serves a
//! component of the previous world (docs/plugins/writing-plugins.md, "World
//! versions").

// The bindings generated here export functions by symbol name, which the
// workspace lint counts as unsafe code; the SDK keeps this out of plugin crates.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

use bitbylaw::plugin::{events, log};
use exports::bitbylaw::plugin::handler::{
    Description, Event, Guest, HandlerError, Request, Response, Route, Tick,
};

struct OldWorld;

impl Guest for OldWorld {
    fn describe() -> Description {
        Description {
            name: "world-0-1-0".into(),
            version: "0.1.0".into(),
            routes: vec![Route {
                method: "GET".into(),
                path: "/old-world/ping".into(),
            }],
            topics: vec!["old_world.pinged".into()],
            schedules: Vec::new(),
        }
    }

    fn handle_http(request: Request) -> Response {
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

export!(OldWorld);
