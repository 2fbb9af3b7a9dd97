//! The Advoware simulator's security gateway behaves as the reference says:
//! the public test vector, and refusals of wrong signatures, stale timestamps,
//! reused nonces, revoked and expired tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, WriteRules, signature};
use bitbylaw_tests::wait_for;
use serde_json::Value;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn the_public_test_vector_holds() {
    let signed = signature(
        "dGVzdC1zZWNyZXQta2V5",
        64,
        "app-123",
        "nonce-abc",
        "2026-08-30T00:00:00.000Z",
    );
    assert_eq!(
        signed.as_deref(),
        Some(
            "o7rz9KmoXZs550HfzO6ffiG17XwiPmlBHlksUYKZ3jcfolELow51Fw5KlrQqCK5y41aIValDjrh1iQ2GZ2WtqQ=="
        )
    );
}

async fn request_token(sim: &Advoware, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}api/v1/Token", sim.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn employees(sim: &Advoware, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}api/v1/advonet/employees", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_signed_request_gets_a_token_that_opens_the_api() {
    let sim = Advoware::start_default().await;
    let response =
        request_token(&sim, &Advoware::token_request(sim.account(), "n-1", &now())).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(body["expires_in"], 3300);
    assert!(body["expiration_utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(employees(&sim, &token).await, 200);
    assert_eq!(employees(&sim, "made-up").await, 401);

    sim.revoke_all_tokens();
    assert_eq!(employees(&sim, &token).await, 401, "revoked");
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test]
async fn wrong_signature_stale_timestamp_and_reused_nonce_are_refused() {
    let sim = Advoware::start_default().await;
    let account = sim.account().clone();

    let mut wrong_key = account.clone();
    wrong_key.api_key = "b3RoZXIta2V5".into();
    let mut body = Advoware::token_request(&wrong_key, "n-1", &now());
    body["Password"] = account.password.clone().into();
    let refused = request_token(&sim, &body).await;
    assert_eq!(refused.status(), 401);

    let stale = chrono::Utc::now() - chrono::Duration::minutes(10);
    let stale = stale.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        request_token(&sim, &Advoware::token_request(&account, "n-2", &stale))
            .await
            .status(),
        401
    );

    let first = request_token(&sim, &Advoware::token_request(&account, "n-3", &now())).await;
    assert_eq!(first.status(), 200);
    let reused = request_token(&sim, &Advoware::token_request(&account, "n-3", &now())).await;
    assert_eq!(reused.status(), 401);

    let mut wrong_password = Advoware::token_request(&account, "n-4", &now());
    wrong_password["Password"] = "falsch".into();
    let refused = request_token(&sim, &wrong_password).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["Message"],
        "Falscher Name oder falsches Kennwort"
    );

    let mut extra = Advoware::token_request(&account, "n-5", &now());
    extra["Extra"] = 1.into();
    assert_eq!(request_token(&sim, &extra).await.status(), 400);
}

#[tokio::test]
async fn tokens_expire() {
    let sim = Advoware::start(Account::default(), Duration::from_millis(300)).await;
    let body: Value = request_token(&sim, &Advoware::token_request(sim.account(), "n-1", &now()))
        .await
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(employees(&sim, &token).await, 200);
    wait_for(Duration::from_secs(5), || async {
        (employees(&sim, &token).await == 401).then_some(())
    })
    .await;
}

/// `sim`'s REST API, signed in with a fresh token.
struct Api<'a> {
    sim: &'a Advoware,
    token: String,
}

