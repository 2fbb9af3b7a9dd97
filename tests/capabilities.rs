//! What a plugin reaches through its capabilities is its own tenant's:
//! locks, buckets, settings and secrets, through the real WIT calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::{Backend, TestHost};
use serde_json::Value;

async fn probe_host(backend: Backend) -> (TestHost, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "s3cret-tok").unwrap();
    let tenant_a = format!(
        r#"
[plugins.probe]
component = "{{component:capability-probe}}"
[plugins.probe.config]
greeting = "from a"
retries = 3
endpoints = {{ api = "https://a.example" }}
[plugins.probe.secrets]
token = {{ file = "{}" }}
"#,
        token_file.display()
    );
    let tenant_b = r#"
[plugins.probe]
component = "{component:capability-probe}"
[plugins.probe.config]
greeting = "from b"
"#;
    let app = TestHost::builder(backend)
        .tenant("firm-a", Some("ka"), &tenant_a)
        .tenant("firm-b", Some("kb"), tenant_b)
        .start()
        .await;
    (app, secrets)
}

async fn call(app: &TestHost, method: reqwest::Method, path: &str, key: &str) -> Value {
    let response = app
        .client
        .request(method, app.url(path))
        .header("apikey", key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn locks_are_per_tenant_and_token_bound(backend: Backend) {
    let (app, _secrets) = probe_host(backend).await;
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;
    let a = call(&app, post.clone(), "/probe/lock/sync", "ka").await["token"].clone();
    assert!(a.is_string());
    assert!(
        call(&app, post.clone(), "/probe/lock/sync", "ka").await["token"].is_null(),
        "held"
    );
    let b = call(&app, post.clone(), "/probe/lock/sync", "kb").await["token"].clone();
    assert!(
        b.is_string(),
        "tenant B's lock of the same name is another lock"
    );

    let wrong = format!("/probe/lock/sync?token={}", b.as_str().unwrap());
    assert_eq!(
        call(&app, delete.clone(), &wrong, "ka").await["released"],
        false
    );
    let right = format!("/probe/lock/sync?token={}", a.as_str().unwrap());
    assert_eq!(
        call(&app, delete.clone(), &right, "ka").await["released"],
        true
    );
    assert!(call(&app, post, "/probe/lock/sync", "ka").await["token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_redis() {
    locks_are_per_tenant_and_token_bound(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_memory() {
    locks_are_per_tenant_and_token_bound(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_tenant_and_can_wait_for_the_refill() {
    let (app, _secrets) = probe_host(Backend::Redis).await;
    let post = reqwest::Method::POST;
    let slow = "/probe/rate/api?capacity=2&per_second=0.001";
    let allowed: Vec<Value> =
        futures::future::join_all((0..3).map(|_| call(&app, post.clone(), slow, "ka")))
            .await
            .into_iter()
            .map(|decision| decision["allowed"].clone())
            .collect();
    assert_eq!(allowed.iter().filter(|a| **a == true).count(), 2);
    let refused = call(&app, post.clone(), slow, "ka").await;
    assert_eq!(refused["allowed"], false);
    assert!(refused["retry_after_ms"].as_u64().unwrap() > 900_000);
    assert_eq!(
        call(&app, post.clone(), slow, "kb").await["allowed"],
        true,
        "tenant B has its own bucket"
    );

    // 20 tokens per second: the second take waits ~50 ms for the refill instead of failing.
    let fast = "/probe/rate/burst?capacity=1&per_second=20&wait_ms=2000";
    assert_eq!(call(&app, post.clone(), fast, "ka").await["allowed"], true);
    assert_eq!(call(&app, post, fast, "ka").await["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_secrets_are_the_plugins_own() {
    let (app, _secrets) = probe_host(Backend::Memory).await;
    let get = reqwest::Method::GET;
    assert_eq!(
        call(&app, get.clone(), "/probe/config/greeting", "ka").await["value"],
        "from a"
    );
    assert_eq!(
        call(&app, get.clone(), "/probe/config/greeting", "kb").await["value"],
        "from b"
    );
    assert_eq!(
        call(&app, get.clone(), "/probe/config/retries", "ka").await["value"],
        "3"
    );
    assert_eq!(
        call(&app, get.clone(), "/probe/config/endpoints", "ka").await["value"],
        r#"{"api":"https://a.example"}"#
    );
    assert!(call(&app, get.clone(), "/probe/config/retries", "kb").await["value"].is_null());

    let a = call(&app, get.clone(), "/probe/secret/token", "ka").await;
    assert_eq!(a["present"], true);
    assert_eq!(a["length"], 10);
    assert_eq!(
        call(&app, get, "/probe/secret/token", "kb").await["present"],
        false
    );
}
