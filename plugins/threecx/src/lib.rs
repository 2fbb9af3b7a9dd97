//! `threecx`: the firm's 3CX phone system (V20) with its CRM and Advoware.
//!
//! 3CX reaches a CRM through a server-side CRM template (`deploy/3cx/`) that
//! calls two routes here: the contact lookup for the screen pop
//! (`GET /3cx/lookup?number=…`, answered within a time budget from EspoCRM
//! and Advoware) and the call journal when a call ends (`POST /3cx/journal`:
//! one call per conversation, transfers folded in, written to EspoCRM as a
//! `Call` and to Advoware as a note). The plugin calls 3CX's APIs through
//! the host's `3cx` account: `makecall` for new leads (`lead.qualify`, or
//! `POST /3cx/calls`), with a follow-up task when nobody answered, and the
//! XAPI's recordings, polled and linked to their calls. See `docs/plugins/3cx.md`.

mod calls;
mod journal;
mod lookup;
mod recordings;
mod report;
mod settings;

use std::time::{Duration, Instant};

use bitbylaw_sdk::inbox::{Inbox, Worked};
use bitbylaw_sdk::sync::Failure;
use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, Subscriptions,
    Tick, info, kv, lock, metrics, phone, warn,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::calls::NotStarted;
use crate::journal::Taken;
use crate::settings::Settings;

const LEAD_QUALIFY: &str = "lead.qualify";
const CALL_REPORTED: &str = "threecx.call.reported";

/// Calls of the journal whose sync to EspoCRM and Advoware is on its way.
fn inbox() -> Inbox {
    Inbox::new("calls")
}

#[derive(Debug, Serialize, Deserialize)]
struct Reported {
    call: String,
}

struct ThreeCx;

impl Plugin for ThreeCx {
    fn describe() -> Description {
        Description::new("threecx", env!("CARGO_PKG_VERSION"))
    }

    fn routes() -> Router {
        Router::new()
            .get("/3cx/lookup", lookup_route)
            .post("/3cx/journal", journal_route)
            .get("/3cx/journal/{key}", read_call)
            .post("/3cx/calls", start_call)
            .get("/3cx/calls/{id}", read_outbound)
            .get("/3cx/recordings/{id}", read_recording)
            .get("/3cx/recordings/{id}/audio", recording_audio)
    }

    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
            .topic(LEAD_QUALIFY, call_lead)
            .topic(CALL_REPORTED, sync_call)
            .schedule("threecx_calls", "*/5 * * * * *", watch_calls)
            .schedule("threecx_recordings", "*/30 * * * * *", poll_recordings)
            .schedule("threecx_sweep", "45 * * * * *", sweep)
    }
}

// ---- lookup ----

/// `GET /3cx/lookup?number=…`: the screen pop's records, `{"contacts": […]}`
/// (empty for an unknown number), within `lookup.budget_ms`.
fn lookup_route(request: Request) -> Result<Response, Error> {
    let started = Instant::now();
    let settings = Settings::load()?;
    let raw = request
        .query("number")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::BadRequest("`number` is missing: /3cx/lookup?number=<number>".into())
        })?;
    let deadline = started + Duration::from_millis(settings.lookup.budget_ms);
    // An extension, "anonymous" or a number no plan knows: nobody to show.
    let number = phone::e164(raw);
    let found = match &number {
        Some(number) => lookup::find(&settings, number, deadline)?,
        None => lookup::Found {
            contacts: Vec::new(),
            complete: true,
        },
    };
    metrics::observe(
        "threecx_lookup_seconds",
        &[("complete", if found.complete { "true" } else { "false" })],
        started.elapsed().as_secs_f64(),
    );
    Ok(Response::json(
        200,
        &json!({
            "number": number.as_deref().unwrap_or(raw),
            "contacts": found.contacts,
            "complete": found.complete,
        }),
    ))
}

// ---- journal ----

