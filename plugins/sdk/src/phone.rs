//! Phone numbers as the firm's systems should keep them: E.164
//! (`+491711234567`), read from whatever people and phone systems write
//! (`0171 1234567`, `+49 (0) 30 1234567`, `0049 30 …`), German unless the
//! number says otherwise. Leads keep their numbers so, and the telephony
//! plugin looks callers up so: one rule, or a number written one way is not
//! found when asked for the other.

use phonenumber::country::Id;
use phonenumber::{Mode, PhoneNumber};

fn parse(raw: &str) -> Option<PhoneNumber> {
    phonenumber::parse(Some(Id::DE), raw.trim())
        .ok()
        .filter(|number| number.is_valid())
}

/// The number in E.164, or `None` when it is not a valid number.
pub fn e164(raw: &str) -> Option<String> {
    parse(raw).map(|number| number.format().mode(Mode::E164).to_string())
}

/// A German (or international) number in E.164 and whether it is valid; an
/// invalid one comes back as given (trimmed), to be kept and flagged, never dropped.
pub fn normalise(raw: &str) -> (String, bool) {
    match e164(raw) {
        Some(number) => (number, true),
        None => (raw.trim().to_owned(), false),
    }
}

/// How a German would dial it at home: `01711234567` for a German number,
/// `0043…` for another country's. For systems that keep numbers so.
pub fn national(raw: &str) -> Option<String> {
    let number = parse(raw)?;
    let digits = number.national().value().to_string();
    Some(match number.code().value() {
        49 => format!("0{digits}"),
        country => format!("00{country}{digits}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's numbers (`upstreams.md`, WordPress lead forms), and
    /// the ways a PBX hands a caller's number over.
    #[test]
    fn german_numbers_in_every_format_become_e164() {
        for (given, e164) in [
            ("030 1234567", "+49301234567"),
            ("+49 (0) 30 1234567", "+49301234567"),
            ("0049 30 1234567", "+49301234567"),
            ("0171 1234567", "+491711234567"),
            ("01711234567", "+491711234567"),
            ("+491711234567", "+491711234567"),
            ("0049171/123-4567", "+491711234567"),
            ("+43 1 5880", "+4315880"),
        ] {
            assert_eq!(normalise(given), (e164.to_owned(), true), "{given}");
        }
        assert_eq!(normalise("110"), ("110".to_owned(), false));
        assert_eq!(
            normalise(" bitte anrufen "),
            ("bitte anrufen".to_owned(), false)
        );
        assert_eq!(e164("anonymous"), None);
    }

    #[test]
    fn national_form_is_how_it_is_dialled_in_germany() {
        assert_eq!(national("+491711234567").as_deref(), Some("01711234567"));
        assert_eq!(national("+4315880").as_deref(), Some("004315880"));
        assert_eq!(national("110"), None);
    }
}