async fn signed_in(sim: &Advoware) -> Api<'_> {
    let nonce = uuid::Uuid::new_v4().to_string();
    let body: Value = request_token(sim, &Advoware::token_request(sim.account(), &nonce, &now()))
        .await
        .json()
        .await
        .unwrap();
    Api {
        sim,
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

impl Api<'_> {
    /// One call below the API base; the answer's status and JSON (null when there is none).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.sim.api_base()))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn appointments_have_the_fields_and_quirks_of_real_data() {
    let sim = Advoware::start_default().await;
    let api = signed_in(&sim).await;
    use reqwest::Method;

    // Create: the server numbers it and stamps it; an all-day one ends at 23:59.
    let (status, all_day) = api
        .call(
            Method::POST,
            "appointments",
            Some(serde_json::json!({
                "kuerzel": "SB", "text": "Fortbildung", "dauertermin": 1,
                "datum": "2026-12-03T00:00:00", "datumBis": "2026-12-04T00:00:00", "frNr": 7
            })),
        )
        .await;
    assert_eq!(status, 200);
    let fr_nr = all_day["frNr"].as_i64().unwrap();
    assert_eq!(
        all_day,
        serde_json::json!({ "frNr": fr_nr }),
        "a create answers with the new number only, as the reference says"
    );
    assert_ne!(fr_nr, 7, "the server numbers appointments");
    let (_, all_day) = api
        .call(Method::GET, &format!("appointments/{fr_nr}"), None)
        .await;
    assert_eq!(all_day["uhrzeitBis"], "23:59:00");
    assert_eq!(all_day["anwalt"], "SB");
    assert!(all_day["zuletztGeaendertAm"].as_str().unwrap().len() >= 19);

    // An endless weekly series, and one for another employee (whole records answered).
    sim.set_write_rules(WriteRules {
        create_answers_whole_record: true,
        ..WriteRules::default()
    });
    let (_, series) = api
        .call(
            Method::POST,
            "appointments",
            Some(serde_json::json!({
                "kuerzel": "SB", "text": "Kanzleirunde", "turnus": 1, "turnusArt": 2,
                "datum": "2026-01-05T00:00:00", "uhrzeitVon": "08:30:00",
                "datumBis": "2037-12-31T00:00:00", "uhrzeitBis": "09:00:00"
            })),
        )
        .await;
    let (_, other) = api
        .call(
            Method::POST,
            "appointments",
            Some(serde_json::json!({ "anwalt": "MK", "text": "Gericht", "datum": "2026-12-03" })),
        )
        .await;
    assert_eq!(other["kuerzel"], "MK");
    assert_eq!(
        other["datumBis"], "2026-12-03",
        "one-day appointments end where they start"
    );

    // Read by employee and range: the series overlaps every range until 2037.
    let (status, listed) = api
        .call(
            Method::GET,
            "appointments?kuerzel=SB&from=2030-06-01&to=2030-06-30",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let numbers: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["frNr"].clone())
        .collect();
    assert_eq!(numbers, vec![series["frNr"].clone()]);
    let (_, december) = api
        .call(
            Method::GET,
            "appointments?kuerzel=SB&from=2026-12-04&to=2026-12-04",
            None,
        )
        .await;
    assert_eq!(
        december.as_array().unwrap().len(),
        2,
        "the multi-day one on its second day, and the series"
    );
    let (status, _) = api
        .call(Method::GET, "appointments?from=gestern", None)
        .await;
    assert_eq!(status, 400);

    // Update replaces the record: what the body lacks is gone, and a body
    // without the required fields is refused.
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("appointments/{fr_nr}"),
            Some(serde_json::json!({ "text": "nur der Titel" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, updated) = api
        .call(
            Method::PUT,
            &format!("appointments/{fr_nr}"),
            Some(serde_json::json!({ "kuerzel": "SB", "datum": "2026-12-03", "text": "ersetzt" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["text"], "ersetzt");
    assert_eq!(updated["dauertermin"], Value::Null, "replaced, not merged");
    // ...or, in the merging mode, keeps the number, merges and re-stamps.
    sim.set_write_rules(WriteRules {
        put_merges: true,
        ..WriteRules::default()
    });
    let (status, updated) = api.call(Method::PUT,
        &format!("appointments/{fr_nr}"),
        Some(serde_json::json!({ "text": "Fortbildung Mietrecht", "dauertermin": 0, "uhrzeitBis": "17:00:00" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["frNr"], fr_nr);
    assert_eq!(updated["text"], "Fortbildung Mietrecht");
    assert_eq!(updated["uhrzeitBis"], "17:00:00");
    assert_eq!(updated["kuerzel"], "SB");
    let (status, read) = api
        .call(Method::GET, &format!("appointments/{fr_nr}"), None)
        .await;
    assert_eq!(
        (status, &read["text"]),
        (200, &Value::from("Fortbildung Mietrecht"))
    );
    let (status, _) = api
        .call(Method::DELETE, &format!("appointments/{fr_nr}"), None)
        .await;
    assert_eq!(status, 204);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = api
            .call(method, &format!("appointments/{fr_nr}"), None)
            .await;
        assert_eq!(status, 404);
        assert_eq!(body["Message"], "Termin nicht gefunden");
    }
    let (status, body) = api
        .call(
            Method::POST,
            "appointments",
            Some(serde_json::json!({ "kuerzel": "SB", "text": "ohne Datum" })),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["Message"].as_str().unwrap().contains("datum"));
}

#[tokio::test]
async fn parties_can_be_created_read_updated_and_deleted() {
    let sim = Advoware::start_default().await;
    let api = signed_in(&sim).await;
    use reqwest::Method;
    let (status, party) = api
        .call(
            Method::POST,
            "Beteiligte",
            Some(
                serde_json::json!({ "name": "Müller", "vorname": "Hans", "email": "h@example.de" }),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let bet_nr = party["betNr"].as_i64().unwrap();
    let (_, found) = api
        .call(Method::GET, "Beteiligte?name=m%C3%BCll", None)
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (status, updated) = api
        .call(
            Method::PUT,
            &format!("Beteiligte/{bet_nr}"),
            Some(serde_json::json!({ "email": "hans@example.de", "betNr": 1 })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["betNr"], bet_nr, "the number stays");
    assert_eq!(updated["email"], "hans@example.de");
    assert_eq!(updated["vorname"], Value::Null, "PUT replaces the party");
    sim.set_write_rules(WriteRules {
        put_merges: true,
        ..WriteRules::default()
    });
    let (_, updated) = api
        .call(
            Method::PUT,
            &format!("Beteiligte/{bet_nr}"),
            Some(serde_json::json!({ "vorname": "Hans" })),
        )
        .await;
    assert_eq!(
        (&updated["email"], &updated["vorname"]),
        (&Value::from("hans@example.de"), &Value::from("Hans")),
        "merged"
    );
    let (status, _) = api
        .call(Method::DELETE, &format!("Beteiligte/{bet_nr}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(Method::GET, &format!("Beteiligte/{bet_nr}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(Method::POST, "Beteiligte", Some(serde_json::json!({})))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn faults_come_on_demand() {
    let sim = Advoware::start_default().await;
    let api = signed_in(&sim).await;
    use reqwest::Method;

    sim.fail_next(2, 500);
    assert_eq!(api.call(Method::GET, "employees", None).await.0, 500);
    assert_eq!(api.call(Method::GET, "employees", None).await.0, 500);
    assert_eq!(api.call(Method::GET, "employees", None).await.0, 200);

    sim.refuse_all_tokens(true);
    assert_eq!(api.call(Method::GET, "employees", None).await.0, 401);
    sim.refuse_all_tokens(false);

    // A kept-alive client is cut off too, and new connections are refused.
    let client = reqwest::Client::new();
    let url = format!("{}employees", sim.api_base());
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sim.refuse_connections();
    let error = client
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    sim.accept_connections().await;
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    sim.set_latency(Duration::from_millis(400));
    let slow = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&api.token)
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(slow.is_timeout());
}

#[tokio::test]
async fn the_configurator_names_relay_and_gateway() {
    let sim = Advoware::start_default().await;
    let answer: Value = reqwest::get(format!("{}?Kanzlei=KANZLEI1", sim.discovery_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["relayUrl"], sim.base_url());
    assert_eq!(answer["securityGateway"], sim.base_url());
    assert!(answer["connectorUrl"].is_null());
    let unknown = reqwest::get(format!("{}?Kanzlei=ANDERE", sim.discovery_url()))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
