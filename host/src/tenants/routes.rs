//! A tenant's routing table, built from its plugins' self-descriptions and the
//! tenant config (prefix, disabled routes). Matching uses `matchit`, the router
//! under axum, with the same `{param}` and `{*rest}` syntax.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::runtime::LoadedPlugin;

/// Why a plugin's routes cannot be served as declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("plugin `{plugin}` declares route with bad method `{method}`")]
    BadMethod { plugin: String, method: String },
    #[error("plugin `{plugin}` declares route `{path}` not starting with `/`")]
    BadPath { plugin: String, path: String },
    #[error("plugin `{plugin}` route `{pattern}`: {reason}")]
    Unroutable {
        plugin: String,
        pattern: String,
        reason: String,
    },
    #[error("route `{route}` of plugin `{plugin}` is already served")]
    Taken { plugin: String, route: String },
}

#[derive(Default)]
pub struct RouteTable {
    router: matchit::Router<usize>,
    slots: Vec<Vec<RouteEntry>>,
    by_pattern: HashMap<String, usize>,
}

pub struct RouteEntry {
    /// `None` serves every method.
    pub method: Option<Method>,
    pub plugin: Arc<LoadedPlugin>,
    /// The pattern as the plugin declared it (without prefix).
    pub route: String,
    pub prefix: String,
    /// The pattern as served: prefix and route.
    pub pattern: String,
    /// Requests served on this route, by status, and how long they took.
    pub metrics: crate::metrics::RouteMetrics,
}

pub enum RouteMatch<'a> {
    Found {
        entry: &'a RouteEntry,
        params: Vec<(String, String)>,
    },
    MethodNotAllowed(Vec<String>),
    NotFound,
}

impl RouteTable {
    /// Adds every route of `plugin` under `prefix`, except the disabled ones
    /// (`"METHOD /path"` or `"/path"`). Overlaps between plugins are errors.
    pub fn add_plugin(
        &mut self,
        plugin_name: &str,
        plugin: &Arc<LoadedPlugin>,
        prefix: &str,
        disabled: &[String],
    ) -> Result<(), RouteError> {
        for route in &plugin.description.routes {
            let method = parse_method(&route.method).ok_or_else(|| RouteError::BadMethod {
                plugin: plugin_name.to_owned(),
                method: route.method.clone(),
            })?;
            if !route.path.starts_with('/') {
                return Err(RouteError::BadPath {
                    plugin: plugin_name.to_owned(),
                    path: route.path.clone(),
                });
            }
            let method_text = method.as_ref().map(Method::as_str).unwrap_or("*");
            let is_disabled = disabled.iter().any(|rule| {
                rule == &route.path || rule == &format!("{method_text} {}", route.path)
            });
            if is_disabled {
                continue;
            }
            let pattern = format!("{prefix}{}", route.path);
            let slot = match self.by_pattern.get(&pattern) {
                Some(&slot) => slot,
                None => {
                    let slot = self.slots.len();
                    self.router.insert(pattern.clone(), slot).map_err(|e| {
                        RouteError::Unroutable {
                            plugin: plugin_name.to_owned(),
                            pattern: pattern.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    self.slots.push(Vec::new());
                    self.by_pattern.insert(pattern.clone(), slot);
                    slot
                }
            };
            let entries = &mut self.slots[slot];
            let overlaps = entries
                .iter()
                .any(|entry| entry.method.is_none() || method.is_none() || entry.method == method);
            if overlaps {
                return Err(RouteError::Taken {
                    plugin: plugin_name.to_owned(),
                    route: format!("{method_text} {pattern}"),
                });
            }
            let context = plugin.context();
            entries.push(RouteEntry {
                method,
                plugin: plugin.clone(),
                route: route.path.clone(),
                prefix: prefix.to_owned(),
                pattern: pattern.clone(),
                metrics: context
                    .metrics
                    .route(&context.tenant, &context.name, &route.path),
            });
        }
        Ok(())
    }

    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Ok(matched) = self.router.at(path) else {
            return RouteMatch::NotFound;
        };
        let Some(entries) = self.slots.get(*matched.value) else {
            return RouteMatch::NotFound;
        };
        let entry = entries
            .iter()
            .find(|entry| entry.method.as_ref() == Some(method))
            .or_else(|| entries.iter().find(|entry| entry.method.is_none()));
        match entry {
            Some(entry) => RouteMatch::Found {
                entry,
                params: matched
                    .params
                    .iter()
                    .map(|(key, value)| (key.to_owned(), decode(value)))
                    .collect(),
            },
            None => RouteMatch::MethodNotAllowed(
                entries
                    .iter()
                    .filter_map(|entry| entry.method.as_ref().map(|m| m.to_string()))
                    .collect(),
            ),
        }
    }

    /// Every route entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry> {
        self.slots.iter().flatten()
    }

    /// `(method, pattern, plugin)` of every route, for `/ready` and operators.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        let mut routes: Vec<_> = self
            .by_pattern
            .iter()
            .flat_map(|(pattern, &slot)| {
                self.slots[slot].iter().map(move |entry| {
                    (
                        entry
                            .method
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "*".into()),
                        pattern.clone(),
                        entry.plugin.context().name.clone(),
                    )
                })
            })
            .collect();
        routes.sort();
        routes
    }
}

fn parse_method(text: &str) -> Option<Option<Method>> {
    if text == "*" {
        return Some(None);
    }
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .ok()
        .map(Some)
}

fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}
