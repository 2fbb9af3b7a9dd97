//! The example plugin: a greeting from the tenant's config, a visit counter and
//! notes kept in the tenant's store; saving a note emits an event that the
//! plugin itself subscribes to. Small on purpose: read it to see the SDK.

use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, events, info, kv,
};
use serde::{Deserialize, Serialize};

struct Hello;

#[derive(Deserialize, Serialize)]
struct Note {
    text: String,
}

impl Plugin for Hello {
    fn describe() -> Description {
        Description::new("hello", env!("CARGO_PKG_VERSION")).topic(NOTE_SAVED)
    }

    /// Each route once: the host learns them from here and requests come back through here.
    fn routes() -> Router {
        Router::new()
            .get("/hello/{name}", greet)
            .put("/hello/notes/{id}", put_note)
            .get("/hello/notes/{id}", get_note)
            .get("/hello/notes", |_| saved_notes())
    }

    /// Keeps the ids of saved notes in a set, as a downstream sync would record its work.
    fn handle_event(event: Event) -> Result<(), HandlerError> {
        let id = String::from_utf8(event.payload)
            .map_err(|_| HandlerError::Permanent("payload is not UTF-8".into()))?;
        kv::set_add("saved", &[id]).map_err(|e| HandlerError::Retryable(e.to_string()))?;
        Ok(())
    }
}

const NOTE_SAVED: &str = "hello.note-saved";

fn greet(request: Request) -> Result<Response, Error> {
    let name = request.require_param("name")?;
    let greeting = bitbylaw_sdk::config::get("greeting").unwrap_or_else(|| "Hello".to_owned());
    let visits = kv::incr("visits", 1)?;
    info!("greeted {}", name; "visits" => visits);
    Ok(Response::json(
        200,
        &serde_json::json!({ "message": format!("{greeting}, {name}!"), "visits": visits }),
    ))
}

fn put_note(request: Request) -> Result<Response, Error> {
    let id = request.require_param("id")?;
    let note: Note = request.json()?;
    if note.text.is_empty() {
        return Err(Error::BadRequest("`text` must not be empty".into()));
    }
    kv::set_json(&format!("note:{id}"), &note, None)?;
    events::emit(NOTE_SAVED, id.as_bytes())?;
    Ok(Response::json(200, &note))
}

fn get_note(request: Request) -> Result<Response, Error> {
    let id = request.require_param("id")?;
    match kv::get_json::<Note>(&format!("note:{id}"))? {
        Some(note) => Ok(Response::json(200, &note)),
        None => Err(Error::NotFound(format!("no note `{id}`"))),
    }
}

fn saved_notes() -> Result<Response, Error> {
    let mut ids = kv::set_members("saved")?;
    ids.sort();
    Ok(Response::json(200, &ids))
}

bitbylaw_sdk::export_plugin!(Hello);
