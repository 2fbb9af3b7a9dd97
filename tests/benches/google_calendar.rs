//! What the Google capability costs: requests per second straight to the
//! Google simulator (with a valid token, no latency) against one
//! `calendars.get` through the host (tenant, plugin call, token from the
//! store, quota buckets, google-calendar3's hub), one load tool (`wrk`) for both.
//!
//! Run: `cargo bench -p bitbylaw-tests --bench google_calendar` with wrk on the
//! PATH and Redis on 127.0.0.1:6379 (`scripts/bench.sh` sees to both).
//! `BENCH_SECONDS` (default 10), `BENCH_CONNECTIONS` (default 32);
//! `BENCH_BUCKETS=off` leaves the quota buckets out of the measured path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::bench::{env_or, wrk};
use bitbylaw_tests::simulators::google::{Google, Quotas, ServiceAccount};
use bitbylaw_tests::{Backend, TestHost};

const MAILBOX: &str = "anna@kanzlei.example";

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 32);
    let buckets = std::env::var("BENCH_BUCKETS").as_deref() != Ok("off");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sim, app, _key, token) = runtime.block_on(async {
        let account = ServiceAccount::generate("bench@bitbylaw-test.iam.gserviceaccount.com");
        let sim = Google::start(std::slice::from_ref(&account)).await;
        sim.set_quotas(Quotas {
            window: std::time::Duration::from_secs(60),
            per_user: None,
            per_project: None,
        });
        let key = tempfile::tempdir().unwrap();
        std::fs::write(key.path().join("key.json"), account.key_json(&sim.token_uri())).unwrap();
        // Buckets far above the load: their store round trips are measured, not their limits.
        let rates = if buckets {
            "user_requests_per_minute = 100000000\nproject_requests_per_minute = 100000000\nquota_burst = 100000"
        } else {
            "user_requests_per_minute = 0\nproject_requests_per_minute = 0"
        };
        let tenant = format!(
            "kong_consumers = [\"bench\"]\n[upstreams.google]\nkind = \"google\"\nservice_account_key = {{ file = \"{}\" }}\napi_base = \"{}\"\n{rates}\n[plugins.gcal]\ncomponent = \"{{component:gcal}}\"\nupstreams = [\"google\"]\n[plugins.gcal.limits]\nmax_idle_instances = 64\n",
            key.path().join("key.json").display(),
            sim.api_base(),
        );
        let app = TestHost::builder(Backend::Redis)
            .host_toml("[log]\nfilter = \"warn\"\n[ingress]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
            .tenant("bench", None, &tenant)
            .start()
            .await;
        let warm = app
            .client
            .get(app.url(&format!("/gcal/{MAILBOX}/ping?calendar={MAILBOX}")))
            .header("X-Consumer-Custom-ID", "bench")
            .send()
            .await
            .unwrap();
        assert_eq!(warm.status(), 200);
        let token = sim.live_token(MAILBOX).unwrap();
        (sim, app, key, token)
    });
    println!(
        "load: wrk, 1 thread, {connections} connections, {seconds} s per target, 2 worker threads shared by simulator and host; quota buckets {}",
        if buckets { "on (Redis)" } else { "off" }
    );
    let direct = wrk(
        &format!("{}calendars/{MAILBOX}", sim.api_base()),
        &format!("Authorization: Bearer {token}"),
        seconds,
        connections,
    );
    let through = wrk(
        &app.url(&format!("/gcal/{MAILBOX}/ping?calendar={MAILBOX}")),
        "X-Consumer-Custom-ID: bench",
        seconds,
        connections,
    );
    println!("straight to the simulator   {direct:>10.0} req/s");
    println!(
        "through google-calendar     {through:>10.0} req/s  ({:.0}% of straight)",
        100.0 * through / direct
    );
    println!(
        "token requests during the run: {}",
        sim.token_requests(MAILBOX)
    );
    // The plugin answers 200 either way; the host's own count says whether Google did.
    let metrics = runtime.block_on(app.metrics());
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("bitbylaw_upstream_calls_total{") && !l.contains("outcome=\"ok\"")
        })
        .collect();
    assert!(failed.is_empty(), "calls failed during the run: {failed:?}");
}
