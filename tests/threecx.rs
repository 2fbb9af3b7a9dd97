//! `threecx`: the 3CX plugin against the 3CX, EspoCRM and Advoware
//! simulators, with 3CX's side played by the CRM template itself
//! (`deploy/3cx/bitbylaw-crm.xml`, read and expanded as the PBX does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitbylaw_tests::deployment::Deployment;
use bitbylaw_tests::simulators::advoware::Advoware;
use bitbylaw_tests::simulators::espocrm::EspoCrm;
use bitbylaw_tests::simulators::threecx::ThreeCx;
use bitbylaw_tests::simulators::threecx::template::{Pbx, ReportedCall};
use bitbylaw_tests::{TestHost, wait_for};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

const KEY: &str = "k-3cx";
const FORM_SECRET: &str = "form-secret-3cx";

fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/3cx/bitbylaw-crm.xml")
}

/// The PBX with the template loaded and pointed at `app`.
fn pbx(app: &TestHost) -> Pbx {
    Pbx::load(
        &template_path(),
        &[("BaseUrl", &app.url("/")), ("ApiKey", KEY)],
    )
}

struct Sims {
    espocrm: EspoCrm,
    advoware: Advoware,
    pbx: ThreeCx,
}

impl Sims {
    async fn start() -> Self {
        Self {
            espocrm: EspoCrm::start_default().await,
            advoware: Advoware::start_default().await,
            pbx: ThreeCx::start_default().await,
        }
    }

    /// The tenant: threecx with the three accounts (and `extra` config),
    /// vermieterhelden for qualified leads, every schedule every second.
    fn tenant(&self, dir: &Path, extra: &str) -> String {
        let key = dir.join("api-key");
        std::fs::write(&key, KEY).unwrap();
        let form_secret = dir.join("form-secret");
        std::fs::write(&form_secret, FORM_SECRET).unwrap();
        format!(
            r#"api_keys = [{{ file = "{key}" }}]

[plugins.threecx]
component = "{{component:threecx}}"
upstreams = ["espocrm", "advoware", "pbx"]

[plugins.threecx.subscriptions."threecx.call.reported"]
backoff_base_ms = 100
backoff_jitter = 0.0
max_attempts = 50

[plugins.threecx.schedules.threecx_calls]
cron = "* * * * * *"

[plugins.threecx.schedules.threecx_recordings]
cron = "* * * * * *"

[plugins.threecx.config]
lead_extension = "101"
{extra}

[plugins.vermieterhelden]
component = "{{component:vermieterhelden}}"
upstreams = ["espocrm"]

[plugins.vermieterhelden.secrets]
mieter = {{ file = "{form_secret}" }}

[plugins.vermieterhelden.config.forms.mieter]
type = "Mieter"
auth = "shared-secret"
fields = {{ name = "your-name", email = "your-email", phone = "your-phone" }}

{espocrm}
{advoware}
{pbx}"#,
            key = key.display(),
            form_secret = form_secret.display(),
            espocrm = self.espocrm.upstream_toml("espocrm", dir, true),
            advoware = self.advoware.upstream_toml("advoware", dir),
            pbx = self.pbx.upstream_toml("pbx", dir),
        )
    }

    fn deployment(&self, extra: &str) -> Deployment {
        let mut deployment = Deployment::new("firm-a", None);
        deployment.tenant_toml = self.tenant(deployment.files(), extra);
        deployment.host_toml = "[events]\nretry_poll_ms = 20\n".into();
        deployment
    }

    /// Anna Berg, in EspoCRM as a contact and in Advoware as a party, both
    /// under +49 171 1234567; returns the contact's id and the party's number.
    fn anna(&self) -> (String, i64) {
        let contact = self.espocrm.user_create(
            "Contact",
            json!({
                "firstName": "Anna", "lastName": "Berg", "accountName": "Berg Immobilien GmbH",
                "emailAddress": "anna@berg.de", "phoneNumber": "+491711234567",
                "phoneNumberData": [
                    { "phoneNumber": "+491711234567", "type": "Mobile", "primary": true },
                    { "phoneNumber": "+49301234567", "type": "Office", "primary": false },
                ],
            }),
        );
        let party = self.advoware.insert_party(json!({
            "vorname": "Anna", "name": "Berg", "email": "anna@berg.de", "telefon": "+491711234567",
        }));
        (contact, party)
    }
}

