//! Calls this plugin starts: `makecall` from an agent's extension to a lead
//! (`POST /3cx/calls`, or `lead.qualify`), watched until it is answered or
//! ends unanswered, which leaves one follow-up task in EspoCRM.
//!
//! 3CX sends nothing when a call's state changes (its WebSocket is for a
//! client that stays connected; a plugin is called, it does not stay), so
//! the schedule `threecx_calls` asks for each open call's participant every
//! few seconds: `Connected` is answered; gone without ever being connected
//! is unanswered.

use std::time::Duration;

use bitbylaw_sdk::sync::{Failure, refused, unanswered};
use bitbylaw_sdk::{Error, espocrm, info, kv, lock, metrics, threecx, warn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::settings::Settings;

const OPEN: &str = "calls:open";

/// A call this plugin started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outbound {
    /// `<extension>-<participant id>`.
    pub id: String,
    pub extension: String,
    pub number: String,
    /// The EspoCRM lead (or other record) the call is for.
    pub lead_id: Option<String>,
    pub participant: u64,
    pub callid: Option<u64>,
    /// 3CX's participant status last seen, then `answered` or `unanswered`.
    pub status: String,
    pub answered: bool,
    pub ended: bool,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub follow_up_task: Option<String>,
    /// Set before the task is created (found again by name if a host died).
    #[serde(default)]
    pub follow_up_creating: bool,
}

fn key(id: &str) -> String {
    format!("outbound:{id}")
}

pub fn get(id: &str) -> Result<Option<Outbound>, Error> {
    kv::get_json(&key(id))
}

/// Why a call could not be started.
pub enum NotStarted {
    /// 3CX refused it (unknown extension, a number it will not dial): the caller's to fix.
    Refused(String),
    /// Surely not placed (no connection, signed out, no budget, 3CX busy):
    /// try again later.
    NotSent(Failure),
    /// Perhaps placed: 3CX took the request but its answer was lost or
    /// unreadable. Not to be repeated: a person is not rung twice.
    Unknown(Failure),
}

/// `makecall` from `extension` to `number` (E.164); kept and watched.
pub fn start(
    settings: &Settings,
    extension: &str,
    number: &str,
    lead_id: Option<&str>,
) -> Result<Outbound, NotStarted> {
    let answer = threecx::Request::post(format!("callcontrol/{extension}/makecall"))
        .json(&json!({
            "destination": number,
            "timeout": settings.ring_timeout_s,
            "attacheddata": { "lead_id": lead_id, "source": "bitbylaw" },
        }))
        .map_err(|e| NotStarted::NotSent(e.into()))?
        .send()
        .map_err(|e| {
            // A time-out may have reached 3CX; the others never left.
            let sent = matches!(e, threecx::ThreeCxError::Timeout);
            let failure = unanswered("3CX", "makecall", e);
            if sent {
                NotStarted::Unknown(failure)
            } else {
                NotStarted::NotSent(failure)
            }
        })?;
    if !answer.is_success() {
        return Err(match (answer.status, refused("3CX", "makecall", &answer)) {
            (_, Failure::Permanent(message)) => NotStarted::Refused(message),
            // Refused before anything was dialled.
            (401 | 403 | 429 | 503, failure) => NotStarted::NotSent(failure),
            (_, failure) => NotStarted::Unknown(failure),
        });
    }
    let made: Value = answer.json().map_err(|e| {
        NotStarted::Unknown(Failure::Retryable(format!("3CX's makecall answer: {e}")))
    })?;
    if made["finalstatus"] != "Success" {
        return Err(NotStarted::Refused(format!(
            "3CX did not make the call: {}",
            made["finalstatus"]
        )));
    }
    let result = &made["result"];
    let Some(participant) = result["id"].as_u64() else {
        return Err(NotStarted::Unknown(Failure::Retryable(
            "3CX's makecall answer names no participant".into(),
        )));
    };
    let call = Outbound {
        id: format!("{extension}-{participant}"),
        extension: extension.to_owned(),
        number: number.to_owned(),
        lead_id: lead_id.map(str::to_owned),
        participant,
        callid: result["callid"].as_u64(),
        status: result["status"].as_str().unwrap_or("Dialing").to_owned(),
        answered: false,
        ended: false,
        started_at: Utc::now(),
        follow_up_task: None,
        follow_up_creating: false,
    };
    let kept = kv::set_json(
        &key(&call.id),
        &call,
        Some(Duration::from_secs(30 * 24 * 3600)),
    )
    .and_then(|()| kv::set_add(OPEN, std::slice::from_ref(&call.id)).map_err(Error::from));
    if let Err(error) = kept {
        // The call rings already: say so, and do not start it again.
        warn!(
            "call {} started but not kept ({error}); it is not watched",
            call.id
        );
    }
    metrics::counter_add("threecx_calls_started", &[], 1);
    Ok(call)
}

/// The participant as 3CX has it now; `None` when it has ended.
fn participant(call: &Outbound) -> Result<Option<Value>, Failure> {
    let answer = threecx::Request::get(format!(
        "callcontrol/{}/participants/{}",
        call.extension, call.participant
    ))
    .send()
    .map_err(|e| unanswered("3CX", "reading the participant", e))?;
    match answer.status {
        404 => Ok(None),
        _ if answer.is_success() => answer
            .json()
            .map(Some)
            .map_err(|e| Failure::Retryable(format!("3CX's participant: {e}"))),
        _ => Err(refused("3CX", "reading the participant", &answer)),
    }
}

