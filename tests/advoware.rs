//! The `advoware-proxy` plugin and the host's Advoware client against the
//! Advoware simulator: round trips for every method, one token for many calls
//! (and for many concurrent calls on a cold cache, across two host instances),
//! one retry on a refused token and no more, refused escapes, upstream faults
//! mapped to 502/504, and no secret in the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, TOKEN_LIFETIME, TokenFault};
use bitbylaw_tests::{Backend, LogCapture, TestHost, keys_with_prefix, redis_connection};
use reqwest::Method;
use serde_json::Value;

const KEY: &str = "firm-a-key";

/// The tenant's Advoware secrets live in files here for as long as the test runs.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new(account: &Account) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api_key"), &account.api_key).unwrap();
        std::fs::write(dir.path().join("password"), &account.password).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// `[advoware]` for `sim`'s account with explicit URLs, plus the proxy plugin granted it.
fn tenant(sim: &Advoware, secrets: &Secrets, extra_advoware: &str) -> String {
    let urls = format!(
        "api_url = \"{0}\"\nsecurity_gateway = \"{0}\"",
        sim.base_url()
    );
    tenant_finding_advoware_by(&urls, sim, secrets, extra_advoware)
}

/// The same, with `urls` saying where Advoware is (explicit URLs or `discovery_url`).
fn tenant_finding_advoware_by(
    urls: &str,
    sim: &Advoware,
    secrets: &Secrets,
    extra_advoware: &str,
) -> String {
    let account = sim.account();
    format!(
        r#"
[advoware]
{urls}
app_id = "{app_id}"
kanzlei = "{kanzlei}"
database = "{database}"
user = "{user}"
api_key = {{ file = "{api_key}" }}
password = {{ file = "{password}" }}
{extra_advoware}

[plugins.advoware-proxy]
component = "{{component:advoware-proxy}}"
advoware = true
"#,
        app_id = account.app_id,
        kanzlei = account.kanzlei,
        database = account.database,
        user = account.user,
        api_key = secrets.path("api_key"),
        password = secrets.path("password"),
    )
}

async fn start(backend: Backend, sim: &Advoware, secrets: &Secrets, extra: &str) -> TestHost {
    TestHost::builder(backend)
        .tenant("firm-a", Some(KEY), &tenant(sim, secrets, extra))
        .start()
        .await
}

async fn simulator() -> Advoware {
    Advoware::start_default().await
}

/// A simulator, the tenant's secrets for it, and a host serving the proxy against it
/// (`extra` goes into `[advoware]`). Keep the secrets alive as long as the host.
async fn proxied(backend: Backend, extra: &str) -> (Advoware, Secrets, TestHost) {
    let sim = simulator().await;
    let secrets = Secrets::new(sim.account());
    let app = start(backend, &sim, &secrets, extra).await;
    (sim, secrets, app)
}

/// `GET /advoware/proxy?endpoint=employees`, the call most tests need.
async fn employees(app: &TestHost) -> (u16, Value) {
    proxy(app, Method::GET, "endpoint=employees", None).await
}

