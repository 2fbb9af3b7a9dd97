//! The EspoCRM simulator behaves as the reference says: the public test
//! vectors, auth by key and by HMAC, records and lists over real HTTP,
//! duplicates, faults, and webhook deliveries (batches, payloads, signatures,
//! retries, 410) to a small receiver started here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bitbylaw_tests::simulators::espocrm::{
    EspoAccount, EspoCrm, Outcome, hmac_authorization, hmac_authorization_raw,
    legacy_webhook_signature, webhook_signature,
};
use bitbylaw_tests::wait_for;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[test]
fn the_hmac_authorization_vector_holds() {
    assert_eq!(
        hmac_authorization("apiKey1", "apiSecret", "GET", "/Lead/abc"),
        "YXBpS2V5MTowMmRkOGJkYTkwZmM4YTllMDI4OTc1NTMwZjI1NTAyYWQ2NzMyZTQ0YzFlYjNlMWE3MThkMzc0MmY5Yjk3MmZj"
    );
    // The query is not signed.
    assert_eq!(
        hmac_authorization("apiKey1", "apiSecret", "GET", "/Lead/abc?select=name"),
        hmac_authorization("apiKey1", "apiSecret", "GET", "/Lead/abc")
    );
}

#[test]
fn the_webhook_signature_vectors_hold() {
    let body = br#"[{"id":"abc123","name":"Test"}]"#;
    assert_eq!(
        webhook_signature("webhookId456", "secretKey123", body),
        "d2ViaG9va0lkNDU2OmFmYTBlMDJlNDJjNTQ3ODRkYmM2MjE2YTIzZGM1OTQ3NjU5ZTAwNzg0Zjg4NTNkZjVjZDAzNjg1MDZiMzI5OWQ="
    );
    assert_eq!(
        legacy_webhook_signature("webhookId456", "secretKey123", body),
        "d2ViaG9va0lkNDU2Oq+g4C5CxUeE28YhaiPcWUdlngB4T4hT31zQNoUGsymd"
    );
}

/// The test's own HMAC-SHA256 (RFC 2104), to check what the receiver got
/// without trusting the simulator's.
fn own_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut key_block = [0u8; 64];
    if key.len() > 64 {
        key_block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        key_block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(key_block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(key_block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        text.push_str(&format!("{byte:02x}"));
        text
    })
}

