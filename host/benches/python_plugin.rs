//! What a Python plugin costs beside the same plugin in Rust: `hello` and
//! `hello-py` (the same routes, kv and event), each in a process of its own.
//! Per plugin: component size; compile time from an empty cache and load
//! time from a filled one, with the process's peak RSS while compiling; the
//! per-call time of `GET /hello/{name}` (a kv increment and a log line) on a
//! warm instance and on a fresh instance per call; and the memory 16 warm
//! instances hold.
//!
//! Needs the components (`scripts/build-components.sh`). Run:
//! `cargo bench -p bitbylaw --bench python_plugin`. Figures: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bitbylaw::capabilities::wit_handler::Request;

mod common;

const PLUGINS: [(&str, &str); 2] = [("hello", "/hello/{name}"), ("hello-py", "/hello-py/{name}")];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--list") {
        return;
    }
    // Child: `python_plugin <plugin> <cache> <phase>`.
    if let [_, plugin, cache, phase, ..] = args.as_slice()
        && PLUGINS.iter().any(|(name, _)| name == plugin)
    {
        return measure(plugin, Path::new(cache), phase);
    }
    let me = std::env::current_exe().unwrap();
    println!(
        "| plugin | component | compile (empty cache) | peak RSS compiling | load (cache) | warm call | fresh instance per call | 16 warm instances |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (plugin, _) in PLUGINS {
        let cache = tempfile::tempdir().unwrap();
        let run = |phase: &str| {
            let output = Command::new(&me)
                .args([plugin, &cache.path().display().to_string(), phase])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        };
        let cold = run("cold");
        let warm = run("warm");
        let bytes = std::fs::metadata(component(plugin)).unwrap().len();
        println!(
            "| {plugin} | {:.1} MiB | {cold} | {warm} |",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
}

fn component(plugin: &str) -> PathBuf {
    common::noop_component().with_file_name(format!("{}.wasm", plugin.replace('-', "_")))
}

fn measure(plugin: &str, cache: &Path, phase: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host_toml = format!(
            "[log]\nfilter = \"warn\"\n[store]\nkey_prefix = \"bench\"\n[runtime]\ncache_dir = \"{}\"\n",
            cache.display()
        );
        let tenant = |mode: &str| {
            format!(
                "[plugins.{plugin}]\ncomponent = \"{}\"\n[plugins.{plugin}.limits]\ninstance_mode = \"{mode}\"\nmax_calls_per_instance = 4000000000\nmax_idle_instances = 16\n",
                component(plugin).display()
            )
        };
        let started = Instant::now();
        let (host, _dir) = common::start_host(&host_toml, "bench", &tenant("pooled")).await;
        let loaded = started.elapsed();
        assert!(host.broken_tenants().is_empty(), "{:?}", host.broken_tenants());
        if phase == "cold" {
            println!("{} | {} MiB", ms(loaded), peak_rss_mb());
            return;
        }
        let plugin_now = host.registry().current().tenant("bench").unwrap().plugins[plugin].clone();
        let warm = per_call(&plugin_now, plugin, 2000).await;
        drop(plugin_now);
        drop(host);

        // 16 instances at once, kept warm: what they hold beyond the host.
        let (host, _dir2) = common::start_host(&host_toml, "bench", &tenant("pooled")).await;
        let pooled = host.registry().current().tenant("bench").unwrap().plugins[plugin].clone();
        per_call(&pooled, plugin, 10).await;
        let before = rss_mb();
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let pooled = pooled.clone();
                let path = route(plugin);
                tokio::spawn(async move {
                    pooled
                        .handle_http(&format!("m{i}"), request(&path))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().status, 200);
        }
        let instances = rss_mb() - before;
        drop(pooled);
        drop(host);

        let (host, _dir3) = common::start_host(&host_toml, "bench", &tenant("fresh")).await;
        let fresh_plugin = host.registry().current().tenant("bench").unwrap().plugins[plugin].clone();
        let fresh = per_call(&fresh_plugin, plugin, 100).await;
        println!(
            "{} | {} | {} | {:.1} MiB (~{:.1} MiB each)",
            ms(loaded),
            us(warm),
            us(fresh),
            instances,
            instances / 16.0
        );
    });
}

fn route(plugin: &str) -> String {
    PLUGINS
        .iter()
        .find(|(name, _)| *name == plugin)
        .unwrap()
        .1
        .to_owned()
}

fn request(route: &str) -> Request {
    Request {
        method: "GET".into(),
        path: route.replace("{name}", "Ada"),
        route: route.into(),
        params: vec![("name".into(), "Ada".into())],
        query: Vec::new(),
        headers: Vec::new(),
        body: Vec::new(),
        request_id: "bench".into(),
    }
}

/// Mean time of `count` calls one after the other, after 20 to warm up.
async fn per_call(plugin: &bitbylaw::runtime::LoadedPlugin, name: &str, count: u32) -> Duration {
    let route = route(name);
    for _ in 0..20 {
        plugin.handle_http("warmup", request(&route)).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..count {
        let response = plugin.handle_http("bench", request(&route)).await.unwrap();
        assert_eq!(response.status, 200);
    }
    started.elapsed() / count
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
}

fn rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

fn peak_rss_mb() -> String {
    format!("{:.0}", status_kb("VmHWM:") / 1024.0)
}
