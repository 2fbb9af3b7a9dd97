//! Helpers of the load benchmarks (`tests/benches`): one load tool for every
//! target, and settings from the environment.

use std::process::Command;

/// `name` from the environment as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests per second `wrk` reaches on `url` with `header`; fails on any non-2xx.
pub fn wrk(url: &str, header: &str, seconds: u64, connections: u64) -> f64 {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--latency", "-H", header])
        .arg(url)
        .output()
        .expect("wrk is needed: apt-get install wrk (scripts/bench.sh does)");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{url}\n{text}");
    assert!(!text.contains("Non-2xx"), "errors during the run:\n{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"))
}
