//! The call journal: what 3CX reports when a call ends, kept as one call per
//! conversation, then written to EspoCRM as a `Call` and to Advoware as a
//! note on the party.
//!
//! 3CX reports once per agent that had the call: a transfer reports each
//! agent's part separately. A report of the same number that starts within
//! `transfer_gap_s` of a known call's end (or overlaps it) is another
//! segment of that call; the same agent and start again is the same report
//! posted twice, and changes nothing. A receipt holds the number's lease, so
//! two reports at once (on two instances) are folded one after the other.
//!
//! The call is stored before the answer, then synced by its event through
//! the SDK's inbox (`calls`): EspoCRM down or slow loses nothing, and a
//! segment that comes while the call's sync runs syncs it again.

use std::time::Duration;

use bitbylaw_sdk::sync::{Failure, refused, unanswered};
use bitbylaw_sdk::{Error, advoware, espocrm, kv, lock, phone};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::lookup::{self, Contact};
use crate::report::{CallType, Report};
use crate::settings::Settings;

/// One agent's part of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub agent: String,
    pub call_type: CallType,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_s: u64,
}

/// A call as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub key: String,
    /// E.164 when it is a valid number, else as 3CX gave it.
    pub number: String,
    pub name: String,
    pub inbound: bool,
    pub segments: Vec<Segment>,
    /// The screen pop's record (`<type>:<id>`), from the report.
    pub entity_id: Option<String>,
}

/// Where the call was written: its sync's own record, apart from the call
/// (which only receipts write, under the number's lease), so neither
/// overwrites the other's part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Written {
    /// The record the call was written to in EspoCRM (`<type>:<id>`).
    pub linked_to: Option<String>,
    pub espocrm_id: Option<String>,
    /// Set before the `Call` is created: a sync that finds it set without an
    /// id looks for the `Call` first (a host died between the two).
    pub espocrm_creating: bool,
    pub party: Option<String>,
    pub party_noted: bool,
    /// The note is being written (same rule as `espocrm_creating`).
    pub party_noting: bool,
}

fn written_key(key: &str) -> String {
    format!("written:{key}")
}

fn recordings_key(key: &str) -> String {
    format!("recordings-of:{key}")
}

/// Links a recording to the call (a set: linking twice is once).
pub fn add_recording(key: &str, recording: u64) -> Result<bool, Error> {
    Ok(!kv::set_add(&recordings_key(key), &[recording.to_string()])?.is_empty())
}

/// The call's recordings, in order.
pub fn recordings(key: &str) -> Result<Vec<u64>, Error> {
    let mut ids: Vec<u64> = kv::set_members(&recordings_key(key))?
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Where `key` was written so far.
pub fn written(key: &str) -> Result<Written, Error> {
    Ok(kv::get_json(&written_key(key))?.unwrap_or_default())
}

impl Call {
    pub fn start(&self) -> DateTime<Utc> {
        self.segments
            .iter()
            .map(|s| s.start)
            .min()
            .unwrap_or_default()
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.segments
            .iter()
            .map(|s| s.end)
            .max()
            .unwrap_or_default()
    }

    pub fn answered(&self) -> bool {
        self.segments.iter().any(|s| s.call_type.answered())
    }

    pub fn talk_s(&self) -> u64 {
        self.segments.iter().map(|s| s.duration_s).sum()
    }

    pub fn agents(&self) -> Vec<&str> {
        let mut agents: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if !agents.contains(&segment.agent.as_str()) {
                agents.push(&segment.agent);
            }
        }
        agents
    }

    /// Whether a time lies within the call (with `gap` either side).
    pub fn spans(&self, at: DateTime<Utc>, gap: chrono::Duration) -> bool {
        at >= self.start() - gap && at <= self.end() + gap
    }
}

pub fn call_key(key: &str) -> String {
    format!("call:{key}")
}

fn by_number_key(number: &str) -> String {
    format!("calls-by:{number}")
}

/// The calls of `number` kept for folding and linking (newest last).
pub fn calls_of(number: &str) -> Result<Vec<Call>, Error> {
    let keys: Vec<String> = kv::get_json(&by_number_key(number))?.unwrap_or_default();
    let mut calls = Vec::new();
    for key in keys {
        if let Some(call) = kv::get_json::<Call>(&call_key(&key))? {
            calls.push(call);
        }
    }
    Ok(calls)
}

