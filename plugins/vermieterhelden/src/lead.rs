//! One lead, whatever form it came from: the fields a form's map names,
//! trimmed and capped, the email checked, the phone number in E.164.

use std::collections::BTreeMap;

use bitbylaw_sdk::phone;
use serde::{Deserialize, Serialize};

use crate::payload::Submission;

/// What a form collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeadType {
    Mieter,
    Vermieter,
    Anfrage,
    Kontakt,
    Newsletter,
}

impl LeadType {
    /// Leads the telephony plugin calls back (`lead.qualify`).
    pub fn qualifies(self) -> bool {
        matches!(self, LeadType::Mieter | LeadType::Vermieter)
    }
}

/// A lead as kept in the store and sent on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<LeadType>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// False when the email is not an address (kept as given).
    pub email_valid: bool,
    /// E.164 when the number is valid, else as given.
    pub phone: Option<String>,
    pub phone_valid: bool,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub message: Option<String>,
    pub consent_privacy: bool,
    pub consent_newsletter: bool,
    /// The form's key in the tenant's settings, and the page it was sent from.
    pub form: String,
    pub page: Option<String>,
    /// When it first came, and when a later submission last updated it (RFC 3339).
    pub received_at: String,
    pub updated_at: Option<String>,
    /// How many submissions it took in (duplicates update it).
    pub submissions: u32,
    /// The record in EspoCRM once it is there.
    pub espocrm_id: Option<String>,
    /// Sent on as `lead.qualify` (once per lead, not per update).
    #[serde(default)]
    pub qualified: bool,
    /// Asked of the party sync as a party in Advoware (`advoware_parties`).
    #[serde(default)]
    pub party_requested: bool,
}

/// A lead field's source in a form: one form field, or several joined with a
/// space (`["1.3", "1.6"]`: first and last name of a Gravity Forms name field).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Source {
    One(String),
    Joined(Vec<String>),
}

/// The longest a field may be; longer text is cut (a message at 5,000).
const FIELD_CAP: usize = 500;
const MESSAGE_CAP: usize = 5000;

/// The lead fields a form map may name.
pub const FIELDS: [&str; 11] = [
    "first_name",
    "last_name",
    "name",
    "email",
    "phone",
    "street",
    "postal_code",
    "city",
    "message",
    "consent_privacy",
    "consent_newsletter",
];

/// Builds the lead from a submission by the form's field map.
pub fn build(
    submission: &Submission,
    map: &BTreeMap<String, Source>,
    kind: LeadType,
    form: &str,
) -> Lead {
    let get = |field: &str, cap: usize| -> Option<String> {
        let text = match map.get(field)? {
            Source::One(key) => submission.fields.get(key)?.clone(),
            Source::Joined(keys) => keys
                .iter()
                .filter_map(|key| submission.fields.get(key))
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        };
        clean(&text, cap)
    };
    let (mut first_name, mut last_name) =
        (get("first_name", FIELD_CAP), get("last_name", FIELD_CAP));
    // One name field: the last word is the surname.
    if first_name.is_none()
        && last_name.is_none()
        && let Some(name) = get("name", FIELD_CAP)
    {
        match name.rsplit_once(' ') {
            Some((first, last)) => {
                first_name = Some(first.trim().to_owned());
                last_name = Some(last.to_owned());
            }
            None => last_name = Some(name),
        }
    }
    let email = get("email", FIELD_CAP).map(|email| email.to_lowercase());
    let phone = get("phone", FIELD_CAP).map(|raw| phone::normalise(&raw));
    Lead {
        kind: Some(kind),
        first_name,
        last_name,
        email_valid: email.as_deref().is_some_and(valid_email),
        email,
        phone_valid: phone.as_ref().is_some_and(|(_, valid)| *valid),
        phone: phone.map(|(number, _)| number),
        street: get("street", FIELD_CAP),
        postal_code: get("postal_code", FIELD_CAP),
        city: get("city", FIELD_CAP),
        message: get("message", MESSAGE_CAP),
        consent_privacy: get("consent_privacy", FIELD_CAP).is_some_and(|v| consent(&v)),
        consent_newsletter: get("consent_newsletter", FIELD_CAP).is_some_and(|v| consent(&v))
            || kind == LeadType::Newsletter,
        form: form.to_owned(),
        page: submission
            .page
            .as_deref()
            .and_then(|page| clean(page, FIELD_CAP)),
        submissions: 1,
        ..Lead::default()
    }
}

impl Lead {
    /// How duplicates are found: the email when it is an address, else the
    /// phone number when it is valid.
    pub fn contact_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(email) = self.email.as_ref().filter(|_| self.email_valid) {
            keys.push(format!("email:{email}"));
        }
        if let Some(phone) = self.phone.as_ref().filter(|_| self.phone_valid) {
            keys.push(format!("phone:{phone}"));
        }
        keys
    }

    /// A later submission of the same person: what it says replaces what was
    /// there, what it leaves out stays; messages are kept one after the other.
    pub fn absorb(&mut self, newer: Lead, at: &str) {
        fn take(old: &mut Option<String>, new: Option<String>) {
            if new.is_some() {
                *old = new;
            }
        }
        take(&mut self.first_name, newer.first_name);
        take(&mut self.last_name, newer.last_name);
        if newer.email.is_some() {
            self.email = newer.email;
            self.email_valid = newer.email_valid;
        }
        if newer.phone.is_some() {
            self.phone = newer.phone;
            self.phone_valid = newer.phone_valid;
        }
        take(&mut self.street, newer.street);
        take(&mut self.postal_code, newer.postal_code);
        take(&mut self.city, newer.city);
        self.message = match (self.message.take(), newer.message) {
            (Some(old), Some(new)) if old != new => {
                let joined = format!("{old}\n\n---\n\n{new}");
                Some(joined.chars().take(MESSAGE_CAP).collect())
            }
            (old, new) => new.or(old),
        };
        self.consent_privacy |= newer.consent_privacy;
        self.consent_newsletter |= newer.consent_newsletter;
        // A sales lead stays one when the same person also subscribes.
        if self.kind == Some(LeadType::Newsletter) || self.kind == Some(LeadType::Kontakt) {
            self.kind = newer.kind;
        }
        take(&mut self.page, newer.page);
        self.updated_at = Some(at.to_owned());
        self.submissions += 1;
    }
}

