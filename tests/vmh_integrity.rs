//! `vmh-webhooks` never overwrites, deactivates or leaves inactive a party it
//! should not: written-back ids adopt only this record's party, deletes are
//! checked with EspoCRM, a restored record brings its party back, writes keep
//! the party's other fields (Advoware's `PUT` replaces here), only JSON is a
//! delivery, and no id stays pending for good.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::vmh::{VmhOptions, VmhRig, webhook_id, webhook_secret};
use serde_json::{Value, json};

fn mueller() -> Value {
    json!({
        "name": "Hans Müller", "firstName": "Hans", "lastName": "Müller",
        "emailAddress": "hans.mueller@example.de", "addressCity": "Berlin",
    })
}

fn party(rig: &VmhRig, bet_nr: i64) -> Value {
    rig.advoware
        .parties()
        .into_iter()
        .find(|p| p["betNr"] == bet_nr)
        .unwrap()
}

/// Item 1: a record naming a party in its write-back field is linked to it
/// only when that party is this record's; a client made by hand is never
/// overwritten, and a value that is no party number reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_back_id_adopts_only_this_records_party() {
    let rig = VmhRig::start(VmhOptions {
        config: "write_back_field = \"cAdvowareBetNr\"".into(),
        admin: true,
        ..VmhOptions::default()
    })
    .await;
    let by_hand = rig.advoware.insert_party(json!({
        "name": "Schulz", "vorname": "Erika", "email": "erika@schulz.example", "mandant": true,
    }));
    let mut record = mueller();
    record["cAdvowareBetNr"] = json!(by_hand);
    let id = rig.espocrm.user_create("CBeteiligte", record);
    rig.deliver_ok().await;
    let dead = rig.dead_letters(1).await;
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("not this record's") && error.contains(&by_hand.to_string()),
        "{error}"
    );
    rig.wait_settled(&id, "create").await;
    let kept = party(&rig, by_hand);
    assert_eq!(
        (&kept["name"], &kept["email"], &kept["externeId"]),
        (
            &json!("Schulz"),
            &json!("erika@schulz.example"),
            &Value::Null
        ),
        "the hand-made client is untouched: {kept}"
    );
    assert!(rig.parties_of(&id).is_empty());

    // Not a party number: refused before anything is asked of Advoware.
    let mut record = mueller();
    record["name"] = json!("Karl Weber");
    record["lastName"] = json!("Weber");
    record["cAdvowareBetNr"] = json!("4711/x");
    let odd = rig.espocrm.user_create("CBeteiligte", record);
    rig.deliver_ok().await;
    let dead = rig.dead_letters(2).await;
    assert!(
        dead.iter().any(|d| d["error"]
            .as_str()
            .unwrap()
            .contains("not an Advoware party number")),
        "{dead:?}"
    );
    rig.wait_settled(&odd, "create").await;
    assert!(
        rig.advoware
            .api_requests()
            .iter()
            .all(|r| !r.path.contains("4711")),
        "no request reached `Beteiligte/4711/...`"
    );

    // This record's own party (its link field names the record; the plugin's
    // link was lost): adopted, not made again.
    let own = rig
        .advoware
        .insert_party(json!({ "name": "Lang", "externeId": "placeholder" }));
    let mut record = mueller();
    record["name"] = json!("Uta Lang");
    record["lastName"] = json!("Lang");
    record["cAdvowareBetNr"] = json!(own.to_string());
    let lang = rig.espocrm.user_create("CBeteiligte", record);
    rig.advoware
        .user_update_party(own, json!({ "externeId": lang }));
    rig.deliver_ok().await;
    let adopted = rig.one_party(&lang, |p| p["vorname"] == "Hans").await;
    assert_eq!(adopted["betNr"], own);
    assert_eq!(rig.parties_of(&lang).len(), 1);
}

/// Item 2: EspoCRM signs no timestamp; a delete delivery for a record that
/// still exists (a replay) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delete_of_a_record_that_exists_changes_nothing() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    let made = rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;
    let body = serde_json::to_vec(&json!([{ "id": id }])).unwrap();
    let (status, answer) = rig.post("delete", &body, true).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["new_ids_count"], 1);
    rig.wait_settled(&id, "delete").await;
    let after = rig.one_party(&id, |_| true).await;
    assert_eq!(after, made, "the party is as it was");
    // Deleted for real: deactivated.
    assert!(rig.espocrm.user_delete("CBeteiligte", &id));
    rig.deliver_ok().await;
    rig.one_party(&id, |p| p["aktiv"] == false).await;
}

