//! `vmh-webhooks`: EspoCRM (VMH) announces created, updated and deleted
//! parties (`CBeteiligte`) by webhook; this plugin checks each delivery's
//! signature, lets each record through once while its sync is pending, emits
//! `vmh.beteiligte.<action>`, and syncs the party into Advoware from the
//! events. See `docs/plugins/vmh-webhooks.md`.
//!
//! EspoCRM retries 401, 403, 404, 405, 408, 500 and 503 and gives up on other
//! refusals; an answer of 410 would delete the webhook in EspoCRM. So: a bad
//! signature is 401, a malformed body 400 (resending it will not help), a store
//! outage 503 (resending will), and nothing here ever answers 410.

mod mapping;
mod party;
mod settings;

use bitbylaw_sdk::espocrm::SignatureError;
use bitbylaw_sdk::inbox::{Inbox, Worked};
use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, Subscriptions,
    Tick, espocrm, info, lock, metrics, warn,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::party::{Failure, Outcome};
use crate::settings::Settings;

/// What a webhook announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Create, Action::Update, Action::Delete];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    fn topic(self) -> &'static str {
        match self {
            Action::Create => "vmh.beteiligte.create",
            Action::Update => "vmh.beteiligte.update",
            Action::Delete => "vmh.beteiligte.delete",
        }
    }

    fn of_topic(topic: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.topic() == topic)
    }
}

/// Most records one delivery may carry (EspoCRM sends up to 50 by default).
const MAX_BATCH: usize = 1000;

/// The schedule that announces what a receipt that died left pending.
const SWEEP: &str = "vmh_pending_sweep";

/// The payload of `vmh.beteiligte.<action>`.
#[derive(Debug, Serialize, Deserialize)]
struct Announced {
    entity_id: String,
    action: String,
    source: String,
    /// When the webhook came (RFC 3339, UTC).
    timestamp: String,
}

impl Announced {
    fn new(action: Action, id: &str, timestamp: &str) -> Self {
        Self {
            entity_id: id.to_owned(),
            action: action.as_str().to_owned(),
            source: "espocrm".to_owned(),
            timestamp: timestamp.to_owned(),
        }
    }
}

struct VmhWebhooks;

impl Plugin for VmhWebhooks {
    fn describe() -> Description {
        Description::new("vmh-webhooks", env!("CARGO_PKG_VERSION"))
    }

    fn routes() -> Router {
        Router::new()
            .post("/vmh/webhook/beteiligte/{action}", receive)
            .get("/vmh/beteiligte/{id}", lookup)
    }

    fn subscriptions() -> Subscriptions {
        Action::ALL
            .into_iter()
            .fold(Subscriptions::new(), |s, action| {
                s.topic(action.topic(), handle_party)
            })
            .topic(PARTY_REQUESTED, handle_requested)
            .schedule(SWEEP, "0 * * * * *", sweep)
    }
}

/// Another plugin of the tenant asks for the party of an EspoCRM record
/// (`{"entity": "Lead", "entity_id": "..."}`): vermieterhelden for a
/// qualified lead. The same sync as a webhook's create, under the record's lease.
const PARTY_REQUESTED: &str = "vmh.party.requested";

#[derive(Debug, Deserialize)]
struct Requested {
    entity: String,
    entity_id: String,
}

fn handle_requested(event: Event) -> Result<(), HandlerError> {
    let requested: Requested = event.json()?;
    let settings = Settings::load()?;
    if requested.entity != settings.entity
        && !settings.requested_entities.contains(&requested.entity)
    {
        return Err(HandlerError::Permanent(format!(
            "entity `{}` is not in `requested_entities`: no party is made for it",
            requested.entity
        )));
    }
    if !is_espo_id(&requested.entity_id) {
        return Err(HandlerError::Permanent(format!(
            "`{}` is not an EspoCRM id",
            requested.entity_id
        )));
    }
    let id = &requested.entity_id;
    let ttl = std::time::Duration::from_secs(settings.lock_ttl_s.max(1));
    let result = match lock::hold(&format!("party:{id}"), ttl)? {
        Some(_held) => party::upsert(&settings, &requested.entity, id),
        None => Err(Failure::Busy(format!("another sync of {id} runs"))),
    };
    let outcome = match &result {
        Ok(outcome) => outcome.as_str(),
        Err(failure) => failure.outcome(),
    };
    metrics::counter_add(
        "vmh_party_syncs",
        &[("action", "requested"), ("outcome", outcome)],
        1,
    );
    match result {
        Ok(outcome) => {
            info!("party for {} {id}: {}", requested.entity, outcome.as_str());
            Ok(())
        }
        Err(failure) => Err(failure.into()),
    }
}

impl Action {
    /// The inbox of this action's deliveries.
    fn inbox(self) -> Inbox {
        Inbox::new(self.as_str())
    }
}

