//! The party sync: one EspoCRM record into Advoware.
//!
//! Create and update are one operation: read the whole record from EspoCRM
//! (an update webhook carries only the changed attributes, never enough),
//! map it, then update the linked Advoware party or create one and link it.
//! Links live in this plugin's store (`link:<espo id>` → Advoware id,
//! `party:<advoware id>` → EspoCRM id), and the EspoCRM id stands in the
//! party's `advoware_link_field`, so a sync cut short right after creating a
//! party finds that party instead of making another.

use std::time::Duration;

use bitbylaw_sdk::http::HttpResponse;
pub use bitbylaw_sdk::sync::Failure;
use bitbylaw_sdk::sync::{refused, unanswered};
use bitbylaw_sdk::{StoreError, advoware, espocrm, info, kv, warn};
use serde_json::{Map, Value};

use crate::mapping;
use crate::settings::{OnDelete, Settings};

/// What a sync did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    /// Advoware already holds what EspoCRM says: nothing written.
    Unchanged,
    Deleted,
    Deactivated,
    /// EspoCRM no longer has the record, or nothing was linked to delete.
    Nothing,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
            Outcome::Deactivated => "deactivated",
            Outcome::Nothing => "nothing",
        }
    }
}

/// How long the "creating" marker lasts: longer than any run of retries.
const CREATING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn link_key(espo_id: &str) -> String {
    format!("link:{espo_id}")
}

fn reverse_key(advoware_id: &str) -> String {
    format!("party:{advoware_id}")
}

fn synced_key(espo_id: &str) -> String {
    format!("synced:{espo_id}")
}

fn creating_key(espo_id: &str) -> String {
    format!("creating:{espo_id}")
}

/// The Advoware id linked to `espo_id`.
pub fn linked(espo_id: &str) -> Result<Option<String>, StoreError> {
    Ok(kv::get(&link_key(espo_id))?.and_then(|bytes| String::from_utf8(bytes).ok()))
}

fn store_link(espo_id: &str, advoware_id: &str) -> Result<(), StoreError> {
    kv::set(&link_key(espo_id), advoware_id.as_bytes(), None)?;
    kv::set(&reverse_key(advoware_id), espo_id.as_bytes(), None)
}

fn drop_link(espo_id: &str, advoware_id: &str) -> Result<(), StoreError> {
    kv::delete(&link_key(espo_id))?;
    kv::delete(&reverse_key(advoware_id))?;
    kv::delete(&synced_key(espo_id))?;
    Ok(())
}

fn json_body(value: &Map<String, Value>) -> Vec<u8> {
    Value::Object(value.clone()).to_string().into_bytes()
}

/// The party's id as Advoware's answer gives it (number or text).
fn advoware_id(answer: &HttpResponse, field: &str) -> Result<String, Failure> {
    let party: Value = serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Retryable(format!("Advoware's answer to the create is not JSON: {e}"))
    })?;
    match &party[field] {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Failure::Retryable(format!(
            "Advoware's answer to the create has no `{field}`"
        ))),
    }
}