/// Trimmed, control characters dropped, at most `cap` characters; none when empty.
fn clean(text: &str, cap: usize) -> Option<String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(cap)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A consent box: ticked is any of the values form plugins send for it.
fn consent(value: &str) -> bool {
    let value = value.trim().to_lowercase();
    !matches!(value.as_str(), "" | "0" | "false" | "no" | "nein" | "off")
}

/// `local@domain.tld`, as much as a form should check: one `@`, no spaces, a
/// dot in the domain with something on both sides.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ';')
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_for_form_not_for_existence() {
        for good in [
            "max@example.de",
            "a.b+c@sub.example.co.uk",
            "müller@bücher.de",
        ] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "max",
            "max@",
            "@example.de",
            "max@example",
            "max@ex ample.de",
            "a@b@c.de",
            "max@-x.de",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    fn submission(pairs: &[(&str, &str)]) -> Submission {
        Submission {
            fields: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            form_id: None,
            page: Some(" https://vermieterhelden.de/mieter/ ".into()),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Source> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Source::One((*v).to_owned())))
            .collect()
    }

    #[test]
    fn a_form_map_makes_a_trimmed_lead_and_splits_one_name_field() {
        let lead = build(
            &submission(&[
                ("your-name", "  Max  von Mustermann "),
                ("your-email", "Max@Example.DE"),
                ("your-phone", "0171 1234567"),
                ("acceptance-1", "1"),
                ("your-message", "Hallo\u{0}!"),
            ]),
            &map(&[
                ("name", "your-name"),
                ("email", "your-email"),
                ("phone", "your-phone"),
                ("consent_privacy", "acceptance-1"),
                ("message", "your-message"),
            ]),
            LeadType::Mieter,
            "mieter",
        );
        assert_eq!(lead.first_name.as_deref(), Some("Max  von"));
        assert_eq!(lead.last_name.as_deref(), Some("Mustermann"));
        assert_eq!(lead.email.as_deref(), Some("max@example.de"));
        assert!(lead.email_valid && lead.phone_valid && lead.consent_privacy);
        assert!(!lead.consent_newsletter);
        assert_eq!(lead.phone.as_deref(), Some("+491711234567"));
        assert_eq!(lead.message.as_deref(), Some("Hallo!"));
        assert_eq!(
            lead.page.as_deref(),
            Some("https://vermieterhelden.de/mieter/")
        );
        assert_eq!(
            lead.contact_keys(),
            ["email:max@example.de", "phone:+491711234567"]
        );
    }

    #[test]
    fn joined_sources_and_caps() {
        let long = "x".repeat(6000);
        let mut map = map(&[("message", "msg")]);
        map.insert(
            "name".into(),
            Source::Joined(vec!["1.3".into(), "1.6".into()]),
        );
        let lead = build(
            &submission(&[("1.3", "Erika"), ("1.6", "Musterfrau"), ("msg", &long)]),
            &map,
            LeadType::Newsletter,
            "newsletter",
        );
        assert_eq!(lead.first_name.as_deref(), Some("Erika"));
        assert_eq!(lead.last_name.as_deref(), Some("Musterfrau"));
        assert_eq!(
            lead.message.as_ref().map(|m| m.chars().count()),
            Some(MESSAGE_CAP)
        );
        assert!(lead.consent_newsletter, "a newsletter form is the consent");
        assert!(lead.contact_keys().is_empty(), "no email, no phone");
    }

    #[test]
    fn a_later_submission_updates_and_keeps_both_messages() {
        let mut first = Lead {
            kind: Some(LeadType::Kontakt),
            first_name: Some("Max".into()),
            city: Some("Berlin".into()),
            message: Some("Erste Frage".into()),
            submissions: 1,
            ..Lead::default()
        };
        let second = Lead {
            kind: Some(LeadType::Vermieter),
            city: Some("Potsdam".into()),
            message: Some("Zweite Frage".into()),
            consent_privacy: true,
            ..Lead::default()
        };
        first.absorb(second, "2026-12-04T10:00:00Z");
        assert_eq!(first.first_name.as_deref(), Some("Max"));
        assert_eq!(first.city.as_deref(), Some("Potsdam"));
        assert_eq!(
            first.message.as_deref(),
            Some("Erste Frage\n\n---\n\nZweite Frage")
        );
        assert_eq!(first.kind, Some(LeadType::Vermieter));
        assert!(first.consent_privacy);
        assert_eq!(first.submissions, 2);
    }
}
