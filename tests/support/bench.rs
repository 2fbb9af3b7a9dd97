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

/// CPU time spent so far by this process (all threads: the host, the
/// simulators and the load) and by the Redis server, so a run's CPU is the
/// difference of two readings. Both in seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    pub process: f64,
    pub redis: f64,
}

impl CpuReading {
    /// Reads `/proc/self/stat` (user + system, in 1/100 s) and Redis's `INFO cpu`.
    pub async fn now(redis_url: &str) -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        // Fields after the command name (which may hold spaces) start after the last `)`.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
            .split(' ')
            .collect();
        let ticks = |i: usize| fields[i].parse::<f64>().expect("stat tick count");
        let client = redis::Client::open(redis_url).expect("Redis URL");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis for INFO cpu");
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut connection)
            .await
            .expect("INFO cpu");
        let redis = info
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                matches!(name, "used_cpu_sys" | "used_cpu_user")
                    .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum();
        Self {
            // Linux reports these in clock ticks of 1/100 s (USER_HZ).
            process: (ticks(11) + ticks(12)) / 100.0,
            redis,
        }
    }

    /// CPU seconds from `earlier` to this reading: (process, Redis).
    pub fn since(&self, earlier: &Self) -> (f64, f64) {
        (self.process - earlier.process, self.redis - earlier.redis)
    }
}
