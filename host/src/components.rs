//! The component store: plugin components by package name and version, on disk
//! as `<dir>/<package>/<version>.wasm` with the sha256 beside it
//! (`<version>.sha256`). Versions are immutable: storing another component
//! under an existing version is refused. Tenants pin a version
//! (`[plugins.<name>] version = "..."`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{PluginConfig, is_identifier, is_version};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredComponent {
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreComponentError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "version {version} of `{package}` exists with another content (sha256 {existing}); versions cannot change"
    )]
    Conflict {
        package: String,
        version: String,
        existing: String,
    },
    #[error("cannot write the component store: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a stored component lives: `<dir>/<package>/<version>.wasm`.
pub fn stored_path(dir: &Path, package: &str, version: &str) -> PathBuf {
    dir.join(package).join(format!("{version}.wasm"))
}

/// Where a tenant's plugin's component is, and the key that says so: the file
/// named by `component` (relative to the tenant file's folder), or
/// `<store>/<package>/<version>.wasm` for a `version` from the component store.
pub fn plugin_component(
    config: &PluginConfig,
    plugin: &str,
    tenant_dir: &Path,
    store: &Path,
) -> (PathBuf, &'static str) {
    match (&config.component, &config.version) {
        (Some(file), _) => (tenant_dir.join(file), "component"),
        (None, Some(version)) => {
            let package = config.package.as_deref().unwrap_or(plugin);
            (stored_path(store, package, version), "version")
        }
        (None, None) => (PathBuf::new(), "component"),
    }
}

pub struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self, package: &str, version: &str) -> PathBuf {
        stored_path(&self.dir, package, version)
    }

    /// Refuses names that could leave the store's folder or confuse it.
    pub fn check_names(package: &str, version: &str) -> Result<(), StoreComponentError> {
        if !is_identifier(package) {
            return Err(StoreComponentError::Invalid(format!(
                "package `{package}` may only hold letters, digits, `-` and `_`"
            )));
        }
        if !is_version(version) {
            return Err(StoreComponentError::Invalid(format!(
                "version `{version}` may only hold letters, digits, `.`, `-`, `_` and `+`"
            )));
        }
        Ok(())
    }

    /// Stores a component that was already checked; `sha256` is its digest
    /// (hex), as the check computed it. Storing the same bytes again is fine;
    /// other bytes under an existing version are a conflict.
    pub fn put(
        &self,
        package: &str,
        version: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<StoredComponent, StoreComponentError> {
        Self::check_names(package, version)?;
        let sha256 = sha256.to_owned();
        let path = self.path(package, version);
        if let Some(existing) = self.digest_of(&path) {
            if existing != sha256 {
                return Err(StoreComponentError::Conflict {
                    package: package.to_owned(),
                    version: version.to_owned(),
                    existing,
                });
            }
        } else {
            let folder = self.dir.join(package);
            std::fs::create_dir_all(&folder)?;
            write_atomically(&path.with_extension("sha256"), sha256.as_bytes())?;
            write_atomically(&path, bytes)?;
        }
        Ok(StoredComponent {
            package: package.to_owned(),
            version: version.to_owned(),
            sha256,
            bytes: bytes.len() as u64,
        })
    }

    /// Every stored component, by package and version.
    pub fn list(&self) -> Vec<StoredComponent> {
        let mut found = Vec::new();
        let Ok(packages) = std::fs::read_dir(&self.dir) else {
            return found;
        };
        for package in packages.flatten() {
            let Ok(versions) = std::fs::read_dir(package.path()) else {
                continue;
            };
            for entry in versions.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|ext| ext != "wasm") {
                    continue;
                }
                let (Some(package), Some(version)) = (
                    package.file_name().to_str().map(str::to_owned),
                    path.file_stem().and_then(|s| s.to_str()).map(str::to_owned),
                ) else {
                    continue;
                };
                found.push(StoredComponent {
                    sha256: self.digest_of(&path).unwrap_or_default(),
                    bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
                    package,
                    version,
                });
            }
        }
        found.sort_by(|a, b| (&a.package, &a.version).cmp(&(&b.package, &b.version)));
        found
    }

    fn digest_of(&self, wasm: &Path) -> Option<String> {
        if !wasm.exists() {
            return None;
        }
        std::fs::read_to_string(wasm.with_extension("sha256"))
            .ok()
            .map(|text| text.trim().to_owned())
            .or_else(|| {
                std::fs::read(wasm)
                    .ok()
                    .map(|bytes| hex::encode(Sha256::digest(bytes)))
            })
    }
}

/// Write, then rename: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
