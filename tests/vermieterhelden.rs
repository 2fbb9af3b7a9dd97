//! `vermieterhelden`: WordPress form deliveries in every shape the form
//! plugins send, authenticated, kept before the 200, merged by email or
//! phone, and brought into the EspoCRM simulator, also when it was down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bitbylaw_tests::deployment::Deployment;
use bitbylaw_tests::simulators::espocrm::EspoCrm;
use bitbylaw_tests::{Backend, TestHost, wait_for};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "form-secret-1";
/// The reference's Standard Webhooks secret (`upstreams.md`).
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A tenant with five forms of one kind of lead, one per payload shape, a
/// signed partner form, a contact and a newsletter form.
fn tenant(espocrm: &EspoCrm, dir: &std::path::Path, newsletter_list: &str) -> String {
    let secret = dir.join("form-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let whsec = dir.join("whsec");
    std::fs::write(&whsec, WHSEC).unwrap();
    let secrets: String = [
        "cf7",
        "elementor",
        "elementor-advanced",
        "gravity",
        "kontakt",
        "newsletter",
    ]
    .iter()
    .map(|form| format!("{form} = {{ file = \"{}\" }}\n", secret.display()))
    .collect();
    format!(
        r#"
[plugins.vermieterhelden]
component = "{{component:vermieterhelden}}"
upstreams = ["espocrm"]

# Stands in for the telephony plugin: keeps every `lead.qualify`.
[plugins.topic-sink]
component = "{{component:topic-sink}}"

[plugins.vermieterhelden.subscriptions."lead.created"]
backoff_base_ms = 100
backoff_jitter = 0.0
max_attempts = 50

[plugins.vermieterhelden.secrets]
{secrets}partner = {{ file = "{whsec}" }}

[plugins.vermieterhelden.config]
newsletter_target_list = "{newsletter_list}"

[plugins.vermieterhelden.config.forms.cf7]
type = "Mieter"
auth = "shared-secret"
fields = {{ name = "your-name", email = "your-email", phone = "your-phone", city = "your-city", message = "your-message", consent_privacy = "acceptance-dsgvo" }}

[plugins.vermieterhelden.config.forms.elementor]
type = "Mieter"
auth = "shared-secret"
form_id = "a1b2c3d"
fields = {{ name = "Name", email = "E-Mail", phone = "Telefon", city = "Ort", message = "Nachricht", consent_privacy = "Datenschutz" }}

[plugins.vermieterhelden.config.forms.elementor-advanced]
type = "Mieter"
auth = "shared-secret"
fields = {{ name = "name", email = "email", phone = "phone", city = "city", message = "message", consent_privacy = "dsgvo" }}

[plugins.vermieterhelden.config.forms.gravity]
type = "Mieter"
auth = "shared-secret"
secret_header = "x-gf-secret"
fields = {{ first_name = "1.3", last_name = "1.6", email = "2", phone = "3", city = "4.3", message = "5", consent_privacy = "6.1" }}

[plugins.vermieterhelden.config.forms.partner]
type = "Vermieter"
auth = "standard-webhooks"
fields = {{ email = "email", name = "username" }}

[plugins.vermieterhelden.config.forms.kontakt]
type = "Kontakt"
auth = "shared-secret"
fields = {{ name = "your-name", email = "your-email", message = "your-message" }}

[plugins.vermieterhelden.config.forms.newsletter]
type = "Newsletter"
auth = "shared-secret"
fields = {{ email = "your-email" }}

{}"#,
        espocrm.upstream_toml("espocrm", dir, true),
        whsec = whsec.display(),
    )
}

struct Rig {
    app: TestHost,
    espocrm: EspoCrm,
    newsletter_list: String,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let espocrm = EspoCrm::start_default().await;
    let newsletter_list = espocrm.user_create("TargetList", json!({ "name": "Newsletter" }));
    let dir = tempfile::tempdir().unwrap();
    let app = TestHost::builder(Backend::Redis)
        .host_toml("[events]\nretry_poll_ms = 20\n")
        .tenant(
            "firm-a",
            Some("k"),
            &tenant(&espocrm, dir.path(), &newsletter_list),
        )
        .start()
        .await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );
    Rig {
        app,
        espocrm,
        newsletter_list,
        _dir: dir,
    }
}