#[test]
fn the_tests_own_hmac_agrees_with_rfc_4231() {
    // RFC 4231, test case 2.
    assert_eq!(
        hex(&own_hmac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// A call below the API base; the status, the `X-Status-Reason`, the raw body.
struct Answer {
    status: u16,
    reason: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// How a request signs in.
enum Auth<'a> {
    None,
    Key(&'a str),
    Hmac(&'a str, &'a str),
    Raw(&'a str),
}

async fn call_as(
    sim: &EspoCrm,
    auth: Auth<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request =
        reqwest::Client::new().request(method.clone(), format!("{}{path}", sim.api_base()));
    request = match auth {
        Auth::None => request,
        Auth::Key(key) => request.header("X-Api-Key", key),
        Auth::Hmac(key, secret) => request.header(
            "X-Hmac-Authorization",
            hmac_authorization_raw(key, secret, method.as_str(), &format!("/{path}")),
        ),
        Auth::Raw(value) => request.header("X-Hmac-Authorization", value),
    };
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        reason: response
            .headers()
            .get("x-status-reason")
            .map(|v| v.to_str().unwrap().to_owned()),
        text: response.text().await.unwrap(),
    }
}

/// The account's one way in: its key, or its HMAC signature when it has a secret.
fn own_auth(sim: &EspoCrm) -> (String, Option<String>) {
    (
        sim.account().api_key.clone(),
        sim.account().secret_key.clone(),
    )
}

fn as_account<'a>((key, secret): &'a (String, Option<String>)) -> Auth<'a> {
    match secret {
        Some(secret) => Auth::Hmac(key, secret),
        None => Auth::Key(key),
    }
}

/// A call as the account (HMAC when it has a secret, else its key).
async fn call(sim: &EspoCrm, method: Method, path: &str, body: Option<Value>) -> Answer {
    let own = own_auth(sim);
    call_as(sim, as_account(&own), method, path, body, &[]).await
}

#[tokio::test]
async fn requests_without_the_key_or_a_valid_hmac_are_refused() {
    let sim = EspoCrm::start(EspoAccount {
        api_key: "apiKey1".into(),
        secret_key: Some("apiSecret".into()),
        hex_hmac_accepted: false,
    })
    .await;
    let other_path = hmac_authorization_raw("apiKey1", "apiSecret", "GET", "/Lead");
    let other_method = hmac_authorization_raw("apiKey1", "apiSecret", "POST", "/CBeteiligte");
    // The reference's hex form: taken from EspoCRM 8.4.1 on, not before.
    let hex = hmac_authorization("apiKey1", "apiSecret", "GET", "/CBeteiligte");
    let get = |auth| call_as(&sim, auth, Method::GET, "CBeteiligte", None, &[]);

    for refused in [
        get(Auth::None).await,
        get(Auth::Key("apiKey2")).await,
        get(Auth::Hmac("apiKey1", "otherSecret")).await,
        get(Auth::Hmac("apiKey2", "apiSecret")).await,
        get(Auth::Raw(&other_path)).await,
        get(Auth::Raw(&other_method)).await,
        get(Auth::Raw("not base64 at all")).await,
        // One method per API user: an HMAC user's key alone does not open the API.
        get(Auth::Key("apiKey1")).await,
        get(Auth::Raw(&hex)).await,
    ] {
        assert_eq!(refused.status, 401);
        assert_eq!(refused.reason.as_deref(), Some("Unauthorized"));
        assert_eq!(refused.text, "", "EspoCRM answers 401 with no body");
    }

    let by_hmac = get(Auth::Hmac("apiKey1", "apiSecret")).await;
    assert_eq!(by_hmac.status, 200);
    assert_eq!(by_hmac.json(), json!({ "list": [], "total": 0 }));
    // The query is not part of what is signed.
    let signed = hmac_authorization_raw("apiKey1", "apiSecret", "GET", "/CBeteiligte");
    let with_query = call_as(
        &sim,
        Auth::Raw(&signed),
        Method::GET,
        "CBeteiligte?maxSize=5",
        None,
        &[],
    )
    .await;
    assert_eq!(with_query.status, 200);
    // EspoCRM 8.4.1 and later take the hex form too.
    let newer = EspoCrm::start(EspoAccount {
        api_key: "apiKey1".into(),
        secret_key: Some("apiSecret".into()),
        hex_hmac_accepted: true,
    })
    .await;
    let hex_answer = call_as(
        &newer,
        Auth::Raw(&hex),
        Method::GET,
        "CBeteiligte",
        None,
        &[],
    )
    .await;
    assert_eq!(hex_answer.status, 200);

    // Without a secret only the key works.
    let keyless = EspoCrm::start(EspoAccount {
        api_key: "apiKey1".into(),
        secret_key: None,
        hex_hmac_accepted: false,
    })
    .await;
    assert_eq!(
        call_as(
            &keyless,
            Auth::Key("apiKey1"),
            Method::GET,
            "Lead",
            None,
            &[]
        )
        .await
        .status,
        200
    );
    let answer = call_as(
        &keyless,
        Auth::Hmac("apiKey1", "apiSecret"),
        Method::GET,
        "Lead",
        None,
        &[],
    )
    .await;
    assert_eq!(answer.status, 401);
}

fn is_espo_id(value: &Value) -> bool {
    value.as_str().is_some_and(|id| {
        id.len() == 17
            && id
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn is_espo_datetime(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").is_ok())
}

#[tokio::test]
async fn records_are_created_read_updated_and_deleted() {
    let sim = EspoCrm::start_default().await;
    let created = call(
        &sim,
        Method::POST,
        "CBeteiligte",
        Some(json!({
            "name": "Hans Müller", "firstName": "Hans", "lastName": "Müller",
            "emailAddress": "hans@example.de", "cRolle": "Mandant",
            "id": "chosen-by-client", "deleted": true
        })),
    )
    .await;
    assert_eq!(created.status, 200);
    let record = created.json();
    assert!(is_espo_id(&record["id"]), "{record}");
    assert!(is_espo_datetime(&record["createdAt"]));
    assert_eq!(record["modifiedAt"], record["createdAt"]);
    assert_eq!(record["deleted"], false);
    assert_eq!(record["cRolle"], "Mandant");
    let id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(sim.record("CBeteiligte", &id), Some(record.clone()));

    let read = call(&sim, Method::GET, &format!("CBeteiligte/{id}"), None).await;
    assert_eq!((read.status, read.json()), (200, record.clone()));

    // PUT and PATCH change only what they are given.
    let put = call(
        &sim,
        Method::PUT,
        &format!("CBeteiligte/{id}"),
        Some(json!({ "emailAddress": "hans.mueller@example.de", "createdAt": "2000-01-01 00:00:00" })),
    )
    .await;
    assert_eq!(put.status, 200);
    let put = put.json();
    assert_eq!(put["emailAddress"], "hans.mueller@example.de");
    assert_eq!(put["firstName"], "Hans");
    assert_eq!(put["createdAt"], record["createdAt"], "the server's own");
    assert!(is_espo_datetime(&put["modifiedAt"]));
    assert!(put["modifiedAt"].as_str() >= record["modifiedAt"].as_str());
    let patch = call(
        &sim,
        Method::PATCH,
        &format!("CBeteiligte/{id}"),
        Some(json!({ "cRolle": "Gegner" })),
    )
    .await;
    assert_eq!(patch.status, 200);
    assert_eq!(patch.json()["cRolle"], "Gegner");
    assert_eq!(patch.json()["emailAddress"], "hans.mueller@example.de");
    assert_eq!(sim.record("CBeteiligte", &id).unwrap()["cRolle"], "Gegner");

    // `name` is required for CBeteiligte, on create and update.
    for (method, path, body) in [
        (
            Method::POST,
            "CBeteiligte".to_owned(),
            json!({ "firstName": "Ohne" }),
        ),
        (
            Method::POST,
            "CBeteiligte".to_owned(),
            json!({ "name": "  " }),
        ),
        (
            Method::PUT,
            format!("CBeteiligte/{id}"),
            json!({ "name": null }),
        ),
    ] {
        let refused = call(&sim, method, &path, Some(body)).await;
        assert_eq!(refused.status, 400);
        assert!(refused.reason.as_deref().unwrap().contains("field: name"));
        assert_eq!(
            refused.json()["messageTranslation"]["data"],
            json!({ "field": "name", "type": "required" })
        );
    }
    // A Lead needs no name; a body must be a JSON object; unknown entities are 404.
    assert_eq!(
        call(
            &sim,
            Method::POST,
            "Lead",
            Some(json!({ "lastName": "Berger" }))
        )
        .await
        .status,
        200
    );
    for body in [json!([1, 2]), json!("text")] {
        assert_eq!(
            call(&sim, Method::POST, "Lead", Some(body.clone()))
                .await
                .status,
            400
        );
        assert_eq!(
            call(&sim, Method::PUT, &format!("CBeteiligte/{id}"), Some(body))
                .await
                .status,
            400
        );
    }
    assert_eq!(
        call(&sim, Method::GET, "Akte", None).await.status,
        404,
        "unknown entity"
    );
    assert_eq!(
        call(&sim, Method::POST, "Akte", Some(json!({ "name": "x" })))
            .await
            .status,
        404
    );
    sim.add_entity("Akte");
    assert_eq!(call(&sim, Method::GET, "Akte", None).await.status, 200);

    // DELETE answers `true`; the record is gone.
    let deleted = call(&sim, Method::DELETE, &format!("CBeteiligte/{id}"), None).await;
    assert_eq!((deleted.status, deleted.json()), (200, json!(true)));
    assert_eq!(sim.record("CBeteiligte", &id), None);
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({ "name": "x" }));
        let gone = call(&sim, method, &format!("CBeteiligte/{id}"), body).await;
        assert_eq!(gone.status, 404);
    }
}

#[tokio::test]
async fn lists_filter_select_order_and_page() {
    let sim = EspoCrm::start_default().await;
    sim.seed_demo_data();
    let seeded = sim.records("CBeteiligte");
    assert_eq!(seeded.len(), 3);
    for party in &seeded {
        for field in [
            "name",
            "firstName",
            "lastName",
            "salutationName",
            "emailAddress",
            "phoneNumber",
            "addressStreet",
            "addressPostalCode",
            "addressCity",
            "addressCountry",
            "cRolle",
        ] {
            assert!(party[field].is_string(), "{field} in {party}");
        }
    }
    let no_email = sim.user_create(
        "CBeteiligte",
        json!({ "name": "Hausverwaltung Nord GmbH", "cRolle": "Gegner" }),
    );
    let sim_ref = &sim;
    let list = |query: &str| {
        let path = format!("CBeteiligte?{query}");
        async move {
            let answer = call(sim_ref, Method::GET, &path, None).await;
            assert_eq!(answer.status, 200, "{path}: {:?}", answer.reason);
            answer.json()
        }
    };
    let names = |answer: &Value| -> Vec<String> {
        answer["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };

    // Newest first by default, with the total.
    let all = list("").await;
    assert_eq!(all["total"], 4);
    assert_eq!(
        names(&all),
        [
            "Hausverwaltung Nord GmbH",
            "Jürgen Weiß",
            "Petra Schneider",
            "Hans Müller"
        ]
    );

    let equals =
        list("where[0][type]=equals&where[0][attribute]=cRolle&where[0][value]=Mandant").await;
    assert_eq!(names(&equals), ["Jürgen Weiß", "Hans Müller"]);
    assert_eq!(equals["total"], 2);
    // Strings compare case-insensitively (MySQL's collation), values are URL-decoded.
    let email = list(
        "where[0][type]=equals&where[0][attribute]=emailAddress&where[0][value]=HANS.MUELLER%40example.de",
    )
    .await;
    assert_eq!(names(&email), ["Hans Müller"]);
    let not_equals =
        list("where[0][type]=notEquals&where[0][attribute]=cRolle&where[0][value]=Mandant").await;
    assert_eq!(
        names(&not_equals),
        ["Hausverwaltung Nord GmbH", "Petra Schneider"]
    );
    let null = list("where[0][type]=isNull&where[0][attribute]=emailAddress").await;
    assert_eq!(null["list"][0]["id"], no_email.as_str());
    assert_eq!(null["total"], 1);
    let not_null = list("where[0][type]=isNotNull&where[0][attribute]=emailAddress").await;
    assert_eq!(not_null["total"], 3);
    let within = list(
        "where[0][type]=in&where[0][attribute]=addressCity&where[0][value][]=Berlin&where[0][value][]=M%C3%BCnchen",
    )
    .await;
    assert_eq!(names(&within), ["Jürgen Weiß", "Hans Müller"]);
    // Several clauses: all must hold.
    let both = list(
        "where[0][type]=equals&where[0][attribute]=cRolle&where[0][value]=Mandant\
         &where[1][type]=equals&where[1][attribute]=addressCity&where[1][value]=Berlin",
    )
    .await;
    assert_eq!(names(&both), ["Hans Müller"]);

    // select: those attributes and the id, nothing else.
    let selected = list("select=name,cRolle&where[0][type]=equals&where[0][attribute]=name&where[0][value]=Petra%20Schneider").await;
    let only = selected["list"][0].as_object().unwrap();
    let mut keys: Vec<&str> = only.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["cRolle", "id", "name"]);

    // orderBy/order, maxSize and offset; total counts everything that matched.
    let ordered = list("orderBy=name&order=asc").await;
    assert_eq!(
        names(&ordered),
        [
            "Hans Müller",
            "Hausverwaltung Nord GmbH",
            "Jürgen Weiß",
            "Petra Schneider"
        ]
    );
    let page = list("orderBy=name&order=desc&maxSize=2&offset=1").await;
    assert_eq!(names(&page), ["Jürgen Weiß", "Hausverwaltung Nord GmbH"]);
    assert_eq!(page["total"], 4);
    let past_the_end = list("offset=10").await;
    assert_eq!(
        (past_the_end["list"].clone(), past_the_end["total"].clone()),
        (json!([]), json!(4))
    );

    // maxSize defaults to 20 and is at most 200.
    for n in 0..30 {
        sim.user_create("Lead", json!({ "lastName": format!("Lead {n}") }));
    }
    let leads = call(&sim, Method::GET, "Lead", None).await.json();
    assert_eq!(leads["list"].as_array().unwrap().len(), 20);
    assert_eq!(leads["total"], 30);
    let leads = call(&sim, Method::GET, "Lead?maxSize=200", None)
        .await
        .json();
    assert_eq!(leads["list"].as_array().unwrap().len(), 30);
    for bad in [
        "maxSize=201",
        "maxSize=zwanzig",
        "offset=-1",
        "order=sideways",
        "where[0][type]=contains&where[0][attribute]=name&where[0][value]=x",
        "where[0][type]=equals&where[0][value]=x",
    ] {
        let refused = call(&sim, Method::GET, &format!("Lead?{bad}"), None).await;
        assert_eq!(refused.status, 400, "{bad}");
        assert!(refused.reason.is_some(), "{bad}");
    }
}

#[tokio::test]
async fn a_duplicate_create_is_refused_unless_the_check_is_skipped() {
    let sim = EspoCrm::start_default().await;
    let first = sim.user_create(
        "CBeteiligte",
        json!({ "name": "Hans Müller", "emailAddress": "hans@example.de" }),
    );
    let create = |body: Value, skip: bool| {
        let sim = &sim;
        async move {
            let headers: &[(&str, &str)] = if skip {
                &[("X-Skip-Duplicate-Check", "true")]
            } else {
                &[]
            };
            let own = own_auth(sim);
            call_as(
                sim,
                as_account(&own),
                Method::POST,
                "CBeteiligte",
                Some(body),
                headers,
            )
            .await
        }
    };

    let duplicate = create(json!({ "name": " hans müller " }), false).await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(
        duplicate.json(),
        json!([{ "id": first, "name": "Hans Müller" }])
    );
    let same_email = create(
        json!({ "name": "HANS MÜLLER", "emailAddress": "Hans@Example.de" }),
        false,
    )
    .await;
    assert_eq!(same_email.status, 409);
    assert_eq!(sim.records("CBeteiligte").len(), 1);

    // Another address makes it another person; another name too.
    let other_email = create(
        json!({ "name": "Hans Müller", "emailAddress": "h.mueller@example.com" }),
        false,
    )
    .await;
    assert_eq!(other_email.status, 200);
    assert_eq!(
        create(json!({ "name": "Hanna Müller" }), false)
            .await
            .status,
        200
    );

    let skipped = create(json!({ "name": "Hans Müller" }), true).await;
    assert_eq!(skipped.status, 200);
    assert_eq!(sim.records("CBeteiligte").len(), 4);
}

#[tokio::test]
async fn faults_come_on_demand_and_requests_are_recorded() {
    // An API user that authenticates by its key.
    let sim = EspoCrm::start(EspoAccount::demo()).await;
    sim.fail_next(2, 503);
    let failed = call(&sim, Method::GET, "Lead", None).await;
    assert_eq!(failed.status, 503);
    assert_eq!(failed.reason.as_deref(), Some("Service Unavailable"));
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 503);
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 200);

    sim.break_after(1);
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 200);
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 503);
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 503);
    sim.heal();
    assert_eq!(call(&sim, Method::GET, "Lead", None).await.status, 200);

    let calls = sim.api_requests();
    assert_eq!(calls.len(), 7);
    let created = call(
        &sim,
        Method::POST,
        "Lead?x=1",
        Some(json!({ "lastName": "Berger" })),
    )
    .await;
    assert_eq!(created.status, 200);
    let last = sim.api_requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "Lead");
    assert_eq!(last.query.as_deref(), Some("x=1"));
    assert_eq!(last.headers["x-api-key"], "demo-espocrm-key");
    assert_eq!(
        serde_json::from_slice::<Value>(&last.body).unwrap(),
        json!({ "lastName": "Berger" })
    );

    // A kept-alive client is cut off too, and new connections are refused.
    let client = reqwest::Client::new();
    let url = format!("{}Lead", sim.api_base());
    let get = || {
        client
            .get(&url)
            .header("X-Api-Key", "demo-espocrm-key")
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    sim.refuse_connections();
    let error = get().await.unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    sim.accept_connections().await;
    assert_eq!(get().await.unwrap().status(), 200);

    sim.set_latency(Duration::from_millis(400));
    let slow = client
        .get(&url)
        .header("X-Api-Key", "demo-espocrm-key")
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(slow.is_timeout());
}

