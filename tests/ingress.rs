//! Requests through the ingress: tenants, routing, limits, request ids, and
//! what lands in the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::{Backend, TestHost, keys_with_prefix, redis_connection};
use redis::Commands;
use serde_json::Value;

const HELLO: &str = r#"
[plugins.hello]
component = "{component:hello}"
[plugins.hello.config]
greeting = "Guten Tag"
"#;

async fn hello_host(backend: Backend) -> TestHost {
    TestHost::builder(backend)
        .tenant("firm-a", Some("key-a"), HELLO)
        .tenant("firm-b", Some("key-b"), HELLO)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugin_answers_and_writes_under_the_tenant_prefix() {
    let app = hello_host(Backend::Redis).await;

    let response = app.get("/hello/Ada", "key-a").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Guten Tag, Ada!");
    assert_eq!(body["visits"], 1);

    let key = format!("{}:{{firm-a}}:hello:kv:visits", app.prefix);
    let keys = keys_with_prefix(&app.prefix);
    let kv: Vec<&String> = keys.iter().filter(|k| k.contains(":kv:")).collect();
    assert_eq!(kv, vec![&key]);
    // Everything else (the event streams of its subscription) is under a tenant's hash tag too.
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{}:{{firm-", app.prefix))),
        "{keys:?}"
    );
    let stored: i64 = redis_connection().get(&key).unwrap();
    assert_eq!(stored, 1);

    let body: Value = app.get("/hello/Ada", "key-a").await.json().await.unwrap();
    assert_eq!(body["visits"], 2);
}

async fn tenants_do_not_see_each_other(backend: Backend) {
    let app = hello_host(backend).await;
    let put = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "key-a")
        .json(&serde_json::json!({ "text": "Akte 12/26" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let own = app.get("/hello/notes/n1", "key-a").await;
    assert_eq!(own.status(), 200);
    assert_eq!(own.json::<Value>().await.unwrap()["text"], "Akte 12/26");

    let other = app.get("/hello/notes/n1", "key-b").await;
    assert_eq!(other.status(), 404);
    assert_eq!(other.json::<Value>().await.unwrap()["error"], "not_found");

    // Counters are separate too.
    app.get("/hello/x", "key-a").await;
    let b: Value = app.get("/hello/x", "key-b").await.json().await.unwrap();
    assert_eq!(b["visits"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_redis() {
    tenants_do_not_see_each_other(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_memory() {
    tenants_do_not_see_each_other(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_read_where_kong_reads_it() {
    let app = hello_host(Backend::Memory).await;
    let by_header = app
        .client
        .get(app.url("/hello/a"))
        .header("X-API-Key", "key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let by_query = app
        .client
        .get(app.url("/hello/a?apikey=key-b"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_api_key_is_401_with_a_json_error() {
    let app = hello_host(Backend::Memory).await;

    let missing = app.client.get(app.url("/hello/a")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("API key"));

    let invalid = app.get("/hello/a", "key-c").await;
    assert_eq!(invalid.status(), 401);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["message"], "invalid API key");
    assert!(
        !body.to_string().contains("key-c"),
        "the error must not echo the key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_headers_from_an_untrusted_peer_are_ignored() {
    // No trusted proxies: 127.0.0.1 is just a client.
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("key-a"),
            &format!("kong_consumers = [\"firm-a\"]\n{HELLO}"),
        )
        .start()
        .await;
    let spoofed = app
        .client
        .get(app.url("/hello/a"))
        .header("X-Consumer-Custom-ID", "firm-a")
        .header("X-Consumer-Username", "firm-a")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kong_headers_from_a_trusted_proxy_select_the_tenant() {
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[ingress]\ntrusted_proxies = [\"127.0.0.0/8\"]")
        .tenant(
            "firm-a",
            None,
            &format!("kong_consumers = [\"kanzlei-a\"]\n{HELLO}"),
        )
        .start()
        .await;
    let by_custom_id = app
        .client
        .get(app.url("/hello/a"))
        .header("X-Consumer-Custom-ID", "kanzlei-a")
        .send()
        .await
        .unwrap();
    assert_eq!(by_custom_id.status(), 200);
    let unknown = app
        .client
        .get(app.url("/hello/a"))
        .header("X-Consumer-Username", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_unknown_route_404_and_wrong_method_405() {
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[ingress]\nmax_body_bytes = 1024")
        .tenant("firm-a", Some("key-a"), HELLO)
        .start()
        .await;
    let big = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "key-a")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(
        big.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );

    // Chunked, without Content-Length: the limit holds while reading.
    let stream = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let chunked = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "key-a")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);

    let unknown = app.get("/nothing/here", "key-a").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");

    let wrong_method = app
        .client
        .delete(app.url("/hello/a"))
        .header("apikey", "key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_gets_a_400_naming_the_problem() {
    let app = hello_host(Backend::Memory).await;
    let response = app
        .client
        .put(app.url("/hello/notes/n1"))
        .header("apikey", "key-a")
        .body("{\"txt\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing field `text`"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_from_kong_or_generated_and_echoed() {
    let app = hello_host(Backend::Memory).await;
    let kept = app
        .client
        .get(app.url("/hello/a"))
        .header("apikey", "key-a")
        .header("Kong-Request-ID", "abc-123#1")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123#1");

    let generated = app.client.get(app.url("/hello/a")).send().await.unwrap();
    assert_eq!(generated.status(), 401);
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let body: Value = generated.json().await.unwrap();
    assert_eq!(body["request_id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_prefix_and_disabled_routes_come_from_tenant_config() {
    let tenant = r#"
route_prefix = "/firm-a"
[plugins.hello]
component = "{component:hello}"
disabled_routes = ["PUT /hello/notes/{id}"]
"#;
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some("key-a"), tenant)
        .start()
        .await;
    assert_eq!(app.get("/firm-a/hello/x", "key-a").await.status(), 200);
    assert_eq!(app.get("/hello/x", "key-a").await.status(), 404);
    let put = app
        .client
        .put(app.url("/firm-a/hello/notes/1"))
        .header("apikey", "key-a")
        .body("{\"text\":\"t\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics() {
    let app = hello_host(Backend::Redis).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let (status, body) = app.ready_detail().await;
    assert_eq!(status, 200);
    assert_eq!(body["store"]["backend"], "redis");
    assert_eq!(body["store"]["reachable"], true);
    assert_eq!(
        body["tenants"]["firm-a"]["plugins"]["hello"]["version"],
        "0.1.0"
    );

    app.get("/hello/a", "key-a").await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"bitbylaw_http_requests_total{tenant="firm-a",plugin="hello",route="/hello/{name}",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("bitbylaw_http_request_duration_seconds_bucket"));
    assert!(metrics.contains(
        "bitbylaw_instantiation_duration_seconds_count{tenant=\"firm-a\",plugin=\"hello\"}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_subscribers_of_the_same_tenant_only() {
    let app = hello_host(Backend::Redis).await;
    for id in ["n1", "n2"] {
        let put = app
            .client
            .put(app.url(&format!("/hello/notes/{id}")))
            .header("apikey", "key-a")
            .json(&serde_json::json!({ "text": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
    }
    let saved = bitbylaw_tests::wait_for(std::time::Duration::from_secs(10), || async {
        let ids: Vec<String> = app.get("/hello/notes", "key-a").await.json().await.unwrap();
        (ids.len() == 2).then_some(ids)
    })
    .await;
    assert_eq!(saved, vec!["n1", "n2"]);
    let other: Vec<String> = app.get("/hello/notes", "key-b").await.json().await.unwrap();
    assert!(
        other.is_empty(),
        "tenant B received tenant A's events: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_tenant_swaps_its_plugins_without_failed_requests() {
    let app = hello_host(Backend::Memory).await;
    // Requests without pause until twenty answers came from the new config.
    let traffic = {
        let client = app.client.clone();
        let url = app.url("/hello/Ada");
        tokio::spawn(async move {
            let mut messages = Vec::new();
            while messages.iter().filter(|m| *m == "Moin, Ada!").count() < 20 {
                let response = client
                    .get(&url)
                    .header("apikey", "key-a")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "a request failed during the swap");
                let body: Value = response.json().await.unwrap();
                messages.push(body["message"].as_str().unwrap().to_owned());
            }
            messages
        })
    };
    let file = app.tenant_file("firm-a");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Guten Tag", "Moin");
    std::fs::write(&file, text).unwrap();
    let config = bitbylaw::config::load_tenant(&file).unwrap();
    app.host.reload_tenant(&config).await.unwrap();

    let messages = tokio::time::timeout(std::time::Duration::from_secs(30), traffic)
        .await
        .expect("the new config never answered")
        .unwrap();
    let first_new = messages.iter().position(|m| m == "Moin, Ada!").unwrap();
    assert!(messages[..first_new].iter().all(|m| m == "Guten Tag, Ada!"));
    assert!(
        messages[first_new..].iter().all(|m| m == "Moin, Ada!"),
        "answers went back to the old version"
    );
    // The other tenant was not touched.
    let b: Value = app.get("/hello/Ada", "key-b").await.json().await.unwrap();
    assert_eq!(b["message"], "Guten Tag, Ada!");
}

/// A key or Kong consumer limited to some routes (a webhook sender's, whose key
/// travels in the query) opens only those; the firm's own key opens all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_limited_to_some_routes_opens_only_those() {
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("webhook"), "webhook-key").unwrap();
    std::fs::write(keys.path().join("full"), "full-key").unwrap();
    let tenant = format!(
        "api_keys = [{{ file = \"{full}\" }}, {{ key = {{ file = \"{webhook}\" }}, routes = [\"GET /hello/notes\", \"PUT /hello/notes/*\"] }}]\nkong_consumers = [\"firm-a\", {{ name = \"firm-a:webhooks\", routes = [\"GET /hello/notes\"] }}]\n{HELLO}",
        full = keys.path().join("full").display(),
        webhook = keys.path().join("webhook").display(),
    );
    let app = TestHost::builder(Backend::Memory)
        .host_toml("[ingress]\ntrusted_proxies = [\"127.0.0.1/32\"]")
        .tenant("firm-a", None, &tenant)
        .start()
        .await;
    assert_eq!(app.get("/hello/notes", "webhook-key").await.status(), 200);
    let in_query = app
        .client
        .get(app.url("/hello/notes?apikey=webhook-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        in_query.status(),
        200,
        "the key in the query, as webhooks send it"
    );
    let refused = app.get("/hello/x", "webhook-key").await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("GET /hello/{name}"),
        "{body}"
    );
    assert_eq!(app.get("/hello/x", "full-key").await.status(), 200);

    let as_consumer = |consumer: &'static str, path: &'static str| {
        app.client
            .get(app.url(path))
            .header("x-consumer-custom-id", consumer)
            .send()
    };
    assert_eq!(
        as_consumer("firm-a:webhooks", "/hello/notes")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        as_consumer("firm-a:webhooks", "/hello/x")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        as_consumer("firm-a", "/hello/x").await.unwrap().status(),
        200
    );
}

/// `/metrics` and `/ready`'s detail (tenant ids, digests, errors) only for the
/// operators' token; a bare `/ready` stays open for probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_ready_detail_need_the_ops_token() {
    let app = hello_host(Backend::Memory).await;
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(app.metrics().await.contains("bitbylaw_"));

    let probe = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(probe.status(), 200);
    let body: Value = probe.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ready",
            "checks": { "store_reachable": true, "tenants_loaded": true },
        }),
        "what a probe needs, no tenant names"
    );
    let (status, detail) = app.ready_detail().await;
    assert_eq!(status, 200);
    assert!(detail["tenants"]["firm-a"].is_object(), "{detail}");
}
