//! Tenants apart: rate and instance limits per tenant, reloading one tenant's
//! file without touching the others, and broken tenant files that leave the
//! others running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost, wait_for};
use serde_json::Value;

const HELLO: &str = "[plugins.hello]\ncomponent = \"{component:hello}\"\n[plugins.hello.config]\ngreeting = \"Guten Tag\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_while_another_is_served() {
    let limited = format!("[limits]\nrequests_per_second = 0.2\nburst = 3\n{HELLO}");
    let app = TestHost::builder(Backend::Redis)
        .tenant("firm-a", Some("ka"), &limited)
        .tenant("firm-b", Some("kb"), HELLO)
        .start()
        .await;
    for remaining in ["2", "1", "0"] {
        let ok = app.get("/hello/x", "ka").await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit-limit"], "3");
        assert_eq!(ok.headers()["ratelimit-remaining"], remaining);
    }
    let refused = app.get("/hello/x", "ka").await;
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=5).contains(&retry),
        "one request every 5 s: retry after {retry}"
    );
    let reset: u64 = headers["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (10..=15).contains(&reset),
        "three requests to refill at 0.2/s: reset {reset}"
    );
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "rate_limited"
    );

    // Same moment, other tenant: unaffected and unlimited.
    let other = app.get("/hello/x", "kb").await;
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("ratelimit-limit").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_instance_cap_gets_503() {
    let tenant = format!(
        "[limits]\nmax_concurrent_instances = 1\n{HELLO}[plugins.endless-loop]\ncomponent = \"{{component:endless-loop}}\"\n[plugins.endless-loop.limits]\ndeadline_ms = 3000\n"
    );
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("ka"), &tenant)
        .tenant("firm-b", Some("kb"), HELLO)
        .start()
        .await;
    let looping = {
        let client = app.client.clone();
        let url = app.url("/loop");
        tokio::spawn(async move {
            client
                .get(url)
                .header("apikey", "ka")
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Once the loop holds the only slot, the tenant's other calls are turned away.
    let slots = app.running("firm-a").instances.clone().unwrap();
    wait_for(Duration::from_secs(10), || async {
        (slots.available_permits() == 0).then_some(())
    })
    .await;
    let busy = app.get("/hello/x", "ka").await;
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(busy.json::<Value>().await.unwrap()["error"], "too_busy");
    assert_eq!(
        app.get("/hello/x", "kb").await.status(),
        200,
        "tenant B is not capped by A"
    );
    assert_eq!(looping.await.unwrap(), 504);
    assert_eq!(
        app.get("/hello/x", "ka").await.status(),
        200,
        "the slot is free again"
    );
}

async fn greeting(app: &TestHost, key: &str) -> String {
    let body: Value = app.get("/hello/Ada", key).await.json().await.unwrap();
    body["message"].as_str().unwrap_or_default().to_owned()
}

async fn broken(app: &TestHost) -> Value {
    app.ready_detail().await.1["broken_tenants"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_one_tenant_file_reloads_that_tenant_only() {
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[reload]\npoll_ms = 50")
        .tenant("firm-a", Some("ka"), HELLO)
        .tenant("firm-b", Some("kb"), HELLO)
        .start()
        .await;
    let b_before = app.running("firm-b");
    let a_before = app.running("firm-a");

    let file = app.tenant_file("firm-a");
    let text = std::fs::read_to_string(&file).unwrap();
    bitbylaw_tests::replace_file(&file, &text.replace("Guten Tag", "Moin"));
    wait_for(Duration::from_secs(10), || async {
        (greeting(&app, "ka").await == "Moin, Ada!").then_some(())
    })
    .await;

    let deployment = app.host.registry().current();
    assert!(
        !Arc::ptr_eq(deployment.tenant("firm-a").unwrap(), &a_before),
        "A was reloaded"
    );
    assert!(
        Arc::ptr_eq(deployment.tenant("firm-b").unwrap(), &b_before),
        "B was not touched"
    );
    assert_eq!(greeting(&app, "kb").await, "Guten Tag, Ada!");

    // A malformed edit: reported, and A keeps serving its last good version.
    bitbylaw_tests::replace_file(&file, "[plugins.hello\ncomponent = ");
    let reported = wait_for(Duration::from_secs(10), || async {
        let broken = broken(&app).await;
        broken.get("firm-a").cloned()
    })
    .await;
    assert!(
        reported.as_str().unwrap().contains("firm-a.toml"),
        "{reported}"
    );
    assert_eq!(greeting(&app, "ka").await, "Moin, Ada!");
    assert_eq!(greeting(&app, "kb").await, "Guten Tag, Ada!");

    // Fixed again: loaded, and no longer reported.
    bitbylaw_tests::replace_file(&file, &text.replace("Guten Tag", "Servus"));
    wait_for(Duration::from_secs(10), || async {
        (greeting(&app, "ka").await == "Servus, Ada!").then_some(())
    })
    .await;
    // Cleared once the reload has finished (event delivery restarts after the swap).
    wait_for(Duration::from_secs(10), || async {
        broken(&app).await.get("firm-a").is_none().then_some(())
    })
    .await;

    // Removing the file removes the tenant.
    std::fs::remove_file(&file).unwrap();
    wait_for(Duration::from_secs(10), || async {
        (app.get("/hello/x", "ka").await.status() == 401).then_some(())
    })
    .await;
    assert_eq!(app.get("/hello/x", "kb").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tenant_at_start_leaves_the_others_running() {
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("ka"), HELLO)
        .tenant(
            "firm-c",
            None,
            "[plugins.hello]\ncomponent = \"missing.wasm\"\n",
        )
        .tenant("firm-d", None, "this is = not [toml")
        .start()
        .await;
    assert_eq!(greeting(&app, "ka").await, "Guten Tag, Ada!");
    let broken = broken(&app).await;
    assert!(
        broken["firm-c"]
            .as_str()
            .unwrap()
            .contains("key `plugins.hello.component`"),
        "{broken}"
    );
    assert!(
        broken["firm-d"].as_str().unwrap().contains("invalid TOML"),
        "{broken}"
    );
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "the host serves the tenants it could load"
    );
}

/// Two tenant files claiming one API key or one Kong consumer: the later one
/// (in file order) is broken, the host starts and the other tenants run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_api_key_or_consumer_breaks_only_the_later_claimant() {
    let claims_consumer = format!("kong_consumers = [\"firm-a\"]\n{HELLO}");
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("shared-key"), &claims_consumer)
        .tenant("firm-b", Some("shared-key"), HELLO)
        .tenant("firm-c", Some("kc"), &claims_consumer)
        .tenant("firm-d", Some("kd"), HELLO)
        .start()
        .await;
    let broken = app.host.broken_tenants();
    assert_eq!(
        broken.keys().collect::<Vec<_>>(),
        ["firm-b", "firm-c"],
        "{broken:?}"
    );
    assert!(
        broken["firm-b"].contains("tenants `firm-a` and `firm-b` share an API key"),
        "{}",
        broken["firm-b"]
    );
    assert!(
        broken["firm-c"].contains("both claim Kong consumer `firm-a`"),
        "{}",
        broken["firm-c"]
    );
    assert!(
        !broken["firm-b"].contains("shared-key"),
        "the key is not told"
    );
    for key in ["shared-key", "kd"] {
        assert_eq!(app.get("/hello/x", key).await.status(), 200, "{key}");
    }
    assert_eq!(app.get("/hello/x", "kc").await.status(), 401);
}

/// A reload whose event delivery the store cannot ready keeps the running
/// version and its delivery (nothing is stopped first), is reported as worth
/// another try, and goes through once the store can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_the_store_refuses_keeps_the_running_version_and_its_events() {
    let tenant = "[plugins.hello]\ncomponent = \"{component:hello}\"\n[plugins.hello.config]\ngreeting = \"Hallo\"\n[plugins.flaky]\ncomponent = \"{component:flaky}\"\n";
    let app = TestHost::builder(Backend::Redis)
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    let greeting = || async {
        let body: Value = app.get("/hello/x", "k").await.json().await.unwrap();
        body["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(greeting().await, "Hallo, x!");

    // The flaky plugin's topic stream is no stream: Redis refuses its consumer group.
    let stream = format!("{}:{{firm-a}}:ev:topic:flaky", app.prefix);
    let mut redis = bitbylaw_tests::redis_connection();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut redis).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .query(&mut redis)
        .unwrap();
    let file = app.tenant_file("firm-a");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Hallo", "Moin");
    bitbylaw_tests::replace_file(&file, &text);
    assert!(
        !app.host.reload_tenant_file(&file).await,
        "a store error is worth another try"
    );
    let broken = app.host.broken_tenants();
    assert!(
        broken["firm-a"].contains("readying event delivery"),
        "{broken:?}"
    );
    assert_eq!(
        greeting().await,
        "Hallo, x!",
        "the running version serves on"
    );

    // Its event delivery runs on too: a saved note reaches the handler.
    let saved = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "k")
        .json(&serde_json::json!({ "text": "still delivered" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    wait_for(Duration::from_secs(10), || async {
        let ids: Value = app.get("/hello/notes", "k").await.json().await.unwrap();
        (ids == serde_json::json!(["n1"])).then_some(())
    })
    .await;

    let _: () = redis::cmd("DEL").arg(&stream).query(&mut redis).unwrap();
    assert!(app.host.reload_tenant_file(&file).await);
    assert_eq!(greeting().await, "Moin, x!");
    assert!(app.host.broken_tenants().is_empty());
}