/// Announces what a receipt that died left pending, and ids pending past
/// `stuck_after_s` with their event gone (`Inbox::sweep`, `Inbox::stuck`).
fn sweep(tick: Tick) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let now = i64::try_from(tick.scheduled_at).unwrap_or(i64::MAX);
    for action in Action::ALL {
        let inbox = action.inbox();
        let stuck = inbox.stuck(settings.stuck_after(), now)?;
        if !stuck.is_empty() {
            warn!(
                "{} {} records stayed pending past {} s (their last attempt ended but they were not let go); announcing them again",
                stuck.len(),
                action.as_str(),
                settings.stuck_after_s
            );
            announce(action, &stuck)?;
        }
        let orphans = inbox.sweep()?;
        if !orphans.is_empty() {
            warn!(
                "{} {} records were pending without an event (a receipt died); announcing them",
                orphans.len(),
                action.as_str()
            );
            announce(action, &orphans)?;
        }
    }
    Ok(())
}

/// One record's party sync, from its event.
fn handle_party(event: Event) -> Result<(), HandlerError> {
    let Some(action) = Action::of_topic(&event.topic) else {
        return Err(HandlerError::Permanent(format!(
            "not a topic of this plugin: {}",
            event.topic
        )));
    };
    let announced: Announced = event.json()?;
    let id = announced.entity_id;
    if !is_espo_id(&id) {
        return Err(HandlerError::Permanent(format!(
            "`{id}` is not an EspoCRM id"
        )));
    }
    // Settings that do not load are the operator's to fix: retried like
    // any other failure.
    let worked = action.inbox().work(
        &event,
        &id,
        |ids| announce(action, ids),
        || {
            Settings::load()
                .map_err(|e| Failure::Retryable(e.to_string()))
                .and_then(|settings| sync(&settings, action, &id))
        },
    )?;
    let outcome = match &worked {
        Worked::Done(outcome) => outcome.as_str(),
        Worked::Failed(failure) => failure.outcome(),
        Worked::Requeued => "retry",
    };
    metrics::counter_add(
        "vmh_party_syncs",
        &[("action", action.as_str()), ("outcome", outcome)],
        1,
    );
    match worked {
        Worked::Done(outcome) => {
            info!("party sync {} {id}: {}", action.as_str(), outcome.as_str());
            Ok(())
        }
        Worked::Requeued => {
            info!(
                "party sync {} {id}: busy on its last attempt; announced again",
                action.as_str()
            );
            Ok(())
        }
        Worked::Failed(failure) => {
            let how = match failure {
                Failure::Permanent(_) => "failed for good",
                _ => "failed, will retry",
            };
            warn!(
                "party sync {} {id} {how}: {}",
                action.as_str(),
                failure.message()
            );
            Err(failure.into())
        }
    }
}

/// One record's sync, under the record's lease: a create and an update of the
/// same record, or two updates, never run at once.
fn sync(settings: &Settings, action: Action, id: &str) -> Result<Outcome, Failure> {
    let ttl = std::time::Duration::from_secs(settings.lock_ttl_s.max(1));
    let Some(_held) = lock::hold(&format!("party:{id}"), ttl)? else {
        return Err(Failure::Busy(format!("another sync of {id} runs")));
    };
    match action {
        Action::Create | Action::Update => party::upsert(settings, &settings.entity, id),
        Action::Delete => party::remove(settings, id),
    }
}

/// One event per id, all or none, then the ids recorded as announced (an id
/// pending but never recorded so is taken up by the sweep).
fn announce(action: Action, ids: &[String]) -> Result<(), Error> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    action
        .inbox()
        .announce(action.topic(), ids, |id| Announced::new(action, id, &now))
}

/// EspoCRM's ids are 17 hex digits; anything plain and short is taken, nothing
/// that could leave a path segment or a store key.
fn is_espo_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unauthorized(message: impl Into<String>) -> Response {
    Response::json(
        401,
        &json!({ "error": "unauthorized", "message": message.into() }),
    )
}

