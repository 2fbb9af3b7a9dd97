//! Host memory with many tenants: RSS after loading 10 and 100 tenants of five
//! plugins each, and after every plugin answered once (all pools warm), in one
//! process each (a fresh process per count, so the figures do not pile up).
//!
//! Run: `cargo bench -p bitbylaw --bench memory` (`BENCH_TENANTS=10,100`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const PLUGINS: [&str; 5] = ["hello", "counter", "greeter_v1", "noop", "flaky"];
/// Each plugin's route, to warm it.
const ROUTES: [&str; 5] = ["/hello/x", "/counter", "/greet", "/noop", "/flaky/warm"];

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    // One child process per tenant count: `memory <count>`.
    if let Some(count) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<usize>().ok())
    {
        return measure(count);
    }
    let counts = std::env::var("BENCH_TENANTS").unwrap_or_else(|_| "10,100".into());
    let me = std::env::current_exe().unwrap();
    // A first start compiles the components into the cache, and the compiler's
    // heap stays with the process (about 16 MB): measured apart, as "cold", so
    // the counts below compare restarts from a filled cache, as in production.
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(&me)
            .args(args)
            .env("BENCH_CACHE_DIR", cache.path())
            .output()
            .unwrap()
    };
    let cold = run(&["1", "cold"]);
    assert!(
        cold.status.success(),
        "{}",
        String::from_utf8_lossy(&cold.stderr)
    );
    print!("{}", String::from_utf8_lossy(&cold.stdout));
    for count in counts.split(',') {
        let output = run(&[count.trim()]);
        print!("{}", String::from_utf8_lossy(&output.stdout));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// The mappings holding the most resident memory (`BENCH_SMAPS=1`), to see
/// where the RSS goes: heap, compiled code, linear memories, stacks.
fn print_largest_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut mappings: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            mappings.push((kb, name.clone()));
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-'))
        {
            name = line
                .split_whitespace()
                .skip(5)
                .collect::<Vec<_>>()
                .join(" ");
            let range = line.split_whitespace().next().unwrap_or_default();
            if name.is_empty() {
                name = format!("[anon {range}]");
            }
        }
    }
    mappings.sort_by_key(|mapping| std::cmp::Reverse(mapping.0));
    for (kb, name) in mappings.iter().take(15) {
        println!("      {kb:>7} kB  {name}");
    }
}

fn measure(count: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let before = rss_mb();
        let dir = tempfile::tempdir().unwrap();
        let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release");
        let cold = std::env::args().nth(2).as_deref() == Some("cold");
        let cache = std::path::PathBuf::from(std::env::var_os("BENCH_CACHE_DIR").unwrap());
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        std::fs::write(
            dir.path().join("host.toml"),
            format!(
                "[log]\nfilter = \"warn\"\n[runtime]\ncache_dir = \"{}\"\n",
                cache.display()
            ),
        )
        .unwrap();
        for tenant in 0..count {
            std::fs::write(dir.path().join(format!("key-{tenant}")), format!("key-{tenant}")).unwrap();
            let mut text = format!(
                "api_keys = [{{ file = \"{}\" }}]\n",
                dir.path().join(format!("key-{tenant}")).display()
            );
            for plugin in PLUGINS {
                text.push_str(&format!(
                    "[plugins.{}]\ncomponent = \"{}\"\n",
                    plugin.replace('_', "-"),
                    release.join(format!("{plugin}.wasm")).display()
                ));
            }
            std::fs::write(dir.path().join(format!("tenants/firm-{tenant}.toml")), text).unwrap();
        }
        let config = bitbylaw::config::load(dir.path().join("host.toml")).unwrap();
        let host = bitbylaw::host::Host::start(config).await.unwrap();
        assert!(host.broken_tenants().is_empty(), "{:?}", host.broken_tenants());
        let loaded = rss_mb();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(bitbylaw::server::run(listener, host.clone(), std::future::pending()));
        let client = reqwest::Client::new();
        let mut failed = 0;
        for round in 0..2 {
            for tenant in 0..count {
                for route in ROUTES {
                    let status = client
                        .get(format!("http://{addr}{route}"))
                        .header("apikey", format!("key-{tenant}"))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    if !status.is_success() {
                        failed += 1;
                        eprintln!("round {round}: firm-{tenant} {route}: {status}");
                    }
                }
            }
        }
        let warm = rss_mb();
        if std::env::var_os("BENCH_SMAPS").is_some() {
            print_largest_mappings();
        }
        println!(
            "{count:>4} tenants x {} plugins{}: RSS {before:.1} MB at start, {loaded:.1} MB loaded, {warm:.1} MB after every plugin answered twice; {failed} failed calls, {} idle instances",
            PLUGINS.len(),
            if cold { " (cold cache: compiled at start)" } else { "" },
            host.runtime().idle_budget().idle()
        );
        assert_eq!(failed, 0);
    });
}