// ---- webhooks ----

/// What a webhook receiver got: headers and raw body of each request.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook URL on 127.0.0.1:0 that records every request and answers `status`.
struct Receiver {
    url: String,
    received: Received,
    status: Arc<Mutex<u16>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let received = Received::default();
        let status = Arc::new(Mutex::new(status));
        let (log, answer) = (received.clone(), status.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (log, answer) = (log.clone(), answer.clone());
            async move {
                log.lock().unwrap().push((headers, body));
                let status = StatusCode::from_u16(*answer.lock().unwrap()).unwrap();
                (status, [("location", "http://127.0.0.1:1/elsewhere")])
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/espocrm", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            received,
            status,
            _server: server,
        }
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    fn bodies(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|(_, body)| serde_json::from_slice(body).unwrap())
            .collect()
    }

    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn webhooks_are_registered_over_the_api() {
    let sim = EspoCrm::start_default().await;
    let created = call(
        &sim,
        Method::POST,
        "Webhook",
        Some(json!({ "event": "CBeteiligte.create", "url": "http://127.0.0.1:9/hook" })),
    )
    .await;
    assert_eq!(created.status, 200);
    let hook = created.json();
    assert!(is_espo_id(&hook["id"]));
    assert_eq!(hook["event"], "CBeteiligte.create");
    assert_eq!(hook["url"], "http://127.0.0.1:9/hook");
    let secret = hook["secretKey"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    let webhooks = sim.webhooks();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0].id, hook["id"].as_str().unwrap());
    assert_eq!(webhooks[0].secret_key, secret);

