//! The plugin end to end in the plugin test harness (`bitbylaw-testing`): its
//! built component in an embedded host, EspoCRM and Advoware as stubs on this
//! machine. A signed `create` webhook must announce its record on
//! `vmh.beteiligte.create`; the event's sync must read the whole record from
//! EspoCRM, create the party in Advoware with the mapped fields
//! (`docs/plugins/vmh-webhooks.md`, "The default mapping") and store the link
//! both ways in the plugin's key-value state.

use std::path::Path;

use bitbylaw_testing::stub::{Advoware, Http};
use bitbylaw_testing::{Harness, Reply, Upstream};
use serde_json::{Value, json};

/// EspoCRM's reference vector for webhook signatures (also in
/// `host/crates/espocrm/src/signing.rs`): this body, signed by webhook
/// `webhookId456` with secret `secretKey123`, gives these two headers. Using
/// it, the test needs no HMAC of its own, and a wrong scheme in the host
/// would show here as a 401.
const WEBHOOK_ID: &str = "webhookId456";
const WEBHOOK_SECRET: &str = "secretKey123";
const BODY: &[u8] = br#"[{"id":"abc123","name":"Test"}]"#;
const SIGNATURE: &str = "d2ViaG9va0lkNDU2OmFmYTBlMDJlNDJjNTQ3ODRkYmM2MjE2YTIzZGM1OTQ3NjU5ZTAwNzg0Zjg4NTNkZjVjZDAzNjg1MDZiMzI5OWQ=";
const X_SIGNATURE: &str = "d2ViaG9va0lkNDU2Oq+g4C5CxUeE28YhaiPcWUdlngB4T4hT31zQNoUGsymd";

/// The record the delivery names.
const RECORD_ID: &str = "abc123";
/// The key of the tenant's EspoCRM API user.
const ESPO_KEY: &str = "stub-espocrm-key";
/// The number Advoware gives the new party.
const BET_NR: u64 = 1001;

/// The record as `GET /api/v1/CBeteiligte/abc123` answers it: every attribute.
/// The delivery's own body (`"name": "Test"`) is not used: the plugin takes
/// only the ids from it and reads the record (an update carries too little).
fn record() -> Value {
    json!({
        "id": RECORD_ID, "name": "Hans Müller", "deleted": false,
        "salutationName": "Herr", "firstName": "Hans", "lastName": "Müller",
        "emailAddress": "hans@example.de", "phoneNumber": "+49 30 1234",
        "addressStreet": "Hauptstraße 1", "addressPostalCode": "10115",
        "addressCity": "Berlin", "addressCountry": "Deutschland", "cRolle": "Mandant",
        "createdAt": "2026-03-02 09:15:00", "modifiedAt": "2026-03-02 09:15:00"
    })
}

/// What the plugin must `POST` to Advoware for [`record`]: the default mapping,
/// and the EspoCRM id in the link field `externeId`.
fn party() -> Value {
    json!({
        "name": "Müller", "vorname": "Hans", "anrede": "Herr", "email": "hans@example.de",
        "telefon": "+49 30 1234", "strasse": "Hauptstraße 1", "plz": "10115", "ort": "Berlin",
        "land": "Deutschland", "rolle": "Mandant", "externeId": RECORD_ID
    })
}

/// The stubs and the harness; the stubs stop when dropped, so they live here.
struct Rig {
    harness: Harness,
    advoware: Advoware,
    espocrm: Http,
}

/// Advoware answers a create with the party as stored (`betNr` and its
/// change stamp added, as the Advoware simulator does); EspoCRM with the
/// record. Nothing else is scripted: an unexpected request gets 404 and
/// shows in the assertions on what the stubs received.
async fn start(label: &str) -> anyhow::Result<Rig> {
    let advoware = Advoware::start().await?;
    let mut created = party();
    created["betNr"] = json!(BET_NR);
    created["zuletztGeaendertAm"] = json!("2026-03-02T10:15:00");
    advoware.answer("POST", "/Beteiligte", 200, created);

    let espocrm = Http::start().await?;
    espocrm.answer("GET", &record_path(), 200, record());

    let harness = Harness::builder()
        .plugin(
            bitbylaw_testing::this_plugin!()
                .upstream("advoware")
                .upstream("vmh")
                // The default, stated: deliveries must be signed.
                .config("require_signature", "true"),
        )
        .upstream(advoware.account("advoware"))
        .upstream(espocrm_account("vmh", &espocrm, label)?)
        .start()
        .await?;
    Ok(Rig {
        harness,
        advoware,
        espocrm,
    })
}

