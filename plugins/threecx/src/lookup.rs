//! Who is calling: a number, in E.164, looked up in EspoCRM (contacts, leads,
//! accounts) and Advoware (parties) for 3CX's screen pop.
//!
//! The phone rings while 3CX waits for this answer, so the lookup has a time
//! budget: each source is asked with the time left (the preferred one first,
//! with two thirds of it when two are asked, so a source that hangs leaves
//! the other its share), and whatever has come back when the budget is spent
//! is the answer. A complete answer is kept briefly, since 3CX asks again
//! for every ringing phone and for the journal; one cut short is not kept.

use std::time::{Duration, Instant};

use bitbylaw_sdk::{Error, advoware, espocrm, kv, warn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{Settings, Source};

/// One record as the screen pop shows it (the template maps these onto
/// 3CX's `FirstName`, `LastName`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub company_name: String,
    pub email: String,
    pub phone_business: String,
    pub phone_mobile: String,
    /// Where the record opens; empty when the system has no address for it.
    pub contact_url: String,
    /// `<type>:<id>`: 3CX hands it back with the call's journal, which so
    /// knows the record without asking again.
    pub entity_id: String,
    /// `Contact`, `Lead`, `Account` (EspoCRM) or `Party` (Advoware).
    pub entity_type: String,
}

impl Contact {
    /// The record's own id, without its type.
    pub fn record_id(&self) -> &str {
        self.entity_id
            .split_once(':')
            .map_or(self.entity_id.as_str(), |(_, id)| id)
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Found {
    pub contacts: Vec<Contact>,
    /// False when a source did not answer in time or failed: the answer may
    /// lack a record.
    pub complete: bool,
}

fn cache_key(number: &str) -> String {
    format!("lookup:{number}")
}

/// Looks `number` (E.164) up, answering by `deadline`.
pub fn find(settings: &Settings, number: &str, deadline: Instant) -> Result<Found, Error> {
    if settings.lookup.cache_s > 0
        && let Some(found) = kv::get_json::<Found>(&cache_key(number))?
    {
        return Ok(found);
    }
    let sources = settings.sources();
    let mut found = Found {
        contacts: Vec::new(),
        complete: true,
    };
    for (i, source) in sources.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            found.complete = false;
            break;
        }
        // This source gets two parts of what is left, each later one one part.
        let later = u32::try_from(sources.len() - i - 1).unwrap_or(u32::MAX);
        let share = left * 2 / (2 + later);
        let until = Instant::now() + share;
        let (contacts, complete) = match source {
            Source::Espocrm => from_espocrm(settings, number, until),
            Source::Advoware => from_advoware(settings, number, until),
        };
        found.contacts.extend(contacts);
        found.complete &= complete;
    }
    if found.complete && settings.lookup.cache_s > 0 {
        kv::set_json(
            &cache_key(number),
            &found,
            Some(Duration::from_secs(settings.lookup.cache_s)),
        )?;
    }
    Ok(found)
}

fn time_left(until: Instant) -> Option<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    (left >= Duration::from_millis(1)).then_some(left)
}

