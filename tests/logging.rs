//! Guest log lines reach the host's log as tracing events with tenant, plugin
//! and request id; secrets never appear in it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw::config::LogFormat;
use bitbylaw_tests::{Backend, LogCapture, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_logs_carry_tenant_plugin_and_request_id_and_no_secrets() {
    let capture = LogCapture::install(LogFormat::Json, "info");

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
        .find(|line| line["fields"]["message"] == "greeted Ada")
        .unwrap_or_else(|| panic!("no guest log line in {lines:#?}"));
    assert_eq!(greeted["level"], "INFO");
    assert_eq!(greeted["target"], "plugin");
    assert_eq!(greeted["fields"]["tenant"], "firm-a");
    assert_eq!(greeted["fields"]["plugin"], "hello");
    assert_eq!(greeted["fields"]["request_id"], "req-log-1");
    assert_eq!(greeted["fields"]["fields"], "visits=1");
    assert_eq!(greeted["span"]["request_id"], "req-log-1");

    let refusal = lines
        .iter()
        .find(|line| line["fields"]["message"] == "request refused: no tenant")
        .expect("the refusal is logged");
    assert_eq!(refusal["fields"]["error"], "invalid API key");

    let text = capture.text();
    for secret in ["key-secret-123", "key-secret-999", "tok-secret-456"] {
        assert!(
            !text.contains(secret),
            "secret {secret} in the log:\n{text}"
        );
    }
}
