//! What the host knows of the tenant files on disk: a fingerprint per file of
//! its text and the components it names. The watcher ([`crate::reload`])
//! compares them; a version switch records its own write here, so the watcher
//! does not take it for an outside change and load it a second time.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a tenant's state on disk looks like: its file's content and, for each
/// component it names, size and modification time.
pub type Fingerprint = u64;

/// The state on disk of every tenant file.
pub type Fingerprints = HashMap<PathBuf, Fingerprint>;

/// What the watcher knows of the tenant files. Kept in the host, so a file the
/// host writes itself (a version switch) is recorded at once rather than
/// taken for an outside change and loaded a second time.
#[derive(Default)]
pub struct DiskState {
    /// The fingerprints the running tenants were loaded from.
    pub known: Fingerprints,
    /// Per tenant file: the hash of its text and the components it names, so a
    /// file is parsed again only when its text changed, not on every poll.
    components: HashMap<PathBuf, (u64, Vec<PathBuf>)>,
}

impl DiskState {
    /// Fingerprints every tenant file in `dir`.
    pub fn scan(&mut self, dir: &Path, store: &Path) -> Fingerprints {
        let Ok(files) = crate::config::tenant_files(dir) else {
            return HashMap::new();
        };
        self.components.retain(|file, _| files.contains(file));
        files
            .into_iter()
            .filter_map(|file| Some((self.fingerprint(&file, store)?, file)))
            .map(|(fingerprint, file)| (file, fingerprint))
            .collect()
    }

    /// Takes `file` as it is now as loaded.
    pub fn record(&mut self, file: &Path, store: &Path) {
        if let Some(fingerprint) = self.fingerprint(file, store) {
            self.known.insert(file.to_owned(), fingerprint);
        }
    }

    fn fingerprint(&mut self, file: &Path, store: &Path) -> Option<Fingerprint> {
        let text = std::fs::read(file).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        let text_hash = hasher.finish();
        let components = match self.components.get(file) {
            Some((hash, components)) if *hash == text_hash => components,
            _ => {
                // A file that does not parse is still fingerprinted by its text, so fixing it reloads.
                let components = crate::config::load_tenant(file)
                    .map(|config| {
                        config
                            .plugins
                            .iter()
                            .map(|(name, plugin)| {
                                crate::components::plugin_component(
                                    plugin,
                                    name,
                                    &config.base_dir,
                                    store,
                                )
                                .0
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                &self
                    .components
                    .entry(file.to_owned())
                    .insert_entry((text_hash, components))
                    .into_mut()
                    .1
            }
        };
        for component in components {
            if let Ok(meta) = std::fs::metadata(component) {
                meta.len().hash(&mut hasher);
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .hash(&mut hasher);
            }
        }
        Some(hasher.finish())
    }
}
