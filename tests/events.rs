//! Event delivery: retries with growing delays, dead letters, replay, and the
//! admin API that shows and manages them. Against Redis and the embedded bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::{Backend, TestHost, wait_for};
use serde_json::Value;

const ADMIN_TOKEN: &str = "admin-secret-token";

async fn flaky_host(backend: Backend) -> (TestHost, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let tenant = r#"
[plugins.flaky]
component = "{component:flaky}"
[plugins.flaky.subscriptions.flaky]
max_attempts = 3
backoff_base_ms = 1000
backoff_factor = 3.0
backoff_jitter = 0.2
"#;
    let app = TestHost::builder(backend)
        .host_toml(&format!(
            "[events]\nretry_poll_ms = 20\n[admin]\ntoken = {{ file = \"{}\" }}",
            token_file.display()
        ))
        .tenant("firm-a", Some("k"), tenant)
        .tenant("firm-b", Some("kb"), tenant)
        .start()
        .await;
    (app, secrets)
}

async fn emit(app: &TestHost, kind: &str) {
    let response = app
        .client
        .post(app.url(&format!("/flaky/{kind}")))
        .header("apikey", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

async fn state(app: &TestHost, kind: &str) -> Value {
    app.get(&format!("/flaky/{kind}"), "k")
        .await
        .json()
        .await
        .unwrap()
}

async fn admin(app: &TestHost, method: reqwest::Method, path: &str) -> Value {
    app.admin(method, path, ADMIN_TOKEN).await
}

async fn dead_letters(app: &TestHost) -> Vec<Value> {
    admin(
        app,
        reqwest::Method::GET,
        "/admin/tenants/firm-a/dead-letters",
    )
    .await["dead_letters"]
        .as_array()
        .unwrap()
        .clone()
}

async fn retried_with_growing_delays(backend: Backend) {
    let (app, _secrets) = flaky_host(backend).await;
    emit(&app, "twice").await;
    let done = wait_for(Duration::from_secs(30), || async {
        let state = state(&app, "twice").await;
        (state["done"] == true).then_some(state)
    })
    .await;
    // Read again: the first read may have caught `calls` just before the last attempt counted.
    let done = if done["calls"] == 3 {
        done
    } else {
        state(&app, "twice").await
    };
    assert_eq!(done["calls"], 3);
    let at: Vec<u64> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[1].as_u64().unwrap())
        .collect();
    assert_eq!(at.len(), 3, "{done}");
    let (first_gap, second_gap) = (at[1] - at[0], at[2] - at[1]);
    // 1 s ±20%, then 3 s ±20%. The upper bounds leave room for a loaded machine, yet no
    // constant delay fits both ranges: the delay grew.
    assert!(
        (800..=2_000).contains(&first_gap),
        "first retry after {first_gap} ms"
    );
    assert!(
        (2_400..=5_000).contains(&second_gap),
        "second retry after {second_gap} ms"
    );
    assert!(dead_letters(&app).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_is_retried_with_growing_delays_redis() {
    retried_with_growing_delays(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_is_retried_with_growing_delays_memory() {
    retried_with_growing_delays(Backend::Memory).await;
}

async fn dead_letters_and_replay(backend: Backend) {
    let (app, _secrets) = flaky_host(backend).await;
    emit(&app, "always").await;
    emit(&app, "permanent").await;
    let letters = wait_for(Duration::from_secs(30), || async {
        let letters = dead_letters(&app).await;
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let always = letters.iter().find(|l| l["payload"] == "always").unwrap();
    assert_eq!(always["attempts"], 3);
    assert_eq!(always["plugin"], "flaky");
    assert_eq!(always["topic"], "flaky");
    assert!(
        always["error"]
            .as_str()
            .unwrap()
            .contains("this never works")
    );
    let permanent = letters
        .iter()
        .find(|l| l["payload"] == "permanent")
        .unwrap();
    assert_eq!(
        permanent["attempts"], 1,
        "a permanent failure is not retried"
    );
    assert_eq!(state(&app, "always").await["calls"], 3);

    let figures = admin(&app, reqwest::Method::GET, "/admin/events").await;
    let firm_a = figures["tenants"]["firm-a"].as_array().unwrap();
    assert_eq!(firm_a[0]["topic"], "flaky");
    assert_eq!(firm_a[0]["dead"], 2);
    assert_eq!(
        figures["tenants"]["firm-b"][0]["dead"], 0,
        "tenant B saw none of it"
    );

    // Replaying one dead letter delivers it again, from attempt 1.
    let id = always["id"].as_str().unwrap();
    let replayed = admin(
        &app,
        reqwest::Method::POST,
        &format!("/admin/tenants/firm-a/dead-letters/{id}/replay"),
    )
    .await;
    assert_eq!(replayed["replayed"], 1);
    wait_for(Duration::from_secs(30), || async {
        let calls = state(&app, "always").await["calls"].as_u64().unwrap();
        let letters = dead_letters(&app).await;
        (calls == 6 && letters.len() == 2).then_some(())
    })
    .await;

    let purged = admin(
        &app,
        reqwest::Method::DELETE,
        "/admin/tenants/firm-a/dead-letters",
    )
    .await;
    assert_eq!(purged["purged"], 2);
    assert!(dead_letters(&app).await.is_empty());

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"bitbylaw_events_handled_total{tenant="firm-a",plugin="flaky",topic="flaky",outcome="dead"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bitbylaw_events_dead{tenant="firm-a",plugin="flaky",topic="flaky"} 0"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_ends_in_dead_letters_and_replays_redis() {
    dead_letters_and_replay(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_ends_in_dead_letters_and_replays_memory() {
    dead_letters_and_replay(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token() {
    let (app, _secrets) = flaky_host(Backend::Memory).await;
    let none = app
        .client
        .get(app.url("/admin/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let wrong = app
        .client
        .get(app.url("/admin/events"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "unauthorized"
    );
    let unknown = app
        .client
        .get(app.url("/admin/tenants/nobody/dead-letters"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_off_without_a_token() {
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.flaky]\ncomponent = \"{component:flaky}\"\n",
        )
        .start()
        .await;
    let response = app
        .client
        .get(app.url("/admin/events"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_config_overrides_a_schedule() {
    let tenant = r#"
[plugins.cascade]
component = "{component:cascade}"
[plugins.cascade.config]
items = 1
[plugins.cascade.schedules.fanout]
cron = "*/2 * * * * *"
"#;
    let app = TestHost::builder(Backend::Redis)
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    let key = format!("{}:{{firm-a}}:cascade:kv:ticks", app.prefix);
    let ticks: Vec<i64> = wait_for(Duration::from_secs(15), || async {
        let ticks: Vec<i64> =
            redis::Commands::smembers(&mut bitbylaw_tests::redis_connection(), &key).unwrap();
        (ticks.len() >= 2).then_some(ticks)
    })
    .await;
    assert!(
        ticks.iter().all(|t| t % 2000 == 0),
        "every other second only: {ticks:?}"
    );
}

#[tokio::test]
async fn a_schedule_override_must_name_a_declared_schedule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(dir.path().join("host.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("tenants/firm-a.toml"),
        format!(
            "[plugins.cascade]\ncomponent = \"{}\"\n[plugins.cascade.schedules.nightly]\nenabled = false\n",
            bitbylaw_tests::component("cascade").display()
        ),
    )
    .unwrap();
    let config = bitbylaw::config::load(dir.path().join("host.toml")).unwrap();
    let host = bitbylaw::host::Host::start(config).await.unwrap();
    let error = host
        .broken_tenants()
        .remove("firm-a")
        .expect("firm-a is reported broken");
    assert!(
        error.contains("firm-a.toml: key `plugins.cascade.schedules.nightly`"),
        "{error}"
    );
}

/// `concurrency = 1` and a handler that takes 600 ms, two host instances, a
/// visibility timeout of 1.5 s: an instance takes only as many events as it has
/// free handlers, so none waits in its hands long enough for the other to take
/// it over, and every event runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_for_a_handler_is_not_taken_over_and_run_twice() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let host_toml = "[events]\nvisibility_timeout_ms = 1500\nretry_poll_ms = 20\n[plugin_defaults]\ndeadline_ms = 1200";
    let tenant = "[plugins.flaky]\ncomponent = \"{component:flaky}\"\n[plugins.flaky.subscriptions.flaky]\nconcurrency = 1\n";
    let start = || {
        TestHost::builder(Backend::Redis)
            .key_prefix(&prefix)
            .host_toml(host_toml)
            .tenant("firm-a", Some("k"), tenant)
            .start()
    };
    let a = start().await;
    let b = start().await;
    for _ in 0..8 {
        emit(&a, "slow").await;
    }
    wait_for(Duration::from_secs(60), || async {
        let state = state(&a, "slow").await;
        (state["per_event"].as_object().unwrap().len() == 8).then_some(())
    })
    .await;
    // Both finish what they hold before the calls are counted.
    a.host.events().shutdown(Duration::from_secs(30)).await;
    b.host.events().shutdown(Duration::from_secs(30)).await;
    let state = state(&a, "slow").await;
    let per_event = state["per_event"].as_object().unwrap();
    assert_eq!(per_event.len(), 8, "{state}");
    for (id, calls) in per_event {
        assert_eq!(calls, 1, "event {id} ran {calls} times: {state}");
    }
}

/// Events only go to topics some plugin of the tenant subscribes to; any other
/// would pile up in a stream nobody reads.
async fn emit_to_an_unsubscribed_topic_is_refused(backend: Backend) {
    let (app, _secrets) = flaky_host(backend).await;
    let events = app.host.events();
    assert!(events.emit("firm-a", "flaky", b"ok".to_vec()).await.is_ok());
    let refused = events.emit("firm-a", "nobody-listens", b"x".to_vec()).await;
    assert!(
        matches!(&refused, Err(bitbylaw::store::StoreError::Invalid(m)) if m.contains("nobody-listens")),
        "{refused:?}"
    );
    let unknown_tenant = events.emit("firm-z", "flaky", b"x".to_vec()).await;
    assert!(unknown_tenant.is_err(), "{unknown_tenant:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_to_an_unsubscribed_topic_is_refused_redis() {
    emit_to_an_unsubscribed_topic_is_refused(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_to_an_unsubscribed_topic_is_refused_memory() {
    emit_to_an_unsubscribed_topic_is_refused(Backend::Memory).await;
}

/// Redis loses a topic stream with its consumer group (data loss, a fail-over
/// to an empty replica): delivery notices, creates the group again, counts it,
/// and the events emitted after the loss are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_carries_on_after_redis_lost_the_consumer_group() {
    let (app, _secrets) = flaky_host(Backend::Redis).await;
    emit(&app, "before").await;
    wait_for(Duration::from_secs(10), || async {
        state(&app, "before").await["done"]
            .as_bool()
            .unwrap()
            .then_some(())
    })
    .await;
    let stream = format!("{}:{{firm-a}}:ev:topic:flaky", app.prefix);
    let mut redis = bitbylaw_tests::redis_connection();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut redis).unwrap();

    emit(&app, "after").await;
    wait_for(Duration::from_secs(20), || async {
        state(&app, "after").await["done"]
            .as_bool()
            .unwrap()
            .then_some(())
    })
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("bitbylaw_event_groups_recreated_total{tenant=\"firm-a\"}"),
        "{metrics}"
    );
}

/// A plugin that fails over and over fills its own retry stream; the stream
/// is trimmed to about `events.max_stream_length` entries, not kept whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_retry_stream_is_trimmed() {
    let tenant = r#"
[plugins.flaky]
component = "{component:flaky}"
[plugins.flaky.subscriptions.flaky]
max_attempts = 40
backoff_base_ms = 1
backoff_factor = 1.0
backoff_max_ms = 1
backoff_jitter = 0.0
concurrency = 8
"#;
    let app = TestHost::builder(Backend::Redis)
        .host_toml("[events]\nretry_poll_ms = 5\nmax_stream_length = 10\n")
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    const EVENTS: usize = 8;
    for _ in 0..EVENTS {
        emit(&app, "always").await;
    }
    let dead = format!("{}:{{firm-a}}:ev:dead", app.prefix);
    wait_for(Duration::from_secs(120), || async {
        let dead: usize = redis::cmd("XLEN")
            .arg(&dead)
            .query(&mut bitbylaw_tests::redis_connection())
            .unwrap();
        (dead == EVENTS).then_some(())
    })
    .await;
    // Every event went through its 39 retries on the plugin's own stream ...
    let body: Value = app.get("/flaky/always", "k").await.json().await.unwrap();
    assert_eq!(body["calls"], 40 * EVENTS, "{body}");
    // ... which kept far fewer than the 312 entries written to it (trimming
    // is approximate: whole blocks of up to 100 entries go at once).
    let direct = format!("{}:{{firm-a}}:ev:direct:flaky", app.prefix);
    let kept: usize = redis::cmd("XLEN")
        .arg(&direct)
        .query(&mut bitbylaw_tests::redis_connection())
        .unwrap();
    assert!(kept <= 200, "{kept} entries kept of {}", 39 * EVENTS);
}

/// Runs of one schedule never overlap, not even across instances, when a run
/// takes longer than the schedule's period: a tick waits for the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_one_schedule_never_overlap() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let tenant = "[plugins.cascade]\ncomponent = \"{component:cascade}\"\n[plugins.cascade.config]\nitems = 0\ntick_ms = 1500\n";
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            TestHost::builder(Backend::Redis)
                .key_prefix(&prefix)
                .tenant("firm-a", Some("k"), tenant)
                .start()
                .await,
        );
    }
    let set = |name: &str| {
        let key = format!("{prefix}:{{firm-a}}:cascade:kv:{name}");
        move || -> Vec<i64> {
            redis::Commands::smembers(&mut bitbylaw_tests::redis_connection(), &key).unwrap()
        }
    };
    let (ticks, overlaps) = (set("ticks"), set("overlaps"));
    // Ticks every second, each run 1.5 s: four runs finished means several
    // ticks came while a run was going on.
    wait_for(Duration::from_secs(30), || async {
        (ticks().len() >= 4).then_some(())
    })
    .await;
    assert_eq!(
        overlaps(),
        Vec::<i64>::new(),
        "a run began while another ran"
    );
}
