//! Guest log lines reach the host's log as tracing events with tenant, plugin
//! and request id; secrets never appear in it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw::config::LogFormat;
use bitbylaw_tests::{Backend, LogCapture, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_logs_carry_tenant_plugin_and_request_id_and_no_secrets() {
    let capture = LogCapture::install_with(LogFormat::Json, "info");

    let secret_dir = tempfile::tempdir().unwrap();
    let token_file = secret_dir.path().join("token");
    std::fs::write(&token_file, "tok-secret-456").unwrap();
    let tenant = format!(
        "[plugins.hello]\ncomponent = \"{{component:hello}}\"\n[plugins.hello.secrets]\ntoken = {{ file = \"{}\" }}\n",
        token_file.display()
    );
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("key-secret-123"), &tenant)
        .start()
        .await;

    let response = app
        .client
        .get(app.url("/hello/Ada"))
        .header("apikey", "key-secret-123")
        .header("Kong-Request-ID", "req-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refused = app
        .client
        .get(app.url("/hello/Ada?apikey=key-secret-999"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let lines = capture.lines();
    let greeted = lines
        .iter()
        .find(|line| {
            line["fields"]["message"] == "greeted Ada" && line["span"]["request_id"] == "req-log-1"
        })
        .unwrap_or_else(|| panic!("no guest log line in {lines:#?}"));
    assert_eq!(greeted["level"], "INFO");
    assert_eq!(greeted["target"], "plugin");
    assert_eq!(greeted["fields"]["tenant"], "firm-a");
    assert_eq!(greeted["fields"]["plugin"], "hello");
    assert_eq!(greeted["fields"]["request_id"], "req-log-1");
    assert_eq!(greeted["fields"]["fields"], "visits=1");
    assert_eq!(greeted["span"]["request_id"], "req-log-1");

    // The capture is the test binary's: find this test's refusal by its error.
    assert!(
        lines.iter().any(
            |line| line["fields"]["message"] == "request refused: no tenant"
                && line["fields"]["error"] == "invalid API key"
        ),
        "the refusal is logged"
    );

    let text = capture.text();
    for secret in ["key-secret-123", "key-secret-999", "tok-secret-456"] {
        assert!(
            !text.contains(secret),
            "secret {secret} in the log:\n{text}"
        );
    }
}

/// The host's own access lines: one per request, refused ones included
/// (method, path, route, tenant, plugin, status, time, bytes and request id,
/// from the line and its span), one per event delivery; refusals are counted
/// in `bitbylaw_http_refused_total`, by tenant where known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_event_leaves_an_access_line_and_refusals_are_counted() {
    let capture = LogCapture::install_with(LogFormat::Json, "info");
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.hello]\ncomponent = \"{component:hello}\"\n",
        )
        .start()
        .await;
    let send = |method: reqwest::Method, path: &str, id: &str, key: Option<&str>| {
        let mut request = app
            .client
            .request(method, app.url(path))
            .header("Kong-Request-ID", id);
        if let Some(key) = key {
            request = request.header("apikey", key);
        }
        request.send()
    };
    use reqwest::Method;
    assert_eq!(
        send(Method::GET, "/hello/Grace", "acc-ok", Some("k"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Method::GET, "/nowhere", "acc-404", Some("k"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        send(Method::GET, "/hello/Grace", "acc-401", None)
            .await
            .unwrap()
            .status(),
        401
    );
    let saved = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "k")
        .json(&serde_json::json!({ "text": "Akte 17 anrufen" }))
        .send()
        .await
        .unwrap();
    assert!(saved.status().is_success(), "{}", saved.status());

    let access = |id: &str| {
        capture
            .lines()
            .into_iter()
            .find(|line| line["target"] == "bitbylaw::access" && line["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}:\n{}", capture.text()))
    };
    let ok = access("acc-ok");
    assert_eq!(ok["fields"]["status"], 200);
    assert_eq!(ok["span"]["method"], "GET");
    assert_eq!(ok["span"]["path"], "/hello/Grace");
    assert_eq!(ok["span"]["route"], "/hello/{name}");
    assert_eq!(ok["span"]["tenant"], "firm-a");
    assert_eq!(ok["span"]["plugin"], "hello");
    assert!(ok["fields"]["duration_ms"].as_f64().is_some(), "{ok}");
    assert!(
        ok["fields"]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{ok}"
    );
    let not_found = access("acc-404");
    assert_eq!(not_found["fields"]["status"], 404);
    assert_eq!(not_found["span"]["tenant"], "firm-a");
    assert!(not_found["span"]["plugin"].is_null(), "{not_found}");
    let unknown = access("acc-401");
    assert_eq!(unknown["fields"]["status"], 401);
    assert!(unknown["span"]["tenant"].is_null(), "{unknown}");

    // The saved note's event, delivered to the plugin: its own line.
    let delivered = bitbylaw_tests::wait_for(std::time::Duration::from_secs(10), || async {
        capture.lines().into_iter().find(|line| {
            line["target"] == "bitbylaw::access"
                && line["fields"]["message"] == "event"
                && line["fields"]["topic"] == "hello.note-saved"
        })
    })
    .await;
    assert_eq!(delivered["fields"]["tenant"], "firm-a");
    assert_eq!(delivered["fields"]["plugin"], "hello");
    assert_eq!(delivered["fields"]["attempt"], 1);
    assert_eq!(delivered["fields"]["outcome"], "done");

    let metrics = app.metrics().await;
    for series in [
        r#"bitbylaw_http_refused_total{tenant="firm-a",status="404",reason="not_found"} 1"#,
        r#"bitbylaw_http_refused_total{tenant="",status="401",reason="unauthorized"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
}
