//! Events per second from emit to a no-op handler on the Redis backend, and the
//! emit-to-done latency (p50/p99) at half that rate.
//!
//! Needs Redis on 127.0.0.1:6379 and the components built. Run:
//! `cargo bench -p bitbylaw --bench events_throughput` (or `scripts/bench.sh`).
//! `BENCH_EVENTS` (default 20000) sets the burst size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitbylaw::host::Host;

mod common;

const TENANT: &str = "bench";

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let (host, _dir) = start(&prefix).await;

        // Burst: emit as fast as 64 emitters can, wait until every event is done.
        let started = Instant::now();
        emit_concurrently(&host, events, 64).await;
        let emitted = started.elapsed();
        wait_done(&host, events).await;
        let elapsed = started.elapsed();
        let rate = events as f64 / elapsed.as_secs_f64();
        println!(
            "burst: {events} events emitted in {:.2} s, all handled after {:.2} s: {rate:.0} events/s",
            emitted.as_secs_f64(),
            elapsed.as_secs_f64()
        );

        // Paced at half that rate for 10 s: latency from emit to done.
        let (host, _dir2) = start(&format!("{prefix}-paced")).await;
        let paced_rate = rate / 2.0;
        let count = (paced_rate * 10.0) as u64;
        let interval = Duration::from_secs_f64(1.0 / paced_rate);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..count {
            ticker.tick().await;
            let host = host.clone();
            tokio::spawn(async move { host.events().emit(TENANT, "noop", b"x".to_vec()).await.unwrap() });
        }
        wait_done(&host, count).await;
        let (p50, p99) = latency_quantiles(&host.metrics().render().unwrap());
        println!("paced: {count} events at {paced_rate:.0}/s: latency p50 ≤ {p50} ms, p99 ≤ {p99} ms (histogram bucket bounds)");
        bitbylaw_tests_cleanup(&prefix);
    });
}

async fn start(prefix: &str) -> (Arc<Host>, tempfile::TempDir) {
    let host_toml = format!(
        "[log]\nfilter = \"warn\"\n[store]\nredis_url = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}\"\n[events]\nmax_concurrent = 64\nmax_stream_length = 1000000\n"
    );
    let tenant = format!(
        "[plugins.noop]\ncomponent = \"{}\"\n[plugins.noop.limits]\nmax_idle_instances = 64\n[plugins.noop.subscriptions.noop]\nconcurrency = 32\n",
        common::noop_component().display()
    );
    common::start_host(&host_toml, TENANT, &tenant).await
}

async fn emit_concurrently(host: &Arc<Host>, events: u64, emitters: u64) {
    let tasks: Vec<_> = (0..emitters)
        .map(|e| {
            let host = host.clone();
            tokio::spawn(async move {
                for _ in (e..events).step_by(emitters as usize) {
                    host.events()
                        .emit(TENANT, "noop", b"x".to_vec())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn done_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("bitbylaw_events_handled_total{") && l.contains("outcome=\"done\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_done(host: &Host, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while done_count(&host.metrics().render().unwrap()) < events {
        assert!(
            Instant::now() < deadline,
            "events not all handled within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50 and p99 as the upper bounds (ms) of the histogram buckets they fall in.
fn latency_quantiles(metrics: &str) -> (f64, f64) {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("bitbylaw_event_latency_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, count)| *count >= q * total)
            .map(|(le, _)| le * 1000.0)
            .unwrap_or(f64::INFINITY)
    };
    (quantile(0.5), quantile(0.99))
}

fn bitbylaw_tests_cleanup(prefix: &str) {
    let mut connection = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut connection)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query(&mut connection).unwrap();
    }
}