    for body in [
        json!({ "event": "Akte.create", "url": "http://127.0.0.1:9/hook" }),
        json!({ "event": "CBeteiligte.rename", "url": "http://127.0.0.1:9/hook" }),
        json!({ "event": "CBeteiligte.update", "url": "ftp://example.de/" }),
        json!({ "event": "CBeteiligte.update" }),
    ] {
        assert_eq!(
            call(&sim, Method::POST, "Webhook", Some(body.clone()))
                .await
                .status,
            400,
            "{body}"
        );
    }
    let anonymous = call_as(
        &sim,
        Auth::None,
        Method::POST,
        "Webhook",
        Some(json!({ "event": "CBeteiligte.update", "url": "http://127.0.0.1:9/hook" })),
        &[],
    )
    .await;
    assert_eq!(anonymous.status, 401);

    let id = hook["id"].as_str().unwrap();
    let removed = call(&sim, Method::DELETE, &format!("Webhook/{id}"), None).await;
    assert_eq!((removed.status, removed.json()), (200, json!(true)));
    assert!(sim.webhooks().is_empty());
    assert_eq!(
        call(&sim, Method::DELETE, &format!("Webhook/{id}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn changes_are_delivered_signed_in_batches_of_fifty() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(200).await;
    let hook = sim.register_webhook_with(
        "CBeteiligte.create",
        &receiver.url,
        "webhookId456",
        "secretKey123",
    );
    // Another event's webhook gets nothing of these.
    let updates = Receiver::start(200).await;
    sim.register_webhook("CBeteiligte.update", &updates.url);

    let ids: Vec<String> = (0..120)
        .map(|n| {
            sim.user_create(
                "CBeteiligte",
                json!({ "name": format!("Partei {n}"), "cRolle": "Mandant" }),
            )
        })
        .collect();
    assert_eq!(sim.queued(), 120);
    assert!(
        receiver.requests().is_empty(),
        "nothing before the job runs"
    );

    let report = sim.deliver().await;
    assert_eq!(report.delivered, 120);
    assert_eq!((report.retrying, report.failed), (0, 0));
    assert_eq!(sim.queued(), 0);
    let bodies = receiver.bodies();
    let sizes: Vec<usize> = bodies.iter().map(|b| b.as_array().unwrap().len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let sent: Vec<String> = bodies
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ids, "every record once, in order");
    // Create carries all attributes.
    assert_eq!(
        bodies[0][0],
        sim.record("CBeteiligte", &ids[0]).unwrap(),
        "the whole record"
    );
    assert!(updates.requests().is_empty());

    // Each request is signed; the test's own HMAC agrees.
    for (headers, body) in receiver.requests() {
        assert_eq!(headers["content-type"], "application/json");
        let mac = own_hmac(b"secretKey123", &body);
        let signature = STANDARD
            .decode(headers["signature"].to_str().unwrap())
            .unwrap();
        assert_eq!(
            signature,
            format!("webhookId456:{}", hex(&mac)).into_bytes()
        );
        let legacy = STANDARD
            .decode(headers["x-signature"].to_str().unwrap())
            .unwrap();
        assert_eq!(legacy, [b"webhookId456:".as_slice(), &mac].concat());
    }

    let deliveries = sim.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d.webhook_id == hook.id
        && d.event == "CBeteiligte.create"
        && d.url == receiver.url
        && d.status == Some(200)
        && d.attempt == 1
        && d.outcome == Outcome::Delivered));
    assert_eq!(deliveries[2].ids, ids[100..]);
    assert_eq!(deliveries[0].body, receiver.requests()[0].1);

    // The batch size can be set; nothing is queued twice.
    sim.set_batch_size(2);
    for n in 0..3 {
        sim.user_create("CBeteiligte", json!({ "name": format!("Neu {n}") }));
    }
    let report = sim.deliver().await;
    let sizes: Vec<usize> = report.deliveries.iter().map(|d| d.ids.len()).collect();
    assert_eq!(sizes, [2, 1]);
    assert!(sim.deliver().await.deliveries.is_empty());
}

#[tokio::test]
async fn updates_carry_the_changed_fields_and_deletes_only_the_id() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(200).await;
    let update = sim.register_webhook("CBeteiligte.update", &receiver.url);
    let delete = sim.register_webhook("CBeteiligte.delete", &receiver.url);
    let id = sim.user_create(
        "CBeteiligte",
        json!({ "name": "Hans Müller", "addressCity": "Berlin", "cRolle": "Mandant" }),
    );

