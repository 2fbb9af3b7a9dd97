//! A form plugin's delivery, read into one flat list of fields.
//!
//! The shapes WordPress sends (`docs/plugins/vermieterhelden.md`):
//! - Contact Form 7 through "CF7 to Webhook": flat JSON, one key per field
//!   (`your-name`), checkboxes as arrays;
//! - Elementor Pro, form-encoded: field labels as keys plus `form_id` and
//!   `form_name` ("simple"), or `fields[<id>][value]`, `fields[<id>][title]`,
//!   `form[id]`, `form[name]`, `meta[page_url][value]` ("advanced data");
//! - Gravity Forms: the entry object, JSON or form-encoded, numeric field ids
//!   (`"1"`, `"3.3"`) plus `form_id` and `source_url`.
//!
//! Every shape becomes `field → text` (arrays joined with `, `), with the
//! form's id and the page it was sent from when the payload names them.

use std::collections::BTreeMap;

use serde_json::Value;

/// The fields of one submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submission {
    pub fields: BTreeMap<String, String>,
    /// The form's id as the form plugin names it (`form_id`, `form[id]`).
    pub form_id: Option<String>,
    /// The page the form was sent from.
    pub page: Option<String>,
}

/// Why a body cannot be read: the 400's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// Reads a body by its content type (JSON, or form-encoded).
pub fn read(content_type: Option<&str>, body: &[u8]) -> Result<Submission, Unreadable> {
    let media = content_type
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Unreadable("the body is empty".into()));
    }
    match media.as_str() {
        "application/json" | "text/json" => json(body),
        "application/x-www-form-urlencoded" => Ok(form(body)),
        "" => {
            // Some senders leave the type out: JSON if it parses as an object.
            json(body).or_else(|_| Ok(form(body)))
        }
        other => Err(Unreadable(format!(
            "content type `{other}` is neither application/json nor application/x-www-form-urlencoded"
        ))),
    }
}

fn json(body: &[u8]) -> Result<Submission, Unreadable> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Unreadable(format!("the body is not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Unreadable(
            "the body is JSON but not an object of form fields".into(),
        ));
    };
    let mut pairs = Vec::new();
    for (key, value) in object {
        flatten(&key, &value, &mut pairs);
    }
    Ok(collect(pairs))
}

/// Nested JSON (Elementor's advanced data sent as JSON) as bracketed keys,
/// the way the same data arrives form-encoded.
fn flatten(key: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(text) => pairs.push((key.to_owned(), text.clone())),
        Value::Bool(flag) => pairs.push((key.to_owned(), flag.to_string())),
        Value::Number(number) => pairs.push((key.to_owned(), number.to_string())),
        Value::Array(items) => {
            let texts: Vec<String> = items
                .iter()
                .filter_map(|item| match item {
                    Value::String(text) => Some(text.clone()),
                    Value::Number(number) => Some(number.to_string()),
                    Value::Bool(flag) => Some(flag.to_string()),
                    _ => None,
                })
                .collect();
            pairs.push((key.to_owned(), texts.join(", ")));
        }
        Value::Object(object) => {
            for (inner, value) in object {
                flatten(&format!("{key}[{inner}]"), value, pairs);
            }
        }
    }
}

fn form(body: &[u8]) -> Submission {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        // Checkboxes come as `name[]=a&name[]=b` (or repeated keys): one field.
        let key = key.strip_suffix("[]").unwrap_or(&key).to_owned();
        match pairs.iter_mut().find(|(existing, _)| *existing == key) {
            Some((_, joined)) if !value.is_empty() => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            Some(_) => {}
            None => pairs.push((key, value.into_owned())),
        }
    }
    collect(pairs)
}

