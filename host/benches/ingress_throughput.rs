//! Requests per second through the ingress: the no-op plugin (warm instances,
//! and a fresh instance per call) against a native axum handler answering the
//! same 204, in one run with one load tool (`wrk`, a separate process).
//!
//! Run: `scripts/bench.sh` (installs wrk if needed), or
//! `cargo bench -p bitbylaw --bench ingress_throughput` with wrk on the PATH.
//! `BENCH_SECONDS` (default 10), `BENCH_CONNECTIONS` (default 32) and
//! `BENCH_RUNS` (default 3) tune the load. The host logs at `info` into a sink,
//! as in production but without the disk: with `BENCH_ACCESS_LOG=1` its
//! access lines are on (the default of a deployment), else off; with
//! `BENCH_NO_LOG=1` no log subscriber is installed (what logging costs).
//!
//! wrk and the server share the machine's cores, so one run's requests per
//! second swing by several percent; the targets take turns, `BENCH_RUNS` times,
//! and the medians are printed. Beside them, the server's own CPU time per
//! request (this process's user + system time over the requests wrk counted),
//! which depends far less on how the cores were shared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

mod common;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to unit-test here.
    }
    let filter = match std::env::var_os("BENCH_ACCESS_LOG") {
        Some(_) => "info",
        None => "info,bitbylaw::access=off",
    };
    if std::env::var_os("BENCH_NO_LOG").is_some() {
        // What the log subscriber costs: the same run with none installed.
        println!("log: no subscriber");
    } else {
        bitbylaw::telemetry::init_with_writer(
            bitbylaw::config::LogFormat::Human,
            filter,
            std::io::sink,
        );
        println!("log filter: {filter}");
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

    let runs: u64 = env_or("BENCH_RUNS", 3);
    println!(
        "load: wrk, 1 thread, {connections} connections, {seconds} s per target and run, {runs} runs, 2 server worker threads"
    );
    let targets = [
        ("native axum handler     ", format!("http://{native}/noop")),
        (
            "plugin, warm instances  ",
            format!("http://{}/noop", pooled.0),
        ),
        (
            "plugin, fresh instances ",
            format!("http://{}/noop", fresh.0),
        ),
    ];
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for _ in 0..runs {
        for (index, (_, url)) in targets.iter().enumerate() {
            results[index].push(measure(url, seconds, connections));
        }
    }
    let medians: Vec<(f64, f64)> = results
        .iter()
        .map(|runs| {
            (
                median(runs.iter().map(|r| r.rps)),
                median(runs.iter().map(|r| r.cpu_us)),
            )
        })
        .collect();
    let (native_rps, native_cpu) = medians[0];
    for ((name, _), (runs, (rps, cpu))) in targets.iter().zip(results.iter().zip(&medians)) {
        let each: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        println!(
            "{name} {rps:>8.0} req/s ({:>3.0}% of native; runs {})  {cpu:>5.1} µs CPU/request ({:.2}× native)",
            100.0 * rps / native_rps,
            each.join(", "),
            cpu / native_cpu
        );
    }
}

#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    /// This process's CPU time per request served, in µs.
    cpu_us: f64,
}

fn measure(url: &str, seconds: u64, connections: u64) -> Run {
    let before = cpu_time_us();
    let (rps, requests) = wrk(url, seconds, connections);
    let used = cpu_time_us() - before;
    Run {
        rps,
        cpu_us: used / requests.max(1.0),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// User + system time of this process (all threads) in µs, from /proc.
fn cpu_time_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports these in clock ticks of 1/100 s (USER_HZ).
    ticks * 10_000.0
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

/// Requests per second and requests served.
fn wrk(url: &str, seconds: u64, connections: u64) -> (f64, f64) {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["-H", "X-Consumer-Custom-ID: bench"])
        .arg(url)
        .output()
        .expect("wrk is needed: apt-get install wrk (scripts/bench.sh does)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    // "  612345 requests in 10.00s, ..."
    let requests = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    (rps, requests)
}