impl Rig {
    async fn post(
        &self,
        form: &str,
        content_type: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/api/leads/vermieterhelden?form={form}")),
            )
            .header("apikey", "k")
            .header("content-type", content_type)
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// The `lead.qualify` events the stand-in for telephony got.
    async fn qualified(&self) -> Vec<Value> {
        self.app
            .client
            .get(self.app.url("/topic-sink"))
            .header("apikey", "k")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn lead(&self, id: &str) -> Value {
        self.app
            .client
            .get(self.app.url(&format!("/api/leads/vermieterhelden/{id}")))
            .header("apikey", "k")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The records of `entity` with this email, once there are `count`.
    async fn in_espocrm(&self, entity: &str, email: &str, count: usize) -> Vec<Value> {
        wait_for(Duration::from_secs(30), || async {
            let found: Vec<Value> = self
                .espocrm
                .records(entity)
                .into_iter()
                .filter(|r| r["emailAddress"] == email)
                .collect();
            (found.len() >= count).then_some(found)
        })
        .await
    }
}

const SECRET_HEADER: (&str, &str) = ("x-webhook-secret", SECRET);

/// The same person through each form plugin's shape, with the address
/// `max+<shape>@example.de` and a phone number ending in the shape's number
/// (one address or number would merge them): the same lead each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_shape_becomes_the_same_lead() {
    let rig = rig().await;
    let shapes: [(&str, &str, String, (&str, &str)); 5] = [
        (
            "cf7",
            "application/json",
            json!({
                "your-name": "Max Mustermann", "your-email": "max+cf7@example.de",
                "your-phone": "030 1234561", "your-city": "Berlin",
                "your-message": "Ich suche eine Wohnung.", "acceptance-dsgvo": ["1"]
            })
            .to_string(),
            SECRET_HEADER,
        ),
        (
            "elementor",
            "application/x-www-form-urlencoded",
            "Name=Max+Mustermann&E-Mail=max%2Belementor%40example.de&Telefon=%2B49+%280%29+30+1234562\
             &Ort=Berlin&Nachricht=Ich+suche+eine+Wohnung.&Datenschutz=on&form_id=a1b2c3d&form_name=Mieter"
                .replace(' ', ""),
            SECRET_HEADER,
        ),
        (
            "elementor-advanced",
            "application/x-www-form-urlencoded",
            [
                "form%5Bid%5D=f9", "form%5Bname%5D=Mieter",
                "fields%5Bname%5D%5Btitle%5D=Name", "fields%5Bname%5D%5Bvalue%5D=Max+Mustermann",
                "fields%5Bemail%5D%5Bvalue%5D=max%2Belementor-advanced%40example.de",
                "fields%5Bphone%5D%5Bvalue%5D=0049+30+1234563",
                "fields%5Bcity%5D%5Bvalue%5D=Berlin",
                "fields%5Bmessage%5D%5Bvalue%5D=Ich+suche+eine+Wohnung.",
                "fields%5Bdsgvo%5D%5Bvalue%5D=on",
                "meta%5Bpage_url%5D%5Bvalue%5D=https%3A%2F%2Fvermieterhelden.de%2Fmieter%2F",
            ]
            .join("&"),
            SECRET_HEADER,
        ),
        (
            "gravity",
            "application/json",
            json!({
                "id": "118", "form_id": "3", "source_url": "https://vermieterhelden.de/mieter/",
                "1.3": "Max", "1.6": "Mustermann", "2": "max+gravity@example.de",
                "3": "(030) 123 45 64", "4.3": "Berlin", "5": "Ich suche eine Wohnung.", "6.1": "1"
            })
            .to_string(),
            ("x-gf-secret", SECRET),
        ),
        (
            "gravity",
            "application/x-www-form-urlencoded",
            "id=119&form_id=3&1.3=Max&1.6=Mustermann&2=max%2Bgravity-form%40example.de&3=030-1234565\
             &4.3=Berlin&5=Ich+suche+eine+Wohnung.&6.1=Zustimmung"
                .replace(' ', ""),
            ("x-gf-secret", SECRET),
        ),
    ];
    let mut leads = Vec::new();
    for (form, content_type, body, header) in &shapes {
        let (status, answer) = rig.post(form, content_type, body, &[*header]).await;
        assert_eq!(status, 200, "{form}: {answer}");
        assert_eq!(answer["updated"], false, "{form}: {answer}");
        leads.push(rig.lead(answer["lead"].as_str().unwrap()).await);
    }
    let same = |lead: &Value| {
        json!({
            "type": lead["type"], "first_name": lead["first_name"], "last_name": lead["last_name"],
            "phone_valid": lead["phone_valid"], "email_valid": lead["email_valid"],
            "city": lead["city"], "message": lead["message"], "consent_privacy": lead["consent_privacy"],
        })
    };
    let expected = json!({
        "type": "Mieter", "first_name": "Max", "last_name": "Mustermann",
        "phone_valid": true, "email_valid": true,
        "city": "Berlin", "message": "Ich suche eine Wohnung.", "consent_privacy": true,
    });
    for (n, lead) in leads.iter().enumerate() {
        assert_eq!(same(lead), expected, "{lead}");
        assert_eq!(lead["phone"], format!("+4930123456{}", n + 1), "{lead}");
    }
    assert_eq!(leads[2]["page"], "https://vermieterhelden.de/mieter/");
    // Each reaches EspoCRM as one Lead with the form's attributes.
    for (lead, shape) in leads.iter().zip(shapes.iter()) {
        let email = lead["email"].as_str().unwrap();
        let records = rig.in_espocrm("Lead", email, 1).await;
        assert_eq!(records.len(), 1, "{}", shape.0);
        assert_eq!(records[0]["phoneNumber"], lead["phone"]);
        assert_eq!(records[0]["lastName"], "Mustermann");
        assert_eq!(records[0]["cLeadTyp"], "Mieter");
        assert_eq!(records[0]["status"], "New");
    }
}

/// Signs as a Standard Webhooks sender does, with the simulators' own HMAC
/// (not the crate the plugin checks with).
fn standard_webhooks(id: &str, timestamp: i64, body: &str) -> String {
    let key = STANDARD.decode(WHSEC.trim_start_matches("whsec_")).unwrap();
    let mac = bitbylaw_tests::simulators::hmac::<Sha256, 64>(
        &key,
        format!("{id}.{timestamp}.{body}").as_bytes(),
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// The reference's vector is refused now only as stale (its timestamp is of
/// 2022); a fresh signature passes once, its id a second time does not, and
/// a wrong shared secret or an unreadable body say what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_replays_and_bad_input_are_refused_with_reasons() {
    let rig = rig().await;
    let body = r#"{"email":"test@example.com","username":"test_user"}"#;
    let (status, answer) = rig
        .post(
            "partner",
            "application/json",
            body,
            &[
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                ("webhook-timestamp", "1649367553"),
                (
                    "webhook-signature",
                    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
                ),
            ],
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("webhook-timestamp"),
        "{answer}"
    );

    let now = chrono::Utc::now().timestamp();
    let timestamp = now.to_string();
    let signature = standard_webhooks("msg_fresh_1", now, body);
    let headers = [
        ("webhook-id", "msg_fresh_1"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let (status, answer) = rig
        .post("partner", "application/json", body, &headers)
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = rig
        .post("partner", "application/json", body, &headers)
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("delivered before"),
        "{answer}"
    );
    let tampered = body.replace("test_user", "other");
    let (status, _) = rig
        .post(
            "partner",
            "application/json",
            &tampered,
            &[
                ("webhook-id", "msg_fresh_2"),
                ("webhook-timestamp", timestamp.as_str()),
                ("webhook-signature", signature.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 401);

    let (status, answer) = rig
        .post(
            "cf7",
            "application/json",
            r#"{"your-email":"a@example.de"}"#,
            &[("x-webhook-secret", "wrong")],
        )
        .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (401, Some("wrong secret"))
    );
    let (status, answer) = rig
        .post("cf7", "application/json", "{not json", &[SECRET_HEADER])
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("not JSON"),
        "{answer}"
    );
    let (status, answer) = rig
        .post("nope", "application/json", "{}", &[SECRET_HEADER])
        .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no form `nope`"),
        "{answer}"
    );
    let (status, answer) = rig
        .post(
            "cf7",
            "application/json",
            r#"{"your-name":"Anonym"}"#,
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("neither an email"),
        "{answer}"
    );
    assert!(
        rig.espocrm
            .records("Lead")
            .iter()
            .all(|r| r["emailAddress"] != "a@example.de")
    );
}

/// EspoCRM down: the form still gets its 200 and the lead waits; once
/// EspoCRM is back it arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_sent_while_espocrm_is_down_arrives_once_it_is_back() {
    let rig = rig().await;
    rig.espocrm.refuse_connections();
    let body = json!({ "your-name": "Erika Musterfrau", "your-email": "erika@example.de", "your-phone": "0171 1234567" });
    let (status, answer) = rig
        .post(
            "cf7",
            "application/json",
            &body.to_string(),
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["lead"].as_str().unwrap().to_owned();
    // Tried and failed: the lead is kept, not in EspoCRM.
    wait_for(Duration::from_secs(20), || async {
        let metrics = rig.app.metrics().await;
        metrics
            .lines()
            .any(|l| l.contains("vermieterhelden_syncs") && l.contains("outcome=\"retry\""))
            .then_some(())
    })
    .await;
    assert_eq!(rig.lead(&id).await["espocrm_id"], Value::Null);
    rig.espocrm.accept_connections().await;
    let records = rig.in_espocrm("Lead", "erika@example.de", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["phoneNumber"], "+491711234567");
    let kept = wait_for(Duration::from_secs(10), || async {
        let lead = rig.lead(&id).await;
        lead["espocrm_id"].is_string().then_some(lead)
    })
    .await;
    assert_eq!(kept["espocrm_id"], records[0]["id"]);
}

/// The same email again inside the window updates the lead (here and in
/// EspoCRM); two at once make one lead, and a newsletter sign-up goes to the
/// target list as a Contact, never as a Lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_person_twice_or_at_once_is_one_lead() {
    let rig = rig().await;
    let first = json!({ "your-name": "Hans Meier", "your-email": "hans@example.de", "your-city": "Berlin" });
    let (_, answer) = rig
        .post(
            "cf7",
            "application/json",
            &first.to_string(),
            &[SECRET_HEADER],
        )
        .await;
    let id = answer["lead"].as_str().unwrap().to_owned();
    rig.in_espocrm("Lead", "hans@example.de", 1).await;
    let second = json!({ "your-name": "Hans Meier", "your-email": "Hans@Example.de", "your-city": "Potsdam", "your-phone": "030 1234567" });
    let (status, answer) = rig
        .post(
            "cf7",
            "application/json",
            &second.to_string(),
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (answer["lead"].as_str(), answer["updated"].as_bool()),
        (Some(&*id), Some(true))
    );
    let updated = wait_for(Duration::from_secs(30), || async {
        let records: Vec<Value> = rig
            .espocrm
            .records("Lead")
            .into_iter()
            .filter(|r| r["emailAddress"] == "hans@example.de")
            .collect();
        (records.len() == 1 && records[0]["addressCity"] == "Potsdam").then_some(records)
    })
    .await;
    assert_eq!(updated[0]["phoneNumber"], "+49301234567");
    assert_eq!(rig.lead(&id).await["submissions"], 2);

    let at_once = json!({ "your-name": "Zwei Mal", "your-email": "twice@example.de" }).to_string();
    let (a, b) = tokio::join!(
        rig.post("cf7", "application/json", &at_once, &[SECRET_HEADER]),
        rig.post("cf7", "application/json", &at_once, &[SECRET_HEADER]),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1["lead"], b.1["lead"], "one lead");
    rig.in_espocrm("Lead", "twice@example.de", 1).await;

    let (status, _) = rig
        .post(
            "newsletter",
            "application/json",
            r#"{"your-email":"news@example.de"}"#,
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 200);
    let contacts = rig.in_espocrm("Contact", "news@example.de", 1).await;
    let contact = contacts[0]["id"].as_str().unwrap().to_owned();
    wait_for(Duration::from_secs(10), || async {
        rig.espocrm
            .links("TargetList", &rig.newsletter_list, "contacts")
            .contains(&contact)
            .then_some(())
    })
    .await;
    assert!(
        rig.espocrm
            .records("Lead")
            .iter()
            .all(|r| r["emailAddress"] != "news@example.de")
    );
    // Settled: still one record each (no late duplicate from a retry).
    let twice: Vec<_> = rig
        .espocrm
        .records("Lead")
        .into_iter()
        .filter(|r| {
            r["emailAddress"] == "twice@example.de" || r["emailAddress"] == "hans@example.de"
        })
        .collect();
    assert_eq!(twice.len(), 2, "{twice:?}");

    // Each Mieter lead went on to telephony once (hans was updated, not
    // qualified again); contact and newsletter leads do not go.
    let qualified = wait_for(Duration::from_secs(10), || async {
        let qualified = rig.qualified().await;
        (qualified.len() >= 2).then_some(qualified)
    })
    .await;
    let mut emails: Vec<&str> = qualified
        .iter()
        .filter_map(|q| q["email"].as_str())
        .collect();
    emails.sort();
    assert_eq!(
        emails,
        ["hans@example.de", "twice@example.de"],
        "{qualified:?}"
    );
    let hans = qualified
        .iter()
        .find(|q| q["email"] == "hans@example.de")
        .unwrap();
    assert_eq!(hans["lead"], id);
    assert_eq!(hans["type"], "Mieter");
    assert!(hans["espocrm_id"].is_string(), "{hans}");
}

/// `kill -9` of the instance right after it answered 200 (EspoCRM down, so
/// the lead's sync is retrying): the lead is in Redis and its event in the
/// stream, and another instance brings it into EspoCRM, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_answered_200_survives_a_kill_9_of_its_instance() {
    let espocrm = EspoCrm::start_default().await;
    let list = espocrm.user_create("TargetList", json!({ "name": "Newsletter" }));
    let mut deployment = Deployment::new("firm-a", None);
    let key = deployment.files().join("api-key");
    std::fs::write(&key, "k").unwrap();
    // A dead instance's events go to another after 3 s, its sync leases
    // after 3 s (above the 2 s a call may take).
    deployment.tenant_toml = format!(
        "api_keys = [{{ file = \"{}\" }}]\n{}",
        key.display(),
        tenant(&espocrm, deployment.files(), &list).replace(
            "[plugins.vermieterhelden.config]\n",
            "[plugins.vermieterhelden.config]\nlock_ttl_s = 3\n"
        )
    );
    deployment.host_toml = "[events]\nretry_poll_ms = 20\nvisibility_timeout_ms = 3000\n\
                            [plugin_defaults]\ndeadline_ms = 2000\n"
        .into();
    espocrm.refuse_connections();
    let mut doomed = deployment.spawn("doomed", "127.0.0.1:0");
    let addr = doomed.listening().await;
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/api/leads/vermieterhelden?form=cf7"))
        .header("apikey", "k")
        .header("x-webhook-secret", SECRET)
        .json(&json!({ "your-name": "Karl Kill", "your-email": "karl@example.de" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    doomed.kill();

    espocrm.accept_connections().await;
    let survivor = deployment.start().await;
    let records = wait_for(Duration::from_secs(30), || async {
        let found: Vec<Value> = espocrm
            .records("Lead")
            .into_iter()
            .filter(|r| r["emailAddress"] == "karl@example.de")
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["lastName"], "Kill");
    drop(survivor);
}

/// Where a tenant turns it on, a qualified lead also becomes a party in
/// Advoware through vmh-webhooks' party sync (its mapping, its link in
/// `externeId`); a contact form's lead does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qualified_lead_becomes_an_advoware_party_where_the_tenant_turns_it_on() {
    let espocrm = EspoCrm::start_default().await;
    let advoware = bitbylaw_tests::simulators::advoware::Advoware::start_default().await;
    let list = espocrm.user_create("TargetList", json!({ "name": "Newsletter" }));
    let dir = tempfile::tempdir().unwrap();
    let tenant = tenant(&espocrm, dir.path(), &list).replace(
        "[plugins.vermieterhelden.config]\n",
        "[plugins.vermieterhelden.config]\nadvoware_parties = true\n",
    );
    let tenant = format!(
        "{tenant}\n[plugins.vmh-webhooks]\ncomponent = \"{{component:vmh-webhooks}}\"\n\
         upstreams = [\"advoware\", \"espocrm\"]\n\
         [plugins.vmh-webhooks.config]\nrequested_entities = [\"Lead\"]\n\n{}",
        advoware.upstream_toml("advoware", dir.path())
    );
    let app = TestHost::builder(Backend::Redis)
        .host_toml("[events]\nretry_poll_ms = 20\n")
        .tenant("firm-a", Some("k"), &tenant)
        .start()
        .await;
    assert!(
        app.host.broken_tenants().is_empty(),
        "{:?}",
        app.host.broken_tenants()
    );
    let rig = Rig {
        app,
        espocrm,
        newsletter_list: list,
        _dir: dir,
    };
    let (status, answer) = rig
        .post(
            "cf7",
            "application/json",
            &json!({ "your-name": "Paula Partei", "your-email": "paula@example.de", "your-city": "Köln" }).to_string(),
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = rig
        .post(
            "kontakt",
            "application/json",
            &json!({ "your-name": "Nur Kontakt", "your-email": "kontakt@example.de" }).to_string(),
            &[SECRET_HEADER],
        )
        .await;
    assert_eq!(status, 200);
    let lead = rig.in_espocrm("Lead", "paula@example.de", 1).await;
    let lead_id = lead[0]["id"].as_str().unwrap().to_owned();
    let parties = wait_for(Duration::from_secs(30), || async {
        let parties: Vec<Value> = advoware
            .parties()
            .into_iter()
            .filter(|p| p["externeId"] == lead_id)
            .collect();
        (!parties.is_empty()).then_some(parties)
    })
    .await;
    assert_eq!(parties.len(), 1);
    assert_eq!(parties[0]["name"], "Partei");
    assert_eq!(parties[0]["vorname"], "Paula");
    assert_eq!(parties[0]["ort"], "Köln");
    rig.in_espocrm("Lead", "kontakt@example.de", 1).await;
    assert!(
        advoware
            .parties()
            .iter()
            .all(|p| p["email"] != "kontakt@example.de"),
        "a contact is not a client: {:?}",
        advoware.parties()
    );
}
