//! The tenant's settings (`[plugins.threecx.config]`): who calls new leads,
//! how long a screen pop may take and where it looks, how calls are written
//! into EspoCRM and Advoware, and what happens to recordings.

use bitbylaw_sdk::{Error, config};
use serde::Deserialize;

/// Where a caller is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Espocrm,
    Advoware,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The extension that calls new leads (`lead.qualify`); without it,
    /// leads are not called.
    #[serde(default, deserialize_with = "config::text")]
    pub lead_extension: Option<String>,
    /// How long 3CX lets the destination ring (`makecall`'s `timeout`).
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_s: u32,
    /// An outbound call not answered: a follow-up task in EspoCRM, due this
    /// many hours later, for the lead (and its assigned user).
    #[serde(default = "default_follow_up_hours")]
    pub follow_up_hours: i64,
    #[serde(default)]
    pub lookup: Lookup,
    #[serde(default)]
    pub espocrm: EspoCrm,
    #[serde(default)]
    pub advoware: Advoware,
    #[serde(default)]
    pub journal: Journal,
    #[serde(default)]
    pub recordings: Recordings,
    /// How long a call's sync lock outlives a host that died holding it.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_s: u64,
}

/// The screen pop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The whole lookup answers within this time with what it has: 3CX holds
    /// the ringing phone's screen pop until then.
    #[serde(default = "default_budget")]
    pub budget_ms: u64,
    /// Asked first, listed first; the other gets what time is left.
    #[serde(default = "default_prefer")]
    pub prefer: Source,
    /// The sources asked (default both).
    #[serde(default = "default_sources")]
    pub sources: Vec<Source>,
    /// A complete answer is kept this long (0: not kept); one cut short by
    /// the budget is not kept.
    #[serde(default = "default_cache")]
    pub cache_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EspoCrm {
    /// The entities searched by phone number, in this order.
    #[serde(default = "default_entities")]
    pub entities: Vec<String>,
    /// EspoCRM's address as people open it, for the screen pop's link
    /// (`<ui_url>#Contact/view/<id>`); without it, no link.
    #[serde(default)]
    pub ui_url: Option<String>,
    /// A Call's attribute holding this plugin's key of the call (a text
    /// field the firm adds to `Call`): how a Call created by a host that died
    /// before keeping its id is found again instead of created twice.
    #[serde(default = "default_call_key_attribute")]
    pub call_key_attribute: String,
    /// The entity of follow-up tasks.
    #[serde(default = "default_task_entity")]
    pub task_entity: String,
}

/// Advoware's parties (Beteiligte): nothing public describes the resource,
/// so its path and field names are settings (*assumed* defaults, as the
/// simulator serves them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advoware {
    #[serde(default = "default_party_path")]
    pub party_path: String,
    /// The list's query parameter that finds parties by phone number (E.164).
    #[serde(default = "default_phone_query")]
    pub phone_query: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    #[serde(default = "default_first_name_field")]
    pub first_name_field: String,
    /// A party with a first name is a person (this is the surname); without,
    /// a company or authority (this is its name).
    #[serde(default = "default_name_field")]
    pub name_field: String,
    #[serde(default = "default_email_field")]
    pub email_field: String,
    #[serde(default = "default_phone_field")]
    pub phone_field: String,
    #[serde(default = "default_mobile_field")]
    pub mobile_field: String,
    /// Where a call's note goes (`{id}`: the party's number); empty: no notes.
    #[serde(default = "default_note_path")]
    pub note_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// A report of the same number starting within this many seconds of a
    /// call's end is another segment of it (a transfer), not a new call.
    #[serde(default = "default_transfer_gap")]
    pub transfer_gap_s: i64,
    /// Calls and recordings are kept here this long (EspoCRM and Advoware
    /// keep them for good).
    #[serde(default = "default_keep_days")]
    pub keep_days: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recordings {
    /// Poll 3CX for recordings (the schedule `threecx_recordings`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Recordings asked for per request (3CX pages at 100).
    #[serde(default = "default_page")]
    pub page_size: u32,
    /// Requests per poll at most: the account's budget is shared.
    #[serde(default = "default_pages")]
    pub pages_per_poll: u32,
    /// The host's address as EspoCRM users reach it (through Kong), for the
    /// link to a recording's audio (`<public_url>3cx/recordings/<id>/audio`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// A recording whose call is still unknown after this long is given up
    /// (kept here, listed, not linked).
    #[serde(default = "default_give_up")]
    pub give_up_after_h: i64,
}

fn default_ring_timeout() -> u32 {
    30
}
fn default_follow_up_hours() -> i64 {
    24
}
fn default_budget() -> u64 {
    800
}
fn default_prefer() -> Source {
    Source::Espocrm
}
fn default_sources() -> Vec<Source> {
    vec![Source::Espocrm, Source::Advoware]
}
fn default_cache() -> u64 {
    60
}
fn default_entities() -> Vec<String> {
    ["Contact", "Lead", "Account"].map(String::from).to_vec()
}
fn default_call_key_attribute() -> String {
    "cThreecxCallId".into()
}
fn default_task_entity() -> String {
    "Task".into()
}
fn default_party_path() -> String {
    "Beteiligte".into()
}
fn default_phone_query() -> String {
    "telefon".into()
}
fn default_id_field() -> String {
    "betNr".into()
}
fn default_first_name_field() -> String {
    "vorname".into()
}
fn default_name_field() -> String {
    "name".into()
}
fn default_email_field() -> String {
    "email".into()
}
fn default_phone_field() -> String {
    "telefon".into()
}
fn default_mobile_field() -> String {
    "mobil".into()
}
fn default_note_path() -> String {
    "Beteiligte/{id}/Notizen".into()
}
fn default_transfer_gap() -> i64 {
    10
}
fn default_keep_days() -> u64 {
    90
}
fn default_true() -> bool {
    true
}
fn default_page() -> u32 {
    50
}
fn default_pages() -> u32 {
    4
}
fn default_give_up() -> i64 {
    24
}
fn default_lock_ttl() -> u64 {
    60
}

macro_rules! defaults_from_serde {
    ($($ty:ty),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                serde_json::from_value(serde_json::json!({}))
                    .unwrap_or_else(|_| unreachable!("every field has a default"))
            }
        }
    )*};
}
defaults_from_serde!(Lookup, EspoCrm, Advoware, Journal, Recordings);

impl Settings {
    pub fn load() -> Result<Self, Error> {
        let settings: Settings = config::load()?;
        if settings.recordings.page_size == 0 || settings.recordings.page_size > 100 {
            return Err(Error::Internal(
                "plugin setting `recordings.page_size`: 1 to 100 (3CX pages at 100)".into(),
            ));
        }
        if settings.lookup.sources.is_empty() {
            return Err(Error::Internal(
                "plugin setting `lookup.sources`: name at least one of \"espocrm\", \"advoware\""
                    .into(),
            ));
        }
        Ok(settings)
    }

    /// How long the journal's records live in the store.
    pub fn kept(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(
            self.journal.keep_days.max(1) * 24 * 3600,
        ))
    }

    /// The lookup's sources, the preferred one first.
    pub fn sources(&self) -> Vec<Source> {
        let mut sources = self.lookup.sources.clone();
        sources.sort_by_key(|s| *s != self.lookup.prefer);
        sources.dedup();
        sources
    }
}
