//! The screen pop's lookup as 3CX asks it (`GET /3cx/lookup?number=…`),
//! through the host to the `threecx` plugin, with EspoCRM and Advoware
//! answering from their simulators: latency percentiles of the full lookup
//! (no cache: three EspoCRM lists and one Advoware list per call), of a
//! cached one, and of one whose Advoware hangs (the answer must come at the
//! budget, not after the hang).
//!
//! Run: `cargo bench -p bitbylaw-tests --bench threecx_lookup` with Redis on
//! 127.0.0.1:6379. `BENCH_REQUESTS` (default 2000) sets the sample size of
//! the answering runs; the hanging run takes `BENCH_REQUESTS / 20`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bitbylaw_tests::bench::env_or;
use bitbylaw_tests::simulators::advoware::Advoware;
use bitbylaw_tests::simulators::espocrm::EspoCrm;
use bitbylaw_tests::{Backend, TestHost};
use serde_json::{Value, json};

const BUDGET_MS: u64 = 300;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let requests: usize = usize::try_from(env_or("BENCH_REQUESTS", 2000)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(requests));
}

fn tenant(espocrm: &EspoCrm, advoware: &Advoware, dir: &std::path::Path, cache_s: u64) -> String {
    format!(
        "[plugins.threecx]\ncomponent = \"{{component:threecx}}\"\nupstreams = [\"espocrm\", \"advoware\"]\n\
         [plugins.threecx.limits]\nmax_idle_instances = 16\n\
         [plugins.threecx.schedules.threecx_recordings]\nenabled = false\n\
         [plugins.threecx.schedules.threecx_calls]\nenabled = false\n\
         [plugins.threecx.config.lookup]\nbudget_ms = {BUDGET_MS}\ncache_s = {cache_s}\n\n{}\n{}",
        espocrm.upstream_toml("espocrm", dir, true),
        advoware.upstream_toml("advoware", dir),
    )
}

async fn run(requests: usize) {
    let espocrm = EspoCrm::start_default().await;
    let advoware = Advoware::start_default().await;
    // A realistic CRM: 500 contacts and 500 leads, one of them the caller.
    for i in 0..500 {
        espocrm.user_create(
            "Contact",
            json!({ "firstName": "Kontakt", "lastName": format!("Nr{i}"), "phoneNumber": format!("+4930{:07}", i) }),
        );
        espocrm.user_create(
            "Lead",
            json!({ "firstName": "Lead", "lastName": format!("Nr{i}"), "phoneNumber": format!("+4940{:07}", i) }),
        );
        advoware.insert_party(json!({ "vorname": "Partei", "name": format!("Nr{i}"), "telefon": format!("+4989{:07}", i) }));
    }
    espocrm.user_create(
        "Contact",
        json!({ "firstName": "Anna", "lastName": "Berg", "phoneNumber": "+491711234567" }),
    );
    advoware.insert_party(json!({ "vorname": "Anna", "name": "Berg", "telefon": "+491711234567" }));
    let dir = tempfile::tempdir().unwrap();
    let app = TestHost::builder(Backend::Redis)
        .host_toml("[log]\nfilter = \"warn\"\n")
        .tenant(
            "uncached",
            Some("k1"),
            &tenant(&espocrm, &advoware, dir.path(), 0),
        )
        .tenant(
            "cached",
            Some("k2"),
            &tenant(&espocrm, &advoware, dir.path(), 60),
        )
        .start()
        .await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );

    println!(
        "lookup of a known caller (2 records), sequential, 2 worker threads shared by simulators and host, Redis store"
    );
    let full = sample(&app, "k1", requests, true).await;
    report("both answering, no cache", &full);
    let cached = sample(&app, "k2", requests, true).await;
    report("both answering, cached", &cached);
    advoware.set_latency(Duration::from_secs(60));
    let hanging = sample(&app, "k1", (requests / 20).max(20), false).await;
    report(
        &format!("Advoware hanging, budget {BUDGET_MS} ms"),
        &hanging,
    );
    let over = hanging
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0 - BUDGET_MS as f64)
        .fold(f64::MIN, f64::max);
    println!("  longest answer past the budget: {over:.1} ms");
}

async fn sample(app: &TestHost, key: &str, count: usize, complete: bool) -> Vec<Duration> {
    let url = app.url("/3cx/lookup?number=0171%201234567");
    // Warm: tokens, instances, compiled code.
    for _ in 0..5 {
        app.client
            .get(&url)
            .header("apikey", key)
            .send()
            .await
            .unwrap();
    }
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let answer = app
            .client
            .get(&url)
            .header("apikey", key)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        took.push(started.elapsed());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["complete"], complete, "{body}");
        assert!(!body["contacts"].as_array().unwrap().is_empty(), "{body}");
    }
    took.sort();
    took
}

fn report(what: &str, sorted: &[Duration]) {
    let at = |q: f64| {
        let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_secs_f64() * 1000.0
    };
    println!(
        "{what:<36} n={:<5} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        sorted.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