/// `POST /3cx/journal`: 3CX's report of an ended call (the template's `ReportCall`).
fn journal_route(request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let report =
        report::read(request.header("content-type"), request.body()).map_err(Error::BadRequest)?;
    let (key, taken) = journal::take(&settings, report)?;
    // Also for a repeated report: the first may have been kept but not
    // admitted (the store failed in between, 3CX sent again). Admitting a
    // call whose sync is on its way changes nothing.
    let fresh = inbox().admit(std::slice::from_ref(&key))?;
    // Kept: the sweep announces it if this fails.
    if let Err(error) = announce(&fresh) {
        warn!("call {key} kept; its event goes out with the next sweep: {error}");
    }
    let taken = match taken {
        Taken::New => "new",
        Taken::Segment => "segment",
        Taken::Repeated => "repeated",
    };
    metrics::counter_add("threecx_journal_reports", &[("taken", taken)], 1);
    Ok(Response::json(
        200,
        &json!({ "status": "kept", "call": key, "taken": taken }),
    ))
}

fn announce(keys: &[String]) -> Result<(), Error> {
    inbox().announce(CALL_REPORTED, keys, |key| Reported {
        call: key.to_owned(),
    })
}

/// The call's sync again (a recording was linked to it).
pub(crate) fn resync(key: &str) -> Result<(), Error> {
    let fresh = inbox().admit(&[key.to_owned()])?;
    announce(&fresh)
}

/// `GET /3cx/journal/{key}`: a call as the journal keeps it.
fn read_call(request: Request) -> Result<Response, Error> {
    let key = request.require_param("key")?;
    let Some(call) = kv::get_json::<journal::Call>(&journal::call_key(key))? else {
        return Err(Error::NotFound(format!("no call `{key}` in the journal")));
    };
    let written = journal::written(key)?;
    Ok(Response::json(
        200,
        &json!({
            "call": call,
            "answered": call.answered(),
            "start": call.start(),
            "end": call.end(),
            "talk_s": call.talk_s(),
            "agents": call.agents(),
            "espocrm_id": written.espocrm_id,
            "linked_to": written.linked_to,
            "party": written.party,
            "party_noted": written.party_noted,
            "recordings": journal::recordings(key)?,
        }),
    ))
}

fn sync_call(event: Event) -> Result<(), HandlerError> {
    let reported: Reported = event.json()?;
    let key = reported.call;
    let worked = inbox().work(&event, &key, announce, || {
        Settings::load()
            .map_err(|e| Failure::Retryable(e.to_string()))
            .and_then(|settings| journal::sync(&settings, &key))
    })?;
    let outcome = match &worked {
        Worked::Done(outcome) => *outcome,
        Worked::Failed(failure) => failure.outcome(),
        Worked::Requeued => "retry",
    };
    metrics::counter_add("threecx_journal_syncs", &[("outcome", outcome)], 1);
    match worked {
        Worked::Done(outcome) => {
            info!("call {key}: {outcome}");
            Ok(())
        }
        Worked::Requeued => Ok(()),
        Worked::Failed(failure) => {
            warn!("call {key}: {} ({})", failure.message(), failure.outcome());
            Err(failure.into())
        }
    }
}

// ---- calls ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    number: String,
    #[serde(default)]
    lead_id: Option<String>,
    /// The agent's extension; default `lead_extension`.
    #[serde(default)]
    extension: Option<String>,
}

