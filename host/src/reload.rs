//! Reloading tenants when their files or components change on disk.
//!
//! Polls rather than subscribing to file events: polling also sees changes that
//! arrive through mounted volumes and symlink swaps (Kubernetes config maps),
//! and a few dozen small files once a second cost nothing. A changed tenant
//! file, or a changed component it names, reloads that tenant only; a new file
//! adds a tenant, a deleted one removes it.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::host::Host;

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
                                plugin.component_path(name, &config.base_dir, store).0
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

/// Polls `dir` every `every` until `stop`. A change is acted on once it has
/// held still for one poll and the file is at least `settle` old, so a file
/// caught half-written (a writer that truncates, then writes) is not loaded.
/// Writers should still replace tenant files atomically (write, then rename).
pub async fn watch(
    host: Weak<Host>,
    dir: PathBuf,
    store: PathBuf,
    every: Duration,
    stop: CancellationToken,
) {
    let settle = (every * 2).max(Duration::from_millis(200));
    let mut settling: HashMap<PathBuf, Option<Fingerprint>> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(host) = host.upgrade() else {
            return;
        };
        let changed = {
            let mut disk = host.disk();
            let current = disk.scan(&dir, &store);
            let files: BTreeSet<&PathBuf> = current.keys().chain(disk.known.keys()).collect();
            let mut changed = Vec::new();
            for file in files {
                let now = current.get(file).copied();
                if disk.known.get(file).copied() == now {
                    settling.remove(file);
                } else if settling.get(file) == Some(&now) && settled(file, settle) {
                    settling.remove(file);
                    changed.push((file.clone(), now));
                } else {
                    settling.insert(file.clone(), now);
                }
            }
            changed
        };
        for (file, now) in changed {
            match now {
                Some(fingerprint) => {
                    tracing::info!(file = %file.display(), "tenant file or component changed; reloading");
                    host.reload_tenant_file(&file).await;
                    host.disk().known.insert(file, fingerprint);
                }
                None => {
                    host.remove_tenant(&crate::config::tenant_id(&file));
                    host.disk().known.remove(&file);
                }
            }
        }
    }
}

/// True when `file` was last changed at least `settle` ago (or is gone).
fn settled(file: &Path, settle: Duration) -> bool {
    std::fs::metadata(file)
        .and_then(|meta| meta.modified())
        .map(|modified| modified.elapsed().unwrap_or_default() >= settle)
        .unwrap_or(true)
}
