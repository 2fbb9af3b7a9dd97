//! Recordings: 3CX keeps them and pushes nothing, so the schedule
//! `threecx_recordings` asks the XAPI for those after the last id seen
//! (`Id gt <n>`, in order), once across instances (a lease), keeps each
//! one's metadata, and links it to its call in the journal: the call's
//! EspoCRM `Call` then lists the recording with a link to its audio, which
//! this plugin serves from 3CX on request (`GET /3cx/recordings/{id}/audio`)
//! and never keeps or logs.
//!
//! The last id moves on only after the recordings up to it are kept, so an
//! outage or a crash mid-poll asks again from there: nothing is skipped,
//! and keeping one twice is keeping it once. A recording whose call is not
//! in the journal yet (3CX posts the journal when the call ends, and the
//! recording may be listed first) stays pending and is tried again at every
//! poll, until `give_up_after_h`.

use std::time::Duration;

use bitbylaw_sdk::sync::{Failure, refused, unanswered};
use bitbylaw_sdk::{Error, info, kv, lock, phone, threecx, warn};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal;
use crate::report;
use crate::settings::Settings;

const LAST: &str = "recordings:last";
const PENDING: &str = "recordings:pending";

/// A recording as kept here (3CX's fields, renamed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    pub id: u64,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub call_type: String,
    pub from_dn: String,
    pub from_number: String,
    pub from_name: String,
    pub to_dn: String,
    pub to_number: String,
    pub to_name: String,
    /// 3CX's file name (not fetchable).
    pub file: String,
    pub transcribed: bool,
    /// The journal's call it belongs to, once linked.
    #[serde(default)]
    pub call: Option<String>,
    pub seen_at: DateTime<Utc>,
    #[serde(default)]
    pub given_up: bool,
}

fn key(id: u64) -> String {
    format!("recording:{id}")
}

pub fn get(id: u64) -> Result<Option<Recording>, Error> {
    kv::get_json(&key(id))
}

/// Where a recording's audio is fetched (the host's route, through Kong).
pub fn audio_link(settings: &Settings, id: u64) -> String {
    let base = settings.recordings.public_url.as_deref().unwrap_or("/");
    format!("{}/3cx/recordings/{id}/audio", base.trim_end_matches('/'))
}