/// How a report was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    New,
    /// Another segment of a known call (a transfer).
    Segment,
    /// The same report again: nothing changed.
    Repeated,
}

/// Keeps `report` in its call; returns the call's key and how it was taken.
pub fn take(settings: &Settings, report: Report) -> Result<(String, Taken), Error> {
    let number = phone::e164(&report.number).unwrap_or_else(|| report.number.clone());
    let _held = lock::hold_within(
        &format!("number:{number}"),
        Duration::from_secs(10),
        Duration::from_secs(3),
    )?
    .ok_or_else(|| {
        Error::Unavailable(format!(
            "another report of {number} is being kept; send again"
        ))
    })?;
    let segment = Segment {
        agent: report.agent.clone(),
        call_type: report.call_type,
        start: report.start,
        end: report.end,
        duration_s: report.duration_s,
    };
    let gap = chrono::Duration::seconds(settings.journal.transfer_gap_s);
    let same_report = |s: &Segment| {
        s.agent == segment.agent && (s.start - segment.start).num_seconds().abs() <= 1
    };
    // Without a number ("anonymous", an extension), two callers at once
    // cannot be told apart: such a report is only ever the same report.
    let foldable = phone::e164(&number).is_some();
    let mut calls = calls_of(&number)?;
    let existing = calls.iter_mut().rev().find(|call| {
        if foldable {
            segment.start <= call.end() + gap && segment.end >= call.start() - gap
        } else {
            call.segments.iter().any(same_report)
        }
    });
    let (call, taken) = match existing {
        Some(call) => {
            if call.segments.iter().any(same_report) {
                return Ok((call.key.clone(), Taken::Repeated));
            }
            call.segments.push(segment);
            call.segments.sort_by_key(|s| s.start);
            if call.entity_id.is_none() {
                call.entity_id = report.entity_id;
            }
            if call.name.is_empty() {
                call.name = report.name;
            }
            (call.clone(), Taken::Segment)
        }
        None => {
            let key = hex::encode(
                &Sha256::digest(format!(
                    "{number}|{}|{}",
                    report.agent,
                    report.start.timestamp()
                ))[..8],
            );
            let call = Call {
                key: format!("c{key}"),
                number: number.clone(),
                name: report.name,
                inbound: report.call_type.inbound(),
                segments: vec![segment],
                entity_id: report.entity_id,
            };
            calls.push(call.clone());
            (call, Taken::New)
        }
    };
    kv::set_json(&call_key(&call.key), &call, settings.kept())?;
    if taken == Taken::New {
        // The last 20 calls of a number are enough to fold and link.
        let keys: Vec<&str> = calls
            .iter()
            .rev()
            .take(20)
            .rev()
            .map(|c| c.key.as_str())
            .collect();
        kv::set_json(
            &by_number_key(&number),
            &keys,
            Some(Duration::from_secs(14 * 24 * 3600)),
        )?;
    }
    Ok((call.key, taken))
}

/// The call into EspoCRM (created once, then updated) and, once, as a note
/// on the Advoware party.
pub fn sync(settings: &Settings, key: &str) -> Result<&'static str, Failure> {
    let ttl = Duration::from_secs(settings.lock_ttl_s.max(1));
    let Some(mut held) = lock::hold(&format!("sync:{key}"), ttl)? else {
        return Err(Failure::Busy(format!("another sync of call {key} runs")));
    };
    let Some(call) = kv::get_json::<Call>(&call_key(key)).map_err(Failure::from)? else {
        return Ok("gone");
    };
    let mut written = written(key).map_err(Failure::from)?;
    let recordings = recordings(key).map_err(Failure::from)?;
    let found = who(settings, &call, &written)?;
    let summary = summary(settings, &call, &recordings);
    let outcome = write_call(
        settings,
        &call,
        &summary,
        &mut written,
        found.espocrm.as_ref(),
        &mut held,
    )?;
    save(settings, key, &written)?;
    if let Some(party) = found.party
        && !written.party_noted
        && !settings.advoware.note_path.is_empty()
    {
        note(&call, &summary, &party, settings, &mut written, &mut held)?;
        save(settings, key, &written)?;
    }
    Ok(outcome)
}

fn save(settings: &Settings, key: &str, written: &Written) -> Result<(), Failure> {
    kv::set_json(&written_key(key), written, settings.kept()).map_err(Failure::from)
}

struct Who {
    espocrm: Option<Contact>,
    party: Option<String>,
}

