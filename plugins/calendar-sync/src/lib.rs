//! `calendar-sync`: Advoware appointments ↔ Google Calendar, two-way, one
//! calendar per employee.
//!
//! The schedule `calendar_sync_all` (every 15 minutes) and
//! `POST /advoware/calendar/sync` emit `calendar_sync_all`; its handler emits
//! one `calendar_sync_employee` per employee, and those run concurrently
//! (the subscription's `concurrency`), each under the employee's lock. See
//! `docs/plugins/calendar-sync.md`.

mod advoware_map;
mod audit;
mod google_map;
mod model;
mod settings;
mod state;
mod sync;

use bitbylaw_sdk::{
    Description, Error, Event, HandlerError, Plugin, Request, Response, Router, Subscriptions,
    Tick, advoware, events, info, kv, warn,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::settings::{Settings, kuerzel};
use crate::state::{EMPLOYEES_KEY, Report, report_key};
use crate::sync::RunError;

const TOPIC_ALL: &str = "calendar_sync_all";
const TOPIC_EMPLOYEE: &str = "calendar_sync_employee";

struct CalendarSync;

impl Plugin for CalendarSync {
    fn describe() -> Description {
        Description::new("calendar-sync", env!("CARGO_PKG_VERSION"))
    }

    fn routes() -> Router {
        Router::new()
            .post("/advoware/calendar/sync", trigger)
            .post("/advoware/calendar/sync/{kuerzel}/now", run_now)
            .get("/advoware/calendar/status", status)
            .get("/advoware/calendar/verify/{kuerzel}", audit::verify)
            .get("/advoware/calendar/duplicates/{kuerzel}", audit::duplicates)
            .delete("/advoware/calendar/duplicates/{kuerzel}", audit::duplicates)
            .get("/advoware/calendar/orphans/{kuerzel}", audit::orphans)
            .delete("/advoware/calendar/orphans/{kuerzel}", audit::orphans)
            .get("/advoware/calendar/lookup/{kuerzel}", audit::lookup)
            .get("/advoware/calendar/locks", audit::locks)
            .delete("/advoware/calendar/locks/{kuerzel}", audit::unlock)
    }

    fn subscriptions() -> Subscriptions {
        Subscriptions::new()
            .topic(TOPIC_ALL, all_employees)
            .topic(TOPIC_EMPLOYEE, one_employee)
            .schedule(TOPIC_ALL, "0 */15 * * * *", tick)
    }
}

/// The schedule: a run of every employee.
fn tick(tick: Tick) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let all = AllEmployees {
        full_content: settings.full_content,
        only: None,
    };
    info!("calendar sync tick {}", tick.scheduled_at);
    Ok(events::emit_json(TOPIC_ALL, &all)?)
}

/// `calendar_sync_all`: one `calendar_sync_employee` per employee.
fn all_employees(event: Event) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let all: AllEmployees = event.json()?;
    let employees = match all.only {
        Some(code) => vec![kuerzel(&code)],
        None => employees(&settings)?,
    };
    for kuerzel in employees {
        let one = OneEmployee {
            kuerzel,
            full_content: all.full_content,
        };
        events::emit_json(TOPIC_EMPLOYEE, &one)?;
    }
    Ok(())
}

/// `calendar_sync_employee`: one employee's run.
fn one_employee(event: Event) -> Result<(), HandlerError> {
    let settings = Settings::load()?;
    let one: OneEmployee = event.json()?;
    let code = kuerzel(&one.kuerzel);
    // The tenant's setting may have been narrowed since the event was made.
    let full_content = one.full_content && settings.full_content;
    match sync::run_employee(&settings, &code, full_content) {
        Ok(_) => Ok(()),
        Err(RunError::Refused(why)) => {
            warn!("calendar sync of {} refused: {}", code, why);
            Err(HandlerError::Permanent(why))
        }
        Err(RunError::Failed(why) | RunError::LeaseLost(why)) => {
            warn!("calendar sync of {} failed: {}", code, why);
            Err(HandlerError::Retryable(why))
        }
    }
}

/// `calendar_sync_all`: every employee (or one).
#[derive(Serialize, Deserialize)]
struct AllEmployees {
    full_content: bool,
    #[serde(default)]
    only: Option<String>,
}

/// `calendar_sync_employee`.
#[derive(Serialize, Deserialize)]
struct OneEmployee {
    kuerzel: String,
    full_content: bool,
}