/// The EspoCRM stub's path of the record (its API lives below `api/v1/`).
fn record_path() -> String {
    format!("/api/v1/CBeteiligte/{RECORD_ID}")
}

/// The tenant's EspoCRM account (kind `espocrm`) pointing at the stub, with
/// the `create` webhook whose secret checks the deliveries. Secrets are
/// files: a folder per test below Cargo's temporary folder for tests.
fn espocrm_account(name: &str, espocrm: &Http, label: &str) -> anyhow::Result<Upstream> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("vmh-webhooks-harness")
        .join(label);
    std::fs::create_dir_all(&dir)?;
    let (api_key, secret) = (dir.join("api-key"), dir.join("webhook-create"));
    std::fs::write(&api_key, ESPO_KEY)?;
    std::fs::write(&secret, WEBHOOK_SECRET)?;
    let file = |path: &Path| json!(path.display().to_string()).to_string();
    Ok(Upstream {
        name: name.to_owned(),
        toml: format!(
            "kind = \"espocrm\"\nbase_url = \"{}/\"\napi_key = {{ file = {} }}\n\
             webhooks = {{ \"CBeteiligte.create\" = {{ id = \"{WEBHOOK_ID}\", secret = {{ file = {} }} }} }}\n",
            espocrm.origin(),
            file(&api_key),
            file(&secret)
        ),
    })
}

/// One delivery of the `create` webhook as EspoCRM 9 sends it: JSON, with
/// both signature headers.
async fn deliver(harness: &Harness) -> anyhow::Result<Reply> {
    let request = harness
        .request(
            bitbylaw_testing::Method::POST,
            "/vmh/webhook/beteiligte/create",
        )
        .header("content-type", "application/json")
        .header("Signature", SIGNATURE)
        .header("X-Signature", X_SIGNATURE)
        .body(BODY);
    harness.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_create_webhook_creates_the_party_in_advoware() -> anyhow::Result<()> {
    let rig = start("create").await?;
    let reply = deliver(&rig.harness).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({ "status": "received", "action": "create", "new_ids_count": 1, "total_ids_in_batch": 1 })
    );
    rig.harness.settle().await?;

    // The record was announced once.
    let announced = rig.harness.emitted_json("vmh.beteiligte.create");
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["entity_id"], RECORD_ID);
    assert_eq!(announced[0]["action"], "create");
    assert_eq!(announced[0]["source"], "espocrm");

    // The sync read the record with the account's key...
    let reads = rig.espocrm.received_at("GET", &record_path());
    assert_eq!(reads.len(), 1, "{:?}", rig.espocrm.received());
    assert_eq!(
        reads[0]
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok()),
        Some(ESPO_KEY)
    );
    // ...and made one request to Advoware, the create: it searches for a
    // party only when an earlier create of the record was cut short.
    let requests = rig.advoware.received();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/Beteiligte")
    );
    assert_eq!(requests[0].json(), party());

    // The link both ways; the create's marker gone, the record no longer pending.
    let kv = rig.harness.kv("vmh-webhooks");
    assert_eq!(
        kv.get_string(&format!("link:{RECORD_ID}")).await?,
        Some(BET_NR.to_string())
    );
    assert_eq!(
        kv.get_string(&format!("party:{BET_NR}")).await?,
        Some(RECORD_ID.to_owned())
    );
    assert_eq!(kv.get_string(&format!("creating:{RECORD_ID}")).await?, None);
    assert!(kv.members("pending:create").await?.is_empty());
    Ok(())
}

/// EspoCRM sends a delivery again when it missed the answer. However the two
/// meet (the second while the first's sync is pending, or after it), the
/// record gets one party: the second is either swallowed and flagged, or
/// announced again, and its sync finds the link and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_twice_creates_one_party() -> anyhow::Result<()> {
    let rig = start("twice").await?;
    for _ in 0..2 {
        let reply = deliver(&rig.harness).await?;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    rig.harness.settle().await?;

    // One create, and no update: the second sync wrote nothing.
    let requests = rig.advoware.received();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/Beteiligte")
    );
    assert_eq!(
        rig.harness
            .kv("vmh-webhooks")
            .get_string(&format!("link:{RECORD_ID}"))
            .await?,
        Some(BET_NR.to_string())
    );
    Ok(())
}
