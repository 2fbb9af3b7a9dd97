//! The `google` upstream kind against the Google simulator, through the
//! `gcal` test component: one token per mailbox across host instances, RS256
//! assertions the simulator checks itself, incremental listing across pages,
//! 410 as `gone`, quotas kept below Google's by the shared buckets (and 403s
//! retried without them), conditional writes, and grants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitbylaw_tests::simulators::google::{Google, Quotas, ServiceAccount, check_assertion};
use bitbylaw_tests::{Backend, TestHost, keys_with_prefix};
use serde_json::{Value, json};

const KEY: &str = "firm-a-key";
const ANNA: &str = "anna@kanzlei.example";
const BERND: &str = "bernd@kanzlei.example";

/// A service account's key file, kept as long as the test runs.
struct KeyFile {
    dir: tempfile::TempDir,
}

impl KeyFile {
    fn new(account: &ServiceAccount, token_uri: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.json"), account.key_json(token_uri)).unwrap();
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.path().join("key.json").display().to_string()
    }
}

/// A tenant with a Google account on `sim` (`extra` goes into the account's
/// section) and the `gcal` component, granted it when `granted`.
fn tenant(sim: &Google, key: &KeyFile, extra: &str, granted: bool) -> String {
    let grant = if granted {
        "upstreams = [\"google\"]"
    } else {
        ""
    };
    format!(
        r#"
[upstreams.google]
kind = "google"
service_account_key = {{ file = "{key}" }}
api_base = "{api}"
{extra}

[plugins.gcal]
component = "{{component:gcal}}"
{grant}
[plugins.gcal.limits]
deadline_ms = 30000
"#,
        key = key.path(),
        api = sim.api_base(),
    )
}

async fn host(backend: Backend, sim: &Google, key: &KeyFile, extra: &str) -> TestHost {
    TestHost::builder(backend)
        .tenant("firm-a", Some(KEY), &tenant(sim, key, extra, true))
        .start()
        .await
}

/// A simulator knowing one fresh service account, and its key file.
async fn google() -> (Google, ServiceAccount, KeyFile) {
    let account = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
    let sim = Google::start(std::slice::from_ref(&account)).await;
    let key = KeyFile::new(&account, &sim.token_uri());
    (sim, account, key)
}