/// Syncs a created or updated record.
pub fn upsert(settings: &Settings, entity: &str, espo_id: &str) -> Result<Outcome, Failure> {
    let path = format!("{entity}/{espo_id}");
    let answer = espocrm::Request::get(&path)
        .send()
        .map_err(|e| unanswered("EspoCRM", "reading the record", e))?;
    if answer.status == 404 {
        info!("EspoCRM record {espo_id} is gone; nothing to sync (its delete webhook follows)");
        return Ok(Outcome::Nothing);
    }
    if !answer.is_success() {
        return Err(refused("EspoCRM", "reading the record", &answer));
    }
    let record: Map<String, Value> = serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Permanent(format!(
            "EspoCRM's record {espo_id} is not a JSON object: {e}"
        ))
    })?;
    let fields = mapping::party(
        &record,
        &settings.mapping,
        &settings.advoware_link_field,
        espo_id,
    );

    let mut link = linked(espo_id)?;
    if link.is_none() {
        link = adopt(settings, espo_id, &record, &fields)?;
    }
    let (outcome, advoware_id) = match link {
        Some(advoware_id) => {
            let fingerprint = mapping::fingerprint(&fields, &advoware_id);
            if kv::get(&synced_key(espo_id))?.as_deref() == Some(fingerprint.as_bytes()) {
                (Outcome::Unchanged, advoware_id)
            } else {
                match update(settings, &advoware_id, &fields)? {
                    true => (Outcome::Updated, advoware_id),
                    // Deleted in Advoware meanwhile: the record still exists, so make it anew.
                    false => {
                        warn!(
                            "Advoware party {advoware_id} of EspoCRM record {espo_id} is gone; creating it again"
                        );
                        // The whole link goes first: a retry of a create whose
                        // answer is lost must take the `creating` path, not this one.
                        drop_link(espo_id, &advoware_id)?;
                        (Outcome::Created, create(settings, espo_id, &fields)?)
                    }
                }
            }
        }
        None => (Outcome::Created, create(settings, espo_id, &fields)?),
    };
    kv::set(
        &synced_key(espo_id),
        mapping::fingerprint(&fields, &advoware_id).as_bytes(),
        None,
    )?;
    write_back(settings, entity, espo_id, &record, &advoware_id)?;
    Ok(outcome)
}

/// A party this record was linked to without the link being stored: the id
/// the tenant wrote back to EspoCRM, or the party a sync cut short created
/// (found by the EspoCRM id in its link field).
///
/// A written-back id is adopted only when that party is this record's: its
/// link field names this record, or this plugin linked the two. A value that
/// is no party number, or names a party that is someone else's (a client the
/// firm made by hand), is a permanent failure in the dead letters; a party
/// another record holds (a record copied in EspoCRM) or that Advoware does not
/// have gets a party of its own.
fn adopt(
    settings: &Settings,
    espo_id: &str,
    record: &Map<String, Value>,
    fields: &Map<String, Value>,
) -> Result<Option<String>, Failure> {
    if let Some(field) = &settings.write_back_field
        && let Some(value) = record.get(field).filter(|v| mapping::is_set(v))
    {
        let Some(advoware_id) = party_number(value) else {
            return Err(Failure::Permanent(format!(
                "EspoCRM record {espo_id}: `{field}` holds {value}, which is not an Advoware party number; nothing adopted"
            )));
        };
        let owner = kv::get(&reverse_key(&advoware_id))?;
        match owner.as_deref() {
            Some(owner) if owner == espo_id.as_bytes() => {
                store_link(espo_id, &advoware_id)?;
                return Ok(Some(advoware_id));
            }
            Some(_) => warn!(
                "EspoCRM record {espo_id} names Advoware party {advoware_id} in `{field}`, which belongs to another record; not adopted"
            ),
            None => match read_party(settings, &advoware_id)? {
                Some(party)
                    if party.get(&settings.advoware_link_field) == Some(&Value::from(espo_id)) =>
                {
                    store_link(espo_id, &advoware_id)?;
                    return Ok(Some(advoware_id));
                }
                Some(party) => {
                    return Err(Failure::Permanent(format!(
                        "EspoCRM record {espo_id} names Advoware party {advoware_id} in `{field}`, but that party is not this record's (its `{}` is {}); not adopted, nothing overwritten: link them by hand or clear the field",
                        settings.advoware_link_field,
                        party
                            .get(&settings.advoware_link_field)
                            .unwrap_or(&Value::Null)
                    )));
                }
                None => warn!(
                    "EspoCRM record {espo_id} names Advoware party {advoware_id} in `{field}`, which Advoware does not have; a new party is made"
                ),
            },
        }
    }
    created_before(
        settings,
        espo_id,
        fields.get("name").and_then(Value::as_str),
    )
}

/// A party number: digits only (`4711/x` would reach a sub-resource).
fn party_number(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then_some(text)
}