async fn started(deployment: &Deployment) -> TestHost {
    let app = deployment.start().await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );
    app
}

async fn get_json(app: &TestHost, path: &str) -> (u16, Value) {
    let answer = app.get(path, KEY).await;
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

async fn post_json(app: &TestHost, path: &str, body: &Value) -> (u16, Value) {
    let answer = app
        .client
        .post(app.url(path))
        .header("apikey", KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, h, m, s).unwrap()
}

fn reported(
    call_type: &str,
    number: &str,
    agent: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    entity_id: &str,
) -> ReportedCall {
    ReportedCall {
        call_type: call_type.into(),
        number: number.into(),
        name: "Anna Berg".into(),
        agent: agent.into(),
        talk_s: u64::try_from((end - start).num_seconds()).unwrap(),
        start,
        end,
        entity_id: entity_id.into(),
    }
}

/// EspoCRM's `Call`s with the journal's key attribute.
fn calls_in_espocrm(espocrm: &EspoCrm) -> Vec<Value> {
    espocrm.records("Call")
}

/// The lookup through the template finds Anna by every way a German number
/// is written, EspoCRM's contact first (the preferred source) with the
/// screen pop's fields, Advoware's party after; a tenant preferring Advoware
/// sees the party first; unknown and non-numbers answer an empty list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_a_caller_by_any_german_format_from_the_preferred_source_first() {
    let sims = Sims::start().await;
    let (contact, party) = sims.anna();
    let deployment =
        sims.deployment("[plugins.threecx.config.espocrm]\nui_url = \"https://crm.kanzlei.de/\"\n");
    let app = started(&deployment).await;
    let pbx = pbx(&app);
    for number in [
        "+491711234567",
        "01711234567",
        "0171 1234567",
        "0049 171 1234567",
        "+49 (0)171 1234567",
        "0171/123-4567",
    ] {
        let (status, pops) = pbx.lookup(number).await;
        assert_eq!(status, 200, "{number}");
        assert_eq!(pops.len(), 2, "{number}: {pops:?}");
        let pop = &pops[0];
        assert_eq!(pop["FirstName"], "Anna");
        assert_eq!(pop["LastName"], "Berg");
        assert_eq!(pop["CompanyName"], "Berg Immobilien GmbH");
        assert_eq!(pop["Email"], "anna@berg.de");
        assert_eq!(pop["PhoneMobile"], "+491711234567");
        assert_eq!(pop["PhoneBusiness"], "+49301234567");
        assert_eq!(
            pop["ContactUrl"],
            format!("https://crm.kanzlei.de/#Contact/view/{contact}")
        );
        assert_eq!(pop["EntityId"], format!("Contact:{contact}"));
        assert_eq!(pop["EntityType"], "Contact");
        assert_eq!(pops[1]["EntityId"], format!("Party:{party}"));
        assert_eq!(pops[1]["EntityType"], "Party");
        assert_eq!(pops[1]["LastName"], "Berg");
    }
    // The first answer was kept briefly: the other formats asked nobody.
    let party_lookups = sims
        .advoware
        .api_requests()
        .iter()
        .filter(|r| r.path.contains("Beteiligte"))
        .count();
    assert_eq!(party_lookups, 1);

    for unknown in ["+49 30 9999999", "anonymous", "101"] {
        let (status, pops) = pbx.lookup(unknown).await;
        assert_eq!((status, pops.len()), (200, 0), "{unknown}");
    }
    let (status, answer) = get_json(&app, "/3cx/lookup?number=030%209999999").await;
    assert_eq!(status, 200);
    assert_eq!(answer["contacts"], json!([]));
    let (status, answer) = get_json(&app, "/3cx/lookup").await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().contains("`number`"),
        "{answer}"
    );

    // Another firm prefers Advoware.
    let preferring = sims.deployment("[plugins.threecx.config.lookup]\nprefer = \"advoware\"\n");
    let other = started(&preferring).await;
    let (status, pops) = crate::pbx(&other).lookup("0171 1234567").await;
    assert_eq!(status, 200);
    assert_eq!(
        pops.iter()
            .map(|p| p["EntityType"].as_str())
            .collect::<Vec<_>>(),
        ["Party", "Contact"]
    );
}

