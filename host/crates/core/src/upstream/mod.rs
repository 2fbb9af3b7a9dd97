//! Upstream accounts: a firm's account with an outside system (Advoware,
//! Google, EspoCRM, 3CX), held by the host so its credentials never reach a
//! plugin.
//!
//! A tenant declares each account once (`[upstreams.<name>]` with a `kind`),
//! and grants it to plugins by name (`upstreams = ["<name>"]`). A *kind* is one
//! crate: it parses its settings ([`UpstreamKind::parse`]), opens a client for
//! a tenant ([`AccountSettings::open`]), and serves its WIT interface from a
//! borrowed [`UpstreamCall`] of the calling plugin. What it shares with the
//! other kinds lives here: the [`TokenCache`] (tokens in the tenant's store,
//! fetched once across host instances), [`Recent`] values, the metrics
//! labelled by kind, and for the kinds that pass a plugin's requests through
//! to a REST API, the request, its sending and its errors ([`rest`]).

pub mod endpoint;
mod recent;
pub mod rest;
mod token_cache;

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use reqwest::Url;
use tokio::time::Instant;

pub use recent::Recent;
pub use token_cache::{Issued, TokenCache, TokenError, TokenFailure, reuse_time};

use crate::egress::Egress;
use crate::metrics::{Metrics, UpstreamLabel};
use crate::store::Store;

/// A setting that cannot be used: the key below the account's section (none
/// when the section as a whole is wrong) and what is wrong. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingError {
    pub key: Option<String>,
    pub message: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Reads an account's settings table into a kind's typed settings,
    /// naming the key that is wrong.
    pub fn parse_table<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, Self> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let path = error.path().to_string();
            SettingError {
                key: (path != ".").then_some(path),
                message: error.into_inner().to_string(),
            }
        })
    }
}

/// An http(s) URL that paths are appended to: it ends in `/`, has no query.
pub fn base_url(key: &str, text: &str) -> Result<Url, SettingError> {
    let mut url = http_url(key, text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SettingError::new(
            key,
            format!("`{text}`: a base URL has no query"),
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// An http(s) URL without credentials.
pub fn http_url(key: &str, text: &str) -> Result<Url, SettingError> {
    let url = Url::parse(text)
        .map_err(|e| SettingError::new(key, format!("`{text}` is not a URL: {e}")))?;
    // Credentials first: the other messages print the URL.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SettingError::new(key, "a URL here holds no credentials"));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(SettingError::new(
            key,
            format!("`{url}`: only http and https URLs"),
        ));
    }
    Ok(url)
}

/// How long to wait before retry number `retry` (from 0): `base · 2^retry`,
/// plus up to as much again at random, so the retries of many callers spread
/// out instead of arriving together.
pub fn backoff(base: std::time::Duration, retry: u32) -> std::time::Duration {
    let step = base.saturating_mul(1 << retry.min(16));
    step + step.mul_f64(fastrand::f64())
}

/// The `outcome` label of an upstream request, for
/// `bitbylaw_upstream_requests_total`: the status class (401 on its own), or
/// why no answer came.
pub fn request_outcome(
    answer: &Result<crate::egress::Fetched, crate::egress::FetchError>,
) -> &'static str {
    use crate::egress::FetchError;
    match answer {
        Ok(fetched) => match fetched.status {
            401 => "401",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        Err(FetchError::Timeout) => "timeout",
        Err(FetchError::TooLarge(_)) => "too_large",
        Err(FetchError::Invalid(_) | FetchError::Connection(_)) => "connection",
    }
}

/// One kind of upstream account. Implemented by a unit struct in the kind's
/// crate and listed once in the host (`host/src/upstreams.rs`).
pub trait UpstreamKind: Send + Sync + 'static {
    /// `kind = "<name>"` in the tenant file.
    fn name(&self) -> &'static str;

    /// The WIT interface its plugins import, e.g. `bitbylaw:plugin/advoware`.
    fn interface(&self) -> &'static str;

    /// Parses and checks an account's settings (the section without `kind`).
    /// Secrets are references here; they are read when the account opens.
    fn parse(&self, settings: toml::Table) -> Result<Arc<dyn AccountSettings>, SettingError>;

    /// Serves the kind's WIT interface to plugins, each seeing only its grants.
    fn add_to_linker<T: UpstreamState>(
        linker: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()>
    where
        Self: Sized;
}

/// An account's parsed settings.
pub trait AccountSettings: Send + Sync + fmt::Debug {
    /// Reads the secrets and builds the client one tenant's plugins share.
    fn open(&self, context: &OpenContext<'_>) -> Result<Account, SettingError>;
}

/// What the host lends a kind to open an account for one tenant.
pub struct OpenContext<'a> {
    pub tenant: &'a str,
    /// The account's name in the tenant file.
    pub account: &'a str,
    /// Folder of the tenant file: relative secret files are read from here.
    pub base_dir: &'a Path,
    pub store: &'a Store,
    /// The host's store key prefix.
    pub key_prefix: &'a str,
    pub egress: &'a Egress,
    pub metrics: &'a Metrics,
}

impl OpenContext<'_> {
    /// The metric labels of this account.
    pub fn label(&self, kind: &str) -> UpstreamLabel {
        UpstreamLabel {
            tenant: self.tenant.to_owned(),
            kind: kind.to_owned(),
            account: self.account.to_owned(),
        }
    }

    /// The store scope of the kind's own keys in this tenant (tokens, leases);
    /// keys in it start with the account's name. `@` cannot start a plugin
    /// name, so no plugin shares it.
    pub fn scope(&self, kind: &str) -> crate::store::Scope {
        crate::store::Scope::new(self.key_prefix, self.tenant, &format!("@{kind}"))
    }
}

/// An opened account: the kind's client, shared by the plugins granted it.
pub type Account = Arc<dyn Any + Send + Sync>;

/// The accounts one plugin is granted, settled when the plugin loads.
#[derive(Clone, Default)]
pub struct Grants {
    granted: Vec<Grant>,
}

#[derive(Clone)]
struct Grant {
    kind: &'static str,
    account: String,
    client: Account,
}

impl Grants {
    /// Grants `account` (of `kind`, opened as `client`). A plugin holds at most
    /// one account per kind: the kind's interface names no account.
    pub fn grant(
        &mut self,
        kind: &'static str,
        account: &str,
        client: Account,
    ) -> Result<(), String> {
        if let Some(held) = self.granted.iter().find(|g| g.kind == kind) {
            return Err(format!(
                "accounts `{}` and `{account}` are both of kind `{kind}`; a plugin may be granted one account per kind",
                held.account
            ));
        }
        self.granted.push(Grant {
            kind,
            account: account.to_owned(),
            client,
        });
        Ok(())
    }

    /// The client of type `C` this plugin was granted, if any.
    pub fn client<C: Any + Send + Sync>(&self) -> Option<&C> {
        self.granted
            .iter()
            .find_map(|g| g.client.downcast_ref::<C>())
    }

    /// `(kind, account)` of every grant, for operators.
    pub fn list(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.granted.iter().map(|g| (g.kind, g.account.as_str()))
    }
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

/// The calling plugin as an upstream kind sees it: who it is, which call this
/// is, and what it was granted.
pub struct UpstreamCall<'a> {
    pub tenant: &'a str,
    pub plugin: &'a str,
    pub request_id: &'a str,
    /// Nothing the call starts may run past this.
    pub deadline: Instant,
    pub grants: &'a Grants,
}

/// The host state of a plugin instance, as upstream kinds borrow it.
pub trait UpstreamState: Send + 'static {
    fn upstream_call(&mut self) -> UpstreamCall<'_>;
}
