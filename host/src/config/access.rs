//! Which routes a credential may call. A webhook sender's key travels in the
//! query string (EspoCRM, WordPress and 3CX cannot set headers), so it leaks
//! more easily than the firm's own: it should open the webhook routes, not the
//! tenant's whole API.

use std::sync::Arc;

use serde::Deserialize;

use super::SecretRef;

/// One allowed route: `"POST /vmh/webhook/*"` or `"/vmh/webhook/beteiligte/create"`.
/// The path is a route pattern as served (with the tenant's prefix, as the
/// plugin declared it: `/hello/{name}`); a trailing `*` allows every route
/// starting with what comes before it. Without a method, every method.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RouteRule {
    method: Option<String>,
    path: String,
    prefix: bool,
}

impl TryFrom<String> for RouteRule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (method, path) = match text.split_once(' ') {
            Some((method, path)) => (Some(method.to_ascii_uppercase()), path.trim()),
            None => (None, text.as_str()),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "`{text}`: a route rule is `/path`, `/prefix/*` or `METHOD /path`"
            ));
        }
        let (path, prefix) = match path.strip_suffix('*') {
            Some(start) => (start.to_owned(), true),
            None => (path.to_owned(), false),
        };
        Ok(Self {
            method,
            path,
            prefix,
        })
    }
}

impl RouteRule {
    /// Whether `method` on the served route `pattern` is allowed by this rule.
    pub fn allows(&self, method: &str, pattern: &str) -> bool {
        let method_ok = self.method.as_deref().is_none_or(|m| m == method);
        let path_ok = if self.prefix {
            pattern.starts_with(&self.path)
        } else {
            pattern == self.path
        };
        method_ok && path_ok
    }
}

/// The routes a credential may call: all of the tenant's (`None`), or those
/// some rule allows.
pub type Routes = Option<Arc<[RouteRule]>>;

/// Whether `routes` allows `method` on `pattern`.
pub fn allowed(routes: &Routes, method: &str, pattern: &str) -> bool {
    routes
        .as_ref()
        .is_none_or(|rules| rules.iter().any(|rule| rule.allows(method, pattern)))
}

/// An entry of `api_keys`: a key for every route, or `{ key = ..., routes = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ApiKeyConfig {
    Any(SecretRef),
    Limited(LimitedKey),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitedKey {
    key: SecretRef,
    routes: Vec<RouteRule>,
}

impl ApiKeyConfig {
    pub fn key(&self) -> &SecretRef {
        match self {
            ApiKeyConfig::Any(key) => key,
            ApiKeyConfig::Limited(limited) => &limited.key,
        }
    }

    pub fn routes(&self) -> Routes {
        match self {
            ApiKeyConfig::Any(_) => None,
            ApiKeyConfig::Limited(limited) => Some(limited.routes.clone().into()),
        }
    }
}

/// An entry of `kong_consumers`: a consumer for every route, or
/// `{ name = ..., routes = [...] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ConsumerConfig {
    Any(String),
    Limited(LimitedConsumer),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitedConsumer {
    name: String,
    routes: Vec<RouteRule>,
}

impl ConsumerConfig {
    pub fn name(&self) -> &str {
        match self {
            ConsumerConfig::Any(name) => name,
            ConsumerConfig::Limited(limited) => &limited.name,
        }
    }

    pub fn routes(&self) -> Routes {
        match self {
            ConsumerConfig::Any(_) => None,
            ConsumerConfig::Limited(limited) => Some(limited.routes.clone().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> RouteRule {
        RouteRule::try_from(text.to_owned()).unwrap()
    }

    #[test]
    fn rules_match_method_and_pattern_or_prefix() {
        let webhook = rule("POST /vmh/webhook/*");
        assert!(webhook.allows("POST", "/vmh/webhook/beteiligte/create"));
        assert!(!webhook.allows("GET", "/vmh/webhook/beteiligte/create"));
        assert!(!webhook.allows("POST", "/advoware/proxy"));
        let exact = rule("/hello/{name}");
        assert!(exact.allows("GET", "/hello/{name}"));
        assert!(exact.allows("DELETE", "/hello/{name}"));
        assert!(!exact.allows("GET", "/hello/notes"));
        assert!(RouteRule::try_from("vmh/*".to_owned()).is_err());
        assert!(allowed(&None, "GET", "/anything"));
        assert!(!allowed(
            &Some(vec![exact].into()),
            "GET",
            "/advoware/proxy"
        ));
    }
}
