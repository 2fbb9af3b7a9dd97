//! The host's log lines in this test process, kept for tests to read.

use std::sync::{Arc, Mutex};

/// Everything the host logs in this process, as JSON lines. The subscriber
/// is global: the first [`LogCapture::install`] of a test binary sets it up
/// (unless the binary set its own first; then no lines are captured).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

/// One log line of a plugin (target `plugin`) or of the host about it.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// `TRACE` … `ERROR`.
    pub level: String,
    /// `plugin` for the plugin's own lines; the host's module otherwise.
    pub target: String,
    pub message: String,
    /// Every field of the line (`tenant`, `plugin`, `request_id`, the plugin's fields).
    pub fields: serde_json::Value,
}

impl LogCapture {
    /// The process's capture at level `info` and above, in JSON.
    pub fn install() -> Self {
        Self::install_with(bitbylaw::config::LogFormat::Json, "info")
    }

    /// The process's capture with this format and filter; every caller of a
    /// test binary must ask for the same (the first one sets it up).
    pub fn install_with(format: bitbylaw::config::LogFormat, filter: &str) -> Self {
        static INSTALLED: std::sync::OnceLock<(bitbylaw::config::LogFormat, String, LogCapture)> =
            std::sync::OnceLock::new();
        let (installed_format, installed_filter, capture) = INSTALLED.get_or_init(|| {
            let capture = Self::default();
            let writer = capture.clone();
            bitbylaw::telemetry::init_with_writer(format, filter, move || writer.clone());
            (format, filter.to_owned(), capture)
        });
        assert!(
            *installed_format == format && installed_filter == filter,
            "one log capture per test binary: {installed_format:?} {installed_filter} was installed first"
        );
        capture.clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }

    /// Each line as JSON (for `LogFormat::Json`); a line that is not JSON
    /// comes as a JSON string, for a test to see and refuse.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::Value::String(line.to_owned()))
            })
            .collect()
    }

    /// The lines that name tenant `tenant`.
    pub fn lines_of(&self, tenant: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|line| line["fields"]["tenant"] == tenant)
            .map(|line| LogLine {
                level: line["level"].as_str().unwrap_or_default().to_owned(),
                target: line["target"].as_str().unwrap_or_default().to_owned(),
                message: line["fields"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                fields: line["fields"].clone(),
            })
            .collect()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
