//! Audit and repair for the firm's IT: what a run would do, duplicates,
//! orphans, lookups and locks. Reading routes write nothing; the repairing
//! ones (`DELETE`) change only Google, and only what they list, and answer
//! only a key the tenant limited to them (403 for a key that opens every
//! route): an ordinary key of the firm's tools must not delete events or
//! free a live run's lock.

use std::collections::BTreeMap;

use bitbylaw_sdk::google_calendar::{CalendarRef, Event, EventTime, GoogleError, Mailbox};
use bitbylaw_sdk::{Error, Request, Response, advoware, kv, lock};
use serde_json::{Value, json};

use crate::settings::{Settings, kuerzel};
use crate::state::{EmployeeState, PROP_FR_NR, lock_name};
use crate::sync::read::Alone;
use crate::sync::{self, Holder, LIVE_FOR, RunError, event_id};

fn employee(request: &Request, settings: &Settings) -> Result<(String, String), Error> {
    let kuerzel = kuerzel(request.require_param("kuerzel")?);
    let mailbox = settings.mailbox(&kuerzel).ok_or_else(|| {
        Error::BadRequest(format!(
            "employee `{kuerzel}` has no mailbox in the setting `mailboxes`"
        ))
    })?;
    Ok((kuerzel, mailbox.to_owned()))
}

fn run_error(error: RunError) -> Error {
    match error {
        RunError::Refused(why) => Error::BadRequest(why),
        RunError::Failed(why) => Error::BadGateway(why),
        RunError::LeaseLost(why) => Error::Conflict(why),
    }
}

/// A repairing call needs an operator's key.
fn require_operator(request: &Request) -> Result<(), Error> {
    if request.method() == "DELETE" {
        request.require_limited_key("this repair")?;
    }
    Ok(())
}

/// The employee's calendar, as the sync stored it.
fn calendar(kuerzel: &str, mailbox: &str) -> Result<CalendarRef, Error> {
    let id = EmployeeState::calendar_of(kuerzel)?.ok_or_else(|| {
        Error::NotFound(format!("{kuerzel} has not been synced yet: no calendar"))
    })?;
    Ok(Mailbox::new(mailbox).calendar(id))
}

/// Every event of the calendar that is not deleted, read in full.
fn live_events(calendar: &CalendarRef) -> Result<Vec<Event>, Error> {
    Ok(calendar
        .changes_since(None)?
        .events
        .into_iter()
        .filter(|e| !e.is_cancelled())
        .collect())
}

fn linked_to(event: &Event) -> Option<i64> {
    event.private(PROP_FR_NR)?.trim().parse().ok()
}

fn summary(event: &Event) -> Value {
    json!({
        "event_id": event.id,
        "summary": event.summary,
        "status": event.status,
        "fr_nr": linked_to(event),
        "updated": event.updated,
    })
}

/// A start or end as Google holds it: the date, or the time and its zone.
fn time_text(time: Option<&EventTime>) -> Value {
    match time {
        Some(EventTime::Date(day)) => json!(day.date),
        Some(EventTime::DateTime(timed)) => {
            json!({ "date_time": timed.date_time, "time_zone": timed.time_zone })
        }
        None => Value::Null,
    }
}

/// `GET /advoware/calendar/verify/{kuerzel}`.
pub fn verify(request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let (kuerzel, _) = employee(&request, &settings)?;
    let verification =
        sync::verify_employee(&settings, &kuerzel, settings.full_content).map_err(run_error)?;
    Ok(Response::json(200, &verification))
}

