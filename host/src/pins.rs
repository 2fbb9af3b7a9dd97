//! Which version of a plugin a tenant runs, switched by operators: a switch
//! checks the new version, swaps it in, then rewrites the tenant file (keeping
//! its comments and layout); the versions it replaced are kept in the store
//! for rollback.

use anyhow::Context as _;

use crate::host::Host;
use crate::store::{Scope, StoreError};

/// Longest rollback history kept per plugin.
const HISTORY: usize = 20;

/// Why a switch did not happen; the running version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The new version could not be loaded, or the tenant file not written.
    #[error("{0:#}; the running version keeps serving")]
    Refused(anyhow::Error),
    /// The rollback history could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plugin `{plugin}` of tenant `{tenant}` has no earlier version to go back to")]
    NoPrevious { tenant: String, plugin: String },
}

/// What a tenant's plugin runs: a version from the component store or a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    Version(String),
    Component(String),
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Version(version) => write!(f, "version {version}"),
            Pin::Component(file) => write!(f, "component {file}"),
        }
    }
}

/// Pins `plugin` of `tenant` to `version` from the component store; returns the
/// pin it replaced, which rollback goes back to.
pub async fn switch(
    host: &Host,
    tenant: &str,
    plugin: &str,
    version: &str,
) -> Result<Pin, PinError> {
    let _held = host.lock_tenant(tenant).await;
    let pin = Pin::Version(version.to_owned());
    let previous = pin_plugin(host, tenant, plugin, &pin)
        .await
        .map_err(PinError::Refused)?;
    let key = history_key(host, tenant, plugin);
    let mut history = load_history(host, &key).await?;
    history.push(previous.clone());
    let excess = history.len().saturating_sub(HISTORY);
    history.drain(..excess);
    save_history(host, &key, &history).await?;
    Ok(previous)
}

/// Goes back to the pin before the last switch; returns it and the pin it replaced.
pub async fn rollback(host: &Host, tenant: &str, plugin: &str) -> Result<(Pin, Pin), PinError> {
    let _held = host.lock_tenant(tenant).await;
    let key = history_key(host, tenant, plugin);
    let mut history = load_history(host, &key).await?;
    let Some(target) = history.pop() else {
        return Err(PinError::NoPrevious {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        });
    };
    let replaced = pin_plugin(host, tenant, plugin, &target)
        .await
        .map_err(PinError::Refused)?;
    save_history(host, &key, &history).await?;
    Ok((target, replaced))
}

fn history_key(host: &Host, tenant: &str, plugin: &str) -> String {
    let scope = Scope::new(&host.config().store.key_prefix, tenant, "host");
    format!("{}pins:{plugin}", scope.base())
}

async fn load_history(host: &Host, key: &str) -> Result<Vec<Pin>, StoreError> {
    let stored = host.store().get(key).await?;
    Ok(stored
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default())
}

async fn save_history(host: &Host, key: &str, history: &[Pin]) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(history).unwrap_or_default();
    host.store().set(key, &bytes, None).await
}

/// Pins `plugin` of `tenant` to `pin` (a store version, or a component file):
/// checks and swaps it in, then writes the tenant file (keeping its comments
/// and layout). Nothing is written when the new version cannot serve, nor over
/// a file someone else changed meanwhile: then the file as it is now is loaded.
/// Returns the pin it replaced. The caller holds the tenant's lock.
async fn pin_plugin(host: &Host, tenant: &str, plugin: &str, pin: &Pin) -> anyhow::Result<Pin> {
    let file = host.tenant_file(tenant);
    let original = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut document: toml_edit::DocumentMut = original
        .parse()
        .with_context(|| format!("{} is not valid TOML", file.display()))?;
    let table = document
        .get_mut("plugins")
        .and_then(|p| p.get_mut(plugin))
        .and_then(|t| t.as_table_like_mut())
        .ok_or_else(|| anyhow::anyhow!("tenant `{tenant}` has no plugin `{plugin}`"))?;
    let previous = match (
        table.get("version").and_then(|v| v.as_str()),
        table.get("component").and_then(|v| v.as_str()),
    ) {
        (Some(version), _) => Pin::Version(version.to_owned()),
        (None, Some(component)) => Pin::Component(component.to_owned()),
        (None, None) => {
            anyhow::bail!("plugin `{plugin}` of tenant `{tenant}` names no component")
        }
    };
    table.remove("version");
    table.remove("component");
    match pin {
        Pin::Version(version) => table.insert("version", toml_edit::value(version.as_str())),
        Pin::Component(component) => {
            table.insert("component", toml_edit::value(component.as_str()))
        }
    };
    let text = document.to_string();
    let config = crate::config::parse_tenant(&file, tenant, &text)?;
    let replaced = host.reload_tenant(&config).await?;
    if std::fs::read_to_string(&file).ok().as_deref() != Some(original.as_str()) {
        // The file is the truth: what runs now must be what it says.
        host.reload_file(&file).await;
        anyhow::bail!(
            "{} was changed by someone else during the switch; it is now running as that file says, switch again if still wanted",
            file.display()
        );
    }
    if let Err(error) = crate::components::write_atomically(&file, text.as_bytes()) {
        // What runs must match the file: back to the version the file names.
        host.restore_tenant(tenant, replaced);
        return Err(anyhow::anyhow!("cannot write {}: {error}", file.display()));
    }
    // Our own write: the watcher need not load it again.
    host.files().record(&file, &host.component_store_dir());
    tracing::info!(%tenant, %plugin, from = %previous, to = %pin, "plugin version switched");
    Ok(previous)
}
