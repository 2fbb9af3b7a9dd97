//! Swapping a tenant's plugin version while traffic flows, and refusing
//! components that cannot serve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost, component, wait_for};
use serde_json::Value;

fn tenant_with(component_path: &str) -> String {
    format!("[plugins.greeter]\ncomponent = \"{component_path}\"\n")
}

async fn version(app: &TestHost) -> String {
    let body: Value = app.get("/greet", "k").await.json().await.unwrap();
    body["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_versions_ten_times_under_load_fails_no_request() {
    let v1 = component("greeter-v1").display().to_string();
    let v2 = component("greeter-v2").display().to_string();
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[reload]\npoll_ms = 20")
        .tenant("firm-a", Some("k"), &tenant_with(&v1))
        .start()
        .await;
    let traffic = bitbylaw_tests::Traffic::start(app.client.clone(), app.url("/greet"), "k");
    let file = app.tenant_file("firm-a");
    for _ in 0..10 {
        for (path, expected) in [(&v2, "2.0.0"), (&v1, "1.0.0")] {
            bitbylaw_tests::replace_file(
                &file,
                &format!(
                    "api_keys = [{{ file = \"{}\" }}]\n{}",
                    key_file(&app),
                    tenant_with(path)
                ),
            );
            wait_for(Duration::from_secs(20), || async {
                (version(&app).await == expected).then_some(())
            })
            .await;
        }
    }
    let versions = traffic.stop_all_ok().await;
    assert!(versions.iter().all(|v| v == "1.0.0" || v == "2.0.0"));
    let changes = bitbylaw_tests::version_changes(&versions);
    assert!(
        changes >= 10,
        "answers changed only {changes} times over {} requests",
        versions.len()
    );
    assert!(app.host.broken_tenants().is_empty());
}

/// The API key file the builder wrote for tenant `firm-a` (key `k`).
fn key_file(app: &TestHost) -> String {
    app.tenant_file("firm-a")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("firm-a.key")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_foreign_component_is_refused_and_the_old_version_keeps_serving() {
    let v1 = component("greeter-v1").display().to_string();
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[reload]\npoll_ms = 20")
        .tenant("firm-a", Some("k"), &tenant_with(&v1))
        .start()
        .await;
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"\0asm this is no component").unwrap();
    let other_world = component("other-world").display().to_string();
    let file = app.tenant_file("firm-a");
    let write = |path: &str| {
        bitbylaw_tests::replace_file(
            &file,
            &format!(
                "api_keys = [{{ file = \"{}\" }}]\n{}",
                key_file(&app),
                tenant_with(path)
            ),
        )
    };

    for (path, reason) in [
        (
            garbage.path().display().to_string(),
            "not a valid WebAssembly component",
        ),
        (other_world, "bitbylaw:plugin"),
    ] {
        write(&path);
        let error = wait_for(Duration::from_secs(20), || async {
            let broken = app.host.broken_tenants();
            broken.get("firm-a").filter(|e| e.contains(&path)).cloned()
        })
        .await;
        assert!(error.contains(reason), "{error}");
        assert!(error.contains("key `plugins.greeter.component`"), "{error}");
        assert_eq!(
            version(&app).await,
            "1.0.0",
            "the running version keeps serving"
        );
    }

    write(&component("greeter-v2").display().to_string());
    wait_for(Duration::from_secs(20), || async {
        (version(&app).await == "2.0.0").then_some(())
    })
    .await;
    // Cleared once the reload has finished (event delivery restarts after the swap).
    wait_for(Duration::from_secs(10), || async {
        app.host.broken_tenants().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_component_file_reloads_the_tenants_using_it() {
    let folder = tempfile::tempdir().unwrap();
    let shared = folder.path().join("greeter.wasm");
    std::fs::copy(component("greeter-v1"), &shared).unwrap();
    let tenant = tenant_with(&shared.display().to_string());
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[reload]\npoll_ms = 20")
        .tenant("firm-a", Some("k"), &tenant)
        .tenant(
            "firm-b",
            Some("kb"),
            "[plugins.greeter]\ncomponent = \"{component:greeter-v1}\"\n",
        )
        .start()
        .await;
    let b_before = app.running("firm-b");
    assert_eq!(version(&app).await, "1.0.0");

    let staged = folder.path().join("greeter.wasm.new");
    std::fs::copy(component("greeter-v2"), &staged).unwrap();
    std::fs::rename(&staged, &shared).unwrap();
    wait_for(Duration::from_secs(20), || async {
        (version(&app).await == "2.0.0").then_some(())
    })
    .await;
    let b_after = app.running("firm-b");
    assert!(
        Arc::ptr_eq(&b_before, &b_after),
        "tenant B uses another file and was not reloaded"
    );
}
