//! What the proxy costs: requests per second straight to the Advoware simulator
//! (with a valid token) against the same call through the host's
//! `advoware-proxy` (tenant resolution, plugin call, token from the store,
//! outbound request), one load tool (`wrk`) for both, token store on Redis.
//!
//! Run: `cargo bench -p bitbylaw-tests --bench advoware_proxy` with wrk on the
//! PATH and Redis on 127.0.0.1:6379 (`scripts/bench.sh` sees to both).
//! `BENCH_SECONDS` (default 10) and `BENCH_CONNECTIONS` (default 32) tune the load;
//! `BENCH_STORE=memory` keeps the token in the host instead of Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::bench::{env_or, wrk};
use bitbylaw_tests::simulators::advoware::Advoware;
use bitbylaw_tests::{Backend, TestHost};

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
    let (sim, app, _secrets, token) = runtime.block_on(async {
        let sim = Advoware::start_default().await;
        let secrets = tempfile::tempdir().unwrap();
        let account = sim.account().clone();
        std::fs::write(secrets.path().join("key"), &account.api_key).unwrap();
        std::fs::write(secrets.path().join("password"), &account.password).unwrap();
        let tenant = format!(
            "kong_consumers = [\"bench\"]\n[advoware]\napi_url = \"{base}\"\nsecurity_gateway = \"{base}\"\napp_id = \"{}\"\nkanzlei = \"{}\"\ndatabase = \"{}\"\nuser = \"{}\"\napi_key = {{ file = \"{}\" }}\npassword = {{ file = \"{}\" }}\n[plugins.advoware-proxy]\ncomponent = \"{{component:advoware-proxy}}\"\nadvoware = true\n[plugins.advoware-proxy.limits]\nmax_idle_instances = 64\n",
            account.app_id,
            account.kanzlei,
            account.database,
            account.user,
            secrets.path().join("key").display(),
            secrets.path().join("password").display(),
            base = sim.base_url(),
        );
        let app = TestHost::builder(bench_backend())
            .host_toml("[log]\nfilter = \"warn\"\n[ingress]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
            .tenant("bench", None, &tenant)
            .start()
            .await;
        // Warm: the token is in the store before the load starts.
        let warm = app
            .client
            .get(app.url("/advoware/proxy?endpoint=employees"))
            .header("X-Consumer-Custom-ID", "bench")
            .send()
            .await
            .unwrap();
        assert_eq!(warm.status(), 200);
        let token = sim.issued_tokens().pop().unwrap();
        (sim, app, secrets, token)
    });

    println!(
        "load: wrk, 1 thread, {connections} connections, {seconds} s per target, 2 worker threads shared by simulator and host"
    );
    let direct = wrk(
        &format!("{}employees", sim.api_base()),
        &format!("Authorization: Bearer {token}"),
        seconds,
        connections,
    );
    let proxied = wrk(
        &app.url("/advoware/proxy?endpoint=employees"),
        "X-Consumer-Custom-ID: bench",
        seconds,
        connections,
    );
    println!("straight to the simulator  {direct:>10.0} req/s");
    println!(
        "through advoware-proxy     {proxied:>10.0} req/s  ({:.0}% of straight)",
        100.0 * proxied / direct
    );
    println!("token requests during the run: {}", sim.token_requests());
}

/// `BENCH_STORE=memory` keeps the token cache in the host's memory instead of Redis.
fn bench_backend() -> Backend {
    match std::env::var("BENCH_STORE").as_deref() {
        Ok("memory") => Backend::Memory,
        _ => Backend::Redis,
    }
}
