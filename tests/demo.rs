//! The demo from the README: `deploy/demo` as it is, the host as its own process
//! with the environment `scripts/demo.sh` sets, the Advoware simulator on the
//! demo's port 9471.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, TOKEN_LIFETIME};
use bitbylaw_tests::{HostProcess, cache_dir, component, wait_for};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_config_serves_hello_and_the_advoware_proxy() {
    let sim = Advoware::start_on(
        "127.0.0.1:9471".parse().unwrap(),
        Account::default(),
        TOKEN_LIFETIME,
    )
    .await
    .expect("port 9471 is the demo simulator's; is scripts/demo.sh running?");
    sim.seed_demo_data();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/host.toml");
    let dir = tempfile::tempdir().unwrap();
    let account = Account::default();
    let listen = format!("127.0.0.1:{port}");
    // What scripts/demo.sh does: the built plugins into a component store as version "demo".
    let store = dir.path().join("components");
    for plugin in ["hello", "advoware-proxy"] {
        std::fs::create_dir_all(store.join(plugin)).unwrap();
        std::fs::copy(component(plugin), store.join(plugin).join("demo.wasm")).unwrap();
    }
    let (store, cache) = (
        store.display().to_string(),
        cache_dir().display().to_string(),
    );
    let host = HostProcess::spawn(
        &config,
        &dir.path().join("host.log"),
        &[
            ("BITBYLAW_LISTEN", listen.as_str()),
            ("BITBYLAW_COMPONENTS__DIR", store.as_str()),
            ("BITBYLAW_RUNTIME__CACHE_DIR", cache.as_str()),
            ("DEMO_API_KEY", "demo-key"),
            ("DEMO_ADVOWARE_API_KEY", account.api_key.as_str()),
            ("DEMO_ADVOWARE_PASSWORD", account.password.as_str()),
        ],
    );
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    wait_for(Duration::from_secs(60), || async {
        let ready = client.get(format!("{base}/ready")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;

    let hello = client
        .get(format!("{base}/hello/world"))
        .header("apikey", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200, "{}", host.log_text());

    let proxied = client
        .get(format!(
            "{base}/advoware/proxy?endpoint=appointments&kuerzel=SB&from=2026-12-01&to=2026-12-31"
        ))
        .header("apikey", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "{}", host.log_text());
    let appointments: Value = proxied.json().await.unwrap();
    let texts: Vec<&str> = appointments
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["text"].as_str())
        .collect();
    assert!(texts.contains(&"Mandantengespräch Müller"), "{texts:?}");
    assert!(texts.contains(&"Kanzleirunde"), "{texts:?}");
    assert_eq!(sim.token_requests(), 1);
}
