//! Per-call cost of a no-op plugin: warm instance vs. a fresh instance per call.
//!
//! Needs the components built (`scripts/build-components.sh`). Run:
//! `cargo bench -p bitbylaw --bench plugin_call`. Figures: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bitbylaw::capabilities::wit_handler::Request;
use bitbylaw::host::Host;
use bitbylaw::runtime::LoadedPlugin;
use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn start(
    runtime: &tokio::runtime::Runtime,
    mode: &str,
) -> (Arc<Host>, Arc<LoadedPlugin>, tempfile::TempDir) {
    let tenant = format!(
        "[plugins.noop]\ncomponent = \"{}\"\n[plugins.noop.limits]\ninstance_mode = \"{mode}\"\nmax_calls_per_instance = 4000000000\n",
        common::noop_component().display()
    );
    let (host, dir) = runtime.block_on(common::start_host(
        "[log]\nfilter = \"warn\"\n",
        "bench",
        &tenant,
    ));
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
        // The same calls one after another inside one task, as a server's
        // connection task makes them: without entering the runtime per call
        // (`block_on`), which the host's request path never does.
        group.bench_function(format!("{name}_in_task"), |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = std::time::Instant::now();
                    for _ in 0..iterations {
                        let response = plugin.handle_http("bench", request()).await.unwrap();
                        assert_eq!(response.status, 204);
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