/// The records of the call: the screen pop's, or found by number.
fn who(settings: &Settings, call: &Call, written: &Written) -> Result<Who, Failure> {
    let from_pop = call.entity_id.as_deref().and_then(|id| id.split_once(':'));
    let mut espocrm_record = None;
    let mut party = written.party.clone();
    if let Some((kind, id)) = from_pop {
        // Ids from the report go into paths: only what such an id looks like.
        let plain = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if plain && kind == "Party" {
            party = Some(id.to_owned());
        } else if plain && settings.espocrm.entities.iter().any(|e| e == kind) {
            espocrm_record = Some(Contact {
                entity_id: format!("{kind}:{id}"),
                entity_type: kind.to_owned(),
                ..blank()
            });
        }
    }
    if (espocrm_record.is_none() || party.is_none()) && phone::e164(&call.number).is_some() {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let found = lookup::find(settings, &call.number, deadline).map_err(Failure::from)?;
        if !found.complete {
            return Err(Failure::Retryable(format!(
                "looking up {} did not finish; the call is written when it does",
                call.number
            )));
        }
        if espocrm_record.is_none() {
            espocrm_record = found
                .contacts
                .iter()
                .find(|c| c.entity_type != "Party")
                .cloned();
        }
        if party.is_none() {
            party = found
                .contacts
                .iter()
                .find(|c| c.entity_type == "Party")
                .map(|c| c.record_id().to_owned());
        }
    }
    Ok(Who {
        espocrm: espocrm_record,
        party,
    })
}

fn blank() -> Contact {
    Contact {
        first_name: String::new(),
        last_name: String::new(),
        company_name: String::new(),
        email: String::new(),
        phone_business: String::new(),
        phone_mobile: String::new(),
        contact_url: String::new(),
        entity_id: String::new(),
        entity_type: String::new(),
    }
}

fn espo_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// What the journal says of a call, in words (EspoCRM's description, the note).
pub fn summary(settings: &Settings, call: &Call, recordings: &[u64]) -> String {
    let mut lines = Vec::new();
    let who = if call.name.is_empty() {
        call.number.clone()
    } else {
        format!("{} ({})", call.name, call.number)
    };
    lines.push(format!(
        "{} {} {}, {} s Gesprächszeit{}",
        if call.inbound {
            "Anruf von"
        } else {
            "Anruf an"
        },
        who,
        if call.answered() {
            "angenommen"
        } else if call.inbound {
            "verpasst"
        } else {
            "nicht angenommen"
        },
        call.talk_s(),
        if call.segments.len() > 1 {
            format!(", {} Abschnitte (weiterverbunden)", call.segments.len())
        } else {
            String::new()
        }
    ));
    for segment in &call.segments {
        lines.push(format!(
            "- Nebenstelle {}: {:?}, {} bis {} UTC, {} s",
            segment.agent,
            segment.call_type,
            segment.start.format("%d.%m.%Y %H:%M:%S"),
            segment.end.format("%H:%M:%S"),
            segment.duration_s
        ));
    }
    for id in recordings {
        lines.push(format!(
            "Aufnahme {id}: {}",
            crate::recordings::audio_link(settings, *id)
        ));
    }
    lines.push(format!("3CX-Journal {}", call.key));
    lines.join("\n")
}

fn call_fields(
    settings: &Settings,
    call: &Call,
    summary: &str,
    record: Option<&Contact>,
) -> Map<String, Value> {
    let mut fields = Map::new();
    let who = if call.name.is_empty() {
        call.number.clone()
    } else {
        call.name.clone()
    };
    fields.insert(
        "name".into(),
        json!(format!(
            "{} {who}",
            if call.inbound {
                "Anruf von"
            } else {
                "Anruf an"
            }
        )),
    );
    fields.insert(
        "status".into(),
        json!(if call.answered() { "Held" } else { "Not Held" }),
    );
    fields.insert(
        "direction".into(),
        json!(if call.inbound { "Inbound" } else { "Outbound" }),
    );
    fields.insert("dateStart".into(), json!(espo_time(call.start())));
    let end = call.end().max(call.start() + chrono::Duration::seconds(1));
    fields.insert("dateEnd".into(), json!(espo_time(end)));
    fields.insert("description".into(), json!(summary));
    fields.insert(settings.espocrm.call_key_attribute.clone(), json!(call.key));
    if let Some(record) = record {
        let id = record.record_id();
        match record.entity_type.as_str() {
            "Contact" => {
                fields.insert("contactsIds".into(), json!([id]));
                fields.insert("parentType".into(), json!("Contact"));
                fields.insert("parentId".into(), json!(id));
            }
            "Lead" => {
                fields.insert("leadsIds".into(), json!([id]));
                fields.insert("parentType".into(), json!("Lead"));
                fields.insert("parentId".into(), json!(id));
            }
            other => {
                fields.insert("parentType".into(), json!(other));
                fields.insert("parentId".into(), json!(id));
            }
        }
    }
    fields
}