fn text(row: &Value, field: &str) -> String {
    match &row[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn recording(row: &Value, id: u64) -> Recording {
    Recording {
        id,
        start: row["StartTime"].as_str().and_then(report::utc),
        end: row["EndTime"].as_str().and_then(report::utc),
        call_type: text(row, "CallType"),
        from_dn: text(row, "FromDn"),
        from_number: text(row, "FromCallerNumber"),
        from_name: text(row, "FromDisplayName"),
        to_dn: text(row, "ToDn"),
        to_number: text(row, "ToCallerNumber"),
        to_name: text(row, "ToDisplayName"),
        file: text(row, "RecordingUrl"),
        transcribed: row["IsTranscribed"].as_bool().unwrap_or(false),
        call: None,
        seen_at: Utc::now(),
        given_up: false,
    }
}

/// One poll: new recordings kept, then every pending one linked if it can be.
/// Returns how many were new and how many were linked.
pub fn poll(settings: &Settings) -> Result<(usize, usize), Failure> {
    let Some(mut held) = lock::hold("recordings-poll", Duration::from_secs(120))? else {
        return Ok((0, 0));
    };
    let mut last: u64 = kv::get(LAST)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let mut new = 0;
    for _ in 0..settings.recordings.pages_per_poll.max(1) {
        let answer = threecx::Request::get("xapi/v1/Recordings")
            .query("$filter", format!("Id gt {last}"))
            .query("$orderby", "Id asc")
            .query("$top", settings.recordings.page_size.to_string())
            .send()
            .map_err(|e| unanswered("3CX", "listing recordings", e))?;
        if !answer.is_success() {
            return Err(refused("3CX", "listing recordings", &answer));
        }
        let page: Value = answer
            .json()
            .map_err(|e| Failure::Retryable(format!("3CX's recordings list: {e}")))?;
        let rows = page["value"].as_array().cloned().unwrap_or_default();
        held.fence()
            .map_err(|e| Failure::Busy(format!("recordings poll: {e}")))?;
        for row in &rows {
            let Some(id) = row["Id"].as_u64() else {
                continue;
            };
            if id <= last {
                continue;
            }
            if get(id).map_err(Failure::from)?.is_none() {
                kv::set_json(&key(id), &recording(row, id), settings.kept())
                    .map_err(Failure::from)?;
                new += 1;
            }
            kv::set_add(PENDING, &[id.to_string()])?;
            last = id;
        }
        kv::set(LAST, last.to_string().as_bytes(), None)?;
        if rows.len() < settings.recordings.page_size as usize {
            break;
        }
    }
    let mut linked = 0;
    for id in kv::set_members(PENDING)? {
        let Ok(id) = id.parse::<u64>() else {
            kv::set_remove(PENDING, &[id])?;
            continue;
        };
        held.keep()
            .map_err(|e| Failure::Busy(format!("recordings poll: {e}")))?;
        if link(settings, id)? {
            linked += 1;
        }
    }
    if new > 0 || linked > 0 {
        info!("recordings: {new} new, {linked} linked (up to id {last})");
    }
    Ok((new, linked))
}

/// The other party of a recording: who called in, or who was called.
fn external_number(recording: &Recording) -> Option<String> {
    let raw = match recording.call_type.as_str() {
        "InboundExternal" => &recording.from_number,
        "OutboundExternal" => &recording.to_number,
        _ => return None,
    };
    phone::e164(raw).or_else(|| (!raw.is_empty()).then(|| raw.clone()))
}

/// Links one pending recording to its call; true when it was linked now.
fn link(settings: &Settings, id: u64) -> Result<bool, Failure> {
    let Some(mut recording) = get(id).map_err(Failure::from)? else {
        kv::set_remove(PENDING, &[id.to_string()])?;
        return Ok(false);
    };
    let Some(number) = external_number(&recording) else {
        // An internal call: nothing in the CRM to link it to.
        kv::set_remove(PENDING, &[id.to_string()])?;
        return Ok(false);
    };
    let gap = chrono::Duration::seconds(settings.journal.transfer_gap_s.max(0) + 60);
    let at = recording.start.unwrap_or(recording.seen_at);
    let call = journal::calls_of(&number)
        .map_err(Failure::from)?
        .into_iter()
        .rev()
        .find(|call| call.spans(at, gap));
    let Some(call) = call else {
        let waited = Utc::now() - recording.seen_at;
        if waited > chrono::Duration::hours(settings.recordings.give_up_after_h) {
            warn!(
                "recording {id} of {number}: no call in the journal after {}h; given up",
                waited.num_hours()
            );
            recording.given_up = true;
            kv::set_json(&key(id), &recording, settings.kept()).map_err(Failure::from)?;
            kv::set_remove(PENDING, &[id.to_string()])?;
        }
        return Ok(false);
    };
    journal::add_recording(&call.key, id).map_err(Failure::from)?;
    recording.call = Some(call.key.clone());
    kv::set_json(&key(id), &recording, settings.kept()).map_err(Failure::from)?;
    // The call's EspoCRM record lists it with its next sync.
    crate::resync(&call.key).map_err(Failure::from)?;
    kv::set_remove(PENDING, &[id.to_string()])?;
    Ok(true)
}

/// The audio of recording `id`, from 3CX.
pub fn audio(id: u64) -> Result<(String, Vec<u8>), Error> {
    let answer = threecx::Request::get(format!(
        "xapi/v1/Recordings/Pbx.DownloadRecording(recId={id})"
    ))
    .send()?;
    match answer.status {
        200..=299 => Ok((
            answer
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            answer.body,
        )),
        404 => Err(Error::NotFound(format!("3CX has no recording {id}"))),
        status => Err(Error::BadGateway(format!(
            "3CX answered {status} to the recording's download"
        ))),
    }
}
