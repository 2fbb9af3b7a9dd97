//! The plugin's own figures on the host's `/metrics`: counters and
//! histograms, labelled by the host with tenant and plugin. Names and label
//! keys are `[a-z][a-z0-9_]*`; at most 4 labels. What the host refuses is
//! dropped with a warning in its log, never an error here.
//!
//! ```ignore
//! metrics::counter_add("notes_saved", &[("kind", "draft")], 1);
//! metrics::observe("import_seconds", &[], elapsed.as_secs_f64());
//! ```

use crate::bindings::bitbylaw::plugin::metrics as wit;

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Adds `value` to the counter `name` (`bitbylaw_plugin_counter_total{name=…}`).
pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
    wit::counter_add(name, &owned(labels), value);
}

/// Records one observation in the histogram `name` (`bitbylaw_plugin_histogram{name=…}`).
pub fn observe(name: &str, labels: &[(&str, &str)], value: f64) {
    wit::observe(name, &owned(labels), value);
}
