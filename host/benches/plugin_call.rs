//! Per-call cost of a no-op plugin: warm instance vs. a fresh instance per call.
//!
//! Needs the components built (`scripts/build-components.sh`). Run:
//! `cargo bench -p bitbylaw --bench plugin_call`. Figures: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitbylaw::capabilities::wit_handler::Request;
use bitbylaw::host::Host;
use bitbylaw::runtime::LoadedPlugin;
use criterion::{Criterion, criterion_group, criterion_main};

fn noop_component() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/noop.wasm");
    assert!(
        path.exists(),
        "build the components first: scripts/build-components.sh"
    );
    path
}

fn start(
    runtime: &tokio::runtime::Runtime,
    mode: &str,
) -> (Arc<Host>, Arc<LoadedPlugin>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(dir.path().join("host.toml"), "[log]\nfilter = \"warn\"\n").unwrap();
    std::fs::write(
        dir.path().join("tenants/bench.toml"),
        format!(
            "[plugins.noop]\ncomponent = \"{}\"\n[plugins.noop.limits]\ninstance_mode = \"{mode}\"\nmax_calls_per_instance = 4000000000\n",
            noop_component().display()
        ),
    )
    .unwrap();
    let config = bitbylaw::config::load(dir.path().join("host.toml")).unwrap();
    let host = runtime.block_on(Host::start(config)).unwrap();
    let plugin = host.registry().current().tenant("bench").unwrap().plugins["noop"].clone();
    (host, plugin, dir)
}

fn request() -> Request {
    Request {
        method: "GET".into(),
        path: "/noop".into(),
        route: "/noop".into(),
        params: Vec::new(),
        query: Vec::new(),
        headers: Vec::new(),
        body: Vec::new(),
        request_id: "bench".into(),
    }
}

fn plugin_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("noop_call");
    for mode in ["pooled", "fresh"] {
        let (_host, plugin, _dir) = start(&runtime, mode);
        let name = if mode == "pooled" {
            "warm_instance"
        } else {
            "fresh_instance"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let response = runtime
                    .block_on(plugin.handle_http("bench", request()))
                    .unwrap();
                assert_eq!(response.status, 204);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