/// Sorts the pairs into fields and the form's own data (Elementor's advanced
/// keys become their field id, and the title an alias of the same value).
fn collect(pairs: Vec<(String, String)>) -> Submission {
    let mut submission = Submission::default();
    let mut titles: Vec<(String, String)> = Vec::new();
    for (key, value) in pairs {
        if let Some(rest) = key.strip_prefix("fields[") {
            // fields[<id>][value|raw_value|title|type|required]
            let Some((id, part)) = rest.split_once("][") else {
                continue;
            };
            match part.trim_end_matches(']') {
                "value" => {
                    submission.fields.insert(id.to_owned(), value);
                }
                "title" if !value.is_empty() => titles.push((id.to_owned(), value)),
                _ => {}
            }
            continue;
        }
        match key.as_str() {
            "form_id" | "form[id]" => submission.form_id = Some(value),
            "form_name" | "form[name]" => {
                submission.fields.insert("form_name".into(), value);
            }
            "source_url" | "page_url" | "meta[page_url][value]" => submission.page = Some(value),
            key if key.starts_with("meta[") || key.starts_with("form[") => {}
            _ => {
                submission.fields.insert(key, value);
            }
        }
    }
    for (id, title) in titles {
        if let Some(value) = submission.fields.get(&id).cloned() {
            submission.fields.entry(title).or_insert(value);
        }
    }
    submission
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(submission: &'a Submission, key: &str) -> Option<&'a str> {
        submission.fields.get(key).map(String::as_str)
    }

    #[test]
    fn contact_form_7_json_is_flat_with_checkboxes_joined() {
        let body = br#"{"your-name":"Max Mustermann","your-email":"max@example.de","interessen":["Miete","Kauf"],"acceptance":"1"}"#;
        let read = read(Some("application/json; charset=utf-8"), body).unwrap();
        assert_eq!(field(&read, "your-name"), Some("Max Mustermann"));
        assert_eq!(field(&read, "interessen"), Some("Miete, Kauf"));
        assert_eq!(read.form_id, None);
    }

    #[test]
    fn elementor_simple_mode_keys_are_labels() {
        let body = b"Name=Max+Mustermann&E-Mail=max%40example.de&Telefon=030+1234567&form_id=a1b2c3d&form_name=Mieteranfrage";
        let read = read(Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(field(&read, "Name"), Some("Max Mustermann"));
        assert_eq!(field(&read, "E-Mail"), Some("max@example.de"));
        assert_eq!(read.form_id.as_deref(), Some("a1b2c3d"));
        assert_eq!(field(&read, "form_name"), Some("Mieteranfrage"));
    }

    #[test]
    fn elementor_advanced_mode_gives_ids_titles_and_the_page() {
        let body = b"form%5Bid%5D=a1b2c3d&form%5Bname%5D=Mieteranfrage\
&fields%5Bname%5D%5Bid%5D=name&fields%5Bname%5D%5Btitle%5D=Name&fields%5Bname%5D%5Bvalue%5D=Max+Mustermann\
&fields%5Bemail%5D%5Bid%5D=email&fields%5Bemail%5D%5Btitle%5D=E-Mail&fields%5Bemail%5D%5Bvalue%5D=max%40example.de\
&meta%5Bpage_url%5D%5Btitle%5D=Page+URL&meta%5Bpage_url%5D%5Bvalue%5D=https%3A%2F%2Fvermieterhelden.de%2Fmieter%2F";
        let read = read(Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(field(&read, "name"), Some("Max Mustermann"));
        assert_eq!(field(&read, "Name"), Some("Max Mustermann"));
        assert_eq!(field(&read, "E-Mail"), Some("max@example.de"));
        assert_eq!(read.form_id.as_deref(), Some("a1b2c3d"));
        assert_eq!(
            read.page.as_deref(),
            Some("https://vermieterhelden.de/mieter/")
        );
        assert!(read.fields.keys().all(|key| !key.contains('[')), "{read:?}");
    }

    #[test]
    fn gravity_forms_entries_have_numeric_ids_in_json_and_form() {
        let json = br#"{"id":"118","form_id":"3","source_url":"https://vermieterhelden.de/kontakt/","1.3":"Max","1.6":"Mustermann","2":"max@example.de","4":null}"#;
        let read = read(Some("application/json"), json).unwrap();
        assert_eq!(field(&read, "1.3"), Some("Max"));
        assert_eq!(field(&read, "2"), Some("max@example.de"));
        assert_eq!(read.form_id.as_deref(), Some("3"));
        assert_eq!(
            read.page.as_deref(),
            Some("https://vermieterhelden.de/kontakt/")
        );
        let form = b"id=118&form_id=3&1.3=Max&1.6=Mustermann&2=max%40example.de";
        let read_form = self::read(Some("application/x-www-form-urlencoded"), form).unwrap();
        assert_eq!(read_form.fields.get("1.6"), read.fields.get("1.6"));
    }

    #[test]
    fn unreadable_bodies_say_why() {
        let not_json = read(Some("application/json"), b"{name: x}").unwrap_err();
        assert!(not_json.0.contains("not JSON"), "{not_json:?}");
        let list = read(Some("application/json"), b"[1,2]").unwrap_err();
        assert!(list.0.contains("not an object"), "{list:?}");
        let xml = read(Some("text/xml"), b"<a/>").unwrap_err();
        assert!(xml.0.contains("text/xml"), "{xml:?}");
        assert!(read(None, b"  ").unwrap_err().0.contains("empty"));
    }
}
