//! Stands in for a downstream plugin (the telephony plugin for
//! `lead.qualify`): keeps each event's payload once, by event id, and lists
//! them at `GET /topic-sink`.

use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, Subscriptions, kv,
};

struct TopicSink;

impl Plugin for TopicSink {
    fn describe() -> Description {
        Description::new("topic-sink", "0.1.0")
    }

    fn routes() -> Router {
        Router::new().get("/topic-sink", list)
    }

    fn subscriptions() -> Subscriptions {
        Subscriptions::new().topic("lead.qualify", keep)
    }
}

fn keep(event: Event) -> Result<(), HandlerError> {
    if kv::set_add("seen", std::slice::from_ref(&event.id))?.is_empty() {
        return Ok(());
    }
    let payload = String::from_utf8_lossy(&event.payload).into_owned();
    kv::set_add("payloads", &[payload])?;
    Ok(())
}

fn list(_: Request) -> Result<Response, Error> {
    let payloads: Vec<serde_json::Value> = kv::set_members("payloads")?
        .iter()
        .filter_map(|payload| serde_json::from_str(payload).ok())
        .collect();
    Ok(Response::json(200, &payloads))
}

bitbylaw_sdk::export_plugin!(TopicSink);
