//! The host: the shared services (store, runtime, egress, event bus, metrics)
//! and the tenants it runs, with the bookkeeping of tenants that could not be
//! loaded. Start-up is in [`crate::startup`], building a tenant in
//! [`crate::tenants::assemble`], version pins in [`crate::pins`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::capabilities::Emitter;
use crate::config::{HostConfig, Secret, TenantConfig};
use crate::egress::Egress;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::runtime::{LoadedPlugin, Runtime};
use crate::store::Store;
use crate::tenants::files::DiskState;
use crate::tenants::{Assembler, Registry, Tenant};

/// Why a tenant could not be (re)loaded; the running version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file, a component or a secret is wrong: retrying the same will fail again.
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// The store could not ready the tenant's event delivery: worth another try.
    #[error("{0}")]
    Store(String),
}

pub struct Host {
    pub(crate) config: HostConfig,
    pub(crate) store: Store,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: Metrics,
    pub(crate) egress: Egress,
    pub(crate) events: EventBus,
    /// The same bus as plugins see it.
    pub(crate) emitter: Arc<dyn Emitter>,
    pub(crate) admin_token: Option<Secret>,
    /// Bearer token for `/metrics` and the detail of `/ready`.
    pub(crate) ops_token: Option<Secret>,
    pub(crate) loaded: AtomicBool,
    pub(crate) broken: Mutex<BTreeMap<String, String>>,
    /// Stops the tenant-file watcher when the host goes away.
    pub(crate) watcher: CancellationToken,
    /// What the watcher knows of the tenant files.
    pub(crate) files: Mutex<DiskState>,
    /// One lock per tenant, held while its file is read, changed and written or
    /// reloaded, so a version switch and the file watcher never interleave.
    pub(crate) tenant_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests over the last minutes, for the dashboard.
    pub(crate) traffic: crate::traffic::Traffic,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.watcher.cancel();
    }
}

impl Host {
    /// What tenants are built from.
    pub fn assembler(&self) -> Assembler<'_> {
        Assembler {
            config: &self.config,
            store: &self.store,
            runtime: &self.runtime,
            egress: &self.egress,
            events: &self.emitter,
            metrics: &self.metrics,
        }
    }

    /// Compiles `bytes` and checks them as a plugin, storing and swapping nothing.
    pub async fn check_component(&self, bytes: bytes::Bytes) -> anyhow::Result<LoadedPlugin> {
        self.assembler().check_component(bytes).await
    }

    /// The file of tenant `id`.
    pub fn tenant_file(&self, id: &str) -> std::path::PathBuf {
        self.config
            .base_dir
            .join(&self.config.tenants_dir)
            .join(format!("{id}.toml"))
    }

    /// The component store's folder (`components.dir`).
    pub fn component_store_dir(&self) -> std::path::PathBuf {
        self.config.base_dir.join(&self.config.components.dir)
    }

    /// Tenants whose config or plugins could not be loaded, with the reason.
    /// A tenant that was running before keeps running its last good version.
    pub fn broken_tenants(&self) -> BTreeMap<String, String> {
        self.lock_broken().clone()
    }

    pub(crate) fn mark_broken(&self, tenant: &str, error: String) {
        tracing::error!(%tenant, %error, "tenant not loaded");
        self.lock_broken().insert(tenant.to_owned(), error);
    }

    fn lock_broken(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        bitbylaw_core::sync::lock(&self.broken)
    }

    /// What the watcher knows of the tenant files.
    pub(crate) fn files(&self) -> std::sync::MutexGuard<'_, DiskState> {
        bitbylaw_core::sync::lock(&self.files)
    }

    /// Holds tenant `id`'s file and running version for the caller alone.
    pub(crate) async fn lock_tenant(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = bitbylaw_core::sync::lock(&self.tenant_locks)
            .entry(id.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Reads a tenant file again and swaps the tenant in; on any error the
    /// tenant is reported broken and its running version (if any) keeps serving.
    /// True when the file was dealt with (loaded, or found broken); false when
    /// the store failed and the watcher should try again.
    pub async fn reload_tenant_file(&self, file: &std::path::Path) -> bool {
        let _held = self.lock_tenant(&crate::config::tenant_id(file)).await;
        self.reload_file(file).await
    }

    /// [`Host::reload_tenant_file`] for a caller that holds the tenant's lock.
    /// False when the store failed: the file was not taken as loaded and is
    /// worth trying again (a broken file is not, until it changes).
    pub(crate) async fn reload_file(&self, file: &std::path::Path) -> bool {
        let id = crate::config::tenant_id(file);
        let config = match crate::config::load_tenant(file) {
            Ok(config) => config,
            Err(error) => {
                self.mark_broken(&id, error.to_string());
                return true;
            }
        };
        match self.reload_tenant(&config).await {
            Ok(_) => {
                tracing::info!(tenant = %id, "tenant reloaded");
                true
            }
            Err(error) => {
                let retry = matches!(error, ReloadError::Store(_));
                self.mark_broken(&id, format!("{error:#}"));
                !retry
            }
        }
    }

    /// Takes a tenant out (its file was deleted): no more requests, events or ticks.
    pub fn remove_tenant(&self, id: &str) {
        if let Err(error) = self.registry.remove_tenant(id) {
            tracing::error!(tenant = %id, %error, "cannot remove tenant");
            return;
        }
        self.events.stop_tenant(id);
        self.lock_broken().remove(id);
        tracing::info!(tenant = %id, "tenant removed");
    }

    /// Loads `config` and swaps it in for the tenant of the same id, atomically:
    /// requests in flight finish on the old plugins, new ones get the new. The
    /// new version's event delivery is readied first, so an error (the store
    /// unreachable for a moment) leaves the running version and its delivery
    /// untouched. Returns the version it replaced, for [`Host::restore_tenant`].
    pub async fn reload_tenant(
        &self,
        config: &TenantConfig,
    ) -> Result<Option<Arc<Tenant>>, ReloadError> {
        let tenant = Arc::new(
            self.assembler()
                .tenant(config)
                .await
                .map_err(ReloadError::Config)?,
        );
        self.events.prepare(&tenant).await.map_err(|e| {
            ReloadError::Store(format!(
                "readying event delivery for tenant `{}`: {e}",
                tenant.id
            ))
        })?;
        let previous = self.registry.current().tenant(&tenant.id).cloned();
        self.registry
            .swap_tenant(tenant.clone())
            .map_err(|e| ReloadError::Config(anyhow::anyhow!("{}: {e}", config.file.display())))?;
        self.events.start(&self.registry, &tenant);
        self.lock_broken().remove(&tenant.id);
        // Loading may have compiled components: give the compiler's heap back.
        crate::heap::release_freed();
        Ok(previous)
    }

    /// Puts back a tenant version [`Host::reload_tenant`] replaced (or takes the
    /// tenant out when there was none), with its event delivery.
    pub(crate) fn restore_tenant(&self, id: &str, previous: Option<Arc<Tenant>>) {
        match previous {
            Some(tenant) => {
                if let Err(error) = self.registry.swap_tenant(tenant.clone()) {
                    tracing::error!(tenant = %id, %error, "cannot restore the previous version");
                    return;
                }
                self.events.start(&self.registry, &tenant);
            }
            None => self.remove_tenant(id),
        }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The admin API's bearer token; `None` keeps the admin API off.
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// The operators' token for `/metrics` and `/ready`'s detail, if any.
    pub fn ops_token(&self) -> Option<&Secret> {
        self.ops_token.as_ref()
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True once every tenant of the config has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}