/// An upstream that hangs does not hold the phone: the lookup answers
/// within its budget with what the other one had, marks it incomplete and
/// does not keep it; answered again in full once the upstream is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_within_its_budget_when_an_upstream_hangs() {
    let sims = Sims::start().await;
    let (contact, party) = sims.anna();
    let budget = Duration::from_millis(700);
    for (prefer, hanging) in [
        ("espocrm", "advoware"),
        ("advoware", "advoware"),
        ("advoware", "espocrm"),
    ] {
        let deployment = sims.deployment(&format!(
            "[plugins.threecx.config.lookup]\nbudget_ms = {}\nprefer = \"{prefer}\"\n",
            budget.as_millis()
        ));
        let app = started(&deployment).await;
        // Signed in before the hang (a token is not the lookup's business).
        let (status, _) = get_json(&app, "/3cx/lookup?number=%2B4930555").await;
        assert_eq!(status, 200);
        match hanging {
            "advoware" => sims.advoware.set_latency(Duration::from_secs(30)),
            _ => sims.espocrm.set_latency(Duration::from_secs(30)),
        }
        let started_at = Instant::now();
        let (status, answer) = get_json(&app, "/3cx/lookup?number=01711234567").await;
        let took = started_at.elapsed();
        assert_eq!(status, 200, "{answer}");
        assert!(
            took < budget + Duration::from_millis(500),
            "prefer {prefer}, {hanging} hanging: answered after {took:?}, budget {budget:?}"
        );
        assert_eq!(answer["complete"], false);
        let types: Vec<&str> = answer["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["entity_id"].as_str().unwrap())
            .collect();
        let expected = match hanging {
            "advoware" => format!("Contact:{contact}"),
            _ => format!("Party:{party}"),
        };
        assert_eq!(
            types,
            [expected.as_str()],
            "prefer {prefer}, {hanging} hanging"
        );

        sims.advoware.set_latency(Duration::ZERO);
        sims.espocrm.set_latency(Duration::ZERO);
        // Not kept while cut short: asked again, complete.
        let (_, answer) = get_json(&app, "/3cx/lookup?number=01711234567").await;
        assert_eq!(answer["complete"], true, "{answer}");
        assert_eq!(answer["contacts"].as_array().unwrap().len(), 2);
    }
}

