//! `metrics`: a plugin's own counters and histograms on `/metrics`, labelled
//! with its tenant and name so that no plugin can pass for another. Bad names
//! and labels are dropped with a warning: figures never fail a guest's call.

use bitbylaw_bindings::metrics::Host;

use super::HostState;

/// Labels a plugin may add beside `tenant`, `plugin` and `name`.
const MAX_LABELS: usize = 4;
const MAX_NAME: usize = 64;
const MAX_VALUE: usize = 128;
/// Labels the host sets itself (`le` is the histogram's).
const RESERVED: [&str; 4] = ["tenant", "plugin", "name", "le"];

impl Host for HostState {
    fn counter_add(&mut self, name: String, labels: Vec<(String, String)>, value: u64) {
        let result =
            series(&self.plugin.tenant, &self.plugin.name, &name, labels).and_then(|labels| {
                self.plugin
                    .metrics
                    .plugin_counter(labels, value)
                    .map_err(|e| e.0)
            });
        self.warn_refused(&name, result);
    }

    fn observe(&mut self, name: String, labels: Vec<(String, String)>, value: f64) {
        let result =
            series(&self.plugin.tenant, &self.plugin.name, &name, labels).and_then(|labels| {
                self.plugin
                    .metrics
                    .plugin_observe(labels, value)
                    .map_err(|e| e.0)
            });
        self.warn_refused(&name, result);
    }
}

impl HostState {
    fn warn_refused(&self, name: &str, result: Result<(), String>) {
        if let Err(why) = result {
            tracing::warn!(
                tenant = %self.plugin.tenant,
                plugin = %self.plugin.name,
                metric = %name.chars().take(MAX_NAME).collect::<String>(),
                "plugin metric dropped: {why}"
            );
        }
    }
}

/// `[a-z][a-z0-9_]*`, at most [`MAX_NAME`] long.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The label set of one series: the host's labels first, the plugin's sorted.
pub fn series(
    tenant: &str,
    plugin: &str,
    name: &str,
    mut labels: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    if !valid_name(name) {
        return Err("a metric name is [a-z][a-z0-9_]*, at most 64 characters".into());
    }
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    labels.sort();
    for pair in labels.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!("label `{}` is given twice", pair[0].0));
        }
    }
    for (key, value) in &labels {
        if !valid_name(key) || RESERVED.contains(&key.as_str()) {
            return Err(format!(
                "label `{key}` is not [a-z][a-z0-9_]* or is one of the host's ({})",
                RESERVED.join(", ")
            ));
        }
        if value.len() > MAX_VALUE {
            return Err(format!(
                "the value of label `{key}` is over {MAX_VALUE} bytes"
            ));
        }
    }
    let mut series = vec![
        ("tenant".to_owned(), tenant.to_owned()),
        ("plugin".to_owned(), plugin.to_owned()),
        ("name".to_owned(), name.to_owned()),
    ];
    series.extend(labels);
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_host_labels_come_first_and_the_plugins_sorted() {
        let series = series(
            "firm-a",
            "sync",
            "runs",
            pairs(&[("side", "g"), ("kind", "x")]),
        )
        .unwrap();
        assert_eq!(
            series,
            pairs(&[
                ("tenant", "firm-a"),
                ("plugin", "sync"),
                ("name", "runs"),
                ("kind", "x"),
                ("side", "g")
            ])
        );
    }

    #[test]
    fn a_plugin_cannot_pass_for_another_or_flood_the_labels() {
        for (name, labels) in [
            ("Runs", vec![]),
            ("runs-total", vec![]),
            ("", vec![]),
            ("runs", pairs(&[("tenant", "firm-b")])),
            ("runs", pairs(&[("plugin", "other")])),
            ("runs", pairs(&[("le", "1")])),
            ("runs", pairs(&[("a", "1"), ("a", "2")])),
            (
                "runs",
                pairs(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")]),
            ),
        ] {
            assert!(
                series("firm-a", "sync", name, labels.clone()).is_err(),
                "{name} {labels:?}"
            );
        }
        let long = "x".repeat(MAX_VALUE + 1);
        assert!(series("firm-a", "sync", "runs", vec![("k".into(), long)]).is_err());
    }
}