/// The call now: 3CX's live status while it lasts, what was seen after.
pub fn status(id: &str) -> Result<Option<Outbound>, Error> {
    let Some(mut call) = get(id)? else {
        return Ok(None);
    };
    if !call.ended {
        match participant(&call) {
            Ok(Some(live)) => {
                if let Some(status) = live["status"].as_str() {
                    call.status = status.to_owned();
                }
            }
            Ok(None) => {}
            Err(failure) => warn!("call {id}: {}", failure.message()),
        }
    }
    Ok(Some(call))
}

/// One look at every open call (the schedule), once across instances.
pub fn watch(settings: &Settings) -> Result<(), Failure> {
    let Some(mut held) = lock::hold("calls-watch", Duration::from_secs(60))? else {
        return Ok(());
    };
    for id in kv::set_members(OPEN)? {
        let Some(mut call) = get(&id).map_err(Failure::from)? else {
            kv::set_remove(OPEN, &[id])?;
            continue;
        };
        // One call's trouble is logged and tried again at the next look;
        // the other calls are looked at all the same.
        if let Err(failure) = look_at(settings, &mut call, &mut held) {
            warn!("call {id}: {}", failure.message());
        }
    }
    Ok(())
}

const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// One look at an open call: its status, and its task when it ended unanswered.
fn look_at(settings: &Settings, call: &mut Outbound, held: &mut lock::Held) -> Result<(), Failure> {
    if !call.ended {
        // 3CX gives up ringing after `ring_timeout_s`; a participant still
        // not connected a minute after that will not be.
        let rang_out = Utc::now() - call.started_at
            > chrono::Duration::seconds(i64::from(settings.ring_timeout_s) + 60);
        match participant(call)? {
            Some(live) if !rang_out || live["status"] == "Connected" => {
                let status = live["status"].as_str().unwrap_or_default().to_owned();
                if status == "Connected" {
                    call.answered = true;
                }
                call.status = status;
            }
            _ => {
                call.ended = true;
                call.status = if call.answered {
                    "answered"
                } else {
                    "unanswered"
                }
                .into();
                info!("call {} to {} ended: {}", call.id, call.number, call.status);
            }
        }
        kv::set_json(&key(&call.id), &*call, Some(KEEP)).map_err(Failure::from)?;
    }
    // Answered: nothing to follow up. Unanswered: one task, then done.
    if call.answered {
        kv::set_remove(OPEN, std::slice::from_ref(&call.id))?;
    } else if call.ended {
        held.fence()
            .map_err(|e| Failure::Busy(format!("watching calls: {e}")))?;
        follow_up(settings, call)?;
        kv::set_json(&key(&call.id), &*call, Some(KEEP)).map_err(Failure::from)?;
        kv::set_remove(OPEN, std::slice::from_ref(&call.id))?;
    }
    Ok(())
}

fn task_name(call: &Outbound) -> String {
    format!("Rückruf: {} nicht erreicht (3CX {})", call.number, call.id)
}

/// The follow-up task for an unanswered call, once.
fn follow_up(settings: &Settings, call: &mut Outbound) -> Result<(), Failure> {
    if call.follow_up_task.is_some() {
        return Ok(());
    }
    let entity = &settings.espocrm.task_entity;
    let name = task_name(call);
    if call.follow_up_creating
        && let Some(id) = espocrm::find_id(entity, "name", &name)?
    {
        call.follow_up_task = Some(id);
        return Ok(());
    }
    call.follow_up_creating = true;
    kv::set_json(
        &key(&call.id),
        &*call,
        Some(Duration::from_secs(30 * 24 * 3600)),
    )
    .map_err(Failure::from)?;
    let due = Utc::now() + chrono::Duration::hours(settings.follow_up_hours);
    let mut task = json!({
        "name": name,
        "status": "Not Started",
        "priority": "Normal",
        "dateEnd": due.format("%Y-%m-%d %H:%M:%S").to_string(),
        "description": format!(
            "Anruf von Nebenstelle {} an {} am {} UTC wurde nicht angenommen.",
            call.extension,
            call.number,
            call.started_at.format("%d.%m.%Y %H:%M")
        ),
    });
    if let Some(lead) = &call.lead_id {
        task["parentType"] = json!("Lead");
        task["parentId"] = json!(lead);
    }
    let answer = espocrm::Request::post(entity.as_str())
        .header("X-Skip-Duplicate-Check", "true")
        .json(&task)?
        .send()
        .map_err(|e| unanswered("EspoCRM", "creating the follow-up task", e))?;
    if !answer.is_success() {
        return Err(refused("EspoCRM", "creating the follow-up task", &answer));
    }
    let created: Value = answer
        .json()
        .map_err(|e| Failure::Retryable(format!("EspoCRM's answer to the task: {e}")))?;
    call.follow_up_task = created["id"].as_str().map(str::to_owned);
    call.follow_up_creating = false;
    metrics::counter_add("threecx_follow_ups", &[], 1);
    info!("call {}: follow-up task created", call.id);
    Ok(())
}