/// The journal through the template: one Call per call in EspoCRM, linked
/// to the screen pop's contact, and one note on the Advoware party; the
/// same report twice, and to two instances at once, is one Call; a
/// transfer (two agents' reports) is one Call with both segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_post_makes_one_call_in_espocrm_and_one_note_in_advoware() {
    let sims = Sims::start().await;
    let (contact, party) = sims.anna();
    let deployment = sims.deployment("");
    let first = started(&deployment).await;
    let second = started(&deployment).await;
    let (pbx_a, pbx_b) = (pbx(&first), pbx(&second));

    // Posted twice to one instance, then to both at once.
    let call = reported(
        "Inbound",
        "0171 1234567",
        "101",
        at(9, 0, 0),
        at(9, 2, 5),
        &format!("Contact:{contact}"),
    );
    let (status, answer) = pbx_a.report_call(&call).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["taken"], "new");
    let key = answer["call"].as_str().unwrap().to_owned();
    let (status, again) = pbx_a.report_call(&call).await;
    assert_eq!((status, again["taken"].as_str()), (200, Some("repeated")));
    let (a, b) = tokio::join!(pbx_a.report_call(&call), pbx_b.report_call(&call));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(
        (a.1["call"].as_str(), b.1["call"].as_str()),
        (Some(key.as_str()), Some(key.as_str()))
    );

    let written = wait_for(Duration::from_secs(30), || async {
        let calls = calls_in_espocrm(&sims.espocrm);
        let notes = sims.advoware.notes(party);
        (!calls.is_empty() && !notes.is_empty()).then_some((calls, notes))
    })
    .await;
    let (calls, notes) = written;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let espo_call = &calls[0];
    assert_eq!(espo_call["direction"], "Inbound");
    assert_eq!(espo_call["status"], "Held");
    assert_eq!(espo_call["dateStart"], "2026-12-04 09:00:00");
    assert_eq!(espo_call["dateEnd"], "2026-12-04 09:02:05");
    assert_eq!(espo_call["parentType"], "Contact");
    assert_eq!(espo_call["parentId"], contact.as_str());
    assert_eq!(espo_call["contactsIds"], json!([contact]));
    assert_eq!(espo_call["cThreecxCallId"], key.as_str());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]["text"].as_str().unwrap().contains("+491711234567"));

    // A transfer: 101 took it, 102 got it two seconds after. One call.
    let transferred = [
        reported(
            "Inbound",
            "+49 30 1234567",
            "101",
            at(10, 0, 0),
            at(10, 1, 0),
            "",
        ),
        reported(
            "Inbound",
            "030 1234567",
            "102",
            at(10, 1, 2),
            at(10, 4, 0),
            "",
        ),
    ];
    let (_, first_part) = pbx_a.report_call(&transferred[0]).await;
    let (_, second_part) = pbx_b.report_call(&transferred[1]).await;
    assert_eq!(first_part["taken"], "new");
    assert_eq!(second_part["taken"], "segment");
    assert_eq!(first_part["call"], second_part["call"]);
    let transfer_key = first_part["call"].as_str().unwrap().to_owned();
    let espo = wait_for(Duration::from_secs(30), || async {
        calls_in_espocrm(&sims.espocrm).into_iter().find(|c| {
            c["cThreecxCallId"] == transfer_key.as_str()
                && c["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Nebenstelle 102"))
        })
    })
    .await;
    assert!(
        espo["description"]
            .as_str()
            .unwrap()
            .contains("Nebenstelle 101")
    );
    assert_eq!(espo["dateEnd"], "2026-12-04 10:04:00");
    let (status, journal) = get_json(&first, &format!("/3cx/journal/{transfer_key}")).await;
    assert_eq!(status, 200);
    assert_eq!(journal["call"]["segments"].as_array().unwrap().len(), 2);
    assert_eq!(journal["agents"], json!(["101", "102"]));
    // Anna's call and the transferred one: two Calls, no more.
    let everything_synced = wait_for(Duration::from_secs(10), || async {
        let (_, journal) = get_json(&first, &format!("/3cx/journal/{key}")).await;
        (journal["party_noted"] == true).then_some(())
    });
    everything_synced.await;
    assert_eq!(calls_in_espocrm(&sims.espocrm).len(), 2);
    assert_eq!(sims.advoware.notes(party).len(), 1);

    // Two anonymous callers at once, to two agents: two calls, not a transfer.
    let (_, one) = pbx_a
        .report_call(&reported(
            "Inbound",
            "anonymous",
            "101",
            at(12, 0, 0),
            at(12, 1, 0),
            "",
        ))
        .await;
    let (_, other) = pbx_a
        .report_call(&reported(
            "Inbound",
            "anonymous",
            "102",
            at(12, 0, 30),
            at(12, 2, 0),
            "",
        ))
        .await;
    assert_eq!(
        (one["taken"].as_str(), other["taken"].as_str()),
        (Some("new"), Some("new"))
    );
    assert_ne!(one["call"], other["call"]);
    wait_for(Duration::from_secs(30), || async {
        (calls_in_espocrm(&sims.espocrm).len() == 4).then_some(())
    })
    .await;

    // EspoCRM down when a call ends: kept (200), written once it is back.
    sims.espocrm.refuse_connections();
    let (status, answer) = pbx_b
        .report_call(&reported(
            "Missed",
            "040 1112223",
            "100",
            at(11, 0, 0),
            at(11, 0, 20),
            "",
        ))
        .await;
    assert_eq!(status, 200, "{answer}");
    let missed_key = answer["call"].as_str().unwrap().to_owned();
    let (_, journal) = get_json(&second, &format!("/3cx/journal/{missed_key}")).await;
    assert_eq!(journal["espocrm_id"], Value::Null);
    sims.espocrm.accept_connections().await;
    let missed = wait_for(Duration::from_secs(30), || async {
        calls_in_espocrm(&sims.espocrm)
            .into_iter()
            .find(|c| c["cThreecxCallId"] == missed_key.as_str())
    })
    .await;
    assert_eq!(
        (missed["status"].as_str(), missed["direction"].as_str()),
        (Some("Not Held"), Some("Inbound"))
    );
    assert_eq!(calls_in_espocrm(&sims.espocrm).len(), 5);

    // A report 3CX could not have sent: refused, saying why.
    let (status, answer) = post_json(
        &first,
        "/3cx/journal",
        &json!({ "number": "0171 1234567", "agent": "101", "start_utc": "2026-12-04T09:00:00Z" }),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().contains("call_type"),
        "{answer}"
    );
}

