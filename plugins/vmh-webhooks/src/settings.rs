//! The tenant's settings (`[plugins.vmh-webhooks.config]`), all optional.

use std::collections::BTreeMap;

use bitbylaw_sdk::{Error, config};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Action;

/// What a delete in EspoCRM does to the party in Advoware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// `DELETE` the party.
    Delete,
    /// Write the `deactivate` fields onto it (the default: a firm rarely wants
    /// a party gone from its system of record because the CRM dropped it).
    Deactivate,
}

/// One Advoware field's source: an EspoCRM attribute, or several of which the
/// first that is set (not null, not empty) wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Source {
    One(String),
    FirstOf(Vec<String>),
}

impl Source {
    pub fn attributes(&self) -> &[String] {
        match self {
            Source::One(one) => std::slice::from_ref(one),
            Source::FirstOf(list) => list,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Refuse deliveries without a valid `Signature`/`X-Signature` (401).
    #[serde(default = "yes")]
    pub require_signature: bool,
    /// The EspoCRM entity the webhooks announce.
    #[serde(default = "default_entity")]
    pub entity: String,
    /// Other entities whose records other plugins of the tenant may have made
    /// parties with `vmh.party.requested` (e.g. `["Lead"]` for
    /// vermieterhelden's qualified leads); none by default.
    #[serde(default)]
    pub requested_entities: Vec<String>,
    /// Action (`create`, `update`, `delete`) → the webhook's name in the
    /// EspoCRM account; default `<entity>.<action>`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, String>,
    #[serde(default = "default_on_delete")]
    pub on_delete: OnDelete,
    /// Fields written onto the Advoware party when `on_delete = "deactivate"`.
    #[serde(default = "default_deactivate")]
    pub deactivate: Map<String, Value>,
    /// Fields written onto a deactivated party (one holding every
    /// `deactivate` field) when its record is updated: the record lives.
    #[serde(default = "default_reactivate")]
    pub reactivate: Map<String, Value>,
    /// Advoware's party resource below its API base.
    #[serde(default = "default_party_path")]
    pub advoware_path: String,
    /// The party's id field in Advoware's answers.
    #[serde(default = "default_id_field")]
    pub advoware_id_field: String,
    /// The Advoware field that holds the EspoCRM id, so that a sync cut short
    /// after creating a party finds it instead of making a second one.
    #[serde(default = "default_link_field")]
    pub advoware_link_field: String,
    /// An EspoCRM attribute to write the Advoware id back to (e.g.
    /// `cAdvowareBetNr`); none: nothing is written to EspoCRM.
    #[serde(default)]
    pub write_back_field: Option<String>,
    /// Advoware field → EspoCRM attribute(s). Given, it replaces the default whole.
    #[serde(default = "default_mapping")]
    pub mapping: BTreeMap<String, Source>,
    /// How long a record's sync lock outlives a host that died holding it;
    /// keep it above the plugin's `deadline_ms`, which no sync outlives.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_s: u64,
    /// A record pending this long with its event gone (its last attempt ended
    /// but it was not let go) is announced again by the sweep. Keep it above
    /// the time a record's retries take.
    #[serde(default = "default_stuck_after")]
    pub stuck_after_s: u64,
}

fn default_stuck_after() -> u64 {
    3600
}

fn default_lock_ttl() -> u64 {
    120
}

fn yes() -> bool {
    true
}

fn default_entity() -> String {
    "CBeteiligte".into()
}

fn default_on_delete() -> OnDelete {
    OnDelete::Deactivate
}

fn default_deactivate() -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("aktiv".into(), json!(false));
    fields
}

fn default_reactivate() -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("aktiv".into(), json!(true));
    fields
}

fn default_party_path() -> String {
    "Beteiligte".into()
}

fn default_id_field() -> String {
    "betNr".into()
}

fn default_link_field() -> String {
    "externeId".into()
}

/// The documented default (`docs/plugins/vmh-webhooks.md`): EspoCRM's person
/// and address attributes onto Advoware's party fields.
pub fn default_mapping() -> BTreeMap<String, Source> {
    let one = |a: &str| Source::One(a.to_owned());
    BTreeMap::from([
        // A person's surname, or a company's name.
        (
            "name".to_owned(),
            Source::FirstOf(vec!["lastName".into(), "name".into()]),
        ),
        ("vorname".to_owned(), one("firstName")),
        ("anrede".to_owned(), one("salutationName")),
        ("email".to_owned(), one("emailAddress")),
        ("telefon".to_owned(), one("phoneNumber")),
        ("strasse".to_owned(), one("addressStreet")),
        ("plz".to_owned(), one("addressPostalCode")),
        ("ort".to_owned(), one("addressCity")),
        ("land".to_owned(), one("addressCountry")),
        ("rolle".to_owned(), one("cRolle")),
    ])
}

impl Settings {
    pub fn load() -> Result<Self, Error> {
        let settings: Settings = config::load()?;
        for action in settings.webhooks.keys() {
            if Action::parse(action).is_none() {
                return Err(Error::Internal(format!(
                    "plugin setting `webhooks.{action}`: not an action (create, update, delete)"
                )));
            }
        }
        if settings.mapping.is_empty() {
            return Err(Error::Internal("plugin setting `mapping` is empty".into()));
        }
        Ok(settings)
    }

    pub fn stuck_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stuck_after_s.max(1))
    }

    /// The account's webhook that signs `action`'s deliveries.
    pub fn webhook(&self, action: Action) -> String {
        self.webhooks
            .get(action.as_str())
            .cloned()
            .unwrap_or_else(|| format!("{}.{}", self.entity, action.as_str()))
    }
}