/// `GET|DELETE /advoware/calendar/duplicates/{kuerzel}`.
pub fn duplicates(request: Request) -> Result<Response, Error> {
    require_operator(&request)?;
    let settings = Settings::load()?;
    let (kuerzel, mailbox) = employee(&request, &settings)?;
    let calendar = calendar(&kuerzel, &mailbox)?;
    let mut by_appointment: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for event in live_events(&calendar)? {
        if let Some(fr_nr) = linked_to(&event) {
            by_appointment.entry(fr_nr).or_default().push(event);
        }
    }
    let delete = request.method() == "DELETE";
    let mut groups = Vec::new();
    let mut deleted = Vec::new();
    for (fr_nr, mut events) in by_appointment.into_iter().filter(|(_, e)| e.len() > 1) {
        // Keep the event with the derived id, else the one listed first.
        let own = event_id(&settings.id_namespace, fr_nr);
        events.sort_by_key(|e| e.id.as_deref() != Some(own.as_str()));
        if delete {
            for extra in &events[1..] {
                let Some(id) = extra.id.as_deref() else {
                    continue;
                };
                match calendar.delete(id, extra.etag.as_deref()) {
                    Ok(()) | Err(GoogleError::Gone(_) | GoogleError::NotFound(_)) => {
                        deleted.push(id.to_owned())
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        groups.push(json!({
            "fr_nr": fr_nr,
            "kept": events[0].id,
            "events": events.iter().map(summary).collect::<Vec<_>>(),
        }));
    }
    Ok(Response::json(
        200,
        &json!({ "kuerzel": kuerzel, "duplicates": groups, "deleted": deleted }),
    ))
}

/// `GET|DELETE /advoware/calendar/orphans/{kuerzel}`: linked events whose
/// appointment Advoware no longer has.
pub fn orphans(request: Request) -> Result<Response, Error> {
    require_operator(&request)?;
    let settings = Settings::load()?;
    let (kuerzel, mailbox) = employee(&request, &settings)?;
    let calendar = calendar(&kuerzel, &mailbox)?;
    let delete = request.method() == "DELETE";
    let mut orphans = Vec::new();
    let mut deleted = Vec::new();
    for event in live_events(&calendar)? {
        let Some(fr_nr) = linked_to(&event) else {
            continue;
        };
        match sync::read::appointment(fr_nr) {
            Alone::Missing => {}
            Alone::Found(_) | Alone::Malformed(_) => continue,
            Alone::Failed(why) => return Err(Error::BadGateway(why)),
        }
        if delete && let Some(id) = event.id.as_deref() {
            match calendar.delete(id, event.etag.as_deref()) {
                Ok(()) | Err(GoogleError::Gone(_) | GoogleError::NotFound(_)) => {
                    deleted.push(id.to_owned())
                }
                Err(error) => return Err(error.into()),
            }
        }
        orphans.push(summary(&event));
    }
    Ok(Response::json(
        200,
        &json!({ "kuerzel": kuerzel, "orphans": orphans, "deleted": deleted }),
    ))
}

/// `GET /advoware/calendar/lookup/{kuerzel}?fr_nr=N` or `?event_id=ID`.
pub fn lookup(request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let (kuerzel, mailbox) = employee(&request, &settings)?;
    let state = EmployeeState::load(&kuerzel)?;
    let calendar = calendar(&kuerzel, &mailbox)?;
    let (fr_nr, event_ids) = match (request.query("fr_nr"), request.query("event_id")) {
        (Some(fr_nr), None) => {
            let fr_nr: i64 = fr_nr.trim().parse().map_err(|_| {
                Error::BadRequest(format!("`fr_nr` must be a number, not `{fr_nr}`"))
            })?;
            let mut ids: Vec<String> = state
                .events
                .iter()
                .filter(|(_, e)| e.fr_nr == Some(fr_nr))
                .map(|(id, _)| id.clone())
                .collect();
            let own = event_id(&settings.id_namespace, fr_nr);
            if !ids.contains(&own) {
                ids.push(own);
            }
            (Some(fr_nr), ids)
        }
        (None, Some(id)) => (
            state.events.get(id).and_then(|e| e.fr_nr),
            vec![id.to_owned()],
        ),
        _ => {
            return Err(Error::BadRequest(
                "give exactly one of `fr_nr` and `event_id`".into(),
            ));
        }
    };
    let mut events = Vec::new();
    for id in &event_ids {
        match calendar.get(id) {
            Ok(event) => events.push(json!({
                "google": summary(&event),
                "start": time_text(event.start.as_ref()),
                "end": time_text(event.end.as_ref()),
                "canonical": crate::google_map::read(&event).ok(),
                "recurrence": event.recurrence,
                "private": event.private_properties.iter().cloned().collect::<BTreeMap<_, _>>(),
                "stored": state.events.get(id),
            })),
            Err(GoogleError::NotFound(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let advoware = match fr_nr {
        Some(fr_nr) => {
            let answer = advoware::Request::new("GET", format!("appointments/{fr_nr}")).send()?;
            match answer.status {
                404 => Value::Null,
                200..=299 => answer.json()?,
                status => {
                    return Err(Error::BadGateway(format!(
                        "Advoware answered {status} to appointment {fr_nr}"
                    )));
                }
            }
        }
        None => Value::Null,
    };
    Ok(Response::json(
        200,
        &json!({ "kuerzel": kuerzel, "fr_nr": fr_nr, "advoware": advoware, "google": events }),
    ))
}

/// `GET /advoware/calendar/locks`: employees a run holds the lock of, with
/// how long ago each run last showed it is alive.
pub fn locks(_request: Request) -> Result<Response, Error> {
    let settings = Settings::load()?;
    let mut held = Vec::new();
    let mut runs = Vec::new();
    for kuerzel in settings.mailboxes.keys() {
        if let Some(holder) = Holder::load(kuerzel)? {
            held.push(kuerzel.clone());
            runs.push(json!({
                "kuerzel": kuerzel,
                "silent_for_ms": u64::try_from(holder.silent_for().as_millis()).unwrap_or(u64::MAX),
            }));
        }
    }
    Ok(Response::json(200, &json!({ "held": held, "runs": runs })))
}

/// `DELETE /advoware/calendar/locks/{kuerzel}[?force=true]`: frees the lock
/// of a run that is gone (its host died). A run that showed it is alive
/// recently is live: 409 says so, unless `force` (that run then stops before
/// its next write and saves nothing, so no two runs ever write beside each
/// other).
pub fn unlock(request: Request) -> Result<Response, Error> {
    request.require_limited_key("freeing a lock")?;
    let settings = Settings::load()?;
    let (kuerzel, _) = employee(&request, &settings)?;
    let force = match request.query("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "`force` is true or false, not `{other}`"
            )));
        }
    };
    let Some(holder) = Holder::load(&kuerzel)? else {
        return Ok(Response::json(
            200,
            &json!({ "kuerzel": kuerzel, "released": false }),
        ));
    };
    let live_for = LIVE_FOR.max(settings.lock_ttl() / 3);
    let silent = holder.silent_for();
    if silent < live_for && !force {
        return Ok(Response::json(
            409,
            &json!({
                "error": "live",
                "message": format!(
                    "the run of {kuerzel} is live (last sign of life {} s ago); it frees its lock when done. `?force=true` frees it anyway: that run then stops before its next write",
                    silent.as_secs()
                ),
                "kuerzel": kuerzel,
                "silent_for_ms": u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
            }),
        ));
    }
    let released = lock::release(&lock_name(&kuerzel), &holder.token)?;
    kv::delete(&crate::state::lease_key(&kuerzel))?;
    Ok(Response::json(
        200,
        &json!({ "kuerzel": kuerzel, "released": released }),
    ))
}
