//! Requests per second through the ingress: the no-op plugin (warm instances,
//! and a fresh instance per call) against a native axum handler answering the
//! same 204, in one run with one load tool (`wrk`, a separate process).
//!
//! Run: `scripts/bench.sh` (installs wrk if needed), or
//! `cargo bench -p bitbylaw --bench ingress_throughput` with wrk on the PATH.
//! `BENCH_SECONDS` (default 10) and `BENCH_CONNECTIONS` (default 32) tune the load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

mod common;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to unit-test here.
    }
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let native = runtime.block_on(serve_native());
    let pooled = runtime.block_on(serve_host("pooled"));
    let fresh = runtime.block_on(serve_host("fresh"));

    println!(
        "load: wrk, 1 thread, {connections} connections, {seconds} s per target, 2 server worker threads"
    );
    let native_rps = wrk(&format!("http://{native}/noop"), seconds, connections);
    let pooled_rps = wrk(&format!("http://{}/noop", pooled.0), seconds, connections);
    let fresh_rps = wrk(&format!("http://{}/noop", fresh.0), seconds, connections);
    println!("native axum handler      {native_rps:>10.0} req/s");
    println!(
        "plugin, warm instances   {pooled_rps:>10.0} req/s  ({:.0}% of native)",
        100.0 * pooled_rps / native_rps
    );
    println!(
        "plugin, fresh instances  {fresh_rps:>10.0} req/s  ({:.0}% of native)",
        100.0 * fresh_rps / native_rps
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve_native() -> SocketAddr {
    let app = axum::Router::new().route(
        "/noop",
        axum::routing::get(|| async { http::StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn serve_host(mode: &str) -> (SocketAddr, tempfile::TempDir) {
    // Behind Kong: the consumer header from a trusted peer, as in production.
    let tenant = format!(
        "kong_consumers = [\"bench\"]\n[plugins.noop]\ncomponent = \"{}\"\n[plugins.noop.limits]\ninstance_mode = \"{mode}\"\nmax_idle_instances = 64\n",
        common::noop_component().display()
    );
    let host_toml = "[log]\nfilter = \"warn\"\n[ingress]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let (host, dir) = common::start_host(host_toml, "bench", &tenant).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bitbylaw::server::run(
        listener,
        host,
        std::future::pending(),
    ));
    (addr, dir)
}

fn wrk(url: &str, seconds: u64, connections: u64) -> f64 {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["-H", "X-Consumer-Custom-ID: bench"])
        .arg(url)
        .output()
        .expect("wrk is needed: apt-get install wrk (scripts/bench.sh does)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"))
}