    // Through the API: only what really changed, plus the id.
    let changed = call(
        &sim,
        Method::PUT,
        &format!("CBeteiligte/{id}"),
        Some(
            json!({ "addressCity": "Potsdam", "cRolle": "Mandant", "phoneNumber": "+49 331 123" }),
        ),
    )
    .await;
    assert_eq!(changed.status, 200);
    // As a person in the UI would.
    sim.user_update(
        "CBeteiligte",
        &id,
        json!({ "name": "Hans Müller-Lüdenscheidt" }),
    );
    // Nothing changed: nothing to tell.
    sim.user_update("CBeteiligte", &id, json!({ "cRolle": "Mandant" }));
    let other = sim.user_create("CBeteiligte", json!({ "name": "Petra Schneider" }));
    assert!(sim.user_delete("CBeteiligte", &other));
    let deleted = call(&sim, Method::DELETE, &format!("CBeteiligte/{id}"), None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(sim.queued(), 4, "two updates, two deletes");

    sim.deliver().await;
    let deliveries = sim.deliveries();
    let updates = deliveries
        .iter()
        .find(|d| d.webhook_id == update.id)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&updates.body).unwrap(),
        json!([
            { "id": id, "addressCity": "Potsdam", "phoneNumber": "+49 331 123" },
            { "id": id, "name": "Hans Müller-Lüdenscheidt" },
        ])
    );
    let deletes = deliveries
        .iter()
        .find(|d| d.webhook_id == delete.id)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&deletes.body).unwrap(),
        json!([{ "id": other }, { "id": id }])
    );
    assert_eq!(receiver.bodies().len(), 2);
}

