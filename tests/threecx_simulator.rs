//! The 3CX simulator against the reference (`upstreams.md`, 3CX): its token
//! endpoint, bearer checks, the Call Control API and the XAPI's OData lists,
//! called here as a client would, before any plugin relies on it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::simulators::threecx::ThreeCx;
use serde_json::{Map, Value, json};

async fn token(sim: &ThreeCx, secret: &str, grant: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}connect/token", sim.base_url()))
        .form(&[
            ("client_id", sim.account().client_id.as_str()),
            ("client_secret", secret),
            ("grant_type", grant),
        ])
        .send()
        .await
        .unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

async fn get(sim: &ThreeCx, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", sim.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.unwrap();
    (
        answer.status().as_u16(),
        answer.json().await.unwrap_or(Value::Null),
    )
}

async fn signed_in(sim: &ThreeCx) -> String {
    let secret = sim.account().client_secret;
    let (status, answer) = token(sim, &secret, "client_credentials").await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_for_client_credentials_and_open_the_api_until_they_expire() {
    let sim = ThreeCx::start_default().await;
    let (status, answer) = token(&sim, "wrong", "client_credentials").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, answer) = token(&sim, &sim.account().client_secret, "password").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let secret = sim.account().client_secret;
    let (status, answer) = token(&sim, &secret, "client_credentials").await;
    assert_eq!(status, 200);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    let bearer = answer["access_token"].as_str().unwrap();
    assert_eq!(get(&sim, None, "xapi/v1/Recordings").await.0, 401);
    assert_eq!(
        get(&sim, Some("made-up"), "xapi/v1/Recordings").await.0,
        401
    );
    assert_eq!(get(&sim, Some(bearer), "xapi/v1/Recordings").await.0, 200);
    assert_eq!(sim.token_requests(), 3);

    sim.set_token_lifetime(Duration::ZERO);
    let short = signed_in(&sim).await;
    assert_eq!(
        get(&sim, Some(&short), "xapi/v1/Recordings").await.0,
        401,
        "expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn makecall_dials_from_an_extension_and_participants_follow_the_call() {
    let sim = ThreeCx::start_default().await;
    let bearer = signed_in(&sim).await;
    let client = reqwest::Client::new();
    let call = |dn: &str, body: Value| {
        client
            .post(format!("{}callcontrol/{dn}/makecall", sim.base_url()))
            .bearer_auth(&bearer)
            .json(&body)
            .send()
    };
    assert_eq!(
        call("999", json!({ "destination": "+491711234567" }))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call("101", json!({ "timeout": 30 }))
            .await
            .unwrap()
            .status(),
        400
    );
    let made: Value = call(
        "101",
        json!({ "destination": "+491711234567", "timeout": 30, "attacheddata": { "lead": "l-1" } }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(made["finalstatus"], "Success");
    assert_eq!(made["result"]["status"], "Dialing");
    assert_eq!(made["result"]["party_dn"], "+491711234567");
    let id = made["result"]["id"].as_u64().unwrap();
    assert_eq!(
        sim.calls_made(),
        [(
            "101".to_owned(),
            "+491711234567".to_owned(),
            json!({ "lead": "l-1" })
        )]
    );

    sim.set_status(id, Some("Connected"));
    let (status, participant) = get(
        &sim,
        Some(&bearer),
        &format!("callcontrol/101/participants/{id}"),
    )
    .await;
    assert_eq!(
        (status, participant["status"].as_str()),
        (200, Some("Connected"))
    );
    let (_, list) = get(&sim, Some(&bearer), "callcontrol/101/participants").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let dropped = client
        .post(format!(
            "{}callcontrol/101/participants/{id}/drop",
            sim.base_url()
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), 200);
    let (status, _) = get(
        &sim,
        Some(&bearer),
        &format!("callcontrol/101/participants/{id}"),
    )
    .await;
    assert_eq!(status, 404, "a call that ended has no participant");
}

fn recording(n: u64) -> Map<String, Value> {
    let Value::Object(fields) = json!({
        "StartTime": format!("2026-12-04T09:{:02}:00Z", n % 60), "EndTime": "2026-12-04T10:00:00Z",
        "CallType": "InboundExternal", "FromCallerNumber": "+49301234567", "ToDn": "101",
        "IsTranscribed": false,
    }) else {
        unreachable!()
    };
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_page_by_id_and_download_and_history_filters_by_time() {
    let sim = ThreeCx::start_default().await;
    let bearer = signed_in(&sim).await;
    let ids: Vec<u64> = (0..120)
        .map(|n| sim.add_recording(recording(n), format!("audio {n}").as_bytes()))
        .collect();
    let mut seen = Vec::new();
    let mut last = 0;
    loop {
        let (status, page) = get(
            &sim,
            Some(&bearer),
            &format!("xapi/v1/Recordings?$filter=Id%20gt%20{last}&$orderby=Id%20asc&$top=50"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let page: Vec<u64> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_u64().unwrap())
            .collect();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 50);
        last = *page.last().unwrap();
        seen.extend(page);
    }
    assert_eq!(seen, ids, "every recording once, in order");
    let (status, error) = get(
        &sim,
        Some(&bearer),
        "xapi/v1/Recordings?$filter=Id%20has%201",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator"),
        "{error}"
    );
    assert_eq!(
        get(&sim, Some(&bearer), "xapi/v1/Recordings?$top=500")
            .await
            .0,
        400
    );

    let audio = reqwest::Client::new()
        .get(format!(
            "{}xapi/v1/Recordings/Pbx.DownloadRecording(recId={})",
            sim.base_url(),
            ids[7]
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.bytes().await.unwrap().as_ref(), b"audio 7");
    assert_eq!(
        get(
            &sim,
            Some(&bearer),
            "xapi/v1/Recordings/Pbx.DownloadRecording(recId=99999)"
        )
        .await
        .0,
        404
    );

    for (call, start) in [
        (1, "2026-12-04T08:00:00Z"),
        (2, "2026-12-04T09:00:00Z"),
        (2, "2026-12-04T09:01:00Z"),
    ] {
        let Value::Object(segment) = json!({
            "CallId": call, "SegmentStartTime": start, "SegmentEndTime": start,
            "CallTime": "PT1M5S", "CallAnswered": true, "SrcCallerNumber": "+49301234567", "DstDn": "101",
        }) else {
            unreachable!()
        };
        sim.add_segment(segment);
    }
    let (status, later) = get(
        &sim,
        Some(&bearer),
        "xapi/v1/CallHistoryView?$filter=SegmentStartTime%20ge%202026-12-04T08:30:00Z&$orderby=SegmentStartTime%20desc",
    )
    .await;
    assert_eq!(status, 200, "{later}");
    let starts: Vec<&str> = later["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SegmentStartTime"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2026-12-04T09:01:00Z", "2026-12-04T09:00:00Z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_answer_as_a_pbx_would() {
    let sim = ThreeCx::start_default().await;
    let bearer = signed_in(&sim).await;
    sim.fail_next(1, 502);
    assert_eq!(get(&sim, Some(&bearer), "xapi/v1/Recordings").await.0, 502);
    sim.break_after(1);
    assert_eq!(get(&sim, Some(&bearer), "xapi/v1/Recordings").await.0, 200);
    assert_eq!(get(&sim, Some(&bearer), "xapi/v1/Recordings").await.0, 503);
    sim.heal();
    assert_eq!(get(&sim, Some(&bearer), "xapi/v1/Recordings").await.0, 200);
    sim.refuse_connections();
    assert!(
        reqwest::Client::new()
            .get(format!("{}xapi/v1/Recordings", sim.base_url()))
            .send()
            .await
            .is_err()
    );
    sim.accept_connections().await;
    assert_eq!(get(&sim, Some(&bearer), "xapi/v1/Recordings").await.0, 200);
}
