//! The dashboard in a real browser: headless Chromium driven through
//! WebDriver (`chromedriver`). Signing in with the admin token, reading a
//! tenant, its flow, and replaying a dead letter from the page, which
//! delivers the event again. With `DASHBOARD_SCREENSHOTS=<folder>` it also
//! writes PNGs of each view (`scripts/dashboard-screenshots.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::webdriver::Driver;
use bitbylaw_tests::{Backend, TestHost, wait_for};
use serde_json::Value;

const ADMIN: &str = "browser-test-admin-token";

async fn host() -> (TestHost, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let token = files.path().join("admin-token");
    std::fs::write(&token, ADMIN).unwrap();
    let tenant = "[plugins.flaky]\ncomponent = \"{component:flaky}\"\n\
                  [plugins.flaky.subscriptions.flaky]\nmax_attempts = 1\n\
                  [plugins.hello]\ncomponent = \"{component:hello}\"\n";
    let app = TestHost::builder(Backend::Redis)
        .host_toml(&format!(
            "[events]\nretry_poll_ms = 20\n[admin]\ntoken = {{ file = \"{}\" }}",
            token.display()
        ))
        .tenant("firm-a", Some("k"), tenant)
        .start()
        .await;
    (app, files)
}

async fn calls_of_permanent(app: &TestHost) -> u64 {
    let answer: Value = app.get("/flaky/permanent", "k").await.json().await.unwrap();
    answer["calls"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_reads_a_tenant_and_replays_a_dead_letter() {
    let (app, _files) = host().await;
    // Traffic, and an event that fails for good: one dead letter.
    assert_eq!(app.get("/hello/Ada", "k").await.status(), 200);
    let emitted = app
        .client
        .post(app.url("/flaky/permanent"))
        .header("apikey", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(emitted.status(), 202);
    wait_for(Duration::from_secs(20), || async {
        let letters = app
            .admin(
                reqwest::Method::GET,
                "/admin/tenants/firm-a/dead-letters",
                ADMIN,
            )
            .await;
        (letters["dead_letters"].as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(calls_of_permanent(&app).await, 1);
    let shots = std::env::var_os("DASHBOARD_SCREENSHOTS").map(std::path::PathBuf::from);
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
    }

    let driver = Driver::start().await;
    let browser = driver.session().await;
    browser.goto(&app.url("/admin/dashboard")).await;
    // The login page, then the token.
    let token = browser.wait("#token").await;
    assert!(
        !browser.page_text().await.contains("firm-a"),
        "no data before signing in"
    );
    browser.type_text(&token, ADMIN).await;
    let sign_in = browser.wait("#sign-in").await;
    browser.click(&sign_in).await;

    // A tenant and its plugins.
    let row = browser.wait("tr[data-tenant='firm-a']").await;
    let text = browser.text(&row).await;
    assert!(
        text.contains("running") && text.contains("flaky") && text.contains("hello"),
        "{text}"
    );
    browser.wait("tr[data-plugin='hello']").await;
    browser.wait("tr[data-series='hello 200']").await;
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("overview.png")).await;
    }

    // The flow: both plugins, the topic they share.
    let flow = browser.wait("nav button[data-view='flow']").await;
    browser.click(&flow).await;
    browser
        .wait("#flow-drawing rect[data-flow-plugin='flaky']")
        .await;
    browser
        .wait("#flow-drawing rect[data-flow-topic='flaky']")
        .await;
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("flow.png")).await;
    }

    // The dead letter, replayed from the page with its confirmation.
    let events = browser.wait("nav button[data-view='events']").await;
    browser.click(&events).await;
    let letter = browser.wait("tr[data-dead-letter]").await;
    let letter_text = browser.text(&letter).await;
    assert!(letter_text.contains("this cannot work"), "{letter_text}");
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("events.png")).await;
    }
    let replay = browser.wait("tr[data-dead-letter] button.replay").await;
    browser.click(&replay).await;
    browser.accept_dialog().await;
    // Delivered again: the handler ran a second time (and failed for good again).
    wait_for(Duration::from_secs(20), || async {
        (calls_of_permanent(&app).await == 2).then_some(())
    })
    .await;
    browser.close().await;
}