async fn call(app: &TestHost, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("apikey", KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `POST <events>` with `body`: an insert through the `gcal` component.
async fn post_event(app: &TestHost, events: &str, body: Value) -> Value {
    call(app, reqwest::Method::POST, events, Some(body)).await
}

async fn get(app: &TestHost, path: &str) -> Value {
    call(app, reqwest::Method::GET, path, None).await
}

fn insert_body(id: &str, summary: &str) -> Value {
    json!({
        "id": id,
        "summary": summary,
        "start": "2026-12-24T09:00:00+01:00",
        "end": "2026-12-24T10:00:00+01:00",
        "zone": "Europe/Berlin",
    })
}

/// The bearer tokens the simulator saw on calls of `path`.
fn bearers(sim: &Google, path_start: &str) -> Vec<String> {
    sim.calls()
        .iter()
        .filter(|c| c.path.starts_with(path_start))
        .filter_map(|c| {
            c.headers
                .get("authorization")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_for_one_mailbox_on_two_instances_need_one_token() {
    let (sim, _account, key) = google().await;
    // Slow answers keep the calls of both instances waiting for the token together.
    sim.set_latency(Duration::from_millis(200));
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(Arc::new(
            TestHost::builder(Backend::Redis)
                .key_prefix(&prefix)
                .tenant("firm-a", Some(KEY), &tenant(&sim, &key, "", true))
                .start()
                .await,
        ));
    }
    let calls = (0..40).map(|i| {
        let app = instances[i % 2].clone();
        tokio::spawn(async move { get(&app, &format!("/gcal/{ANNA}/ping?calendar={ANNA}")).await })
    });
    for answer in futures::future::join_all(calls).await {
        let answer = answer.unwrap();
        assert_eq!(answer["id"], ANNA, "{answer}");
    }
    assert_eq!(sim.token_requests(ANNA), 1, "one token for all forty calls");

    let answer = get(
        &instances[0],
        &format!("/gcal/{BERND}/ping?calendar={BERND}"),
    )
    .await;
    assert_eq!(answer["id"], BERND, "{answer}");
    assert_eq!(sim.token_requests(BERND), 1);
    let anna = bearers(&sim, &format!("calendars/{ANNA}"));
    let bernd = bearers(&sim, &format!("calendars/{BERND}"));
    assert_eq!(anna.len(), 40);
    assert!(anna.iter().all(|t| *t == anna[0]), "one token for anna");
    assert_ne!(anna[0], bernd[0], "each mailbox its own token");
}

#[tokio::test]
async fn the_simulator_checks_assertions_itself() {
    let account = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
    let stranger = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
    let audience = "http://127.0.0.1:1/token";
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": account.client_email, "aud": audience, "iat": now, "exp": now + 3600,
        "sub": ANNA, "scope": "https://www.googleapis.com/auth/calendar",
    });
    let good = account.sign_assertion(&claims, false);
    assert_eq!(
        check_assertion(&good, std::slice::from_ref(&account), audience).unwrap(),
        ANNA
    );
    // Padded segments, as yup-oauth2 signs and sends them, are fine too.
    let padded = account.sign_assertion(&claims, true);
    assert!(padded.contains('='));
    assert_eq!(
        check_assertion(&padded, std::slice::from_ref(&account), audience).unwrap(),
        ANNA
    );

    let refused = |assertion: &str| {
        check_assertion(assertion, std::slice::from_ref(&account), audience).unwrap_err()
    };
    // Another audience, a key the simulator does not know, a changed claim.
    let mut other = claims.clone();
    other["aud"] = json!("https://oauth2.googleapis.com/token");
    assert_eq!(
        refused(&account.sign_assertion(&other, false)).0,
        "invalid_grant"
    );
    assert_eq!(
        refused(&stranger.sign_assertion(&claims, false)).0,
        "invalid_grant"
    );
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered = claims.clone();
    tampered["sub"] = json!(BERND);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            tampered.to_string()
        ),
        parts[2]
    );
    assert_eq!(refused(&tampered).0, "invalid_grant");
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    assert_eq!(
        refused(&account.sign_assertion(&expired, false)).0,
        "invalid_grant"
    );
    let mut no_scope = claims.clone();
    no_scope["scope"] = json!("https://www.googleapis.com/auth/drive");
    assert_eq!(
        refused(&account.sign_assertion(&no_scope, false)).0,
        "invalid_scope"
    );
}

#[tokio::test]
async fn a_key_for_another_audience_or_an_unknown_key_is_unauthorized() {
    let (sim, _account, _key) = google().await;
    // The same endpoint under another name: the assertion's `aud` no longer matches.
    let account = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
    let elsewhere = sim.token_uri().replace("127.0.0.1", "localhost");
    let stranger = ServiceAccount::generate("other@bitbylaw-test.iam.gserviceaccount.com");
    for (account, token_uri) in [(&account, elsewhere), (&stranger, sim.token_uri())] {
        let key = KeyFile::new(account, &token_uri);
        let app = host(Backend::Memory, &sim, &key, "").await;
        let answer = get(&app, &format!("/gcal/{ANNA}/ping")).await;
        assert_eq!(answer["error"], "unauthorized", "{answer}");
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("method=\"calendars.get\",outcome=\"unauthorized\"} 1"),
            "a call that got no token is counted: {metrics}"
        );
    }
    assert_eq!(sim.token_requests_total(), 0);
    assert!(sim.refused_token_requests() >= 2);
    assert!(sim.calls().is_empty(), "no API call without a token");
}