/// Item 3: an update of a record whose party was deactivated makes it active
/// again; a delete that comes while a create's answer was lost finds that
/// party instead of leaving it active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_record_brings_its_party_back_and_a_delete_finds_a_lost_create() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;
    rig.espocrm.user_delete("CBeteiligte", &id);
    rig.deliver_ok().await;
    rig.one_party(&id, |p| p["aktiv"] == false).await;
    rig.wait_settled(&id, "delete").await;
    // Restored in EspoCRM, then changed: the party lives again.
    assert!(rig.espocrm.user_restore("CBeteiligte", &id));
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Potsdam" }));
    rig.deliver_ok().await;
    let party = rig.one_party(&id, |p| p["ort"] == "Potsdam").await;
    assert_eq!(party["aktiv"], true, "{party}");

    // A create whose answer is lost, retried only much later; the record is
    // deleted meanwhile: the delete finds the party by the create's marker.
    let slow = VmhRig::start(VmhOptions {
        subscription: "backoff_base_ms = 600000\nbackoff_jitter = 0.0".into(),
        ..VmhOptions::default()
    })
    .await;
    let lost = slow.espocrm.user_create("CBeteiligte", mueller());
    slow.advoware.lose_next_answers(1, 504);
    slow.deliver_ok().await;
    let made = slow.one_party(&lost, |_| true).await;
    assert_eq!(made["aktiv"], Value::Null, "made, answer lost");
    slow.espocrm.user_delete("CBeteiligte", &lost);
    slow.deliver_ok().await;
    slow.wait_settled(&lost, "delete").await;
    let after = slow.one_party(&lost, |p| p["aktiv"] == false).await;
    assert_eq!(after["betNr"], made["betNr"]);
}

/// Item 4: Advoware's `PUT` replaces the party (the simulator's default):
/// updates and the deactivation keep the fields the mapping does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_the_party_fields_the_mapping_does_not_know() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let id = rig.espocrm.user_create("CBeteiligte", mueller());
    rig.deliver_ok().await;
    let made = rig.one_party(&id, |_| true).await;
    rig.wait_settled(&id, "create").await;
    let bet_nr = made["betNr"].as_i64().unwrap();
    rig.advoware.user_update_party(
        bet_nr,
        json!({ "aktenzeichen": "123/26", "notizIntern": "VIP, nur mit Termin" }),
    );
    rig.espocrm
        .user_update("CBeteiligte", &id, json!({ "addressCity": "Hamburg" }));
    rig.deliver_ok().await;
    let updated = rig.one_party(&id, |p| p["ort"] == "Hamburg").await;
    assert_eq!(updated["aktenzeichen"], "123/26", "{updated}");
    assert_eq!(updated["notizIntern"], "VIP, nur mit Termin");
    assert_eq!(updated["vorname"], "Hans");
    rig.wait_settled(&id, "update").await;
    rig.espocrm.user_delete("CBeteiligte", &id);
    rig.deliver_ok().await;
    let deactivated = rig.one_party(&id, |p| p["aktiv"] == false).await;
    assert_eq!(deactivated["aktenzeichen"], "123/26", "{deactivated}");
    assert_eq!(deactivated["name"], "Müller");
}

/// Item 6: EspoCRM always sends JSON; anything else is not EspoCRM (415).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_is_not_json_is_refused_with_415() {
    let rig = VmhRig::start(VmhOptions::default()).await;
    let body = br#"[{"id":"a1b2c3"}]"#;
    let (id, secret) = (webhook_id("create"), webhook_secret("create"));
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = rig
            .host
            .client
            .post(VmhRig::webhook_url(&rig.host, "create"))
            .header(
                "Signature",
                bitbylaw_tests::simulators::espocrm::webhook_signature(&id, &secret, body),
            )
            .body(body.to_vec());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "unsupported_media_type");
    }
    let (status, _) = rig.lookup("a1b2c3").await;
    assert_eq!(status, 404, "nothing was admitted");
    let (status, answer) = rig.post("create", body, true).await;
    assert_eq!((status, &answer["new_ids_count"]), (200, &json!(1)));
}

/// Item 7: an id whose last attempt ended while it stayed pending (the store
/// failed as it was let go) is announced again by the sweep after
/// `stuck_after_s`, so its record is synced and later webhooks are not
/// swallowed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_left_pending_after_its_last_attempt_is_announced_again() {
    let rig = VmhRig::start(VmhOptions {
        config: "stuck_after_s = 2\n[plugins.vmh-webhooks.schedules.vmh_pending_sweep]\ncron = \"* * * * * *\"".into(),
        ..VmhOptions::default()
    })
    .await;
    let stuck = rig.espocrm.user_create("CBeteiligte", mueller());
    // What a dead-lettered last attempt leaves when letting go failed:
    // pending and announced, no event on its way.
    let mut redis = bitbylaw_tests::redis_connection();
    for set in ["pending:create", "announced:create"] {
        let key = format!("{}:{{firm-a}}:vmh-webhooks:kv:{set}", rig.host.prefix);
        let _: () = redis::cmd("SADD")
            .arg(&key)
            .arg(&stuck)
            .query(&mut redis)
            .unwrap();
    }
    let body = serde_json::to_vec(&json!([{ "id": stuck }])).unwrap();
    let (_, answer) = rig.post("create", &body, true).await;
    assert_eq!(
        answer["new_ids_count"], 0,
        "swallowed while pending: {answer}"
    );
    let party = rig.one_party(&stuck, |_| true).await;
    assert_eq!(party["name"], "Müller");
    rig.wait_settled(&stuck, "create").await;
    assert_eq!(rig.parties_of(&stuck).len(), 1);
}
