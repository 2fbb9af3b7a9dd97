//! The demo from the README: `deploy/demo` as it is, the host as its own process
//! with the environment `scripts/demo.sh` sets, the Advoware simulator on the
//! demo's port 9471, the Google simulator on 9472 and the EspoCRM simulator on
//! 9473 and the 3CX simulator on 9474: hello, the proxy, a calendar sync of
//! the demo's employees, EspoCRM's demo parties arriving in Advoware by
//! webhook, a lead from the form called by 3CX, a screen pop and a journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, TOKEN_LIFETIME};
use bitbylaw_tests::simulators::espocrm::{self, EspoAccount, EspoCrm};
use bitbylaw_tests::simulators::google::{Google, ServiceAccount};
use bitbylaw_tests::simulators::threecx::{ThreeCx, ThreeCxAccount};
use bitbylaw_tests::{HostProcess, cache_dir, component, wait_for};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_config_serves_hello_the_advoware_proxy_and_the_calendar_sync() {
    let sim = Advoware::start_on(
        "127.0.0.1:9471".parse().unwrap(),
        Account::default(),
        TOKEN_LIFETIME,
    )
    .await
    .expect("port 9471 is the demo simulator's; is scripts/demo.sh running?");
    sim.seed_demo_data();
    let account = ServiceAccount::generate("demo-sync@bitbylaw-demo.iam.gserviceaccount.com");
    let google = Google::start_on(
        "127.0.0.1:9472".parse().unwrap(),
        std::slice::from_ref(&account),
    )
    .await
    .expect("port 9472 is the demo's Google simulator; is scripts/demo.sh running?");
    let google_key = account.key_json(&google.token_uri());
    let crm = EspoCrm::start_on("127.0.0.1:9473".parse().unwrap(), EspoAccount::demo())
        .await
        .expect("port 9473 is the demo's EspoCRM simulator; is scripts/demo.sh running?");
    let crm_account = crm.account().clone();
    let pbx = ThreeCx::start_on("127.0.0.1:9474".parse().unwrap(), ThreeCxAccount::default())
        .await
        .expect("port 9474 is the demo's 3CX simulator; is scripts/demo.sh running?");
    let secrets: Vec<String> = ["create", "update", "delete"]
        .into_iter()
        .map(|action| espocrm::demo_webhook(action).1)
        .collect();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/host.toml");
    let dir = tempfile::tempdir().unwrap();
    let advoware = Account::default();
    let listen = format!("127.0.0.1:{port}");
    // What scripts/demo.sh does: the built plugins into a component store as version "demo".
    let store = dir.path().join("components");
    for plugin in [
        "hello",
        "advoware-proxy",
        "calendar-sync",
        "vmh-webhooks",
        "vermieterhelden",
        "threecx",
    ] {
        std::fs::create_dir_all(store.join(plugin)).unwrap();
        std::fs::copy(component(plugin), store.join(plugin).join("demo.wasm")).unwrap();
    }
    let (store, cache) = (
        store.display().to_string(),
        cache_dir().display().to_string(),
    );
    let host = HostProcess::spawn(
        &config,
        &dir.path().join("host.log"),
        &[
            ("BITBYLAW_LISTEN", listen.as_str()),
            ("BITBYLAW_COMPONENTS__DIR", store.as_str()),
            ("BITBYLAW_RUNTIME__CACHE_DIR", cache.as_str()),
            ("DEMO_API_KEY", "demo-key"),
            ("DEMO_OPERATOR_KEY", "demo-operator-key"),
            ("DEMO_ADMIN_TOKEN", "demo-admin-token"),
            ("DEMO_FORM_SECRET", "demo-form-secret"),
            ("DEMO_ADVOWARE_API_KEY", advoware.api_key.as_str()),
            ("DEMO_ADVOWARE_PASSWORD", advoware.password.as_str()),
            ("DEMO_GOOGLE_KEY", google_key.as_str()),
            ("DEMO_ESPOCRM_API_KEY", crm_account.api_key.as_str()),
            ("DEMO_VMH_SECRET_CREATE", secrets[0].as_str()),
            ("DEMO_VMH_SECRET_UPDATE", secrets[1].as_str()),
            ("DEMO_VMH_SECRET_DELETE", secrets[2].as_str()),
            ("DEMO_3CX_SECRET", "3cx-demo-secret"),
        ],
    );
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    wait_for(Duration::from_secs(60), || async {
        let ready = client.get(format!("{base}/ready")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;

    let hello = client
        .get(format!("{base}/hello/world"))
        .header("apikey", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200, "{}", host.log_text());

    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive();
    let in_60_days = today + chrono::Days::new(60);
    let proxied = client
        .get(format!(
            "{base}/advoware/proxy?endpoint=appointments&kuerzel=SB&from={today}&to={in_60_days}"
        ))
        .header("apikey", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200, "{}", host.log_text());
    let appointments: Value = proxied.json().await.unwrap();
    let texts: Vec<&str> = appointments
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["text"].as_str())
        .collect();
    assert!(texts.contains(&"Mandantengespräch Müller"), "{texts:?}");
    assert!(texts.contains(&"Kanzleirunde"), "{texts:?}");
    assert_eq!(sim.token_requests(), 1);

    // The calendar sync of the README: every employee with a mailbox, then the status.
    let triggered = client
        .post(format!("{base}/advoware/calendar/sync"))
        .header("apikey", "demo-key")
        .header("content-type", "application/json")
        .body(r#"{"kuerzel": "ALL"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(triggered.status(), 200, "{}", host.log_text());
    let runs = wait_for(Duration::from_secs(60), || async {
        let status: Value = client
            .get(format!("{base}/advoware/calendar/status"))
            .header("apikey", "demo-key")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let runs = status["employees"].as_array()?.clone();
        (runs.len() == 2 && runs.iter().all(|r| r["outcome"] == "ok")).then_some(runs)
    })
    .await;
    // SB: three own appointments and the firm's holidays; MK: one and the holidays.
    let created: Vec<u64> = runs
        .iter()
        .map(|r| r["google"]["created"].as_u64().unwrap())
        .collect();
    assert_eq!(created, [2, 4], "MK then SB: {runs:?}");
    let calendar = google
        .calendars_of("sabine.berger@kanzlei.example")
        .into_iter()
        .find(|(_, summary)| summary == "Advoware")
        .expect("SB's sync calendar");
    let events = google.events(&calendar.0);
    assert!(
        events
            .iter()
            .any(|e| e["summary"] == "Kanzleirunde" && e["recurrence"][0] == "RRULE:FREQ=WEEKLY"),
        "{events:?}"
    );

    // EspoCRM's demo parties, made after its webhooks were registered, reach
    // Advoware by webhook, and their Advoware ids are written back.
    crm.register_demo_webhooks(&format!(
        "{base}/vmh/webhook/beteiligte/{{action}}?apikey=demo-key"
    ));
    crm.seed_demo_data();
    let report = crm.deliver().await;
    assert_eq!(report.delivered, 3, "{:?}", report.deliveries);
    assert!(
        report.deliveries.iter().all(|d| d.status == Some(200)),
        "{:?}\n{}",
        report.deliveries,
        host.log_text()
    );
    let parties = wait_for(Duration::from_secs(30), || async {
        let parties: Vec<Value> = sim
            .parties()
            .into_iter()
            .filter(|p| p["externeId"].is_string())
            .collect();
        (parties.len() == 3).then_some(parties)
    })
    .await;
    let mut names: Vec<&str> = parties.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["Müller", "Schneider", "Weiß"]);
    wait_for(Duration::from_secs(30), || async {
        crm.records("CBeteiligte")
            .iter()
            .all(|r| r["cAdvowareBetNr"].is_number())
            .then_some(())
    })
    .await;

    // A lead from the WordPress form, as the README sends it, becomes a Lead
    // in EspoCRM with its phone number in E.164.
    let lead = client
        .post(format!("{base}/api/leads/vermieterhelden?form=mieter"))
        .header("apikey", "demo-key")
        .header("x-webhook-secret", "demo-form-secret")
        .header("content-type", "application/json")
        .body(r#"{"your-name":"Max Mustermann","your-email":"max@example.de","your-phone":"030 1234567","acceptance-dsgvo":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(lead.status(), 200, "{}", host.log_text());
    let leads = wait_for(Duration::from_secs(30), || async {
        let leads: Vec<Value> = crm
            .records("Lead")
            .into_iter()
            .filter(|l| l["emailAddress"] == "max@example.de")
            .collect();
        (!leads.is_empty()).then_some(leads)
    })
    .await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["phoneNumber"], "+49301234567");
    // A Mieter lead: 3CX calls it from the lead extension.
    let made = wait_for(Duration::from_secs(30), || async {
        pbx.calls_made().into_iter().next()
    })
    .await;
    assert_eq!((made.0.as_str(), made.1.as_str()), ("101", "+49301234567"));

    // The screen pop for that number, as the README asks: the Lead from
    // EspoCRM, then Advoware's demo party with the same number.
    let pop: Value = client
        .get(format!("{base}/3cx/lookup?number=030%201234567"))
        .header("apikey", "demo-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = pop["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["entity_type"].as_str().unwrap(),
                c["last_name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .or(c["company_name"].as_str())
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("Lead", "Mustermann"),
            ("Party", "Hausverwaltung Nord GmbH")
        ]
    );
    // The call's journal, as the README posts it: a Call in EspoCRM on the Lead.
    let journal = client
        .post(format!("{base}/3cx/journal"))
        .header("apikey", "demo-key")
        .header("content-type", "application/json")
        .body(r#"{"call_type":"Inbound","number":"030 1234567","agent":"101","duration":"95","start_utc":"2026-12-04T09:00:00Z","end_utc":"2026-12-04T09:01:35Z"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(journal.status(), 200, "{}", host.log_text());
    let calls = wait_for(Duration::from_secs(30), || async {
        let calls = crm.records("Call");
        (!calls.is_empty()).then_some(calls)
    })
    .await;
    assert_eq!(calls[0]["parentType"], "Lead");
    assert_eq!(calls[0]["parentId"], leads[0]["id"]);

    // The dashboard of the demo, as the README says: the token, then the page.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = no_redirects
        .post(format!("{base}/admin/dashboard/login"))
        .form(&[("token", "demo-admin-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let session = login.headers()["set-cookie"].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_owned();
    let page = no_redirects
        .get(format!("{base}/admin/dashboard"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // The log file is plain text with the host's access lines.
    let log = host.log_text();
    assert!(!log.contains('\u{1b}'), "colour codes in the log file");
    assert!(
        log.lines().any(|l| l.contains("bitbylaw::access")
            && l.contains("status=200")
            && l.contains("route=")),
        "no access line for the greeting:\n{log}"
    );
}
