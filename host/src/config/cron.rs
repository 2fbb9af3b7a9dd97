//! Cron expressions, parsed when the config is read: five fields, or six with
//! seconds first, as `croner` reads them.

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

/// Parses a cron expression with five or six fields (seconds first when six).
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| format!("invalid cron expression `{expression}`: {e}"))
}

/// A cron expression as written, and parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronExpr {
    pub text: String,
    pub cron: Cron,
}

impl TryFrom<String> for CronExpr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let cron = parse_cron(&text)?;
        Ok(Self { text, cron })
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}