fn valid_extension(extension: &str) -> bool {
    !extension.is_empty()
        && extension.len() <= 16
        && extension.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `POST /3cx/calls` `{number, lead_id?, extension?}`: rings the agent's
/// extension, then the number.
fn start_call(request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let body: CallRequest = request.json()?;
    let number = phone::e164(&body.number).ok_or_else(|| {
        Error::BadRequest(format!("`number` `{}` is not a phone number", body.number))
    })?;
    let extension = body
        .extension
        .or_else(|| settings.lead_extension.clone())
        .ok_or_else(|| {
            Error::BadRequest("`extension` is missing (and no `lead_extension` is set)".into())
        })?;
    if !valid_extension(&extension) {
        return Err(Error::BadRequest(format!(
            "`extension` `{extension}` is not an extension number"
        )));
    }
    match calls::start(&settings, &extension, &number, body.lead_id.as_deref()) {
        Ok(call) => Ok(Response::json(201, &call)),
        Err(NotStarted::Refused(message)) => Err(Error::BadRequest(message)),
        Err(NotStarted::NotSent(failure)) => Err(Error::BadGateway(failure.message().to_owned())),
        Err(NotStarted::Unknown(failure)) => Err(Error::GatewayTimeout(format!(
            "3CX may have placed the call, but its answer was lost: {}; look before calling again",
            failure.message()
        ))),
    }
}

/// `GET /3cx/calls/{id}`: the participant's status now, or how it ended.
fn read_outbound(request: Request) -> Result<Response, Error> {
    let id = request.require_param("id")?;
    match calls::status(id)? {
        Some(call) => Ok(Response::json(200, &call)),
        None => Err(Error::NotFound(format!("no call `{id}` started here"))),
    }
}

/// `lead.qualify` (from vermieterhelden): call the lead, once.
fn call_lead(event: Event) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let lead: serde_json::Value = event.json()?;
    let id = lead["lead"].as_str().unwrap_or_default().to_owned();
    let Some(extension) = settings.lead_extension.clone() else {
        info!("lead {id}: no `lead_extension` set; not called");
        return Ok(());
    };
    let Some(number) = lead["phone"].as_str().and_then(phone::e164) else {
        info!("lead {id}: no valid phone number; not called");
        return Ok(());
    };
    // Once per lead: the first to take the mark calls (kept 30 days). A
    // call that may have been placed is never repeated: a lost answer to
    // `makecall` leaves the mark (a person is not rung twice).
    let Some(mark) = lock::acquire(
        &format!("lead-called:{id}"),
        Duration::from_secs(30 * 24 * 3600),
    )?
    else {
        return Ok(());
    };
    let espocrm_id = lead["espocrm_id"].as_str();
    match calls::start(&settings, &extension, &number, espocrm_id) {
        Ok(call) => {
            info!("lead {id}: called from {extension} ({})", call.id);
            Ok(())
        }
        Err(NotStarted::Refused(message)) => {
            warn!("lead {id}: 3CX refused the call: {message}");
            Err(HandlerError::Permanent(message))
        }
        Err(NotStarted::NotSent(failure)) => {
            // Not rung: the event's next attempt calls.
            mark.release()?;
            Err(failure.into())
        }
        Err(NotStarted::Unknown(failure)) => {
            warn!(
                "lead {id}: 3CX may have placed the call but its answer was lost ({}); not called again",
                failure.message()
            );
            Ok(())
        }
    }
}

fn watch_calls(_tick: Tick) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    calls::watch(&settings).map_err(HandlerError::from)
}

// ---- recordings ----

fn recording_id(request: &Request) -> Result<u64, Error> {
    let id = request.require_param("id")?;
    id.parse()
        .map_err(|_| Error::BadRequest(format!("`{id}` is not a recording id")))
}

/// `GET /3cx/recordings/{id}`: a recording's metadata and its call.
fn read_recording(request: Request) -> Result<Response, Error> {
    let id = recording_id(&request)?;
    match recordings::get(id)? {
        Some(recording) => Ok(Response::json(200, &recording)),
        None => Err(Error::NotFound(format!("no recording {id} seen yet"))),
    }
}

/// `GET /3cx/recordings/{id}/audio`: the audio, from 3CX, as it comes.
fn recording_audio(request: Request) -> Result<Response, Error> {
    let id = recording_id(&request)?;
    if recordings::get(id)?.is_none() {
        return Err(Error::NotFound(format!("no recording {id} seen yet")));
    }
    let (content_type, audio) = recordings::audio(id)?;
    Ok(Response::new(200)
        .with_header("content-type", content_type)
        .with_body(audio))
}

fn poll_recordings(_tick: Tick) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    if !settings.recordings.enabled {
        return Ok(());
    }
    recordings::poll(&settings)
        .map(|_| ())
        .map_err(HandlerError::from)
}

/// Announces calls a receipt that died left pending.
fn sweep(tick: Tick) -> Result<(), HandlerError> {
    let now = i64::try_from(tick.scheduled_at).unwrap_or(i64::MAX);
    let inbox = inbox();
    let stuck = inbox.stuck(Duration::from_secs(3600), now)?;
    let orphans = inbox.sweep()?;
    for (what, keys) in [("stuck", stuck), ("unannounced", orphans)] {
        if !keys.is_empty() {
            warn!("{} calls {what}; announcing them", keys.len());
            announce(&keys)?;
        }
    }
    Ok(())
}

bitbylaw_sdk::export_plugin!(ThreeCx);
