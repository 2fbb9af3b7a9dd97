//! `log`: guest log lines become `tracing` events carrying tenant, plugin and request id.

use super::generated::bitbylaw::plugin::log::{Host, Level};
use crate::runtime::HostState;

/// Longest message kept; a guest must not flood the log with one line.
const MAX_MESSAGE: usize = 8 * 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let message = truncate(message, MAX_MESSAGE);
        let fields = fields
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(" ");
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
