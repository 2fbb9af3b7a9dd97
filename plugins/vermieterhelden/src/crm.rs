//! A lead into EspoCRM: created once, then updated; newsletter sign-ups as
//! their own entity on a target list, never as sales leads.
//!
//! Only the attributes a form fills are written; an update leaves everything
//! else (the lead's status, its owner, what sales added) as it is. A lead
//! that was created but whose id was not kept (a host died in between) is
//! found again by its email or phone number, never created twice.

use bitbylaw_sdk::espocrm;
use bitbylaw_sdk::sync::{Failure, refused, unanswered};
use serde_json::{Map, Value, json};

use crate::lead::Lead;
use crate::settings::Settings;

/// Creates or updates the lead in `settings.lead_entity`.
pub fn upsert_lead(settings: &Settings, lead: &mut Lead) -> Result<&'static str, Failure> {
    let mut fields = person(lead);
    fields.insert(
        settings.type_attribute.clone(),
        json!(lead.kind.map(crate::type_name)),
    );
    if let Some(message) = &lead.message {
        fields.insert("description".into(), json!(message));
    }
    let mut on_create = fields.clone();
    on_create.insert("status".into(), json!("New"));
    on_create.insert("source".into(), json!("Web Site"));
    upsert(&settings.lead_entity, lead, fields, on_create)
}

/// A newsletter sign-up: the person in `newsletter_entity`, on the target list.
pub fn newsletter(settings: &Settings, lead: &mut Lead) -> Result<&'static str, Failure> {
    let Some(list) = &settings.newsletter_target_list else {
        bitbylaw_sdk::warn!(
            "newsletter sign-up {} kept here: no `newsletter_target_list` is set",
            lead.id
        );
        return Ok("kept (no target list)");
    };
    let fields = person(lead);
    let outcome = upsert(&settings.newsletter_entity, lead, fields.clone(), fields)?;
    let Some(id) = lead.espocrm_id.clone() else {
        return Err(Failure::Retryable("the sign-up has no EspoCRM id".into()));
    };
    // Linking twice is no error in EspoCRM: a retry may link again.
    let link = format!("{}s", lower_first(&settings.newsletter_entity));
    let answer = espocrm::Request::post(format!("TargetList/{list}/{link}"))
        .json(&json!({ "id": id }))?
        .send()
        .map_err(|e| unanswered("EspoCRM", "linking to the target list", e))?;
    if !answer.is_success() {
        return Err(refused("EspoCRM", "linking to the target list", &answer));
    }
    Ok(outcome)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// The person's attributes a form gives (none left out is written).
fn person(lead: &Lead) -> Map<String, Value> {
    let mut fields = Map::new();
    for (attribute, value) in [
        ("firstName", &lead.first_name),
        ("lastName", &lead.last_name),
        ("emailAddress", &lead.email),
        ("phoneNumber", &lead.phone),
        ("addressStreet", &lead.street),
        ("addressPostalCode", &lead.postal_code),
        ("addressCity", &lead.city),
    ] {
        if let Some(value) = value {
            fields.insert(attribute.into(), json!(value));
        }
    }
    fields
}

/// Update by the kept id; else adopt the record of the same email or phone
/// number; else create.
fn upsert(
    entity: &str,
    lead: &mut Lead,
    update: Map<String, Value>,
    create: Map<String, Value>,
) -> Result<&'static str, Failure> {
    let mut id = lead.espocrm_id.clone();
    if id.is_none() {
        id = find(entity, lead)?;
    }
    if let Some(existing) = id {
        let answer = espocrm::Request::put(format!("{entity}/{existing}"))
            .json(&Value::Object(update))?
            .send()
            .map_err(|e| unanswered("EspoCRM", "updating the lead", e))?;
        if answer.is_success() {
            lead.espocrm_id = Some(existing);
            return Ok("updated");
        }
        if answer.status != 404 {
            return Err(refused("EspoCRM", "updating the lead", &answer));
        }
        // Deleted in EspoCRM since: the person wrote again, so it is made anew.
    }
    // Our own duplicate check ran (email, phone): EspoCRM's by name would
    // refuse a namesake.
    let answer = espocrm::Request::post(entity)
        .header("X-Skip-Duplicate-Check", "true")
        .json(&Value::Object(create))?
        .send()
        .map_err(|e| unanswered("EspoCRM", "creating the lead", e))?;
    if !answer.is_success() {
        return Err(refused("EspoCRM", "creating the lead", &answer));
    }
    let created: Value = serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Retryable(format!("EspoCRM's answer to the create is not JSON: {e}"))
    })?;
    match created["id"].as_str() {
        Some(id) => {
            lead.espocrm_id = Some(id.to_owned());
            Ok("created")
        }
        None => Err(Failure::Retryable(
            "EspoCRM's answer to the create has no `id`".into(),
        )),
    }
}

/// The record of the lead's email (or, without one, its phone number).
fn find(entity: &str, lead: &Lead) -> Result<Option<String>, Failure> {
    let (attribute, value) = match (&lead.email, &lead.phone) {
        (Some(email), _) if lead.email_valid => ("emailAddress", email),
        (_, Some(phone)) if lead.phone_valid => ("phoneNumber", phone),
        _ => return Ok(None),
    };
    espocrm::find_id(entity, attribute, value)
}