/// The party `advoware_id` as Advoware holds it; none when it has no such party.
fn read_party(
    settings: &Settings,
    advoware_id: &str,
) -> Result<Option<Map<String, Value>>, Failure> {
    let answer = advoware::Request::get(format!("{}/{advoware_id}", settings.advoware_path))
        .send()
        .map_err(|e| unanswered("Advoware", "reading the party", e))?;
    match answer.status {
        404 => Ok(None),
        _ if answer.is_success() => serde_json::from_slice(&answer.body).map(Some).map_err(|e| {
            Failure::Retryable(format!(
                "Advoware's party {advoware_id} is not a JSON object: {e}"
            ))
        }),
        _ => Err(refused("Advoware", "reading the party", &answer)),
    }
}

/// The party a create that was started (its `creating:` marker stands) made,
/// if it went through: looked for by the name it was sent with (the record may
/// be renamed since; `name` when the marker has none), then by the EspoCRM id
/// in the link field. Found, it is linked.
fn created_before(
    settings: &Settings,
    espo_id: &str,
    name: Option<&str>,
) -> Result<Option<String>, Failure> {
    let Some(marker) = kv::get(&creating_key(espo_id))? else {
        return Ok(None);
    };
    let sent: Value = serde_json::from_slice(&marker).unwrap_or(Value::Null);
    let name = sent.as_str().or(name);
    let mut request = advoware::Request::get(&settings.advoware_path);
    if let Some(name) = name {
        request = request.query("name", name);
    }
    let answer = request
        .send()
        .map_err(|e| unanswered("Advoware", "looking for a party created before", e))?;
    if !answer.is_success() {
        return Err(refused(
            "Advoware",
            "looking for a party created before",
            &answer,
        ));
    }
    // Unreadable is not "none there": creating again could make a second party.
    let parties: Vec<Value> = serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Retryable(format!("Advoware's party list is not a JSON list: {e}"))
    })?;
    let found = parties
        .iter()
        .find(|party| party[&settings.advoware_link_field] == espo_id)
        .and_then(|party| match &party[&settings.advoware_id_field] {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        });
    if let Some(advoware_id) = &found {
        info!("EspoCRM record {espo_id}: found Advoware party {advoware_id} from a sync cut short");
        store_link(espo_id, advoware_id)?;
        kv::delete(&creating_key(espo_id))?;
    }
    Ok(found)
}

fn create(
    settings: &Settings,
    espo_id: &str,
    fields: &Map<String, Value>,
) -> Result<String, Failure> {
    let name = fields.get("name").cloned().unwrap_or(Value::Null);
    kv::set(
        &creating_key(espo_id),
        name.to_string().as_bytes(),
        Some(CREATING_TTL),
    )?;
    let answer = advoware::Request::post(&settings.advoware_path)
        .header("content-type", "application/json")
        .body(json_body(fields))
        .send()
        .map_err(|e| unanswered("Advoware", "creating the party", e))?;
    if !answer.is_success() {
        return Err(refused("Advoware", "creating the party", &answer));
    }
    let advoware_id = advoware_id(&answer, &settings.advoware_id_field)?;
    store_link(espo_id, &advoware_id)?;
    kv::delete(&creating_key(espo_id))?;
    Ok(advoware_id)
}

/// Updates the party with the mapped `fields`; false when Advoware has no
/// such party. The party is read first and written back whole with the
/// fields changed, so a `PUT` that replaces the record keeps what the mapping
/// does not know. A party the sync deactivated (it holds every `deactivate`
/// field) is made active again (`reactivate`): its record lives in EspoCRM.
fn update(
    settings: &Settings,
    advoware_id: &str,
    fields: &Map<String, Value>,
) -> Result<bool, Failure> {
    let Some(mut party) = read_party(settings, advoware_id)? else {
        return Ok(false);
    };
    let deactivated = !settings.deactivate.is_empty()
        && settings
            .deactivate
            .iter()
            .all(|(field, value)| party.get(field) == Some(value));
    party.extend(fields.clone());
    if deactivated {
        info!(
            "Advoware party {advoware_id} was deactivated; its record is back, so it is active again"
        );
        party.extend(settings.reactivate.clone());
    }
    write_party(settings, advoware_id, &party, "updating the party")
}

