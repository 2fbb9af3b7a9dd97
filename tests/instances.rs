//! Instance lifecycle and limits: reuse, recycling, deadlines, memory, traps, egress.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost};
use serde_json::Value;

async fn calls(app: &TestHost, key: &str) -> u64 {
    let response = app.get("/counter", key).await;
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["calls"]
        .as_u64()
        .unwrap()
}

fn counter_tenant(limits: &str) -> String {
    format!(
        r#"
[plugins.counter]
component = "{{component:counter}}"
[plugins.counter.limits]
max_idle_instances = 1
deadline_ms = 1000
{limits}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instance_is_reused_until_its_call_budget() {
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            &counter_tenant("max_calls_per_instance = 3"),
        )
        .start()
        .await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(calls(&app, "k").await);
    }
    // Each instance serves three calls, then a new one starts from one.
    assert_eq!(seen, vec![1, 2, 3, 1, 2, 3, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_and_deadline_replace_the_instance() {
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("k"), &counter_tenant(""))
        .start()
        .await;
    let first = calls(&app, "k").await;
    assert_eq!(calls(&app, "k").await, first + 1, "warm instance reused");

    let trap = app.get("/counter/trap", "k").await;
    assert_eq!(trap.status(), 500);
    assert_eq!(
        trap.json::<Value>().await.unwrap()["error"],
        "plugin_failed"
    );
    assert_eq!(
        calls(&app, "k").await,
        1,
        "a trapped instance is never reused"
    );
    assert_eq!(calls(&app, "k").await, 2);

    let spin = app.get("/counter/spin", "k").await;
    assert_eq!(spin.status(), 504);
    assert_eq!(
        calls(&app, "k").await,
        1,
        "an instance stopped at its deadline is never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_mode_keeps_nothing_between_calls() {
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            &counter_tenant("instance_mode = \"fresh\""),
        )
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(calls(&app, "k").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_gets_504_while_other_requests_are_served() {
    let tenant = r#"
[plugins.endless-loop]
component = "{component:endless-loop}"
[plugins.endless-loop.limits]
deadline_ms = 2000
[plugins.hello]
component = "{component:hello}"
"#;
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;

    let looping = {
        let client = app.client.clone();
        let url = app.url("/loop");
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = client.get(url).header("apikey", "k").send().await.unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    // Two loops at once would occupy both cores of a small machine; one is plenty
    // to show the scheduler is not blocked: while it spins, other calls finish.
    let mut served = 0;
    while !looping.is_finished() {
        let response = app.get("/hello/x", "k").await;
        assert_eq!(response.status(), 200);
        served += 1;
    }
    let (status, body, elapsed) = looping.await.unwrap();
    assert_eq!(status, 504);
    assert_eq!(body["error"], "deadline_exceeded");
    assert!(
        elapsed >= Duration::from_millis(2000),
        "stopped early: {elapsed:?}"
    );
    assert!(
        served >= 5,
        "only {served} requests were served while the guest looped"
    );

    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains("bitbylaw_deadline_hits_total{tenant=\"firm-a\",plugin=\"endless-loop\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_fails_alone() {
    let tenant = r#"
[plugins.memory-hog]
component = "{component:memory-hog}"
[plugins.memory-hog.limits]
memory_limit_mb = 16
[plugins.hello]
component = "{component:hello}"
"#;
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    let hog = app.get("/hog", "k").await;
    assert_eq!(hog.status(), 500);
    let body: Value = hog.json().await.unwrap();
    assert_eq!(body["error"], "out_of_memory", "{body}");
    assert!(body["message"].as_str().unwrap().contains("16 MiB"));

    assert_eq!(
        app.get("/hog/ok", "k").await.status(),
        200,
        "the plugin itself serves on"
    );
    assert_eq!(
        app.get("/hello/x", "k").await.status(),
        200,
        "other plugins are untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_component_gives_500_and_the_next_request_succeeds() {
    let tenant = "[plugins.trap]\ncomponent = \"{component:trap}\"\n";
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    let trap = app.get("/trap", "k").await;
    assert_eq!(trap.status(), 500);
    let body: Value = trap.json().await.unwrap();
    assert_eq!(body["error"], "plugin_failed");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(app.get("/trap/ok", "k").await.status(), 200);
    assert_eq!(app.get("/trap", "k").await.status(), 500);
    assert_eq!(app.get("/trap/ok", "k").await.status(), 200);
}

/// A tiny upstream on port 0 that answers 200 "pong".
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_outside_the_allowlist_is_refused() {
    let allowed = upstream().await;
    let other = upstream().await;
    let tenant = format!(
        "[plugins.forbidden-egress]\ncomponent = \"{{component:forbidden-egress}}\"\nallowed_origins = [\"http://{allowed}\"]\n"
    );
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("k"), &tenant)
        .start()
        .await;

    let ok = app
        .get(&format!("/egress?url=http://{allowed}/ping"), "k")
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["status"], 200);

    // Same host, other port: another origin.
    let refused = app
        .get(&format!("/egress?url=http://{other}/ping"), "k")
        .await;
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&other.to_string())
    );

    let metrics = app.metrics().await;
    assert!(metrics.contains(
        "bitbylaw_egress_refused_total{tenant=\"firm-a\",plugin=\"forbidden-egress\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_reused_from_disk_after_a_restart() {
    let cache = tempfile::tempdir().unwrap();
    let tenant = "[plugins.noop]\ncomponent = \"{component:noop}\"\n";
    let first = TestHost::builder(Backend::Memory)
        .cache_dir(cache.path())
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    let stats = first.host.runtime().cache_stats();
    assert_eq!((stats.compiled, stats.from_disk), (1, 0));
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "one compiled file on disk");
    drop(first);

    let restarted = TestHost::builder(Backend::Memory)
        .cache_dir(cache.path())
        .tenant("firm-a", Some("k"), tenant)
        .tenant("firm-b", Some("k2"), tenant)
        .start()
        .await;
    let stats = restarted.host.runtime().cache_stats();
    assert_eq!(
        (stats.compiled, stats.from_disk),
        (0, 1),
        "same component: no compilation, one load"
    );
    assert_eq!(restarted.get("/noop", "k2").await.status(), 204);
}

/// Warm instances of many tenants share one budget: with 4 instance slots and
/// 6 tenants, every tenant loads and answers, again and again, instead of the
/// first ones keeping every slot idle and the others answering 503 for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_of_many_tenants_never_take_every_slot() {
    let tenants: Vec<String> = (0..6).map(|i| format!("firm-{i}")).collect();
    let mut builder = TestHost::builder(Backend::Memory).max_instances(4);
    for id in &tenants {
        builder = builder.tenant(id, Some(&format!("key-{id}")), &counter_tenant(""));
    }
    let app = builder.start().await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );
    for round in 1..=3u64 {
        for id in &tenants {
            let response = app.get("/counter", &format!("key-{id}")).await;
            assert_eq!(response.status(), 200, "{id}, round {round}");
        }
    }
    let budget = app.host.runtime().idle_budget();
    assert!(
        budget.idle() <= 2,
        "at most half the slots idle: {}",
        budget.idle()
    );
}