/// One proxied call: `query` is the raw query string after `/advoware/proxy?`.
async fn proxy(app: &TestHost, method: Method, query: &str, body: Option<&[u8]>) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(&format!("/advoware/proxy?{query}")))
        .header("apikey", KEY);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_round_trips_with_query_and_body_unchanged() {
    let (sim, _secrets, app) = proxied(Backend::Redis, "").await;

    let (status, employees) = employees(&app).await;
    assert_eq!(status, 200, "{employees}");
    assert_eq!(employees[0]["kuerzel"], "SB");

    // POST: the body reaches Advoware byte for byte; the answer is the new frNr.
    let created = br#"{"kuerzel":"SB","text":"Besprechung \u00c4rger","datum":"2026-12-10T00:00:00","uhrzeitVon":"14:00:00","uhrzeitBis":"15:00:00"}"#;
    let (status, appointment) =
        proxy(&app, Method::POST, "endpoint=appointments", Some(created)).await;
    assert_eq!(status, 200, "{appointment}");
    let fr_nr = appointment["frNr"].as_i64().unwrap();
    assert_eq!(appointment, serde_json::json!({ "frNr": fr_nr }));
    let posted = sim.api_requests().last().cloned().unwrap();
    assert_eq!(posted.method, "POST");
    assert_eq!(posted.path, "appointments");
    assert_eq!(&posted.body[..], &created[..]);
    assert_eq!(posted.headers["content-type"], "application/json");
    assert!(
        posted.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    // What Kong and the caller sent for the host stays at the host.
    assert!(posted.headers.get("apikey").is_none());

    // GET with the other query parameters passed through, `endpoint` not among them.
    let (status, listed) = proxy(
        &app,
        Method::GET,
        "endpoint=appointments&kuerzel=SB&from=2026-12-01&to=2026-12-31",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["frNr"] == fr_nr)
    );
    let listing = sim.api_requests().last().cloned().unwrap();
    assert_eq!(
        listing.query.as_deref(),
        Some("kuerzel=SB&from=2026-12-01&to=2026-12-31")
    );

    // Names and values arrive as sent, in order: `+`, spaces, umlauts, colons, a bare name.
    let (status, _) = proxy(
        &app,
        Method::GET,
        "endpoint=appointments&kuerzel=SB&text=a%2Bb%20c&ort=M%C3%BCnchen&zeit=10:00&flag",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let received = sim.api_requests().last().unwrap().query.clone().unwrap();
    let pairs: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{received}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let expected: Vec<(String, String)> = [
        ("kuerzel", "SB"),
        ("text", "a+b c"),
        ("ort", "München"),
        ("zeit", "10:00"),
        ("flag", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(pairs, expected, "received `{received}`");

    // PUT to a path below the base (Advoware's PUT replaces: the whole record).
    let changed = br#"{"kuerzel":"SB","datum":"2026-12-10T00:00:00","text":"Besprechung verschoben","uhrzeitVon":"16:00:00","uhrzeitBis":"17:00:00"}"#;
    let (status, updated) = proxy(
        &app,
        Method::PUT,
        &format!("endpoint=appointments/{fr_nr}"),
        Some(changed),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["text"], "Besprechung verschoben");
    assert_eq!(&sim.api_requests().last().unwrap().body[..], &changed[..]);

    // DELETE, then Advoware's own 404 comes back as it is.
    let (status, _) = proxy(
        &app,
        Method::DELETE,
        &format!("endpoint=appointments/{fr_nr}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, missing) = proxy(
        &app,
        Method::GET,
        &format!("endpoint=/appointments/{fr_nr}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(missing["Message"], "Termin nicht gefunden");
    assert!(sim.appointments().iter().all(|a| a["frNr"] != fr_nr));
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_calls_need_one_token() {
    let (sim, _secrets, app) = proxied(Backend::Redis, "").await;
    for _ in 0..100 {
        let (status, _) = employees(&app).await;
        assert_eq!(status, 200);
    }
    assert_eq!(sim.api_requests().len(), 100);
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_on_a_cold_cache_need_one_token_across_instances() {
    let sim = simulator().await;
    // Slow answers keep all fifty calls waiting for the token at once.
    sim.set_latency(Duration::from_millis(300));
    let secrets = Secrets::new(sim.account());
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(Arc::new(
            TestHost::builder(Backend::Redis)
                .key_prefix(&prefix)
                .tenant("firm-a", Some(KEY), &tenant(&sim, &secrets, ""))
                .start()
                .await,
        ));
    }
    let calls = (0..50).map(|i| {
        let app = instances[i % 2].clone();
        tokio::spawn(async move { employees(&app).await })
    });
    for call in futures::future::join_all(calls).await {
        let (status, body) = call.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(sim.api_requests().len(), 50);
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_and_the_call_retried_once() {
    let (sim, _secrets, app) = proxied(Backend::Redis, "").await;
    assert_eq!(employees(&app).await.0, 200);
    sim.revoke_all_tokens();

    let (status, body) = employees(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.token_requests(), 2);
    let requests = sim.api_requests();
    assert_eq!(requests.len(), 3, "first call, refused call, retried call");
    assert_ne!(
        requests[1].headers["authorization"],
        requests[2].headers["authorization"]
    );
    // The new token is cached for the calls after.
    assert_eq!(employees(&app).await.0, 200);
    assert_eq!(sim.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_ends_in_502_without_a_loop() {
    let (sim, _secrets, app) = proxied(Backend::Memory, "").await;
    sim.refuse_all_tokens(true);

    let (status, body) = employees(&app).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("401"), "{message}");
    assert_eq!(
        sim.api_requests().len(),
        2,
        "one call and one retry, no more"
    );
    assert_eq!(sim.token_requests(), 2);

    // The account is the problem, not the token: the next call does not fetch another.
    let (status, _) = employees(&app).await;
    assert_eq!(status, 502);
    assert_eq!(sim.api_requests().len(), 3);
    assert_eq!(sim.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_cost_one_token_request_for_many_calls() {
    let sim = simulator().await;
    let account = Account {
        password: "wrong-pass-9".into(),
        ..Account::default()
    };
    let secrets = Secrets::new(&account);
    let app = Arc::new(start(Backend::Redis, &sim, &secrets, "").await);
    let calls = (0..20).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { employees(&app).await })
    });
    for call in futures::future::join_all(calls).await {
        let (status, body) = call.unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Falscher Name oder falsches Kennwort"),
            "{body}"
        );
    }
    assert_eq!(sim.token_requests(), 1);
    assert!(sim.api_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_kept_53_minutes_or_less_when_it_lives_less() {
    let ttl_ms = |app: &TestHost| -> i64 {
        let keys = keys_with_prefix(&format!("{}:{{firm-a}}:@advoware:kv:token", app.prefix));
        assert_eq!(keys.len(), 1, "{keys:?}");
        redis::cmd("PTTL")
            .arg(&keys[0])
            .query(&mut redis_connection())
            .unwrap()
    };
    let (_sim, _secrets, app) = proxied(Backend::Redis, "").await;
    assert_eq!(employees(&app).await.0, 200);
    let kept = ttl_ms(&app);
    assert!((3_170_000..=3_180_000).contains(&kept), "{kept} ms");

    // A gateway whose tokens live two minutes: cached for two minutes less a margin.
    let short = Advoware::start(Account::default(), Duration::from_secs(120)).await;
    let secrets = Secrets::new(short.account());
    let app = start(Backend::Redis, &short, &secrets, "").await;
    assert_eq!(employees(&app).await.0, 200);
    let kept = ttl_ms(&app);
    assert!((100_000..=108_000).contains(&kept), "{kept} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_leaving_the_api_base_are_refused() {
    let (sim, _secrets, app) = proxied(Backend::Memory, "").await;
    for query in [
        "",
        "endpoint=",
        "kuerzel=SB",
        "endpoint=employees&endpoint=appointments",
        "endpoint=../Token",
        "endpoint=..%2FToken",
        "endpoint=appointments/../../Token",
        "endpoint=%252e%252e/Token",
        "endpoint=https://evil.example/steal",
        "endpoint=//evil.example/steal",
        "endpoint=appointments%5C..%5C..%5CToken",
    ] {
        let (status, body) = proxy(&app, Method::GET, query, None).await;
        assert_eq!(status, 400, "`{query}` gave {body}");
        assert_eq!(body["error"], "bad_request", "`{query}`");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    assert!(sim.api_requests().is_empty());
    assert_eq!(sim.token_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_retried_through_a_passing_failure_and_writes_never_are() {
    let (sim, _secrets, app) = proxied(Backend::Memory, "retry_base_ms = 1").await;
    assert_eq!(employees(&app).await.0, 200);
    let before = sim.api_requests().len();
    sim.fail_next(2, 503);
    let (status, body) = employees(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.api_requests().len() - before,
        3,
        "two failures, then the answer"
    );

    // A write whose answer failed is not sent again: it may have happened.
    let before = sim.api_requests().len();
    sim.fail_next(1, 502);
    let created = br#"{"kuerzel":"SB","text":"Einmal","datum":"2026-12-10"}"#;
    let (status, _) = proxy(&app, Method::POST, "endpoint=appointments", Some(created)).await;
    assert_eq!(status, 502);
    assert_eq!(sim.api_requests().len() - before, 1, "sent once");
    assert!(sim.appointments().iter().all(|a| a["text"] != "Einmal"));

    // A read that keeps failing ends after its retries with Advoware's answer.
    let before = sim.api_requests().len();
    sim.fail_next(10, 504);
    let (status, _) = employees(&app).await;
    assert_eq!(status, 504);
    assert_eq!(
        sim.api_requests().len() - before,
        4,
        "the first try and three more"
    );
    sim.heal();
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bitbylaw_upstream_retries_total{")
                && l.contains("kind=\"advoware\"")
                && l.ends_with(" 5")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_become_gateway_errors_and_pass_on_their_status() {
    let (sim, _secrets, app) = proxied(Backend::Memory, "timeout_ms = 500").await;
    assert_eq!(employees(&app).await.0, 200);

    // Advoware's own 5xx comes back as Advoware sent it (once the read's
    // retries, three by default, met it too).
    sim.fail_next(4, 503);
    let (status, body) = employees(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["Message"], "Interner Serverfehler");

    // No answer in time: 504.
    sim.set_latency(Duration::from_secs(2));
    let (status, body) = employees(&app).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "gateway_timeout");
    sim.set_latency(Duration::ZERO);

    // Connection refused (or a kept-alive one reset): 502 naming the system's error,
    // and back to normal once Advoware listens again.
    sim.refuse_connections();
    let (status, body) = employees(&app).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        body["message"].as_str().unwrap().contains("os error"),
        "{body}"
    );
    sim.accept_connections().await;
    assert_eq!(employees(&app).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_deadline_shorter_than_advoware_timeout_still_answers_504_from_the_proxy() {
    let sim = simulator().await;
    let secrets = Secrets::new(sim.account());
    // Advoware's timeout stays at its 30 s default; the plugin may take one second.
    let tenant = format!(
        "{}\n[plugins.advoware-proxy.limits]\ndeadline_ms = 1000\n",
        tenant(&sim, &secrets, "")
    );
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &tenant)
        .start()
        .await;
    assert_eq!(employees(&app).await.0, 200);
    sim.set_latency(Duration::from_secs(3));
    let (status, body) = employees(&app).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body["error"], "gateway_timeout",
        "the proxy's answer, not the host's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_signs_in_with_its_own_account() {
    let sim_a = simulator().await;
    let other = Account {
        kanzlei: "KANZLEI2".into(),
        user: "MK".into(),
        password: "anderes-kennwort".into(),
        ..Account::default()
    };
    let sim_b = Advoware::start(other, TOKEN_LIFETIME).await;
    let (secrets_a, secrets_b) = (Secrets::new(sim_a.account()), Secrets::new(sim_b.account()));
    let app = TestHost::builder(Backend::Redis)
        .tenant("firm-a", Some("key-a"), &tenant(&sim_a, &secrets_a, ""))
        .tenant("firm-b", Some("key-b"), &tenant(&sim_b, &secrets_b, ""))
        .start()
        .await;
    for (key, calls) in [("key-a", 3), ("key-b", 2)] {
        for _ in 0..calls {
            let response = app
                .client
                .get(app.url("/advoware/proxy?endpoint=employees"))
                .header("apikey", key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    assert_eq!((sim_a.token_requests(), sim_a.api_requests().len()), (1, 3));
    assert_eq!((sim_b.token_requests(), sim_b.api_requests().len()), (1, 2));
    let token_of = |sim: &Advoware| sim.issued_tokens()[0].clone();
    let bearer = |sim: &Advoware| {
        sim.api_requests()[0].headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(bearer(&sim_a), format!("Bearer {}", token_of(&sim_a)));
    assert_eq!(bearer(&sim_b), format!("Bearer {}", token_of(&sim_b)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_base_can_be_discovered() {
    let sim = simulator().await;
    let secrets = Secrets::new(sim.account());
    let discovery = format!("discovery_url = \"{}\"", sim.discovery_url());
    let tenant = tenant_finding_advoware_by(&discovery, &sim, &secrets, "");
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &tenant)
        .start()
        .await;
    let (status, body) = employees(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.token_requests(), 1);
    assert_eq!(sim.api_requests()[0].full_path, "/api/v1/advonet/employees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_connector_wins_over_the_relay() {
    let sim = simulator().await;
    sim.offer_connector(true);
    let secrets = Secrets::new(sim.account());
    let tenant = tenant(&sim, &secrets, "").replace(
        &format!(
            "api_url = \"{0}\"\nsecurity_gateway = \"{0}\"",
            sim.base_url()
        ),
        &format!("discovery_url = \"{}\"", sim.discovery_url()),
    );
    assert!(tenant.contains("discovery_url"));
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &tenant)
        .start()
        .await;
    let (status, body) = employees(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.api_requests()[0].full_path,
        "/connector/api/v1/advonet/employees"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_not_granted_advoware_cannot_use_it() {
    let sim = simulator().await;
    let secrets = Secrets::new(sim.account());
    let tenant = tenant(&sim, &secrets, "").replace("advoware = true", "advoware = false");
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &tenant)
        .start()
        .await;
    let (status, body) = employees(&app).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not use Advoware")
    );
    assert_eq!(sim.token_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tokens_never_reach_logs_errors_or_metrics() {
    let capture = LogCapture::install_with(bitbylaw::config::LogFormat::Json, "debug");
    let (sim, secrets, app) = proxied(Backend::Redis, "").await;
    let mut answers = Vec::new();
    let mut extra_tokens = Vec::new();
    // A normal call, a revoked token, a call that gets 401 twice.
    answers.push(employees(&app).await);
    sim.revoke_all_tokens();
    answers.push(employees(&app).await);
    sim.refuse_all_tokens(true);
    answers.push(employees(&app).await);
    sim.refuse_all_tokens(false);

    // A gateway that quotes the request (password included) or answers oddly.
    for fault in [TokenFault::EchoRequest, TokenFault::BareString] {
        let odd = simulator().await;
        odd.set_token_fault(fault);
        let odd_secrets = Secrets::new(odd.account());
        let odd_app = start(Backend::Memory, &odd, &odd_secrets, "").await;
        let (status, body) = employees(&odd_app).await;
        assert_eq!(status, 502, "{fault:?}: {body}");
        if fault == TokenFault::EchoRequest {
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("Anmeldung fehlgeschlagen"),
                "{body}"
            );
        }
        extra_tokens.extend(odd.issued_tokens());
        answers.push((status, body));
    }

    // Wrong credentials: the gateway's refusal is reported, the password is not.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::write(wrong.path().join("password"), "falsch-123").unwrap();
    let wrong_tenant = tenant(&sim, &secrets, "").replace(
        &secrets.path("password"),
        &wrong.path().join("password").display().to_string(),
    );
    let refused = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &wrong_tenant)
        .start()
        .await;
    let (status, body) = employees(&refused).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Falscher Name oder falsches Kennwort"),
        "{body}"
    );
    answers.push((status, body));

    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains("bitbylaw_upstream_token_requests_total{tenant=\"firm-a\",kind=\"advoware\"")
    );
    let logs = capture.text();
    assert!(
        logs.contains("new Advoware token"),
        "the client logs at all"
    );
    let tokens = sim.issued_tokens();
    assert_eq!(
        tokens.len(),
        3,
        "first, after the revocation, the refused fresh one"
    );
    let account = sim.account();
    let mut secrets_seen = vec![
        account.api_key.clone(),
        account.password.clone(),
        "falsch-123".to_owned(),
    ];
    secrets_seen.extend(tokens);
    assert_eq!(extra_tokens.len(), 1, "the bare-string answer issued one");
    secrets_seen.extend(extra_tokens);
    let answers = format!("{answers:?}");
    for secret in &secrets_seen {
        assert!(!logs.contains(secret.as_str()), "`{secret}` in the log");
        assert!(
            !answers.contains(secret.as_str()),
            "`{secret}` in an answer"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "`{secret}` in the metrics"
        );
    }
}

/// The account declared as `[upstreams.<name>]` and granted by name serves the
/// plugin granted it; a plugin that imports the interface without the grant
/// still loads, gets `not-configured`, and the admin API shows both its
/// imports and its grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_declared_under_upstreams_is_granted_by_name() {
    let sim = simulator().await;
    let secrets = Secrets::new(sim.account());
    let declared = tenant(&sim, &secrets, "")
        .replace("[advoware]", "[upstreams.kanzlei]\nkind = \"advoware\"")
        .replace("advoware = true", "upstreams = [\"kanzlei\"]");
    let text = format!(
        "{declared}\n[plugins.second-proxy]\ncomponent = \"{{component:advoware-proxy}}\"\nroute_prefix = \"/second\"\n"
    );
    let admin = tempfile::tempdir().unwrap();
    std::fs::write(admin.path().join("token"), "admin-token").unwrap();
    let app = TestHost::builder(Backend::Redis)
        .host_toml(&format!(
            "[admin]\ntoken = {{ file = \"{}\" }}",
            admin.path().join("token").display()
        ))
        .tenant("firm-a", Some(KEY), &text)
        .start()
        .await;

    let (status, body) = employees(&app).await;
    assert_eq!(status, 200, "{body}");
    let response = app
        .client
        .get(app.url("/second/advoware/proxy?endpoint=employees"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not use Advoware"),
        "{body}"
    );
    assert_eq!(sim.token_requests(), 1);

    let tenants: Value = app
        .client
        .get(app.url("/admin/tenants"))
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugins = &tenants["tenants"]["firm-a"]["plugins"];
    for name in ["advoware-proxy", "second-proxy"] {
        let imports = plugins[name]["imports"].as_array().unwrap();
        assert!(
            imports
                .iter()
                .any(|i| i.as_str().unwrap().starts_with("bitbylaw:plugin/advoware@")),
            "{name}: {imports:?}"
        );
    }
    assert_eq!(
        plugins["advoware-proxy"]["grants"],
        serde_json::json!([{ "account": "kanzlei", "kind": "advoware" }])
    );
    assert_eq!(plugins["second-proxy"]["grants"], serde_json::json!([]));
}