/// A qualified lead (a Mieter lead from the WordPress form) is called from
/// the lead extension; nobody answers: one follow-up task on the lead. A
/// call an agent starts by hand that is answered leaves no task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qualified_lead_is_called_and_a_missed_call_leaves_one_follow_up_task() {
    let sims = Sims::start().await;
    let deployment = sims.deployment("");
    let app = started(&deployment).await;

    // By hand: extension 102 calls a number, it is answered, then ends.
    let (status, started_call) = post_json(
        &app,
        "/3cx/calls",
        &json!({ "number": "030 7654321", "extension": "102" }),
    )
    .await;
    assert_eq!(status, 201, "{started_call}");
    let id = started_call["id"].as_str().unwrap().to_owned();
    let participant = started_call["participant"].as_u64().unwrap();
    sims.pbx.set_status(participant, Some("Connected"));
    let (status, live) = get_json(&app, &format!("/3cx/calls/{id}")).await;
    assert_eq!((status, live["status"].as_str()), (200, Some("Connected")));
    wait_for(Duration::from_secs(20), || async {
        let (_, seen) = get_json(&app, &format!("/3cx/calls/{id}")).await;
        (seen["answered"] == true).then_some(())
    })
    .await;
    sims.pbx.set_status(participant, None);
    // Bad input says what is wrong.
    let (status, answer) =
        post_json(&app, "/3cx/calls", &json!({ "number": "kein Anschluss" })).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("`number`"));
    let (status, _) = post_json(
        &app,
        "/3cx/calls",
        &json!({ "number": "0301234", "extension": "1;drop" }),
    )
    .await;
    assert_eq!(status, 400);

    // The lead: a form submission → EspoCRM Lead → lead.qualify → makecall.
    let answer = app
        .client
        .post(app.url("/api/leads/vermieterhelden?form=mieter"))
        .header("apikey", KEY)
        .header("x-webhook-secret", FORM_SECRET)
        .json(&json!({ "your-name": "Lena Lead", "your-email": "lena@example.de", "your-phone": "0151 23456789" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let made = wait_for(Duration::from_secs(30), || async {
        sims.pbx
            .calls_made()
            .into_iter()
            .find(|(_, destination, _)| destination == "+4915123456789")
    })
    .await;
    let lead = sims
        .espocrm
        .records("Lead")
        .into_iter()
        .find(|l| l["emailAddress"] == "lena@example.de")
        .unwrap();
    let lead_id = lead["id"].as_str().unwrap();
    assert_eq!(made.0, "101", "from the lead extension");
    assert_eq!(made.2["lead_id"], lead_id);
    // Ringing, then nobody answers.
    let lead_participant = sims
        .pbx
        .participants()
        .into_iter()
        .find(|p| p.dn == "101")
        .unwrap();
    sims.pbx.set_status(lead_participant.id, Some("Ringing"));
    sims.pbx.set_status(lead_participant.id, None);
    let tasks = wait_for(Duration::from_secs(30), || async {
        let tasks = sims.espocrm.records("Task");
        (!tasks.is_empty()).then_some(tasks)
    })
    .await;
    assert_eq!(tasks[0]["parentType"], "Lead");
    assert_eq!(tasks[0]["parentId"], lead_id);
    assert!(
        tasks[0]["name"]
            .as_str()
            .unwrap()
            .contains("+4915123456789")
    );
    // The watch has moved past both calls: still one task, and one call to the lead.
    let lead_call = format!("101-{}", lead_participant.id);
    wait_for(Duration::from_secs(20), || async {
        let (_, seen) = get_json(&app, &format!("/3cx/calls/{lead_call}")).await;
        (seen["follow_up_task"].is_string() && seen["status"] == "unanswered").then_some(())
    })
    .await;
    assert_eq!(sims.espocrm.records("Task").len(), 1);
    let to_lead = sims
        .pbx
        .calls_made()
        .into_iter()
        .filter(|(_, destination, _)| destination == "+4915123456789")
        .count();
    assert_eq!(to_lead, 1);
}

fn recording_fields(number: &str, start: DateTime<Utc>, agent: &str) -> Map<String, Value> {
    json!({
        "StartTime": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "EndTime": (start + chrono::Duration::seconds(50)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "CallType": "InboundExternal",
        "FromDn": "", "FromCallerNumber": number, "FromDisplayName": "Anrufer",
        "ToDn": agent, "ToCallerNumber": agent, "ToDisplayName": "Kanzlei",
        "IsTranscribed": false,
    })
    .as_object()
    .unwrap()
    .clone()
}

/// 120 recordings appear while two instances poll: each is linked to its
/// call once, one listed before its call's journal is linked when the
/// journal comes, a 3CX outage mid-run delays and loses nothing, and the
/// token is requested once for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_linked_once_across_instances_and_outages() {
    let sims = Sims::start().await;
    let deployment = sims.deployment(
        "[plugins.threecx.config.lookup]\nsources = [\"espocrm\"]\n\
         [plugins.threecx.config.recordings]\npage_size = 25\npublic_url = \"https://api.kanzlei.de/\"\n",
    );
    let first = started(&deployment).await;
    let second = started(&deployment).await;
    let pbx_a = pbx(&first);
    // 120 calls of 120 numbers in the journal, each with its recording.
    let number = |i: usize| format!("+4930{:07}", 1_000_000 + i);
    let start = |i: usize| at(8, 0, 0) + chrono::Duration::minutes(i as i64);
    let mut keys = Vec::new();
    for i in 0..120 {
        if i == 7 {
            continue; // its journal comes late
        }
        let (status, answer) = pbx_a
            .report_call(&reported(
                "Inbound",
                &number(i),
                "101",
                start(i),
                start(i) + chrono::Duration::seconds(55),
                "",
            ))
            .await;
        assert_eq!(status, 200, "{answer}");
        keys.push((i, answer["call"].as_str().unwrap().to_owned()));
    }
    // Recordings appear in three waves while both instances poll; 3CX
    // fails (503 to everything) across the second wave.
    let mut recordings = Vec::new();
    let add = |i: usize| {
        sims.pbx.add_recording(
            recording_fields(&number(i), start(i) + chrono::Duration::seconds(2), "101"),
            format!("RIFF-audio-{i}").as_bytes(),
        )
    };
    let listings = || {
        sims.pbx
            .api_requests()
            .iter()
            .filter(|(_, target)| target.starts_with("/xapi/v1/Recordings?"))
            .count()
    };
    recordings.extend((0..40).map(add));
    let seen = listings();
    wait_for(Duration::from_secs(20), || async {
        (listings() > seen).then_some(())
    })
    .await;
    sims.pbx.break_after(0);
    recordings.extend((40..80).map(add));
    let failing_from = listings();
    wait_for(Duration::from_secs(20), || async {
        (listings() >= failing_from + 3).then_some(())
    })
    .await;
    sims.pbx.heal();
    recordings.extend((80..120).map(add));
    // All but the one without its call are linked.
    let linked = |app: &TestHost, keys: Vec<(usize, String)>| {
        let client = app.client.clone();
        let url = app.url("/3cx/journal/");
        async move {
            let mut found = Vec::new();
            for (i, key) in keys {
                let journal: Value = client
                    .get(format!("{url}{key}"))
                    .header("apikey", KEY)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                found.push((i, journal["recordings"].clone()));
            }
            found
        }
    };
    let all = wait_for(Duration::from_secs(90), || async {
        let found = linked(&first, keys.clone()).await;
        found
            .iter()
            .all(|(_, r)| r.as_array().is_some_and(|r| !r.is_empty()))
            .then_some(found)
    })
    .await;
    for (i, linked) in &all {
        assert_eq!(linked, &json!([recordings[*i]]), "call {i}");
    }
    let (status, late) = get_json(&second, &format!("/3cx/recordings/{}", recordings[7])).await;
    assert_eq!(status, 200);
    assert_eq!(late["call"], Value::Null, "no call yet: pending");

    // Its journal comes: linked at a later poll.
    let (_, answer) = pbx_a
        .report_call(&reported(
            "Inbound",
            &number(7),
            "101",
            start(7),
            start(7) + chrono::Duration::seconds(55),
            "",
        ))
        .await;
    let late_key = answer["call"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(30), || async {
        let (_, journal) = get_json(&second, &format!("/3cx/journal/{late_key}")).await;
        (journal["recordings"] == json!([recordings[7]])).then_some(())
    })
    .await;

    // Each link is in EspoCRM once, on its own call's Call.
    let link = |id: u64| format!("https://api.kanzlei.de/3cx/recordings/{id}/audio");
    let espo = wait_for(Duration::from_secs(60), || async {
        let calls = calls_in_espocrm(&sims.espocrm);
        let with_links = calls
            .iter()
            .filter(|c| {
                c["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Aufnahme"))
            })
            .count();
        (calls.len() == 120 && with_links == 120).then_some(calls)
    })
    .await;
    for (i, id) in recordings.iter().enumerate() {
        let holding: Vec<&Value> = espo
            .iter()
            .filter(|c| c["description"].as_str().unwrap().contains(&link(*id)))
            .collect();
        assert_eq!(
            holding.len(),
            1,
            "recording {id} in {} Calls",
            holding.len()
        );
        assert_eq!(
            holding[0]["description"]
                .as_str()
                .unwrap()
                .matches(&link(*id))
                .count(),
            1
        );
        let (_, journal) = get_json(
            &first,
            &format!(
                "/3cx/journal/{}",
                holding[0]["cThreecxCallId"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(journal["call"]["number"], number(i));
    }
    // The audio through the plugin, from 3CX, as it was.
    let audio = first
        .get(&format!("/3cx/recordings/{}/audio", recordings[3]), KEY)
        .await;
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.bytes().await.unwrap().as_ref(), b"RIFF-audio-3");
    assert_eq!(sims.pbx.token_requests(), 1, "one token for everything");
}
