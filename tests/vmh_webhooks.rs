//! `vmh-webhooks` through the host, between the EspoCRM simulator (which
//! signs and sends its webhooks like EspoCRM) and the Advoware simulator:
//! signatures, dedup across instances, the party sync, retries and dead letters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::simulators::espocrm;
use bitbylaw_tests::vmh::{VmhOptions, VmhRig, WAIT, webhook_id, webhook_secret};
use bitbylaw_tests::wait_for;
use serde_json::{Value, json};

/// The reference's test vector: webhook `webhookId456`, secret `secretKey123`.
const VECTOR_BODY: &[u8] = br#"[{"id":"abc123","name":"Test"}]"#;
const VECTOR_SIGNATURE: &str = "d2ViaG9va0lkNDU2OmFmYTBlMDJlNDJjNTQ3ODRkYmM2MjE2YTIzZGM1OTQ3NjU5ZTAwNzg0Zjg4NTNkZjVjZDAzNjg1MDZiMzI5OWQ=";
const VECTOR_X_SIGNATURE: &str = "d2ViaG9va0lkNDU2Oq+g4C5CxUeE28YhaiPcWUdlngB4T4hT31zQNoUGsymd";

async fn post_with(
    rig: &VmhRig,
    action: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = rig
        .host
        .client
        .post(VmhRig::webhook_url(&rig.host, action))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn mueller() -> Value {
    json!({
        "name": "Hans Müller", "firstName": "Hans", "lastName": "Müller", "salutationName": "Herr",
        "emailAddress": "hans.mueller@example.de", "phoneNumber": "+49 30 1234567",
        "addressStreet": "Hauptstraße 1", "addressPostalCode": "10115", "addressCity": "Berlin",
        "addressCountry": "Deutschland", "cRolle": "Mandant"
    })
}

fn advoware_writes(rig: &VmhRig) -> usize {
    rig.advoware
        .api_requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_taken_by_their_signature_only() {
    let rig = VmhRig::start(VmhOptions::default()).await;

    // The reference's vectors, both headers and each alone.
    let (status, answer) = post_with(
        &rig,
        "create",
        VECTOR_BODY,
        &[
            ("Signature", VECTOR_SIGNATURE),
            ("X-Signature", VECTOR_X_SIGNATURE),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "status": "received", "action": "create", "new_ids_count": 1, "total_ids_in_batch": 1 })
    );
    for header in [
        ("Signature", VECTOR_SIGNATURE),
        ("X-Signature", VECTOR_X_SIGNATURE),
    ] {
        let (status, answer) = post_with(&rig, "create", VECTOR_BODY, &[header]).await;
        assert_eq!(status, 200, "{header:?}: {answer}");
        assert_eq!(answer["status"], "received");
    }

    // A wrong secret, a tampered body, another webhook's signature, none.
    let tampered = br#"[{"id":"abc124","name":"Test"}]"#;
    let wrong_secret = espocrm::webhook_signature("webhookId456", "secretKey124", tampered);
    let other_webhook =
        espocrm::webhook_signature(&webhook_id("update"), &webhook_secret("update"), tampered);
    for (headers, says) in [
        (vec![("Signature", wrong_secret.as_str())], "does not match"),
        (vec![("Signature", VECTOR_SIGNATURE)], "does not match"),
        (vec![("X-Signature", VECTOR_X_SIGNATURE)], "does not match"),
        (
            vec![("Signature", other_webhook.as_str())],
            "another webhook",
        ),
        (vec![("Signature", "bm90IGEgc2lnbmF0dXJl")], "Signature"),
        (vec![], "signature is required"),
    ] {
        let (status, answer) = post_with(&rig, "create", tampered, &headers).await;
        assert_eq!(status, 401, "{headers:?}: {answer}");
        assert_eq!(answer["error"], "unauthorized");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("secretKey123"), "{message}");
    }

    // Signed but malformed: 400 saying what is wrong.
    for (body, says) in [
        (&b"{\"id\":\"a1\"}"[..], "JSON array"),
        (b"[{\"name\":\"x\"}]", "record 0 has no `id`"),
        (b"[{\"id\":\"a1\"},{\"id\":\"../../x\"}]", "record 1"),
        (b"not json", "not JSON"),
    ] {
        let (status, answer) = rig.post("create", body, true).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }

    // An unknown action is 404, never 410 (EspoCRM would delete the webhook).
    let (status, answer) = rig.post("restore", VECTOR_BODY, true).await;
    assert_eq!(status, 404, "{answer}");

    // Only the one signed record was announced; nothing refused reached the bus.
    let announced = rig.announced("create");
    assert!(!announced.is_empty());
    assert!(announced.iter().all(|id| id == "abc123"), "{announced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_take_unsigned_deliveries() {
    let rig = VmhRig::start(VmhOptions {
        config: "require_signature = false".into(),
        ..VmhOptions::default()
    })
    .await;
    let (status, answer) = rig
        .post("update", br#"[{"id":"u1"},{"id":"u2"},{"id":"u1"}]"#, false)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["new_ids_count"], 2);
    assert_eq!(answer["total_ids_in_batch"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_batches_on_two_instances_announce_each_record_once() {
    let rig = VmhRig::start(VmhOptions {
        // No sync finishes during the test (EspoCRM is down, retries wait long),
        // so every record stays pending and only dedup decides.
        subscription: "backoff_base_ms = 600000".into(),
        ..VmhOptions::default()
    })
    .await;
    rig.espocrm.refuse_connections();
    let second = rig.another_instance().await;
    let ids: Vec<String> = (0..1000)
        .map(|n| format!("{:017x}", 0x6571_a1b2_0000_u64 + n))
        .collect();
    // Batch b holds ids b*50 .. b*50+100: every id comes in two batches.
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|b| {
            let batch: Vec<Value> = (0..100)
                .map(|k| json!({ "id": ids[(b * 50 + k) % 1000], "name": "x" }))
                .collect();
            serde_json::to_vec(&batch).unwrap()
        })
        .collect();
    let answers = futures::future::join_all(bodies.iter().enumerate().map(|(b, body)| {
        let host = if b % 2 == 0 { &rig.host } else { &second };
        VmhRig::post_to(host, "create", body, true)
    }))
    .await;
    let mut new = 0;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["total_ids_in_batch"], 100);
        new += answer["new_ids_count"].as_u64().unwrap();
    }
    assert_eq!(new, 1000);
    let mut announced = rig.announced("create");
    assert_eq!(announced.len(), 1000, "each record once");
    announced.sort();
    assert_eq!(announced, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_reaches_advoware_and_follows_its_updates_and_deletion() {
    let rig = VmhRig::start(VmhOptions {
        config: "write_back_field = \"cAdvowareBetNr\"".into(),
        ..VmhOptions::default()
    })
    .await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    let party = rig.one_party(&id, |_| true).await;
    for (field, value) in [
        ("name", "Müller"),
        ("vorname", "Hans"),
        ("anrede", "Herr"),
        ("email", "hans.mueller@example.de"),
        ("telefon", "+49 30 1234567"),
        ("strasse", "Hauptstraße 1"),
        ("plz", "10115"),
        ("ort", "Berlin"),
        ("land", "Deutschland"),
        ("rolle", "Mandant"),
    ] {
        assert_eq!(party[field], value, "{field}: {party}");
    }
    let bet_nr = party["betNr"].clone();
    // The Advoware id is written back to the record...
    wait_for(WAIT, || async {
        let record = rig.espocrm.record("CBeteiligte", &id)?;
        (record["cAdvowareBetNr"] == bet_nr).then_some(())
    })
    .await;
    rig.wait_settled(&id, "create").await;
    let (status, known) = rig.lookup(&id).await;
    assert_eq!(status, 200);
    assert_eq!(known["advoware_id"], bet_nr.to_string());

    // ...and the update EspoCRM announces for that write changes nothing in Advoware.
    let writes = advoware_writes(&rig);
    rig.deliver_ok().await;
    rig.wait_settled(&id, "update").await;
    assert_eq!(
        advoware_writes(&rig),
        writes,
        "a sync with nothing changed writes nothing"
    );

    // An update (the webhook carries only the changed field: the sync reads the whole record).
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Hamburg" }));
    rig.deliver_ok().await;
    let delivered = rig.espocrm.deliveries().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&delivered.body).unwrap(),
        json!([{ "id": id, "addressCity": "Hamburg" }])
    );
    rig.one_party(&id, |p| p["ort"] == "Hamburg").await;
    rig.wait_settled(&id, "update").await;

    // A second update after the first finished is processed again.
    rig.espocrm.user_update(
        "CBeteiligte",
        &id,
        json!({ "addressCity": "Köln", "phoneNumber": "+49 221 5555" }),
    );
    rig.deliver_ok().await;
    let party = rig.one_party(&id, |p| p["ort"] == "Köln").await;
    assert_eq!(party["telefon"], "+49 221 5555");
    assert_eq!(party["name"], "Müller", "fields not in the webhook stay");
    rig.wait_settled(&id, "update").await;

    // Deleted in EspoCRM: deactivated in Advoware (the default).
    assert!(rig.espocrm.user_delete("CBeteiligte", &id));
    rig.deliver_ok().await;
    let party = rig.one_party(&id, |p| p["aktiv"] == false).await;
    assert_eq!(party["betNr"], bet_nr);
    rig.wait_settled(&id, "delete").await;
    assert_eq!(rig.advoware.parties().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_removes_the_party_when_the_tenant_says_so() {
    let rig = VmhRig::start(VmhOptions {
        config: "on_delete = \"delete\"".into(),
        hmac: false,
        ..VmhOptions::default()
    })
    .await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;
    // The account without a secret key sends its key (`X-Api-Key`).
    let read = rig
        .espocrm
        .api_requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert!(read.headers.contains_key("x-api-key"));
    assert!(!read.headers.contains_key("x-hmac-authorization"));

    rig.espocrm.user_delete("CBeteiligte", &id);
    rig.deliver_ok().await;
    wait_for(WAIT, || async {
        rig.parties_of(&id).is_empty().then_some(())
    })
    .await;
    rig.wait_settled(&id, "delete").await;
    let (status, _) = rig.lookup(&id).await;
    assert_eq!(status, 404, "the link is gone with the party");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_advoware_down_the_sync_is_retried_and_succeeds_once_it_is_back() {
    let rig = VmhRig::start(VmhOptions {
        subscription:
            "max_attempts = 50\nbackoff_base_ms = 50\nbackoff_max_ms = 200\nbackoff_jitter = 0.0"
                .into(),
        ..VmhOptions::default()
    })
    .await;
    rig.advoware.refuse_connections();
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    // At least three attempts have failed before Advoware comes back.
    wait_for(WAIT, || async {
        let metrics = rig.host.metrics().await;
        let retries: f64 = metrics
            .lines()
            .filter(|l| l.contains("name=\"vmh_party_syncs\"") && l.contains("outcome=\"retry\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (retries >= 3.0).then_some(())
    })
    .await;
    assert!(rig.parties_of(&id).is_empty());
    let (_, known) = rig.lookup(&id).await;
    assert_eq!(
        known["pending"]["create"], true,
        "pending while it is retried"
    );
    rig.advoware.accept_connections().await;
    rig.one_party(&id, |p| p["name"] == "Müller").await;
    rig.wait_settled(&id, "create").await;
    assert_eq!(rig.parties_of(&id).len(), 1, "made once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_goes_to_the_dead_letters_and_the_record_is_let_go() {
    let rig = VmhRig::start(VmhOptions {
        // Advoware requires `name`; mapped from the surname alone, a company has none.
        config: "[plugins.vmh-webhooks.config.mapping]\nname = \"lastName\"\nort = \"addressCity\""
            .into(),
        admin: true,
        ..VmhOptions::default()
    })
    .await;
    let id = rig.espocrm.user_create(
        "CBeteiligte",
        json!({ "name": "Hausverwaltung Nord GmbH", "addressCity": "Kiel" }),
    );
    rig.deliver_ok().await;
    let dead = rig.dead_letters(1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("400") && error.contains("Feld 'name' fehlt"),
        "{error}"
    );
    assert_eq!(dead[0]["attempts"], 1, "a validation error is not retried");
    // The record left the pending set, so a later change is synced.
    rig.wait_settled(&id, "create").await;
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "lastName": "Nord" }));
    rig.deliver_ok().await;
    let party = rig.one_party(&id, |_| true).await;
    assert_eq!(party["name"], "Nord");
    assert_eq!(party["ort"], "Kiel");
    // And EspoCRM re-sending the create is taken as new, not suppressed.
    let body = serde_json::to_vec(&json!([{ "id": id }])).unwrap();
    let (status, answer) = rig.post("create", &body, true).await;
    assert_eq!(status, 200);
    assert_eq!(answer["new_ids_count"], 1, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_comes_while_its_record_syncs_is_synced_after_it() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;

    // Advoware is slow: the update's sync has read the record and is still
    // writing when the next change comes.
    let reads_before = rig.espocrm.answered().len();
    rig.advoware.set_latency(Duration::from_millis(1500));
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Hamburg" }));
    rig.deliver_ok().await;
    wait_for(WAIT, || async {
        rig.espocrm.answered()[reads_before..]
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(&id))
            .then_some(())
    })
    .await;
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Potsdam" }));
    let body = serde_json::to_vec(&json!([{ "id": id, "addressCity": "Potsdam" }])).unwrap();
    let (status, answer) = rig.post("update", &body, true).await;
    assert_eq!(status, 200);
    assert_eq!(answer["new_ids_count"], 0, "its sync is pending: {answer}");
    rig.advoware.set_latency(Duration::ZERO);

    // The running sync wrote Hamburg; the change that came meanwhile follows.
    rig.one_party(&id, |p| p["ort"] == "Potsdam").await;
    rig.wait_settled(&id, "update").await;
    let written: Vec<Value> = rig
        .advoware
        .api_requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["ort"].clone())
        .collect();
    assert_eq!(written, [json!("Hamburg"), json!("Potsdam")]);
    assert_eq!(
        rig.announced("update").len(),
        2,
        "the webhook's event, then the one for the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_finds_its_party_instead_of_making_another() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    // Advoware makes the party, but its answer never arrives (a gateway timed out).
    rig.advoware.lose_next_answers(1, 504);
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    rig.wait_settled(&id, "create").await;
    let parties = rig.parties_of(&id);
    assert_eq!(parties.len(), 1, "made once: {parties:?}");
    let posts = rig
        .advoware
        .api_requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(
        posts, 1,
        "the retry looked the party up instead of creating it again"
    );
    let (_, known) = rig.lookup(&id).await;
    assert_eq!(known["advoware_id"], parties[0]["betNr"].to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_dead_receipt_left_pending_are_announced_by_the_sweep() {
    let rig = VmhRig::start(VmhOptions {
        // The sweep every second instead of every minute.
        config: "[plugins.vmh-webhooks.schedules.vmh_pending_sweep]\ncron = \"* * * * * *\"".into(),
        ..VmhOptions::default()
    })
    .await;
    // A delivery that got through: announced, never swept again.
    let delivered = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    rig.one_party(&delivered, |_| true).await;
    // What a host killed between admitting a record and announcing it leaves:
    // the record pending, no event on its way. EspoCRM's retry would find it
    // not new.
    let lost = rig.espocrm.user_create(
        "CBeteiligte",
        json!({ "name": "Petra Schneider", "lastName": "Schneider", "addressCity": "Hamburg" }),
    );
    let pending = format!(
        "{}:{{firm-a}}:vmh-webhooks:kv:pending:create",
        rig.host.prefix
    );
    let _: () = redis::cmd("SADD")
        .arg(&pending)
        .arg(&lost)
        .query(&mut bitbylaw_tests::redis_connection())
        .unwrap();
    let body = serde_json::to_vec(&json!([{ "id": lost }])).unwrap();
    let (_, answer) = rig.post("create", &body, true).await;
    assert_eq!(answer["new_ids_count"], 0, "pending: {answer}");
    // The sweep finds it pending and unannounced twice in a row, and announces it.
    let party = rig.one_party(&lost, |_| true).await;
    assert_eq!(party["name"], "Schneider");
    // Announced by the sweep, and once more for the delivery that came while
    // it was pending (flagged `again`), which its sync then let through.
    wait_for(WAIT, || async {
        let times = rig
            .announced("create")
            .iter()
            .filter(|id| **id == lost)
            .count();
        assert!(times <= 2, "announced {times} times");
        (times == 2).then_some(())
    })
    .await;
    rig.wait_settled(&lost, "create").await;
    let announced = rig.announced("create");
    assert_eq!(rig.parties_of(&lost).len(), 1);
    assert_eq!(
        announced.iter().filter(|id| **id == delivered).count(),
        1,
        "a record announced by its receipt is not swept: {announced:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_while_deliveries_flow_loses_and_doubles_no_party() {
    const RECORDS: usize = 100;
    let rig = VmhRig::start(VmhOptions {
        // A dead host's events go to another after 3 s, its locks after 3 s,
        // and what it admitted without announcing is swept every second.
        host: "visibility_timeout_ms = 3000\n[plugin_defaults]\ndeadline_ms = 2000\n".into(),
        subscription: "max_attempts = 100\nbackoff_base_ms = 100\nbackoff_max_ms = 500\nbackoff_jitter = 0.0".into(),
        config: "lock_ttl_s = 3\n[plugins.vmh-webhooks.schedules.vmh_pending_sweep]\ncron = \"* * * * * *\"".into(),
        register_webhooks: false,
        ..VmhOptions::default()
    })
    .await;
    // The instance EspoCRM posts to runs as its own process on a fixed port,
    // so it can come back there after `kill -9`; the rig's host shares its store.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let spawn = |name: &str| rig.deployment.spawn(name, &listen);
    let mut doomed = spawn("doomed");
    doomed.listening().await;
    for action in ["create", "update", "delete"] {
        rig.espocrm.register_webhook_with(
            &format!("CBeteiligte.{action}"),
            &format!(
                "http://127.0.0.1:{port}/vmh/webhook/beteiligte/{action}?apikey={}",
                bitbylaw_tests::vmh::API_KEY
            ),
            &webhook_id(action),
            &webhook_secret(action),
        );
    }
    let ids: Vec<String> = (0..RECORDS)
        .map(|i| {
            rig.espocrm.user_create(
                "CBeteiligte",
                json!({ "name": format!("Person {i}"), "lastName": format!("Nachname-{i:03}") }),
            )
        })
        .collect();
    // Slow syncs, so that the kill lands in the middle of the work.
    rig.advoware.set_latency(Duration::from_millis(30));
    let espocrm = &rig.espocrm;
    let delivery = espocrm.deliver();
    let kill = async {
        wait_for(WAIT, || async {
            (rig.advoware.parties().len() >= 5).then_some(())
        })
        .await;
        doomed.kill();
    };
    let (first, ()) = tokio::join!(delivery, kill);
    assert!(
        rig.advoware.parties().len() < RECORDS,
        "killed before the work was done: {:?}",
        first
            .deliveries
            .iter()
            .map(|d| d.outcome)
            .collect::<Vec<_>>()
    );
    rig.advoware.set_latency(Duration::ZERO);

    // It comes back on its port; EspoCRM delivers what failed again.
    let back = spawn("back");
    back.listening().await;
    for _ in 0..(espocrm::MAX_ATTEMPTS as usize) {
        if rig.espocrm.queued() == 0 {
            break;
        }
        rig.espocrm.deliver().await;
    }
    assert_eq!(rig.espocrm.queued(), 0, "every delivery got through");
    // Every record reaches Advoware exactly once.
    wait_for(Duration::from_secs(60), || async {
        let parties = rig.advoware.parties();
        for id in &ids {
            let made = parties
                .iter()
                .filter(|p| p["externeId"] == id.as_str())
                .count();
            assert!(made <= 1, "{id} made {made} times");
            if made == 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
    for id in &ids {
        rig.wait_settled(id, "create").await;
    }
    assert_eq!(rig.advoware.parties().len(), RECORDS, "{}", back.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_deleted_in_advoware_is_made_again_once_even_when_that_answer_is_lost() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    let first = rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;
    // Someone deletes the party in Advoware; the record changes in EspoCRM,
    // and Advoware's answer to the party made anew is lost.
    assert!(
        rig.advoware
            .user_delete_party(first["betNr"].as_i64().unwrap())
    );
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Leipzig" }));
    rig.advoware.lose_next_answers(1, 504);
    rig.deliver_ok().await;
    let again = rig.one_party(&id, |p| p["ort"] == "Leipzig").await;
    assert_ne!(again["betNr"], first["betNr"]);
    rig.wait_settled(&id, "update").await;
    assert_eq!(rig.parties_of(&id).len(), 1, "made again once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_copied_with_anothers_advoware_id_gets_a_party_of_its_own() {
    let rig = VmhRig::start(VmhOptions {
        config: "write_back_field = \"cAdvowareBetNr\"".into(),
        ..VmhOptions::default()
    })
    .await;
    let original = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    let party = rig.one_party(&original, |_| true).await;
    rig.wait_settled(&original, "create").await;
    // EspoCRM's "Duplicate" copies every field, the written-back id too.
    let mut copy = rig.espocrm.record("CBeteiligte", &original).unwrap();
    copy["name"] = json!("Hans Müller (Kopie)");
    copy["lastName"] = json!("Müller-Kopie");
    let copied = rig.espocrm.user_create("CBeteiligte", copy);
    rig.deliver_ok().await;
    let own = rig.one_party(&copied, |_| true).await;
    assert_ne!(own["betNr"], party["betNr"]);
    let untouched = rig.parties_of(&original);
    assert_eq!(untouched.len(), 1);
    assert_eq!(
        untouched[0]["name"], "Müller",
        "the original's party is not overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_busy_on_its_last_attempt_is_taken_up_again_not_given_up() {
    let rig = VmhRig::start(VmhOptions {
        subscription: "max_attempts = 2\nbackoff_base_ms = 50\nbackoff_jitter = 0.0".into(),
        ..VmhOptions::default()
    })
    .await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    // Another sync of the record holds its lock (as a host that died in it would).
    let lock = format!(
        "{}:{{firm-a}}:vmh-webhooks:lock:party:{id}",
        rig.host.prefix
    );
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("someone-else")
        .arg("PX")
        .arg(1500)
        .query(&mut bitbylaw_tests::redis_connection())
        .unwrap();
    rig.deliver_ok().await;
    // Both attempts find it busy; it is announced again and synced once the lock is free.
    let party = rig.one_party(&id, |_| true).await;
    assert_eq!(party["name"], "Müller");
    rig.wait_settled(&id, "create").await;
    assert!(rig.announced("create").len() >= 2, "announced again");
    assert_eq!(rig.parties_of(&id).len(), 1);
}
