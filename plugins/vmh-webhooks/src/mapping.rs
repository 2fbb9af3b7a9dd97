//! An EspoCRM record onto an Advoware party, by the tenant's mapping.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::settings::Source;

/// The Advoware fields for `record`: each mapped field from the first of its
/// attributes that is set (not missing, null or an empty string), null when
/// none is, so a value cleared in EspoCRM is cleared in Advoware too; and the
/// EspoCRM id in `link_field`.
pub fn party(
    record: &Map<String, Value>,
    mapping: &BTreeMap<String, Source>,
    link_field: &str,
    espo_id: &str,
) -> Map<String, Value> {
    let mut party = Map::new();
    for (field, source) in mapping {
        let value = source
            .attributes()
            .iter()
            .filter_map(|attribute| record.get(attribute))
            .find(|value| is_set(value))
            .cloned()
            .unwrap_or(Value::Null);
        party.insert(field.clone(), value);
    }
    party.insert(link_field.to_owned(), Value::String(espo_id.to_owned()));
    party
}

/// Set: not null and not an empty string.
pub fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.trim().is_empty(),
        _ => true,
    }
}

/// A fingerprint of what was written, to skip a write that would change nothing.
/// `serde_json`'s map keeps keys sorted, so equal fields give equal text.
pub fn fingerprint(party: &Map<String, Value>, advoware_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(advoware_id.as_bytes());
    hash.update([0]);
    hash.update(Value::Object(party.clone()).to_string().as_bytes());
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::settings::default_mapping;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_person_maps_onto_the_default_fields() {
        let record = object(json!({
            "id": "6571a1b2c3d4e5f60", "name": "Hans Müller", "firstName": "Hans", "lastName": "Müller",
            "salutationName": "Herr", "emailAddress": "hans@example.de", "phoneNumber": "+49 30 1234",
            "addressStreet": "Hauptstraße 1", "addressPostalCode": "10115", "addressCity": "Berlin",
            "addressCountry": "Deutschland", "cRolle": "Mandant", "createdAt": "2026-12-01 10:00:00"
        }));
        let party = party(
            &record,
            &default_mapping(),
            "externeId",
            "6571a1b2c3d4e5f60",
        );
        assert_eq!(
            Value::Object(party),
            json!({
                "name": "Müller", "vorname": "Hans", "anrede": "Herr", "email": "hans@example.de",
                "telefon": "+49 30 1234", "strasse": "Hauptstraße 1", "plz": "10115", "ort": "Berlin",
                "land": "Deutschland", "rolle": "Mandant", "externeId": "6571a1b2c3d4e5f60"
            })
        );
    }

    #[test]
    fn a_company_without_a_surname_takes_its_name_and_unset_fields_are_null() {
        let record = object(
            json!({ "id": "a1", "name": "Hausverwaltung Nord GmbH", "lastName": "", "firstName": null }),
        );
        let party = party(&record, &default_mapping(), "externeId", "a1");
        assert_eq!(party["name"], "Hausverwaltung Nord GmbH");
        assert_eq!(party["vorname"], Value::Null);
        assert_eq!(party["email"], Value::Null);
    }

    #[test]
    fn the_fingerprint_changes_with_any_field_and_the_advoware_id() {
        let a = object(json!({ "name": "A", "ort": "Berlin" }));
        let b = object(json!({ "name": "A", "ort": "Hamburg" }));
        assert_eq!(fingerprint(&a, "7"), fingerprint(&a.clone(), "7"));
        assert_ne!(fingerprint(&a, "7"), fingerprint(&b, "7"));
        assert_ne!(fingerprint(&a, "7"), fingerprint(&a, "8"));
    }
}