#[tokio::test]
async fn incremental_listing_across_pages_returns_every_change_once() {
    let (sim, _account, key) = google().await;
    let app = host(Backend::Memory, &sim, &key, "").await;
    let events = format!("/gcal/{ANNA}/events");
    for n in 0..7 {
        let answer = post_event(
            &app,
            &events,
            insert_body(&format!("event0000{n}"), &format!("E{n}")),
        )
        .await;
        assert_eq!(answer["id"], format!("event0000{n}"), "{answer}");
    }
    let full = get(&app, &format!("/gcal/{ANNA}/changes?max=3")).await;
    assert_eq!(full["pages"], 3, "{full}");
    assert_eq!(full["events"].as_array().unwrap().len(), 7);
    let token = full["next_sync_token"].as_str().unwrap().to_owned();
    // On the simulator's listing, the sync token came on the last page only.
    let listings: Vec<_> = sim
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/events"))
        .collect();
    assert_eq!(listings.len(), 3);

    // Changes: two edited (one in Google's UI), one deleted, two new.
    sim.touch_event(ANNA, "event00001", "changed in Google");
    call(
        &app,
        reqwest::Method::PATCH,
        &format!("{events}/event00002"),
        Some(json!({"summary": "changed by the sync"})),
    )
    .await;
    call(
        &app,
        reqwest::Method::DELETE,
        &format!("{events}/event00003"),
        None,
    )
    .await;
    for id in ["event00007", "event00008"] {
        post_event(&app, &events, insert_body(id, "new")).await;
    }
    let changes = get(&app, &format!("/gcal/{ANNA}/changes?max=2&sync={token}")).await;
    let mut ids: Vec<&str> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "event00001",
            "event00002",
            "event00003",
            "event00007",
            "event00008"
        ],
        "{changes}"
    );
    assert_eq!(changes["pages"], 3);
    let deleted = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "event00003")
        .unwrap();
    assert_eq!(deleted["status"], "cancelled");
    let next = changes["next_sync_token"].as_str().unwrap().to_owned();
    let quiet = get(&app, &format!("/gcal/{ANNA}/changes?sync={next}")).await;
    assert_eq!(quiet["events"], json!([]), "nothing changed since");

    sim.expire_sync_tokens();
    let gone = get(&app, &format!("/gcal/{ANNA}/changes?sync={next}")).await;
    assert_eq!(gone["error"], "gone", "{gone}");
    // A full listing after `gone` brings everything again, the deleted one
    // included, and a token that works.
    let again = get(&app, &format!("/gcal/{ANNA}/changes")).await;
    assert_eq!(again["events"].as_array().unwrap().len(), 9);
    let fresh = again["next_sync_token"].as_str().unwrap();
    let after = get(&app, &format!("/gcal/{ANNA}/changes?sync={fresh}")).await;
    assert_eq!(after["events"], json!([]), "{after}");
}

