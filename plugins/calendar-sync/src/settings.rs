//! The tenant's settings (`[plugins.calendar-sync.config]`), all but the
//! mailbox map optional.

use std::collections::BTreeMap;

use bitbylaw_sdk::{Error, config};
use serde::Deserialize;

use crate::model::Visibility;

/// Who wins when both sides changed the same appointment since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Advoware is the system of record (the default).
    AdvowareWins,
    /// The side changed last (`zuletztGeaendertAm` against Google's `updated`).
    LastChangeWins,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Employee short code (`kuerzel`) → Google mailbox. Employees without
    /// one are not synced.
    pub mailboxes: BTreeMap<String, String>,
    /// Sync only these employees; default: every employee Advoware lists
    /// that has a mailbox.
    #[serde(default)]
    pub employees: Option<Vec<String>>,
    /// Name of the calendar created in each mailbox.
    #[serde(default = "default_calendar_name")]
    pub calendar_name: String,
    /// Titles, notes and places in Google; `false`: only a neutral title and busy time.
    #[serde(default = "yes")]
    pub full_content: bool,
    /// The title Google shows when `full_content` is off.
    #[serde(default = "default_neutral_title")]
    pub neutral_title: String,
    /// Changes made in Google are written to Advoware (off: put back in Google).
    #[serde(default)]
    pub write_to_advoware: bool,
    #[serde(default = "default_conflict")]
    pub conflict_policy: ConflictPolicy,
    /// Advoware has no change feed: this window is read every run.
    #[serde(default = "default_days_back")]
    pub days_back: u32,
    #[serde(default = "default_days_ahead")]
    pub days_ahead: u32,
    /// A run that would delete more than this share of the linked events
    /// stops and deletes nothing...
    #[serde(default = "default_delete_share")]
    pub max_delete_share: f64,
    /// ...unless it deletes no more than this many.
    #[serde(default = "default_delete_floor")]
    pub max_delete_floor: usize,
    /// Part of every Google event id the sync makes (`sha256(namespace:frNr)`):
    /// set it to the tenant's id when two tenants could share a calendar.
    #[serde(default = "default_namespace")]
    pub id_namespace: String,
    /// How long an employee's lock outlives a run that died (it is extended
    /// while a run lasts).
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_s: u64,
}

fn default_lock_ttl() -> u64 {
    300
}

fn default_calendar_name() -> String {
    "Advoware".into()
}

fn default_neutral_title() -> String {
    "Termin".into()
}

fn default_conflict() -> ConflictPolicy {
    ConflictPolicy::AdvowareWins
}

fn default_days_back() -> u32 {
    30
}

fn default_days_ahead() -> u32 {
    365
}

fn default_delete_share() -> f64 {
    0.5
}

fn default_delete_floor() -> usize {
    10
}

fn default_namespace() -> String {
    "bitbylaw".into()
}

fn yes() -> bool {
    true
}

impl Settings {
    pub fn load() -> Result<Self, Error> {
        let settings: Settings = config::load()?;
        if !(0.0..=1.0).contains(&settings.max_delete_share) {
            return Err(Error::Internal(
                "plugin setting `max_delete_share` must be between 0 and 1".into(),
            ));
        }
        settings.normalised()
    }

    /// Employee codes in their one form ([`kuerzel`]) everywhere, so `sb` in
    /// the settings and `SB` in a route are one employee with one lock and
    /// one state.
    fn normalised(mut self) -> Result<Self, Error> {
        let mut mailboxes = BTreeMap::new();
        for (code, mailbox) in std::mem::take(&mut self.mailboxes) {
            if mailboxes.insert(kuerzel(&code), mailbox).is_some() {
                return Err(Error::Internal(format!(
                    "plugin setting `mailboxes` names employee `{}` twice (codes compare without case)",
                    kuerzel(&code)
                )));
            }
        }
        self.mailboxes = mailboxes;
        if let Some(employees) = &mut self.employees {
            for code in employees.iter_mut() {
                *code = kuerzel(code);
            }
            employees.sort();
            employees.dedup();
        }
        Ok(self)
    }

    pub fn lock_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_ttl_s.max(1))
    }

    pub fn visibility(&self, full_content: bool) -> Visibility {
        if full_content {
            Visibility::Full
        } else {
            Visibility::Neutral(self.neutral_title.clone())
        }
    }

    /// The mailbox of `code` (in any case).
    pub fn mailbox(&self, code: &str) -> Option<&str> {
        self.mailboxes.get(&kuerzel(code)).map(String::as_str)
    }
}

/// An employee code in its one form: trimmed, upper case.
pub fn kuerzel(code: &str) -> String {
    code.trim().to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employee_codes_have_one_form_and_a_code_twice_is_refused() {
        let settings: Settings = serde_json::from_value(serde_json::json!({
            "mailboxes": { "sb": "sabine@kanzlei.example", "MK ": "markus@kanzlei.example" },
            "employees": ["sb", "SB", "mk"],
        }))
        .unwrap();
        let settings = settings.normalised().unwrap();
        assert_eq!(settings.mailboxes.keys().collect::<Vec<_>>(), ["MK", "SB"]);
        assert_eq!(
            settings.employees.as_deref(),
            Some(&["MK".to_owned(), "SB".to_owned()][..])
        );
        assert_eq!(settings.mailbox("Sb"), Some("sabine@kanzlei.example"));

        let twice: Settings = serde_json::from_value(serde_json::json!({
            "mailboxes": { "sb": "a@kanzlei.example", "SB": "b@kanzlei.example" },
        }))
        .unwrap();
        let error = twice.normalised().unwrap_err();
        assert!(error.message().contains("SB"), "{error}");
    }
}
