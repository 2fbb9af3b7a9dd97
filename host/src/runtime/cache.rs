//! Compiled components, kept in memory by content digest (tenants running the
//! same plugin version share one compilation) and on disk (a restart does not
//! recompile unchanged components).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    engine: Engine,
    dir: PathBuf,
    /// Tells compiled files of another Wasmtime version or engine setting apart.
    engine_tag: String,
    loaded: Mutex<HashMap<String, Component>>,
    compiled: AtomicU64,
    from_disk: AtomicU64,
}

/// How components were obtained since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiled from Wasm (nothing usable on disk).
    pub compiled: u64,
    /// Loaded from a compiled file on disk.
    pub from_disk: u64,
}

impl ComponentCache {
    pub fn new(engine: Engine, dir: PathBuf) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            engine,
            dir,
            engine_tag: format!("{:016x}", hasher.finish()),
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            from_disk: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            from_disk: self.from_disk.load(Ordering::Relaxed),
        }
    }

    pub async fn load(&self, path: &Path) -> anyhow::Result<(Component, String)> {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read component `{}`", path.display()))?;
        self.load_bytes(bytes.into()).await
    }

    pub async fn load_bytes(&self, bytes: bytes::Bytes) -> anyhow::Result<(Component, String)> {
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(component) = self.lock().get(&digest) {
            return Ok((component.clone(), digest));
        }
        let engine = self.engine.clone();
        let file = self.dir.join(format!("{digest}-{}.cwasm", self.engine_tag));
        let (component, origin) =
            tokio::task::spawn_blocking(move || compile_or_reuse(&engine, &bytes, &file))
                .await
                .context("compilation task failed")??;
        let counter = match origin {
            Origin::Compiled => &self.compiled,
            Origin::Disk => &self.from_disk,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(digest.clone(), component.clone());
        Ok((component, digest))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        bitbylaw_core::sync::lock(&self.loaded)
    }
}

enum Origin {
    Compiled,
    Disk,
}

fn compile_or_reuse(
    engine: &Engine,
    bytes: &[u8],
    file: &Path,
) -> anyhow::Result<(Component, Origin)> {
    if file.exists() {
        match deserialize(engine, file) {
            Ok(component) => return Ok((component, Origin::Disk)),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "cached compilation unusable; compiling again")
            }
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("not a valid WebAssembly component")?;
    if let Err(error) = store(&component, file) {
        // The cache only saves time; a read-only disk must not stop the host.
        tracing::warn!(file = %file.display(), %error, "cannot cache the compiled component");
    }
    Ok((component, Origin::Compiled))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file was written by `store` below from `Component::serialize`
    // of the same engine configuration (the name carries the engine's
    // compatibility hash), and the cache folder belongs to the host alone.
    let component = unsafe { Component::deserialize_file(engine, file)? };
    Ok(component)
}

fn store(component: &Component, file: &Path) -> anyhow::Result<()> {
    let dir = file.parent().context("cache file has no folder")?;
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    // Write then rename, so a crash never leaves a half file that looks whole.
    crate::components::write_atomically(file, &bytes)?;
    Ok(())
}