#[tokio::test]
async fn each_answer_is_handled_by_espocrms_rules() {
    let receiver = Receiver::start(200).await;
    for (status, expected) in [
        (200, Outcome::Delivered),
        (204, Outcome::Delivered),
        (302, Outcome::Delivered),
        (401, Outcome::Retrying),
        (403, Outcome::Retrying),
        (404, Outcome::Retrying),
        (405, Outcome::Retrying),
        (408, Outcome::Retrying),
        (500, Outcome::Retrying),
        (503, Outcome::Retrying),
        (400, Outcome::Failed),
        (422, Outcome::Failed),
        (502, Outcome::Failed),
        (410, Outcome::WebhookRemoved),
    ] {
        let sim = EspoCrm::start_default().await;
        receiver.answer(status);
        sim.register_webhook("Lead.create", &receiver.url);
        sim.user_create("Lead", json!({ "lastName": "Berger" }));
        let report = sim.deliver().await;
        assert_eq!(report.deliveries.len(), 1, "{status}");
        let delivery = &report.deliveries[0];
        assert_eq!(
            (delivery.status, delivery.outcome),
            (Some(status), expected),
            "{status}"
        );
        let queued = usize::from(expected == Outcome::Retrying);
        assert_eq!(sim.queued(), queued, "{status}");
        assert_eq!(
            sim.webhooks().len(),
            usize::from(expected != Outcome::WebhookRemoved),
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_503_is_retried_at_the_next_run_and_dropped_after_four_tries() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(503).await;
    sim.register_webhook("CBeteiligte.create", &receiver.url);
    let first = sim.user_create("CBeteiligte", json!({ "name": "Hans Müller" }));

    let report = sim.deliver().await;
    assert_eq!((report.retrying, report.failed), (1, 0));
    assert_eq!(sim.queued(), 1);
    // Queued meanwhile: sent after the retried one, in the same request.
    let second = sim.user_create("CBeteiligte", json!({ "name": "Petra Schneider" }));
    let report = sim.deliver().await;
    assert_eq!(report.deliveries[0].ids, [first.clone(), second.clone()]);
    assert_eq!(report.deliveries[0].attempt, 2);
    let report = sim.deliver().await;
    assert_eq!(report.deliveries[0].attempt, 3);
    // Tries count per item: the first one's fourth was its last, the second has one left.
    let report = sim.deliver().await;
    assert_eq!(report.deliveries[0].attempt, 4);
    assert_eq!(report.deliveries[0].outcome, Outcome::Retrying);
    assert_eq!((report.retrying, report.failed), (1, 1));
    assert_eq!(sim.queued(), 1);
    let report = sim.deliver().await;
    assert_eq!(report.deliveries[0].ids, [second]);
    assert_eq!(report.deliveries[0].attempt, 4);
    assert_eq!(report.deliveries[0].outcome, Outcome::Failed);
    assert_eq!((report.retrying, report.failed), (0, 1));
    assert_eq!(sim.queued(), 0);
    assert!(sim.deliver().await.deliveries.is_empty());
    assert_eq!(receiver.requests().len(), 5);
    assert_eq!(sim.webhooks().len(), 1, "the webhook stays");

    // A recovered receiver gets what is queued next.
    receiver.answer(200);
    sim.user_create("CBeteiligte", json!({ "name": "Jürgen Weiß" }));
    assert_eq!(sim.deliver().await.delivered, 1);
}

#[tokio::test]
async fn a_retried_batch_is_delivered_once_the_receiver_recovers() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(500).await;
    sim.register_webhook("CBeteiligte.create", &receiver.url);
    sim.user_create("CBeteiligte", json!({ "name": "Hans Müller" }));
    assert_eq!(sim.deliver().await.retrying, 1);
    receiver.answer(200);
    let report = sim.deliver().await;
    assert_eq!((report.delivered, report.deliveries[0].attempt), (1, 2));
    let bodies = receiver.bodies();
    assert_eq!(bodies[0], bodies[1], "the same batch again");
    assert_eq!(sim.queued(), 0);
}

#[tokio::test]
async fn a_400_is_dropped_at_once() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(400).await;
    sim.register_webhook("CBeteiligte.create", &receiver.url);
    sim.user_create("CBeteiligte", json!({ "name": "Hans Müller" }));
    let report = sim.deliver().await;
    assert_eq!(
        (report.delivered, report.retrying, report.failed),
        (0, 0, 1)
    );
    assert_eq!(report.deliveries[0].outcome, Outcome::Failed);
    assert_eq!(sim.queued(), 0);
    assert!(sim.deliver().await.deliveries.is_empty());
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(sim.webhooks().len(), 1);
}