/// The configured employees, or those Advoware lists, that have a mailbox.
fn employees(settings: &Settings) -> Result<Vec<String>, Error> {
    let listed = match &settings.employees {
        Some(list) => list.clone(),
        None => {
            let answer = advoware::Request::new("GET", "employees").send()?;
            if !answer.is_success() {
                return Err(Error::BadGateway(format!(
                    "Advoware answered {} to the employee list",
                    answer.status
                )));
            }
            let employees: Vec<Value> = answer.json()?;
            let mut codes: Vec<String> = employees
                .iter()
                .filter_map(|e| e.get("kuerzel")?.as_str().map(kuerzel))
                .filter(|code| !code.is_empty())
                .collect();
            codes.sort();
            codes.dedup();
            codes
        }
    };
    Ok(listed
        .into_iter()
        .filter(|kuerzel| {
            let known = settings.mailbox(kuerzel).is_some();
            if !known {
                info!("calendar sync skips {}: no mailbox configured", kuerzel);
            }
            known
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    kuerzel: String,
    #[serde(default)]
    full_content: Option<bool>,
}

/// A short code: letters, digits, `_` or `-`, at most 20.
fn valid_kuerzel(kuerzel: &str) -> bool {
    !kuerzel.is_empty()
        && kuerzel.len() <= 20
        && kuerzel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `POST /advoware/calendar/sync` `{"kuerzel": "ALL" | "<code>", "full_content": bool}`.
fn trigger(request: Request) -> Result<Response, Error> {
    let body: TriggerBody = request.json().map_err(|e| {
        Error::BadRequest(format!(
            "expected {{\"kuerzel\": \"ALL\" or an employee code, \"full_content\": true|false}}: {}",
            e.message()
        ))
    })?;
    let kuerzel = kuerzel(&body.kuerzel);
    if !valid_kuerzel(&kuerzel) {
        return Err(Error::BadRequest(
            "`kuerzel` must be \"ALL\" or an employee code (letters, digits, - or _)".into(),
        ));
    }
    let settings = Settings::load()?;
    let all = kuerzel.eq_ignore_ascii_case("ALL");
    if !all && settings.mailbox(&kuerzel).is_none() {
        return Err(Error::BadRequest(format!(
            "employee `{kuerzel}` has no mailbox in the setting `mailboxes`"
        )));
    }
    let full_content = narrowed(&settings, body.full_content);
    let payload = AllEmployees {
        full_content,
        only: (!all).then(|| kuerzel.clone()),
    };
    events::emit_json(TOPIC_ALL, &payload)?;
    let message = if all {
        "sync of all employees triggered".to_owned()
    } else {
        format!("sync of {kuerzel} triggered")
    };
    Ok(Response::json(
        200,
        &json!({
            "status": "triggered",
            "kuerzel": if all { "ALL".to_owned() } else { kuerzel },
            "full_content": full_content,
            "message": message,
        }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    full_content: Option<bool>,
}

/// `POST /advoware/calendar/sync/{kuerzel}/now`: one employee's run, here and
/// now, answering its report (409 when another run holds the lock).
fn run_now(request: Request) -> Result<Response, Error> {
    let kuerzel = kuerzel(request.require_param("kuerzel")?);
    if !valid_kuerzel(&kuerzel) {
        return Err(Error::BadRequest("not an employee code".into()));
    }
    let body: RunBody = if request.body().is_empty() {
        RunBody::default()
    } else {
        request.json()?
    };
    let settings = Settings::load()?;
    if settings.mailbox(&kuerzel).is_none() {
        return Err(Error::BadRequest(format!(
            "employee `{kuerzel}` has no mailbox in the setting `mailboxes`"
        )));
    }
    let full_content = narrowed(&settings, body.full_content);
    match sync::run_employee(&settings, &kuerzel, full_content) {
        Ok(report) if report.outcome == "skipped" => Ok(Response::json(409, &report)),
        Ok(report) => Ok(Response::json(200, &report)),
        Err(RunError::Refused(why)) => Ok(Response::json(
            422,
            &json!({ "error": "refused", "message": why }),
        )),
        Err(RunError::Failed(why)) => Err(Error::BadGateway(why)),
        Err(RunError::LeaseLost(why)) => Err(Error::Conflict(why)),
    }
}

/// `full_content` of a request: it may ask for less than the tenant's
/// setting (only the time in Google), never for more.
fn narrowed(settings: &Settings, asked: Option<bool>) -> bool {
    settings.full_content && asked.unwrap_or(true)
}

/// `GET /advoware/calendar/status`: each employee's last run.
fn status(_request: Request) -> Result<Response, Error> {
    let mut employees = kv::set_members(EMPLOYEES_KEY)?;
    employees.sort();
    let mut runs = Vec::new();
    for kuerzel in employees {
        if let Some(report) = kv::get_json::<Report>(&report_key(&kuerzel))? {
            runs.push(report);
        }
    }
    Ok(Response::json(200, &json!({ "employees": runs })))
}

bitbylaw_sdk::export_plugin!(CalendarSync);