/// `POST /vmh/webhook/beteiligte/{action}`: one EspoCRM delivery.
fn receive(request: Request) -> Result<Response, Error> {
    let action_name = request.require_param("action")?;
    let Some(action) = Action::parse(action_name) else {
        return Err(Error::NotFound(format!(
            "no webhook `{action_name}`: this plugin takes create, update and delete"
        )));
    };
    // EspoCRM always sends JSON: anything else is not EspoCRM.
    if !is_json(request.header("content-type")) {
        return Ok(Response::json(
            415,
            &json!({
                "error": "unsupported_media_type",
                "message": "a delivery is a JSON array (`Content-Type: application/json`), as EspoCRM sends it",
            }),
        ));
    }
    let settings = Settings::load()?;
    if settings.require_signature {
        let webhook = settings.webhook(action);
        match espocrm::verify_webhook(&webhook, &request) {
            Ok(()) => {}
            // The tenant's set-up, not the sender: 503, which EspoCRM retries.
            Err(SignatureError::NotConfigured(message)) => {
                return Err(Error::Unavailable(format!(
                    "signature check not set up: {message}"
                )));
            }
            Err(SignatureError::Missing) => {
                return Ok(unauthorized(
                    "a signature is required: no `Signature` or `X-Signature` header",
                ));
            }
            Err(SignatureError::Malformed(message) | SignatureError::Mismatch(message)) => {
                return Ok(unauthorized(format!("signature refused: {message}")));
            }
        }
    }
    let ids = batch_ids(request.body())?;
    // Each id once, in order: up to 1,000 records, so no quadratic scan.
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let distinct: Vec<String> = ids.iter().filter(|id| seen.insert(*id)).cloned().collect();
    let fresh = action.inbox().admit(&distinct)?;
    if let Err(error) = announce(action, &fresh) {
        // None was announced (all or none): let the ids go again, so that
        // EspoCRM's retry of this delivery (it retries 503) finds them new.
        let _ = action.inbox().forget(&fresh);
        return Err(Error::Unavailable(format!(
            "the records could not be announced; send again: {error}"
        )));
    }
    metrics::counter_add(
        "vmh_webhook_records",
        &[("action", action.as_str())],
        ids.len() as u64,
    );
    metrics::counter_add(
        "vmh_webhook_announced",
        &[("action", action.as_str())],
        fresh.len() as u64,
    );
    Ok(Response::json(
        200,
        &json!({
            "status": "received",
            "action": action.as_str(),
            "new_ids_count": fresh.len(),
            "total_ids_in_batch": ids.len(),
        }),
    ))
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// The ids of a delivery's records, in order: the body must be EspoCRM's JSON
/// array of records, each with an `id`.
fn batch_ids(body: &[u8]) -> Result<Vec<String>, Error> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("body is not JSON: {e}")))?;
    let Value::Array(records) = value else {
        return Err(Error::BadRequest(
            "body must be a JSON array of records, as EspoCRM sends them".into(),
        ));
    };
    if records.len() > MAX_BATCH {
        return Err(Error::BadRequest(format!(
            "{} records in one delivery; at most {MAX_BATCH}",
            records.len()
        )));
    }
    records
        .iter()
        .enumerate()
        .map(|(index, record)| match record.get("id") {
            Some(Value::String(id)) if is_espo_id(id) => Ok(id.clone()),
            Some(Value::String(id)) => Err(Error::BadRequest(format!(
                "record {index}: `{}` is not an EspoCRM id (letters, digits, `-`, `_`)",
                id.escape_debug()
            ))),
            Some(_) => Err(Error::BadRequest(format!(
                "record {index}: `id` is not a string"
            ))),
            None if record.is_object() => {
                Err(Error::BadRequest(format!("record {index} has no `id`")))
            }
            None => Err(Error::BadRequest(format!(
                "record {index} is not an object"
            ))),
        })
        .collect()
}

/// `GET /vmh/beteiligte/{id}`: what the plugin knows of one record.
fn lookup(request: Request) -> Result<Response, Error> {
    let id = request.require_param("id")?;
    if !is_espo_id(id) {
        return Err(Error::BadRequest(format!(
            "`{}` is not an EspoCRM id",
            id.escape_debug()
        )));
    }
    let mut pending = serde_json::Map::new();
    for action in Action::ALL {
        pending.insert(
            action.as_str().into(),
            json!(action.inbox().is_pending(id)?),
        );
    }
    let linked = party::linked(id)?;
    if linked.is_none() && pending.values().all(|p| p == &json!(false)) {
        return Err(Error::NotFound(format!(
            "nothing is known of EspoCRM record {id}"
        )));
    }
    Ok(Response::json(
        200,
        &json!({ "entity_id": id, "advoware_id": linked, "pending": pending }),
    ))
}

bitbylaw_sdk::export_plugin!(VmhWebhooks);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_its_ids_in_order() {
        let ids = batch_ids(br#"[{"id":"a1","name":"x"},{"id":"b2"},{"id":"a1"}]"#).unwrap();
        assert_eq!(ids, ["a1", "b2", "a1"]);
        assert_eq!(batch_ids(b"[]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_malformed_batch_says_what_is_wrong() {
        for (body, says) in [
            (&b"{"[..], "not JSON"),
            (br#"{"id":"a1"}"#, "JSON array"),
            (br#"[{"id":"a1"},{"name":"x"}]"#, "record 1 has no `id`"),
            (br#"[{"id":5}]"#, "not a string"),
            (br#"["a1"]"#, "record 0 is not an object"),
            (br#"[{"id":"../x"}]"#, "not an EspoCRM id"),
        ] {
            let error = batch_ids(body).unwrap_err();
            assert_eq!(error.status(), 400);
            assert!(error.message().contains(says), "{error}");
        }
    }

    #[test]
    fn only_json_is_a_delivery() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        for other in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/jsonx"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert!(!is_json(other), "{other:?}");
        }
    }

    #[test]
    fn actions_and_topics_match() {
        for action in Action::ALL {
            assert_eq!(Action::of_topic(action.topic()), Some(action));
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("restore"), None);
    }
}