fn text(record: &Value, field: &str) -> String {
    match &record[field] {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn from_espocrm(settings: &Settings, number: &str, until: Instant) -> (Vec<Contact>, bool) {
    let mut contacts = Vec::new();
    for entity in &settings.espocrm.entities {
        let Some(left) = time_left(until) else {
            return (contacts, false);
        };
        let answer = espocrm::equals(entity, "phoneNumber", number)
            .query("maxSize", "10")
            .timeout(left)
            .send();
        let list = match answer {
            Ok(answer) if answer.is_success() => answer.json::<Value>().ok(),
            Ok(answer) => {
                warn!(
                    "EspoCRM answered {} to a {entity} lookup: {}",
                    answer.status,
                    answer.excerpt(200)
                );
                None
            }
            // No EspoCRM account for this plugin: nothing to find there.
            Err(espocrm::EspoCrmError::NotConfigured(_)) => return (contacts, true),
            Err(espocrm::EspoCrmError::Timeout) => {
                warn!("EspoCRM did not answer a {entity} lookup within the lookup's budget");
                return (contacts, false);
            }
            Err(error) => {
                warn!("EspoCRM, {entity} lookup: {error:?}");
                return (contacts, false);
            }
        };
        let Some(list) = list else {
            return (contacts, false);
        };
        for record in list["list"].as_array().into_iter().flatten() {
            contacts.push(espocrm_contact(settings, entity, record));
        }
    }
    (contacts, true)
}

fn espocrm_contact(settings: &Settings, entity: &str, record: &Value) -> Contact {
    let id = text(record, "id");
    let person = entity != "Account";
    let mobile = record["phoneNumberData"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["type"] == "Mobile")
        .map(|p| text(p, "phoneNumber"))
        .unwrap_or_default();
    let mut business = text(record, "phoneNumber");
    if business == mobile {
        business = record["phoneNumberData"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["type"] != "Mobile")
            .map(|p| text(p, "phoneNumber"))
            .unwrap_or_default();
    }
    Contact {
        first_name: if person {
            text(record, "firstName")
        } else {
            String::new()
        },
        last_name: if person {
            text(record, "lastName")
        } else {
            String::new()
        },
        company_name: if person {
            text(record, "accountName")
        } else {
            text(record, "name")
        },
        email: text(record, "emailAddress"),
        phone_business: business,
        phone_mobile: mobile,
        contact_url: settings
            .espocrm
            .ui_url
            .as_deref()
            .map(|ui| format!("{}/#{entity}/view/{id}", ui.trim_end_matches('/')))
            .unwrap_or_default(),
        entity_id: format!("{entity}:{id}"),
        entity_type: entity.to_owned(),
    }
}

fn from_advoware(settings: &Settings, number: &str, until: Instant) -> (Vec<Contact>, bool) {
    let Some(left) = time_left(until) else {
        return (Vec::new(), false);
    };
    let fields = &settings.advoware;
    let answer = advoware::Request::get(fields.party_path.as_str())
        .query(fields.phone_query.as_str(), number)
        .timeout(left)
        .send();
    let list = match answer {
        Ok(answer) if answer.is_success() => match answer.json::<Value>() {
            Ok(Value::Array(list)) => list,
            Ok(other) => match other.get("value").or_else(|| other.get("list")) {
                Some(Value::Array(list)) => list.clone(),
                _ => return (Vec::new(), false),
            },
            Err(_) => return (Vec::new(), false),
        },
        Ok(answer) => {
            warn!(
                "Advoware answered {} to a party lookup: {}",
                answer.status,
                answer.excerpt(200)
            );
            return (Vec::new(), false);
        }
        Err(advoware::AdvowareError::NotConfigured(_)) => return (Vec::new(), true),
        Err(advoware::AdvowareError::Timeout) => {
            warn!("Advoware did not answer a party lookup within the lookup's budget");
            return (Vec::new(), false);
        }
        Err(error) => {
            warn!("Advoware, party lookup: {error:?}");
            return (Vec::new(), false);
        }
    };
    let contacts = list
        .iter()
        .map(|party| {
            let first = text(party, &fields.first_name_field);
            let name = text(party, &fields.name_field);
            let person = !first.is_empty();
            Contact {
                first_name: first,
                last_name: if person { name.clone() } else { String::new() },
                company_name: if person { String::new() } else { name },
                email: text(party, &fields.email_field),
                phone_business: text(party, &fields.phone_field),
                phone_mobile: text(party, &fields.mobile_field),
                contact_url: String::new(),
                entity_id: format!("Party:{}", text(party, &fields.id_field)),
                entity_type: "Party".into(),
            }
        })
        .collect();
    (contacts, true)
}
