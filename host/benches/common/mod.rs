//! What the benchmarks share: the no-op component and a host started from TOML.

// Each benchmark uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitbylaw::host::Host;

/// `<target>/wasm32-wasip2/release/noop.wasm`, built by
/// `scripts/build-components.sh`; `<target>` is `CARGO_TARGET_DIR` when set
/// (as the demo and the tests find components), else the workspace's `target`.
pub fn noop_component() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("wasm32-wasip2/release/noop.wasm");
    assert!(
        path.exists(),
        "build the components first: scripts/build-components.sh"
    );
    path
}

/// Starts a host from `host_toml` and one tenant `tenant` from `tenant_toml`, in a
/// temporary folder that lives as long as the returned guard.
pub async fn start_host(
    host_toml: &str,
    tenant: &str,
    tenant_toml: &str,
) -> (Arc<Host>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::create_dir_all(dir.path().join("tenants")).expect("tenants folder");
    std::fs::write(dir.path().join("host.toml"), host_toml).expect("host file");
    std::fs::write(
        dir.path().join(format!("tenants/{tenant}.toml")),
        tenant_toml,
    )
    .expect("tenant file");
    let config = bitbylaw::config::load(dir.path().join("host.toml")).expect("valid config");
    (Host::start(config).await.expect("host starts"), dir)
}
