//! The tenant's settings (`[plugins.vermieterhelden.config]`): its forms,
//! each with its lead type, its authentication and its field map, and where
//! leads go in EspoCRM.

use std::collections::BTreeMap;

use bitbylaw_sdk::{Error, config};
use serde::Deserialize;

use crate::lead::{FIELDS, LeadType, Source};

/// How a form proves it is the firm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// A header (`secret_header`) carrying the form's secret.
    SharedSecret,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (Standard Webhooks).
    StandardWebhooks,
}

/// One WordPress form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    #[serde(rename = "type")]
    pub kind: LeadType,
    pub auth: Auth,
    /// The name of the form's secret in `[plugins.vermieterhelden.secrets]`
    /// (default: the form's key).
    #[serde(default)]
    pub secret: Option<String>,
    /// The header of a shared secret.
    #[serde(default = "default_secret_header")]
    pub secret_header: String,
    /// The id the form plugin sends (`form_id`, `form[id]`): a delivery
    /// without `?form=` is matched to the form by it.
    #[serde(default)]
    pub form_id: Option<String>,
    /// Lead field → the form's field (or fields, joined with a space).
    pub fields: BTreeMap<String, Source>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The forms by key (`?form=<key>` in the webhook URL).
    pub forms: BTreeMap<String, Form>,
    /// A second submission with the same email or phone number within this
    /// window updates the first lead instead of making another.
    #[serde(default = "default_window")]
    pub duplicate_window_hours: u64,
    /// EspoCRM: the entity of sales leads and its attribute for the lead's type.
    #[serde(default = "default_lead_entity")]
    pub lead_entity: String,
    #[serde(default = "default_type_attribute")]
    pub type_attribute: String,
    /// Newsletter sign-ups: the entity they are kept as (never a sales lead),
    /// and the target list they join (its id). Without a list they are kept
    /// here and not sent on.
    #[serde(default = "default_newsletter_entity")]
    pub newsletter_entity: String,
    #[serde(default)]
    pub newsletter_target_list: Option<String>,
    /// Qualified leads (Mieter, Vermieter) also become parties in Advoware,
    /// through the party sync of `vmh-webhooks` (`vmh.party.requested`; its
    /// `requested_entities` must name `lead_entity`). Off: a lead is not yet a client.
    #[serde(default)]
    pub advoware_parties: bool,
    /// How long a lead's sync lock outlives a host that died holding it.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_s: u64,
    /// A lead pending this long with its event gone is announced again.
    #[serde(default = "default_stuck_after")]
    pub stuck_after_s: u64,
}

fn default_secret_header() -> String {
    "x-webhook-secret".into()
}

fn default_window() -> u64 {
    24 * 30
}

fn default_lead_entity() -> String {
    "Lead".into()
}

fn default_type_attribute() -> String {
    "cLeadTyp".into()
}

fn default_newsletter_entity() -> String {
    "Contact".into()
}

fn default_lock_ttl() -> u64 {
    60
}

fn default_stuck_after() -> u64 {
    3600
}

impl Settings {
    pub fn load() -> Result<Self, Error> {
        let settings: Settings = config::load()?;
        for (key, form) in &settings.forms {
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(Error::Internal(format!(
                    "plugin setting `forms.{key}`: a form's key is letters, digits, `-` and `_`"
                )));
            }
            if let Some(field) = form.fields.keys().find(|f| !FIELDS.contains(&f.as_str())) {
                return Err(Error::Internal(format!(
                    "plugin setting `forms.{key}.fields.{field}`: not a lead field (one of {})",
                    FIELDS.join(", ")
                )));
            }
            if !form.fields.contains_key("email") && !form.fields.contains_key("phone") {
                return Err(Error::Internal(format!(
                    "plugin setting `forms.{key}.fields`: maps neither `email` nor `phone`"
                )));
            }
        }
        Ok(settings)
    }

    /// The form a delivery is for: by `?form=`, else by the id it names.
    pub fn form(&self, key: Option<&str>, form_id: Option<&str>) -> Option<(&str, &Form)> {
        match key {
            Some(key) => self
                .forms
                .get_key_value(key)
                .map(|(key, form)| (key.as_str(), form)),
            None => self
                .forms
                .iter()
                .find(|(_, form)| form.form_id.is_some() && form.form_id.as_deref() == form_id)
                .map(|(key, form)| (key.as_str(), form)),
        }
    }

    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.duplicate_window_hours.max(1) * 3600)
    }
}