/// `PUT` of the whole party; false when Advoware has no such party.
fn write_party(
    settings: &Settings,
    advoware_id: &str,
    party: &Map<String, Value>,
    what: &str,
) -> Result<bool, Failure> {
    let answer = advoware::Request::put(format!("{}/{advoware_id}", settings.advoware_path))
        .header("content-type", "application/json")
        .body(json_body(party))
        .send()
        .map_err(|e| unanswered("Advoware", what, e))?;
    match answer.status {
        404 => Ok(false),
        _ if answer.is_success() => Ok(true),
        _ => Err(refused("Advoware", what, &answer)),
    }
}

/// Writes the Advoware id into the record, when the tenant asks for it and it
/// is not there yet (the write makes EspoCRM announce an update, whose sync
/// then finds nothing changed).
fn write_back(
    settings: &Settings,
    entity: &str,
    espo_id: &str,
    record: &Map<String, Value>,
    advoware_id: &str,
) -> Result<(), Failure> {
    let Some(field) = &settings.write_back_field else {
        return Ok(());
    };
    let current = match record.get(field) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if current == advoware_id {
        return Ok(());
    }
    let value = advoware_id
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(advoware_id.to_owned()));
    let mut change = Map::new();
    change.insert(field.clone(), value);
    let answer = espocrm::Request::put(format!("{entity}/{espo_id}"))
        .body(json_body(&change))
        .send()
        .map_err(|e| unanswered("EspoCRM", "writing the Advoware id back", e))?;
    match answer.status {
        // Deleted in EspoCRM meanwhile: its delete webhook follows.
        404 => Ok(()),
        _ if answer.is_success() => Ok(()),
        _ => Err(refused("EspoCRM", "writing the Advoware id back", &answer)),
    }
}

/// Syncs a deleted record: deletes or deactivates its party.
///
/// EspoCRM signs no timestamp, so a captured delete delivery could be
/// replayed later: the record is asked for first, and one that still exists
/// makes the delete a no-op. A delete that comes while a create's answer was
/// lost finds that party by the `creating:` marker.
pub fn remove(settings: &Settings, espo_id: &str) -> Result<Outcome, Failure> {
    let answer = espocrm::Request::get(format!("{}/{espo_id}", settings.entity))
        .send()
        .map_err(|e| unanswered("EspoCRM", "checking that the record is gone", e))?;
    match answer.status {
        404 => {}
        _ if answer.is_success() => {
            warn!(
                "EspoCRM record {espo_id} was announced deleted but still exists (a replayed delivery?); its party is left as it is"
            );
            return Ok(Outcome::Nothing);
        }
        _ => {
            return Err(refused(
                "EspoCRM",
                "checking that the record is gone",
                &answer,
            ));
        }
    }
    let advoware_id = match linked(espo_id)? {
        Some(advoware_id) => advoware_id,
        None => match created_before(settings, espo_id, None)? {
            Some(advoware_id) => advoware_id,
            None => {
                info!("EspoCRM record {espo_id} was deleted; no Advoware party is linked to it");
                return Ok(Outcome::Nothing);
            }
        },
    };
    let path = format!("{}/{advoware_id}", settings.advoware_path);
    match settings.on_delete {
        OnDelete::Delete => {
            let answer = advoware::Request::delete(&path)
                .send()
                .map_err(|e| unanswered("Advoware", "deleting the party", e))?;
            if !(answer.is_success() || answer.status == 404) {
                return Err(refused("Advoware", "deleting the party", &answer));
            }
            drop_link(espo_id, &advoware_id)?;
            Ok(Outcome::Deleted)
        }
        OnDelete::Deactivate => {
            // The party as it is, with the deactivation fields changed.
            if let Some(mut party) = read_party(settings, &advoware_id)? {
                party.extend(settings.deactivate.clone());
                write_party(settings, &advoware_id, &party, "deactivating the party")?;
            }
            // The party stays, and so does the link; a later sync writes everything again.
            kv::delete(&synced_key(espo_id))?;
            Ok(Outcome::Deactivated)
        }
    }
}
