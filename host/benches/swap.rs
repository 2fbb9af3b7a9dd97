//! Version switches: time from upload to the new version serving (cold
//! compile included), and failed requests while versions are switched under
//! load (`wrk`, a separate process).
//!
//! Run: `cargo bench -p bitbylaw --bench swap` (needs wrk; `scripts/bench.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

const TOKEN: &str = "bench-admin-token";

fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} missing: scripts/build-components.sh", path.display()))
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/greeter_v1.wasm");
        let host_toml = format!(
            "[log]\nfilter = \"warn\"\n[ingress]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[admin]\ntoken = {{ file = \"{}\" }}\n[components]\ndir = \"{}\"\n[runtime]\ncache_dir = \"{}\"\n",
            dir.path().join("token").display(),
            dir.path().join("store").display(),
            dir.path().join("cache").display(),
        );
        let tenant = format!("kong_consumers = [\"bench\"]\n[plugins.greeter]\ncomponent = \"{}\"\n[plugins.greeter.limits]\nmax_idle_instances = 64\n", v1.display());
        let (host, _guard) = common::start_host(&host_toml, "bench", &tenant).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(bitbylaw::server::run(listener, host, std::future::pending()));
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");

        // Upload (compiled cold: a fresh cache), switch, first answer from the new version.
        let started = Instant::now();
        let upload = |version: &'static str, name: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let response = client
                    .put(format!("{base}/admin/components/greeter/{version}"))
                    .bearer_auth(TOKEN)
                    .body(component(name))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            }
        };
        upload("2.0.0", "greeter_v2").await;
        let uploaded = started.elapsed();
        let switch = |version: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let response = client
                    .post(format!("{base}/admin/tenants/bench/plugins/greeter/version"))
                    .bearer_auth(TOKEN)
                    .body(format!("{{\"version\": \"{version}\"}}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        };
        switch("2.0.0").await;
        loop {
            let body = client
                .get(format!("{base}/greet"))
                .header("X-Consumer-Custom-ID", "bench")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if body.contains("2.0.0") {
                break;
            }
        }
        let serving = started.elapsed();
        println!(
            "upload (cold compile + check): {:.0} ms; upload to new version serving: {:.0} ms",
            uploaded.as_secs_f64() * 1000.0,
            serving.as_secs_f64() * 1000.0
        );
        upload("1.0.0", "greeter_v1").await;

        // Switches under load.
        let url = format!("{base}/greet");
        let load = std::thread::spawn(move || {
            Command::new("wrk")
                .args(["-t1", "-c16", "-d10s", "-H", "X-Consumer-Custom-ID: bench", &url])
                .output()
                .expect("wrk is needed: apt-get install wrk")
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut switches = 0;
        let mut switch_times = Vec::new();
        let until = Instant::now() + Duration::from_secs(9);
        while Instant::now() < until {
            for version in ["1.0.0", "2.0.0"] {
                let one = Instant::now();
                switch(version).await;
                switch_times.push(one.elapsed());
                switches += 1;
            }
        }
        let output = load.join().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let requests = text.lines().find(|l| l.contains("requests in")).unwrap_or("?").trim().to_owned();
        let failed = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|| "0".into());
        let errors = text.lines().find(|l| l.contains("Socket errors")).unwrap_or("no socket errors").trim().to_owned();
        switch_times.sort();
        println!(
            "under load: {switches} switches (median {:.1} ms each) during `{requests}`; failed responses: {failed}; {errors}",
            switch_times[switch_times.len() / 2].as_secs_f64() * 1000.0
        );
    });
}
