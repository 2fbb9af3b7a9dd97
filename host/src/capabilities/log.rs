//! `log`: guest log lines become `tracing` events carrying tenant, plugin and request id.

use super::HostState;
use bitbylaw_bindings::log::{Host, Level};

/// Longest message kept; a guest must not flood the log with one line.
const MAX_MESSAGE: usize = 8 * 1024;
/// Fields kept per line, and the longest key and value of each.
const MAX_FIELDS: usize = 32;
const MAX_FIELD_KEY: usize = 64;
const MAX_FIELD_VALUE: usize = 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let message = escape(&truncate(message, MAX_MESSAGE));
        let fields = render_fields(fields);
        let tenant = self.plugin.tenant.as_str();
        let plugin = self.plugin.name.as_str();
        let request_id = self.call.request_id.as_str();
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "plugin", $level, tenant, plugin, request_id, fields, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

/// A guest's fields as `key=value` pairs: at most [`MAX_FIELDS`], each cut to
/// size and escaped, and how many were dropped.
fn render_fields(fields: Vec<(String, String)>) -> String {
    let dropped = fields.len().saturating_sub(MAX_FIELDS);
    let mut rendered = fields
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(key, value)| {
            let key = escape(&truncate(key, MAX_FIELD_KEY));
            let value = escape(&truncate(value, MAX_FIELD_VALUE));
            format!("{key}={value}")
        })
        .collect::<Vec<_>>();
    if dropped > 0 {
        rendered.push(format!("fields_dropped={dropped}"));
    }
    rendered.join(" ")
}

/// Control characters (newlines above all) as escapes: a plugin's text must
/// not start a line of its own and pass for one of the host's in the human
/// log format.
fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_capped_in_number_and_size() {
        let many = (0..100)
            .map(|n| (format!("k{n}"), "v".repeat(5000)))
            .collect::<Vec<_>>();
        let rendered = render_fields(many);
        assert_eq!(
            rendered.matches('=').count(),
            MAX_FIELDS + 1,
            "32 fields and the note"
        );
        assert!(
            rendered.ends_with("fields_dropped=68"),
            "{}",
            &rendered[rendered.len() - 40..]
        );
        assert!(rendered.len() < MAX_FIELDS * (MAX_FIELD_KEY + MAX_FIELD_VALUE + 8) + 32);
    }

    #[test]
    fn a_plugin_cannot_forge_a_log_line() {
        assert_eq!(
            escape("ok\n2026-12-01T00:00:00Z INFO bitbylaw: admin login\r"),
            "ok\\n2026-12-01T00:00:00Z INFO bitbylaw: admin login\\r"
        );
        assert_eq!(escape("plain text"), "plain text");
        assert_eq!(escape("bell\u{7}"), "bell\\u{7}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let cut = truncate("äöü".repeat(10), 5);
        assert_eq!(cut, "äö…");
    }
}