fn write_call(
    settings: &Settings,
    call: &Call,
    summary: &str,
    written: &mut Written,
    record: Option<&Contact>,
    held: &mut lock::Held,
) -> Result<&'static str, Failure> {
    let fields = call_fields(settings, call, summary, record);
    written.linked_to = record.map(|r| r.entity_id.clone());
    if written.espocrm_id.is_none() && written.espocrm_creating {
        written.espocrm_id =
            espocrm::find_id("Call", &settings.espocrm.call_key_attribute, &call.key)?;
    }
    held.fence()
        .map_err(|e| Failure::Busy(format!("call {}: {e}", call.key)))?;
    if let Some(id) = &written.espocrm_id {
        let answer = espocrm::Request::put(format!("Call/{id}"))
            .json(&fields)?
            .send()
            .map_err(|e| unanswered("EspoCRM", "updating the call", e))?;
        if answer.status == 404 {
            // Deleted in EspoCRM by a person: theirs to decide, not made again.
            return Ok("deleted in EspoCRM");
        }
        if !answer.is_success() {
            return Err(refused("EspoCRM", "updating the call", &answer));
        }
        return Ok("updated");
    }
    written.espocrm_creating = true;
    save(settings, &call.key, written)?;
    let answer = espocrm::Request::post("Call")
        .header("X-Skip-Duplicate-Check", "true")
        .json(&fields)?
        .send()
        .map_err(|e| unanswered("EspoCRM", "creating the call", e))?;
    if !answer.is_success() {
        return Err(refused("EspoCRM", "creating the call", &answer));
    }
    let created: Value = answer
        .json()
        .map_err(|e| Failure::Retryable(format!("EspoCRM's answer to the create: {e}")))?;
    match created["id"].as_str() {
        Some(id) => {
            written.espocrm_id = Some(id.to_owned());
            written.espocrm_creating = false;
            Ok("created")
        }
        None => Err(Failure::Retryable(
            "EspoCRM's answer to the create has no `id`".into(),
        )),
    }
}

fn note_path(settings: &Settings, party: &str) -> String {
    settings.advoware.note_path.replace("{id}", party)
}

/// The note on the party, once per call.
fn note(
    call: &Call,
    summary: &str,
    party: &str,
    settings: &Settings,
    written: &mut Written,
    held: &mut lock::Held,
) -> Result<(), Failure> {
    let marker = format!("3CX-Journal {}", call.key);
    let path = note_path(settings, party);
    if written.party_noting {
        // A host died while writing it: written already?
        let answer = advoware::Request::get(path.as_str())
            .send()
            .map_err(|e| unanswered("Advoware", "reading the party's notes", e))?;
        if !answer.is_success() {
            return Err(refused("Advoware", "reading the party's notes", &answer));
        }
        let notes: Value = answer.json().unwrap_or(Value::Null);
        let done = notes
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["text"].as_str().is_some_and(|t| t.contains(&marker)));
        if done {
            written.party_noted = true;
            written.party_noting = false;
            written.party = Some(party.to_owned());
            return Ok(());
        }
    }
    held.fence()
        .map_err(|e| Failure::Busy(format!("call {}: {e}", call.key)))?;
    written.party_noting = true;
    written.party = Some(party.to_owned());
    save(settings, &call.key, written)?;
    let body = json!({
        "betreff": if call.inbound { "Telefonat (eingehend)" } else { "Telefonat (ausgehend)" },
        "text": summary,
        "datum": call.start().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let answer = advoware::Request::post(path.as_str())
        .json(&body)?
        .send()
        .map_err(|e| unanswered("Advoware", "writing the call's note", e))?;
    if answer.status == 404 {
        // The party is gone: nothing to note on.
        written.party_noting = false;
        written.party_noted = true;
        return Ok(());
    }
    if !answer.is_success() {
        return Err(refused("Advoware", "writing the call's note", &answer));
    }
    written.party_noted = true;
    written.party_noting = false;
    Ok(())
}
