//! Reloading tenants when their files or components change on disk.
//!
//! Polls rather than subscribing to file events: polling also sees changes that
//! arrive through mounted volumes and symlink swaps (Kubernetes config maps),
//! and a few dozen small files once a second cost nothing. A changed tenant
//! file, or a changed component it names, reloads that tenant only; a new file
//! adds a tenant, a deleted one removes it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::host::Host;
use crate::tenants::files::Fingerprint;

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
            let mut disk = host.files();
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
                    // A store error: not taken as loaded, so the next poll tries again.
                    if host.reload_tenant_file(&file).await {
                        host.files().known.insert(file, fingerprint);
                    }
                }
                None => {
                    let id = crate::config::tenant_id(&file);
                    let _held = host.lock_tenant(&id).await;
                    host.remove_tenant(&id);
                    host.files().known.remove(&file);
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
