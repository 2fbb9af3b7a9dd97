//! Python plugins: `plugins/hello-py`, the example plugin `hello` written in
//! Python and built with componentize-py, served by the host like a Rust one
//! against real Redis — and the instance slot that a Python component needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost, replace_file, wait_for};
use serde_json::{Value, json};

const TENANT: &str = "[plugins.hello-py]\ncomponent = \"{component:hello-py}\"\n\
                      [plugins.hello-py.config]\ngreeting = \"Moin\"\n";

async fn call(app: &TestHost, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .header("apikey", "k");
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The route answers from the tenant's config, the visit counter lives in
/// the store, and a saved note is announced and recorded by the plugin's
/// own event handler; bad input gets a JSON error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_plugin_answers_keeps_state_and_handles_its_event() {
    let app = TestHost::builder(Backend::Redis)
        .host_toml("[events]\nretry_poll_ms = 20")
        .tenant("firm-py", Some("k"), TENANT)
        .start()
        .await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );

    for visits in 1..=2 {
        let (status, body) = call(&app, "GET", "/hello-py/Ada", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({ "message": "Moin, Ada!", "visits": visits }));
    }

    let (status, body) = call(
        &app,
        "PUT",
        "/hello-py/notes/n-1",
        Some(r#"{"text":"Akte anlegen"}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({ "text": "Akte anlegen" })));
    let saved = wait_for(Duration::from_secs(20), || async {
        let (_, ids) = call(&app, "GET", "/hello-py/notes", None).await;
        (ids == json!(["n-1"])).then_some(ids)
    })
    .await;
    assert_eq!(saved, json!(["n-1"]), "the event was handled once");
    let (status, note) = call(&app, "GET", "/hello-py/notes/n-1", None).await;
    assert_eq!((status, note), (200, json!({ "text": "Akte anlegen" })));

    for (body, expected) in [
        (r#"{"text":""}"#, "`text` must be a string"),
        ("not json", "the body is not JSON"),
    ] {
        let (status, answer) = call(&app, "PUT", "/hello-py/notes/n-2", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
    let (status, answer) = call(&app, "GET", "/hello-py/notes/n-2", None).await;
    assert_eq!(status, 404, "a refused note is not stored: {answer}");
    assert_eq!(answer["error"], "no note `n-2`");
    let (_, ids) = call(&app, "GET", "/hello-py/notes", None).await;
    assert_eq!(ids, json!(["n-1"]), "and not announced");
}

/// A Python component is 14 core instances: a host whose slot holds fewer
/// refuses it when it loads, naming the figures and the setting, rather than
/// failing calls under load once the pool's core instances run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_too_small_for_a_python_plugin_is_refused_at_load() {
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[runtime.slot]\ncore_instances = 8")
        .tenant("firm-py", Some("k"), TENANT)
        .start()
        .await;
    let error = app
        .host
        .broken_tenants()
        .remove("firm-py")
        .expect("refused");
    assert!(error.contains("[runtime.slot]"), "{error}");
    assert!(error.contains("core module instances"), "{error}");
    assert!(error.contains("configured maximum of 8"), "{error}");
}

/// A Python component compiles for seconds (18 MiB of Wasm): that happens off
/// the request path and ahead of the swap, so the tenant's running version
/// keeps answering while it compiles, and the new plugin serves right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_a_python_plugin_stalls_no_request() {
    // An empty cache: the component really compiles.
    let cache = tempfile::tempdir().unwrap();
    let app = TestHost::builder(Backend::Memory)
        .cache_dir(cache.path())
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.hello]\ncomponent = \"{component:hello}\"\n",
        )
        .start()
        .await;
    let file = app.tenant_file("firm-a");
    let with_python = format!(
        "{}\n[plugins.hello-py]\ncomponent = \"{}\"\n",
        std::fs::read_to_string(&file).unwrap(),
        bitbylaw_tests::component("hello-py").display()
    );
    replace_file(&file, &with_python);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (client, url, stop) = (app.client.clone(), app.url("/hello/Ada"), stop.clone());
        tokio::spawn(async move {
            let mut answered = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = client.get(&url).header("apikey", "k").send().await.unwrap();
                answered.push((std::time::Instant::now(), answer.status().as_u16()));
            }
            answered
        })
    };
    let started = std::time::Instant::now();
    assert!(app.host.reload_tenant_file(&file).await);
    let reload = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = traffic.await.unwrap();

    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );
    assert!(
        answered.iter().all(|(_, status)| *status == 200),
        "{answered:?}"
    );
    let longest_gap = answered
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .max()
        .unwrap();
    assert!(
        longest_gap * 4 < reload,
        "a request waited {longest_gap:?} while the reload took {reload:?}"
    );
    let (status, body) = call(&app, "GET", "/hello-py/Ada", None).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("Hello, Ada!"))
    );
}
