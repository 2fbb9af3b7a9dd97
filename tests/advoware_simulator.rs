//! The Advoware simulator's security gateway behaves as the reference says:
//! the public test vector, and refusals of wrong signatures, stale timestamps,
//! reused nonces, revoked and expired tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::simulators::advoware::{Account, Advoware, signature};
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
    let sim = Advoware::start(Account::default(), Duration::from_secs(3300)).await;
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
    let sim = Advoware::start(Account::default(), Duration::from_secs(3300)).await;
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