#[tokio::test]
async fn ids_etags_and_deletion_follow_googles_rules() {
    let (sim, _account, key) = google().await;
    let app = host(Backend::Memory, &sim, &key, "").await;
    let events = format!("/gcal/{ANNA}/events");
    let created = post_event(&app, &events, insert_body("termin4711", "Termin")).await;
    let etag = created["etag"].as_str().unwrap().to_owned();
    let again = post_event(&app, &events, insert_body("termin4711", "Termin")).await;
    assert_eq!(
        again["error"], "conflict",
        "an insert with a taken id: {again}"
    );
    let bad_id = post_event(&app, &events, insert_body("Termin_4711", "x")).await;
    assert_eq!(bad_id["error"], "invalid", "{bad_id}");

    // If-Match goes through the host's own client; a stale etag is refused.
    let patched = call(
        &app,
        reqwest::Method::PATCH,
        &format!("{events}/termin4711?if_match={}", urlencode(&etag)),
        Some(json!({"summary": "neu"})),
    )
    .await;
    assert_eq!(patched["summary"], "neu", "{patched}");
    assert_eq!(
        patched["private"],
        json!([["source", "gcal-test"]]),
        "a patch keeps what it does not name"
    );
    let stale = call(
        &app,
        reqwest::Method::PATCH,
        &format!("{events}/termin4711?if_match={}", urlencode(&etag)),
        Some(json!({"summary": "alt"})),
    )
    .await;
    assert_eq!(stale["error"], "precondition-failed", "{stale}");
    let stale_delete = call(
        &app,
        reqwest::Method::DELETE,
        &format!("{events}/termin4711?if_match={}", urlencode(&etag)),
        None,
    )
    .await;
    assert_eq!(
        stale_delete["error"], "precondition-failed",
        "{stale_delete}"
    );
    let if_match: Vec<_> = sim
        .calls()
        .into_iter()
        .filter_map(|c| {
            c.headers
                .get("if-match")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        if_match,
        [etag.clone(), etag.clone(), etag],
        "the etag reached Google"
    );

    assert_eq!(
        call(
            &app,
            reqwest::Method::DELETE,
            &format!("{events}/termin4711"),
            None
        )
        .await["deleted"],
        true
    );
    let cancelled = get(&app, &format!("{events}/termin4711")).await;
    assert_eq!(cancelled["status"], "cancelled");
    let reinsert = post_event(&app, &events, insert_body("termin4711", "Termin")).await;
    assert_eq!(
        reinsert["error"], "conflict",
        "a cancelled event's id stays taken"
    );
    let missing = get(&app, &format!("{events}/nosuchevent")).await;
    assert_eq!(missing["error"], "not-found");

    let created = call(
        &app,
        reqwest::Method::POST,
        &format!("/gcal/{ANNA}/calendars"),
        Some(json!({"summary": "Kanzlei"})),
    )
    .await;
    let calendars = get(&app, &format!("/gcal/{ANNA}/calendars")).await;
    let ids: Vec<&Value> = calendars
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert!(
        ids.contains(&&created["id"]) && ids.contains(&&json!(ANNA)),
        "{calendars}"
    );
    // Ids with `#` reach Google as one path segment.
    let holidays = "en.german#holiday@group.v.calendar.google.com";
    sim.add_calendar(ANNA, holidays, "Feiertage");
    let found = get(
        &app,
        &format!("/gcal/{ANNA}/ping?calendar={}", urlencode(holidays)),
    )
    .await;
    assert_eq!(found["summary"], "Feiertage", "{found}");
    // An event without an id gets one of the host's (so a retried insert finds it).
    let mut anonymous = insert_body("unused", "ohne id");
    anonymous.as_object_mut().unwrap().remove("id");
    let created = post_event(&app, &events, anonymous).await;
    let id = created["id"].as_str().unwrap();
    assert!(
        id.len() >= 5
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)),
        "{created}"
    );
    // Another mailbox does not see anna's calendar.
    let foreign = get(
        &app,
        &format!(
            "/gcal/{BERND}/ping?calendar={}",
            urlencode(created["id"].as_str().unwrap())
        ),
    )
    .await;
    assert_eq!(foreign["error"], "not-found", "{foreign}");
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_stays_below_googles_quota_through_the_shared_bucket() {
    let (sim, _account, key) = google().await;
    // Google's sliding minute, scaled to a second: 200 calls per mailbox.
    sim.set_quotas(Quotas {
        window: Duration::from_secs(1),
        per_user: Some(200),
        per_project: None,
    });
    // 190 a second plus a burst of 10: never more than 200 in any second.
    let app = Arc::new(
        host(
            Backend::Memory,
            &sim,
            &key,
            "user_requests_per_minute = 11400\nquota_burst = 10\nquota_wait_ms = 30000",
        )
        .await,
    );
    get(&app, &format!("/gcal/{ANNA}/ping")).await;
    let started = Instant::now();
    let callers = (0..20).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..50 {
                let answer = get(&app, &format!("/gcal/{ANNA}/ping")).await;
                if answer.get("error").is_some() {
                    errors.push(answer);
                }
            }
            errors
        })
    });
    let errors: Vec<Value> = futures::future::join_all(callers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    let took = started.elapsed();
    assert!(
        errors.is_empty(),
        "{} calls failed, e.g. {}",
        errors.len(),
        errors[0]
    );
    assert_eq!(sim.quota_refusals(), 0, "no 403 reached even the host");
    assert!(
        sim.peak_calls_in_window(ANNA) <= 200,
        "peak {}",
        sim.peak_calls_in_window(ANNA)
    );
    // 1000 calls at 190 a second after a burst of 10 take about 5 s.
    assert!(
        took >= Duration::from_millis(4000),
        "{took:?}: the bucket did not hold the calls back"
    );
    assert!(took <= Duration::from_secs(30), "{took:?}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("upstream_quota_wait_seconds_total{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bucket_quota_refusals_are_retried_and_succeed() {
    let (sim, _account, key) = google().await;
    sim.set_quotas(Quotas {
        window: Duration::from_millis(500),
        per_user: Some(40),
        per_project: None,
    });
    let app = Arc::new(host(Backend::Memory, &sim, &key, "user_requests_per_minute = 0\nproject_requests_per_minute = 0\nretry_base_ms = 50\nmax_retries = 10").await);
    let callers = (0..10).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..20 {
                answers.push(get(&app, &format!("/gcal/{ANNA}/ping")).await);
            }
            answers
        })
    });
    for answers in futures::future::join_all(callers).await {
        for answer in answers.unwrap() {
            assert_eq!(answer["id"], ANNA, "{answer}");
        }
    }
    assert!(
        sim.quota_refusals() > 0,
        "the test must make Google refuse some calls"
    );
    let metrics = app.metrics().await;
    let retried = metrics.lines().any(|l| {
        l.starts_with("bitbylaw_upstream_retries_total{") && l.contains("method=\"calendars.get\"")
    });
    assert!(retried, "{metrics}");
}