#[tokio::test]
async fn a_410_deletes_the_webhook_and_its_queue() {
    let sim = EspoCrm::start_default().await;
    let gone = Receiver::start(410).await;
    let alive = Receiver::start(200).await;
    sim.set_batch_size(1);
    let removed = sim.register_webhook("CBeteiligte.create", &gone.url);
    let kept = sim.register_webhook("CBeteiligte.create", &alive.url);
    for name in ["Hans Müller", "Petra Schneider"] {
        sim.user_create("CBeteiligte", json!({ "name": name }));
    }
    let report = sim.deliver().await;
    assert_eq!(report.removed_webhooks, [removed.id]);
    assert_eq!(gone.requests().len(), 1, "nothing more after the 410");
    assert_eq!(report.failed, 2, "its queue went with it");
    assert_eq!(alive.requests().len(), 2);
    assert_eq!(sim.webhooks(), [kept]);
    sim.user_create("CBeteiligte", json!({ "name": "Jürgen Weiß" }));
    assert_eq!(sim.queued(), 1);
    assert_eq!(gone.requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_url_is_retried() {
    let sim = EspoCrm::start_default().await;
    // A port that was free a moment ago: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sim.register_webhook("Lead.delete", &format!("http://127.0.0.1:{port}/hook"));
    let id = sim.user_create("Lead", json!({ "lastName": "Berger" }));
    sim.user_delete("Lead", &id);
    let report = sim.deliver().await;
    let delivery = &report.deliveries[0];
    assert_eq!(delivery.status, None);
    assert!(delivery.error.is_some());
    assert_eq!(delivery.outcome, Outcome::Retrying);
    assert_eq!(sim.queued(), 1);

    // A receiver slower than the timeout counts as no answer too.
    let slow = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        StatusCode::OK
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let _server = tokio::spawn(async move {
        let _ = axum::serve(listener, slow).await;
    });
    let sim = EspoCrm::start_default().await;
    sim.set_delivery_timeout(Duration::from_millis(100));
    sim.register_webhook("Lead.create", &url);
    sim.user_create("Lead", json!({ "lastName": "Berger" }));
    let report = sim.deliver().await;
    assert_eq!(report.deliveries[0].outcome, Outcome::Retrying);
    assert!(report.deliveries[0].error.is_some());
}

#[tokio::test]
async fn the_background_job_delivers_changes_made_over_the_api() {
    let sim = EspoCrm::start_default().await;
    let receiver = Receiver::start(200).await;
    sim.register_webhook("CBeteiligte.create", &receiver.url);
    sim.start_delivery_every(Duration::from_millis(20));
    let created = call(
        &sim,
        Method::POST,
        "CBeteiligte",
        Some(json!({ "name": "Hans Müller" })),
    )
    .await
    .json();
    let bodies = wait_for(Duration::from_secs(10), || async {
        let bodies = receiver.bodies();
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    assert_eq!(bodies[0], json!([created]));
    assert_eq!(sim.queued(), 0);
}
