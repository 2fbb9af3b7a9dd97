//! The component runtime: one shared [`Engine`] with the pooling allocator and
//! epoch interruption, a disk cache of compiled components, instance pools per
//! (tenant, plugin, component), and the [`Registry`] that maps tenants to their
//! loaded plugins and can swap one atomically.

mod cache;
mod idle;
mod plugin;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use cache::{CacheStats, ComponentCache};
pub use idle::IdleBudget;
pub use plugin::LoadedPlugin;
pub use pool::{CallError, InstancePool};

use crate::capabilities::HostState;

use crate::config::RuntimeConfig;

/// Engine, linker and component cache, shared by every tenant and plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    idle: Arc<IdleBudget>,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig, cache_dir: std::path::PathBuf) -> anyhow::Result<Arc<Self>> {
        let engine = Engine::new(&engine_config(config))
            .map_err(anyhow::Error::from)
            .context("creating the Wasm engine")?;
        spawn_epoch_ticker(&engine, Duration::from_millis(config.epoch_tick_ms));
        let mut linker = Linker::new(&engine);
        crate::capabilities::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking host capabilities")?;
        let cache = ComponentCache::new(engine.clone(), cache_dir);
        let idle_budget = config
            .max_idle_instances
            .unwrap_or(config.max_instances as usize / 2);
        Ok(Arc::new(Self {
            engine,
            linker,
            cache,
            idle: Arc::new(IdleBudget::new(idle_budget)),
        }))
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The idle instances of every pool, within one budget.
    pub fn idle_budget(&self) -> &Arc<IdleBudget> {
        &self.idle
    }

    /// Compiles (or takes from the cache) the component at `path`; returns it with its sha256.
    pub async fn load_component(
        &self,
        path: &std::path::Path,
    ) -> anyhow::Result<(Component, String)> {
        self.cache.load(path).await.map_err(slot_hint)
    }

    /// Compiles a component from bytes (cached by digest like files).
    pub async fn load_component_bytes(
        &self,
        bytes: bytes::Bytes,
    ) -> anyhow::Result<(Component, String)> {
        self.cache.load_bytes(bytes).await.map_err(slot_hint)
    }

    /// Resolves the component's imports against the host once, so each
    /// instantiation only allocates and initialises.
    pub fn prepare(
        &self,
        component: &Component,
    ) -> anyhow::Result<crate::capabilities::PluginBindingsPre<HostState>> {
        let built_for = world_versions(component, &self.engine);
        if !built_for.is_empty()
            && !built_for
                .iter()
                .any(|v| WORLD_VERSIONS.contains(&v.as_str()))
        {
            let built_for: Vec<String> = built_for
                .iter()
                .map(|version| format!("bitbylaw:plugin@{version}"))
                .collect();
            anyhow::bail!(
                "built for {}, a world this host does not load (it loads {}): build the plugin \
                 with the SDK of this host's version, or serve it from a host that loads its world",
                built_for.join(", "),
                WORLD
            );
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("the component's imports do not match the bitbylaw:plugin world")?;
        crate::capabilities::PluginBindingsPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export the bitbylaw:plugin handler")
    }
}

/// The world this host serves, and the versions of it whose components it loads
/// (the policy in `docs/plugins/writing-plugins.md`, "World versions").
pub const WORLD: &str = "bitbylaw:plugin@0.1.0";
pub const WORLD_VERSIONS: &[&str] = &["0.1.0"];

/// The `bitbylaw:plugin` versions a component's imports and exports name.
pub fn world_versions(
    component: &Component,
    engine: &Engine,
) -> std::collections::BTreeSet<String> {
    let ty = component.component_type();
    ty.imports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.exports(engine).map(|(name, _)| name.to_owned()))
        .filter_map(|name| {
            let (_, version) = name.strip_prefix("bitbylaw:plugin/")?.split_once('@')?;
            Some(version.to_owned())
        })
        .collect()
}

/// A component larger than a slot gets wasmtime's figures plus the setting to change.
fn slot_hint(error: anyhow::Error) -> anyhow::Error {
    if format!("{error:#}").contains("in the pooling allocator") {
        error.context(
            "the component needs more than one instance slot holds: raise `[runtime.slot]` \
             (core_instances, memories, tables) in the host file to the figures below",
        )
    } else {
        error
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let max_memory = config.max_memory_mb.saturating_mul(1024 * 1024);
    let mut pool = PoolingAllocationConfig::default();
    // Every slot can hold the largest instance a loaded component may be
    // (`runtime.slot`, checked per store): the pool never runs out of core
    // instances, memories or tables before it runs out of slots.
    let slot = config.slot;
    pool.total_component_instances(config.max_instances);
    pool.total_core_instances(config.max_instances.saturating_mul(slot.core_instances));
    pool.total_memories(config.max_instances.saturating_mul(slot.memories));
    pool.total_tables(config.max_instances.saturating_mul(slot.tables));
    pool.max_core_instances_per_component(slot.core_instances);
    pool.max_memories_per_component(slot.memories);
    pool.max_tables_per_component(slot.tables);
    pool.max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX));
    // A fresh instance should not pay page faults for memory its slot already had:
    // reset the first pages with memset instead of handing them back to the kernel.
    // A Rust guest touches about 1 MiB (mostly its stack) on a small call.
    pool.linear_memory_keep_resident(2 * 1024 * 1024);
    pool.table_keep_resident(64 * 1024);
    pool.async_stack_keep_resident(128 * 1024);
    // Give memory back in batches rather than one madvise per instance.
    pool.decommit_batch_size(32);
    pool.pagemap_scan(wasmtime::Enabled::Auto);

    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .wasm_component_model(true);
    wasm
}

/// Advances the engine's epoch every `tick`, so running guests reach a yield
/// point that often. The thread ends when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("bitbylaw-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the epoch thread: runaway guests will only be stopped by the call deadline");
    }
}