#[tokio::test]
async fn server_errors_are_retried_and_401_fetches_one_fresh_token() {
    let (sim, _account, key) = google().await;
    let app = host(Backend::Memory, &sim, &key, "retry_base_ms = 10").await;
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    sim.fail_next(2, 503);
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    sim.fail_next(1, 429);
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    // A front end's HTML page instead of Google's JSON is retried too.
    sim.fail_next_raw(502, "<html><body>Bad Gateway</body></html>");
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    assert_eq!(sim.token_requests(ANNA), 1);
    sim.revoke_tokens();
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    assert_eq!(sim.token_requests(ANNA), 2, "one fresh token after the 401");
    // Beyond the retries, the plugin hears `unavailable`.
    sim.fail_next(20, 500);
    let answer = get(&app, &format!("/gcal/{ANNA}/ping")).await;
    assert_eq!(answer["error"], "unavailable", "{answer}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("outcome=\"unavailable\""), "{metrics}");
}

#[tokio::test]
async fn a_plugin_not_granted_the_account_gets_not_configured() {
    let (sim, _account, key) = google().await;
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &tenant(&sim, &key, "", false))
        .start()
        .await;
    let answer = get(&app, &format!("/gcal/{ANNA}/ping")).await;
    assert_eq!(answer["error"], "not-configured", "{answer}");
    assert_eq!(sim.token_requests_total(), 0);
}

#[tokio::test]
async fn a_key_that_does_not_parse_names_the_file_never_the_key() {
    let (sim, _account, _key) = google().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken-key.json");
    std::fs::write(
        &path,
        "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0LW1hdGVyaWFs\"",
    )
    .unwrap();
    let toml = format!(
        "[upstreams.google]\nkind = \"google\"\nservice_account_key = {{ file = \"{}\" }}\napi_base = \"{}\"\n[plugins.gcal]\ncomponent = \"{{component:gcal}}\"\nupstreams = [\"google\"]\n",
        path.display(),
        sim.api_base()
    );
    let app = TestHost::builder(Backend::Memory)
        .tenant("firm-a", Some(KEY), &toml)
        .start()
        .await;
    let (_, ready) = app.ready_detail().await;
    let message = ready["broken_tenants"]["firm-a"].to_string();
    assert!(
        message.contains("broken-key.json") && message.contains("service_account_key"),
        "{ready}"
    );
    assert!(
        !message.contains("c2VjcmV0"),
        "the key's text never appears: {message}"
    );
}

