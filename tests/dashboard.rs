//! The dashboard and the admin data behind it: closed without the admin token
//! (404 when none is set, 401 without a session), sessions only from the
//! token, changes through a session only with the page's own header, and no
//! page or answer holding a secret. Against a calendar-sync tenant: its
//! schedules, its flow, its lock while a run holds it, its status route and
//! its requests of the last minutes. The browser itself: `tests/browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::calendar::{API_KEY, CalendarRig, RigOptions};
use bitbylaw_tests::{Backend, TestHost, wait_for};
use serde_json::Value;

const ADMIN: &str = "admin-token-for-the-dashboard-7f3e";

fn rig_options(files: &std::path::Path) -> RigOptions {
    let token = files.join("admin-token");
    std::fs::write(&token, ADMIN).unwrap();
    RigOptions {
        host: format!("[admin]\ntoken = {{ file = \"{}\" }}\n", token.display()),
        ..RigOptions::default()
    }
}

/// A client that does not follow redirects (cookies are passed by hand).
fn browser_like() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a `Set-Cookie` answer.
fn cookie_of(answer: &reqwest::Response) -> String {
    let set = answer.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Signs in with the admin token; the session cookie to send.
async fn sign_in(host: &TestHost) -> String {
    let answer = browser_like()
        .post(host.url("/admin/dashboard/login"))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    cookie_of(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_dashboard_does_not_exist() {
    let app = TestHost::builder(Backend::Memory)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.hello]\ncomponent = \"{component:hello}\"\n",
        )
        .start()
        .await;
    for path in [
        "/admin/dashboard",
        "/admin/traffic",
        "/admin/tenants/firm-a/flow",
    ] {
        let answer = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
    let login = app
        .client
        .post(app.url("/admin/dashboard/login"))
        .form(&[("token", "anything")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_opens_only_with_the_token_and_changes_need_its_header() {
    let files = tempfile::tempdir().unwrap();
    let rig = CalendarRig::start(rig_options(files.path())).await;
    let host = &rig.host;
    let anonymous = browser_like();

    // No session: the login page (401), nothing of the tenants.
    let page = anonymous
        .get(host.url("/admin/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 401);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Admin token") && !text.contains("firm-a"),
        "{text}"
    );
    for path in [
        "/admin/traffic",
        "/admin/tenants",
        "/admin/tenants/firm-a/flow",
        "/admin/tenants/firm-a/locks",
        "/admin/tenants/firm-a/schedules",
        "/admin/tenants/firm-a/plugins/calendar-sync/status",
    ] {
        let answer = anonymous.get(host.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
    // A forged or foreign cookie opens nothing.
    let forged = anonymous
        .get(host.url("/admin/tenants"))
        .header("cookie", "bitbylaw_admin=9999999999.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let wrong = anonymous
        .post(host.url("/admin/dashboard/login"))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    // The token: a session cookie that is HttpOnly and SameSite=Strict.
    let answer = anonymous
        .post(host.url("/admin/dashboard/login"))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let set = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(ADMIN), "the cookie is not the token");
    let session = cookie_of(&answer);
    let page = anonymous
        .get(host.url("/admin/dashboard"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("bitbylaw dashboard"), "{page}");
    for outside in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "fetch(\"http",
    ] {
        assert!(
            !page.contains(outside),
            "the page loads something from elsewhere: {outside}"
        );
    }

    // A change through the session needs the page's header.
    let replay = "/admin/tenants/firm-a/dead-letters/replay";
    let bare = anonymous
        .post(host.url(replay))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401, "a cross-site form could send this");
    let with_header = anonymous
        .post(host.url(replay))
        .header("cookie", &session)
        .header("x-bitbylaw-dashboard", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), 200);

    // Signing out tells the browser to drop the cookie.
    let out = anonymous
        .post(host.url("/admin/dashboard/logout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(cookie_of(&out), "bitbylaw_admin=");
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_schedules_flow_locks_status_and_traffic_and_no_secret() {
    let files = tempfile::tempdir().unwrap();
    let rig = CalendarRig::start(rig_options(files.path())).await;
    let host = &rig.host;
    let session = sign_in(host).await;
    let client = browser_like();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = host.url(path);
        let session = session.clone();
        async move {
            let answer = client
                .get(url)
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            (status, text)
        }
    };

    // A run holds its employee's lock while Advoware's listing is held back.
    rig.advoware.hold_listings(true);
    let run = rig.spawn_run("SB");
    wait_for(Duration::from_secs(30), || async {
        (rig.advoware.held_listings() > 0).then_some(())
    })
    .await;
    let (status, locks) = get("/admin/tenants/firm-a/locks").await;
    assert_eq!(status, 200, "{locks}");
    let locks: Value = serde_json::from_str(&locks).unwrap();
    let held = locks["locks"].as_array().unwrap();
    assert!(
        held.iter().any(|l| l["plugin"] == "calendar-sync"
            && l["name"].as_str().unwrap().contains("SB")
            && l["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0)),
        "{locks}"
    );
    rig.advoware.hold_listings(false);
    let (status, _) = run.await.unwrap();
    assert_eq!(status, 200);

    let (_, schedules) = get("/admin/tenants/firm-a/schedules").await;
    let schedules: Value = serde_json::from_str(&schedules).unwrap();
    let all = schedules["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["plugin"] == "calendar-sync")
        .unwrap_or_else(|| panic!("{schedules}"));
    assert_eq!(all["cron"], "0 */15 * * * *");
    assert!(all["next"].as_str().is_some(), "{all}");

    let (_, flow) = get("/admin/tenants/firm-a/flow").await;
    let flow: Value = serde_json::from_str(&flow).unwrap();
    let sync = &flow["plugins"][0];
    assert_eq!(sync["name"], "calendar-sync");
    assert!(
        sync["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "GET /advoware/calendar/status")
    );
    assert!(
        sync["subscribes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "calendar_sync_employee"),
        "{sync}"
    );
    assert_eq!(sync["has_status"], true);
    assert!(
        sync["requests_15m"].as_u64().unwrap() >= 1,
        "the run's request: {sync}"
    );

    let (status, report) = get("/admin/tenants/firm-a/plugins/calendar-sync/status").await;
    assert_eq!(status, 200, "{report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["route"], "/advoware/calendar/status");
    assert_eq!(
        report["answer"]["employees"][0]["kuerzel"], "SB",
        "{report}"
    );

    let (_, traffic) = get("/admin/traffic").await;
    let traffic: Value = serde_json::from_str(&traffic).unwrap();
    assert!(
        traffic["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tenant"] == "firm-a"
                && s["plugin"] == "calendar-sync"
                && s["status"] == 200),
        "{traffic}"
    );

    // Recovery: the tenant's cached tokens dropped; the next run signs in afresh.
    let before = rig.advoware.token_requests();
    let dropped = host
        .admin(
            reqwest::Method::DELETE,
            "/admin/tenants/firm-a/tokens",
            ADMIN,
        )
        .await;
    let kinds: Vec<&str> = dropped["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"advoware") && kinds.contains(&"google"),
        "{dropped}"
    );
    assert!(
        !dropped
            .to_string()
            .contains(rig.advoware.issued_tokens()[0].as_str())
    );
    // (An instance reuses the token it read for a second: runs until one signs in.)
    wait_for(Duration::from_secs(10), || async {
        let (status, _) = rig.run("SB").await;
        assert_eq!(status, 200);
        (rig.advoware.token_requests() > before).then_some(())
    })
    .await;
    assert_eq!(
        rig.advoware.token_requests(),
        before + 1,
        "signed in afresh, once"
    );

    // Nothing the dashboard is given holds a secret.
    let account = rig.advoware.account();
    let secrets = [
        ADMIN,
        API_KEY,
        account.api_key.as_str(),
        account.password.as_str(),
    ];
    let mut answers = Vec::new();
    for path in [
        "/admin/dashboard",
        "/admin/tenants",
        "/admin/traffic",
        "/admin/events",
        "/admin/tenants/firm-a/flow",
        "/admin/tenants/firm-a/locks",
        "/admin/tenants/firm-a/schedules",
        "/admin/tenants/firm-a/dead-letters",
        "/admin/tenants/firm-a/plugins/calendar-sync/status",
    ] {
        answers.push((path, get(path).await.1));
    }
    for (path, text) in &answers {
        for secret in secrets {
            assert!(!text.contains(secret), "{path} holds a secret");
        }
    }
}