#[tokio::test]
async fn tenants_tokens_and_buckets_never_collide() {
    let (sim, _account, key) = google().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let app = TestHost::builder(Backend::Redis)
        .key_prefix(&prefix)
        .tenant("firm-a", Some(KEY), &tenant(&sim, &key, "", true))
        .tenant("firm-b", Some("firm-b-key"), &tenant(&sim, &key, "", true))
        .start()
        .await;
    assert_eq!(get(&app, &format!("/gcal/{ANNA}/ping")).await["id"], ANNA);
    let response = app.get(&format!("/gcal/{ANNA}/ping"), "firm-b-key").await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.token_requests(ANNA), 2, "each tenant its own token");
    let keys = keys_with_prefix(&prefix);
    for tenant in ["firm-a", "firm-b"] {
        let base = format!("{prefix}:{{{tenant}}}:@google:");
        assert!(
            keys.contains(&format!("{base}kv:token:google:{ANNA}")),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("{base}rl:quota:google:user:{ANNA}")),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("{base}rl:quota:google:project")),
            "{keys:?}"
        );
    }
}

/// #19 item 9: the account names the mailboxes (or domains) its tenant may act
/// as; any other is refused before a token is asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_acts_only_as_the_mailboxes_its_account_lists() {
    let (sim, _account, key) = google().await;
    let app = host(
        Backend::Memory,
        &sim,
        &key,
        &format!("mailboxes = [\"{ANNA}\"]"),
    )
    .await;
    let anna = get(&app, &format!("/gcal/{ANNA}/ping?calendar={ANNA}")).await;
    assert!(anna.get("error").is_none(), "{anna}");
    let bernd = get(&app, &format!("/gcal/{BERND}/ping?calendar={BERND}")).await;
    assert_eq!(bernd["error"], "invalid", "{bernd}");
    assert!(
        bernd["message"].as_str().unwrap().contains("mailboxes"),
        "{bernd}"
    );
    assert_eq!(
        sim.token_requests(BERND),
        0,
        "no token for a refused mailbox"
    );

    let (sim, _account, key) = google().await;
    let app = host(
        Backend::Memory,
        &sim,
        &key,
        "mailboxes = [\"@kanzlei.example\"]",
    )
    .await;
    for mailbox in [ANNA, BERND] {
        let answer = get(&app, &format!("/gcal/{mailbox}/ping?calendar={mailbox}")).await;
        assert!(answer.get("error").is_none(), "{mailbox}: {answer}");
    }
    let other = get(
        &app,
        "/gcal/eve@other.example/ping?calendar=eve@other.example",
    )
    .await;
    assert_eq!(other["error"], "invalid", "{other}");
}

/// #19 item 9: an insert retried after a failure meets its own id; a
/// cancelled event with that id is not the one it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_insert_does_not_take_a_cancelled_event_for_its_own() {
    let (sim, _account, key) = google().await;
    let app = host(Backend::Memory, &sim, &key, "retry_base_ms = 1").await;
    let events = format!("/gcal/{ANNA}/events");
    post_event(&app, &events, insert_body("termin9", "Alt")).await;
    call(
        &app,
        reqwest::Method::DELETE,
        &format!("{events}/termin9"),
        None,
    )
    .await;
    sim.fail_next(1, 503);
    let again = post_event(&app, &events, insert_body("termin9", "Neu")).await;
    assert_eq!(again["error"], "conflict", "{again}");
}
