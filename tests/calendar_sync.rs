//! `calendar-sync` between the Advoware and Google simulators, through the
//! host: first and quiet runs, changes both ways, conflicts, deletions, the
//! safeguards, 410s, quotas, and two instances running one employee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::calendar::{
    API_KEY, CalendarRig, OPERATOR_KEY, RigOptions, berlin, by_fr_nr, day, timed,
};
use bitbylaw_tests::simulators::google::Quotas;
use bitbylaw_tests::{keys_with_prefix, wait_for};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_creates_each_appointment_once_and_a_quiet_run_writes_nothing() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    let hearing =
        rig.advoware
            .insert_appointment(timed("Verhandlung Müller", 3, "09:30:00", "11:00:00"));
    let holiday = rig.advoware.insert_appointment(json!({
        "kuerzel": "SB", "text": "Urlaub", "datum": day(10), "datumBis": day(12), "dauertermin": 1,
    }));
    let jour_fixe = rig.advoware.insert_appointment(json!({
        "kuerzel": "SB", "text": "Jour fixe", "datum": day(1), "uhrzeitVon": "08:00:00",
        "uhrzeitBis": "08:30:00", "datumBis": "2037-12-31", "turnus": 1, "turnusArt": 2,
    }));

    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["created"], 3, "{report}");
    assert_eq!(report["full_listing"], true);
    let events = rig.live_events("SB");
    assert_eq!(events.len(), 3, "{events:#?}");

    let hearing_event = &by_fr_nr(&events, hearing)[0];
    assert_eq!(hearing_event["summary"], "Verhandlung Müller");
    assert_eq!(hearing_event["description"], "Notiz zu Verhandlung Müller");
    assert_eq!(hearing_event["start"]["timeZone"], "Europe/Berlin");
    assert_eq!(berlin(&hearing_event["start"]), format!("{} 09:30", day(3)));
    let holiday_event = &by_fr_nr(&events, holiday)[0];
    assert_eq!(holiday_event["start"]["date"], day(10));
    assert_eq!(holiday_event["end"]["date"], day(13), "exclusive end");
    let series = &by_fr_nr(&events, jour_fixe)[0];
    assert_eq!(
        series["recurrence"],
        json!(["RRULE:FREQ=WEEKLY"]),
        "2037 means endless"
    );

    let metrics = rig.host.metrics().await;
    for line in [
        r#"bitbylaw_plugin_counter_total{tenant="firm-a",plugin="calendar-sync",name="calendar_runs",employee="SB",outcome="ok"} 1"#,
        r#"bitbylaw_plugin_counter_total{tenant="firm-a",plugin="calendar-sync",name="calendar_writes",kind="created",side="google"} 3"#,
        r#"bitbylaw_plugin_histogram_count{tenant="firm-a",plugin="calendar-sync",name="calendar_run_seconds",employee="SB"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }

    let (google_calls, advoware_calls) =
        (rig.google.calls().len(), rig.advoware.api_requests().len());
    let quiet = rig.run_ok("SB").await;
    assert_eq!(
        quiet["google"],
        json!({"created":0,"updated":0,"deleted":0,"restored":0,"linked":0}),
        "{quiet}"
    );
    assert_eq!(quiet["advoware"]["updated"], 0);
    assert_eq!(
        rig.writes_since(google_calls, advoware_calls),
        Vec::<String>::new()
    );
    let google_reads = rig.google.calls().len() - google_calls;
    assert!(
        google_reads <= 2,
        "{google_reads} Google reads for a quiet run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_travel_both_ways_and_deletions_follow() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    let moved = rig
        .advoware
        .insert_appointment(timed("Mandant A", 2, "10:00:00", "11:00:00"));
    let edited_in_google =
        rig.advoware
            .insert_appointment(timed("Mandant B", 4, "14:00:00", "15:00:00"));
    let deleted_in_advoware =
        rig.advoware
            .insert_appointment(timed("Mandant C", 5, "09:00:00", "09:30:00"));
    let deleted_in_google =
        rig.advoware
            .insert_appointment(timed("Mandant D", 6, "09:00:00", "09:30:00"));
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let events = rig.live_events("SB");
    let id_of = |fr_nr: i64| {
        by_fr_nr(&events, fr_nr)[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    rig.advoware.user_update(
        moved,
        json!({ "uhrzeitVon": "12:00:00", "uhrzeitBis": "13:00:00" }),
    );
    rig.google.user_update(
        &calendar,
        &id_of(edited_in_google),
        json!({ "summary": "Mandant B (verlegt)", "location": "Kanzlei" }),
    );
    rig.advoware.user_delete(deleted_in_advoware);
    rig.google.user_delete(&calendar, &id_of(deleted_in_google));
    let made_in_google = rig.google.user_insert(&calendar, json!({
        "summary": "Telefonat Gericht",
        "start": { "dateTime": format!("{}T16:00:00+01:00", day(7)), "timeZone": "Europe/Berlin" },
        "end": { "dateTime": format!("{}T16:30:00+01:00", day(7)), "timeZone": "Europe/Berlin" },
    }));

    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["updated"], 1, "{report}");
    assert_eq!(report["google"]["deleted"], 1, "{report}");
    assert_eq!(report["advoware"]["updated"], 1, "{report}");
    assert_eq!(report["advoware"]["deleted"], 1, "{report}");
    assert_eq!(report["advoware"]["created"], 1, "{report}");

    let appointments = rig.advoware.appointments();
    let find = |fr_nr: i64| appointments.iter().find(|a| a["frNr"] == fr_nr).cloned();
    assert_eq!(
        find(edited_in_google).unwrap()["text"],
        "Mandant B (verlegt)"
    );
    assert_eq!(find(edited_in_google).unwrap()["ort"], "Kanzlei");
    assert!(
        find(deleted_in_google).is_none(),
        "deleted in Google, so in Advoware"
    );
    let imported = appointments
        .iter()
        .find(|a| a["text"] == "Telefonat Gericht")
        .expect("imported");
    assert_eq!(imported["uhrzeitVon"], "16:00:00");
    let events = rig.events("SB");
    let made = events
        .iter()
        .find(|e| e["id"] == made_in_google.as_str())
        .unwrap();
    assert_eq!(
        made["extendedProperties"]["private"]["advoware_frnr"],
        imported["frNr"].to_string(),
        "linked"
    );
    assert_eq!(
        by_fr_nr(&events, deleted_in_advoware)[0]["status"],
        "cancelled"
    );
    let moved_event = &by_fr_nr(&events, moved)[0];
    assert_eq!(
        berlin(&moved_event["start"]),
        format!("{} 12:00", day(2)),
        "{moved_event}"
    );

    let quiet = rig.run_ok("SB").await;
    assert_eq!(
        quiet["google"]["updated"].as_u64().unwrap()
            + quiet["advoware"]["updated"].as_u64().unwrap(),
        0,
        "{quiet}"
    );
    // A, B and the one made in Google; C and D are gone on both sides.
    assert_eq!(rig.live_events("SB").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_advoware_writes_google_changes_are_put_back() {
    let rig = CalendarRig::start(RigOptions {
        config: "write_to_advoware = false".into(),
        ..RigOptions::default()
    })
    .await;
    let kept = rig
        .advoware
        .insert_appointment(timed("Frist", 3, "10:00:00", "10:15:00"));
    let undeleted = rig
        .advoware
        .insert_appointment(timed("Termin X", 4, "10:00:00", "10:15:00"));
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let events = rig.live_events("SB");
    let kept_id = by_fr_nr(&events, kept)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let undeleted_id = by_fr_nr(&events, undeleted)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    rig.google.user_update(
        &calendar,
        &kept_id,
        json!({ "summary": "Frist verschoben?" }),
    );
    rig.google.user_delete(&calendar, &undeleted_id);
    let advoware_before = rig.advoware.appointments();

    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["restored"], 2, "{report}");
    assert_eq!(
        rig.advoware.appointments(),
        advoware_before,
        "Advoware untouched"
    );
    let events = rig.live_events("SB");
    assert_eq!(by_fr_nr(&events, kept)[0]["summary"], "Frist");
    assert_eq!(by_fr_nr(&events, undeleted)[0]["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_delete_guard_trips_and_deletes_nothing() {
    let rig = CalendarRig::start(RigOptions {
        config: "write_to_advoware = true\nmax_delete_share = 0.5\nmax_delete_floor = 3".into(),
        ..RigOptions::default()
    })
    .await;
    let numbers: Vec<i64> = (0..10)
        .map(|i| {
            rig.advoware
                .insert_appointment(timed(&format!("T{i}"), 2 + i, "09:00:00", "10:00:00"))
        })
        .collect();
    rig.run_ok("SB").await;
    for fr_nr in &numbers[..6] {
        rig.advoware.user_delete(*fr_nr);
    }
    let (google_calls, advoware_calls) =
        (rig.google.calls().len(), rig.advoware.api_requests().len());
    let (status, answer) = rig.run("SB").await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("would delete 6 of 10"),
        "{answer}"
    );
    assert_eq!(
        rig.writes_since(google_calls, advoware_calls),
        Vec::<String>::new()
    );
    assert_eq!(rig.live_events("SB").len(), 10);

    // Advoware answering with nothing at all is refused the same way.
    for fr_nr in &numbers[6..] {
        rig.advoware.user_delete(*fr_nr);
    }
    let (status, answer) = rig.run("SB").await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("listed no appointments"),
        "{answer}"
    );
    assert_eq!(rig.live_events("SB").len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sync_token_relists_and_keeps_every_link() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    for i in 0..5 {
        rig.advoware
            .insert_appointment(timed(&format!("T{i}"), 2 + i, "09:00:00", "10:00:00"));
    }
    rig.run_ok("SB").await;
    let before: Vec<Value> = rig.events("SB");
    rig.google.expire_sync_tokens();
    let changed = rig.advoware.appointments()[0]["frNr"].as_i64().unwrap();
    rig.advoware
        .user_update(changed, json!({ "text": "T0 neu" }));

    let report = rig.run_ok("SB").await;
    assert_eq!(report["full_listing"], true, "{report}");
    assert_eq!(report["google"]["created"], 0, "{report}");
    assert_eq!(report["google"]["deleted"], 0, "{report}");
    assert_eq!(report["google"]["updated"], 1, "{report}");
    let after = rig.events("SB");
    let ids = |events: &[Value]| events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "same events, none made anew");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusals_are_retried_and_the_run_completes() {
    let rig = CalendarRig::start(RigOptions {
        google: "user_requests_per_minute = 0\nmax_retries = 8\nretry_base_ms = 50".into(),
        ..RigOptions::default()
    })
    .await;
    for i in 0..12 {
        rig.advoware
            .insert_appointment(timed(&format!("T{i}"), 2 + i, "09:00:00", "10:00:00"));
    }
    // Google allows 5 calls per 500 ms for the mailbox; the host's bucket is off.
    rig.google.set_quotas(Quotas {
        window: Duration::from_millis(500),
        per_user: Some(5),
        per_project: None,
    });
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["created"], 12, "{report}");
    assert!(rig.google.quota_refusals() > 0, "the quota was hit");
    assert_eq!(rig.live_events("SB").len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_running_one_employee_run_it_once() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let rig = CalendarRig::start(RigOptions {
        key_prefix: Some(prefix.clone()),
        ..RigOptions::default()
    })
    .await;
    let second = rig.another_instance().await;
    for i in 0..5 {
        rig.advoware
            .insert_appointment(timed(&format!("T{i}"), 2 + i, "09:00:00", "10:00:00"));
    }
    // Slow Advoware keeps the first run inside its lock while the second asks.
    rig.advoware.set_latency(Duration::from_millis(300));
    let (one, two) = tokio::join!(CalendarRig::run_on(&rig.host, "SB"), async {
        // The second asks once the first holds the employee's lock.
        wait_for(Duration::from_secs(10), || async {
            keys_with_prefix(&prefix)
                .iter()
                .any(|k| k.ends_with("calendar_sync:lock:SB"))
                .then_some(())
        })
        .await;
        CalendarRig::run_on(&second, "SB").await
    });
    let mut statuses = [one.0, two.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{one:?} {two:?}");
    let skipped = if one.0 == 409 { &one.1 } else { &two.1 };
    assert_eq!(skipped["outcome"], "skipped");
    assert_eq!(rig.live_events("SB").len(), 5, "made once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_half_way_is_finished_by_the_next_without_doubles() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let rig = CalendarRig::start(RigOptions {
        key_prefix: Some(prefix.clone()),
        config: "write_to_advoware = true\nlock_ttl_s = 2".into(),
        ..RigOptions::default()
    })
    .await;
    let numbers: Vec<i64> = (0..30)
        .map(|i| {
            rig.advoware
                .insert_appointment(timed(&format!("T{i}"), 2 + i, "09:00:00", "10:00:00"))
        })
        .collect();
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    // Work for the run to be killed in: 30 changes in Advoware, 5 new events in Google.
    for fr_nr in &numbers {
        rig.advoware.user_update(*fr_nr, json!({ "ort": "Saal 9" }));
    }
    for i in 0..5 {
        rig.google.user_insert(&calendar, json!({
            "summary": format!("G{i}"),
            "start": { "dateTime": format!("{}T15:00:00+01:00", day(40 + i)), "timeZone": "Europe/Berlin" },
            "end": { "dateTime": format!("{}T16:00:00+01:00", day(40 + i)), "timeZone": "Europe/Berlin" },
        }));
    }

    // The same deployment as its own process, killed with -9 in the middle of a run.
    let mut process = rig.deployment.spawn("doomed", "127.0.0.1:0");
    let address = process.listening().await;
    rig.google.set_latency(Duration::from_millis(40));
    let client = reqwest::Client::new();
    let doomed = tokio::spawn(
        client
            .post(format!("http://{address}/advoware/calendar/sync/SB/now"))
            .header("apikey", API_KEY)
            .send(),
    );
    let writes_before = rig
        .google
        .calls()
        .iter()
        .filter(|c| c.method != "GET")
        .count();
    wait_for(Duration::from_secs(30), || async {
        let writes = rig
            .google
            .calls()
            .iter()
            .filter(|c| c.method != "GET")
            .count();
        (writes >= writes_before + 10).then_some(())
    })
    .await;
    process.kill();
    assert!(doomed.await.unwrap().is_err(), "the killed run answered");
    rig.google.set_latency(Duration::ZERO);
    let changed_before_kill = rig
        .live_events("SB")
        .iter()
        .filter(|e| e["location"] == "Saal 9")
        .count();
    assert!(
        changed_before_kill < 30,
        "the run was killed before it finished"
    );

    // Its lock expires; the next runs finish the work, each appointment once.
    wait_for(Duration::from_secs(10), || async {
        (!keys_with_prefix(&prefix)
            .iter()
            .any(|k| k.ends_with("calendar_sync:lock:SB")))
        .then_some(())
    })
    .await;
    for _ in 0..3 {
        let report = rig.run_ok("SB").await;
        if report["google"]["updated"] == 0 && report["advoware"]["created"] == 0 {
            break;
        }
    }
    let events = rig.live_events("SB");
    assert_eq!(
        events.len(),
        35,
        "30 from Advoware, 5 from Google, none twice"
    );
    for fr_nr in &numbers {
        let linked = by_fr_nr(&events, *fr_nr);
        assert_eq!(linked.len(), 1, "appointment {fr_nr}");
        assert_eq!(linked[0]["location"], "Saal 9");
    }
    let appointments = rig.advoware.appointments();
    for i in 0..5 {
        let imported = appointments
            .iter()
            .filter(|a| a["text"] == format!("G{i}"))
            .count();
        assert_eq!(imported, 1, "G{i} imported once");
    }
    let (google_calls, advoware_calls) =
        (rig.google.calls().len(), rig.advoware.api_requests().len());
    rig.run_ok("SB").await;
    assert_eq!(
        rig.writes_since(google_calls, advoware_calls),
        Vec::<String>::new()
    );
}

/// An audit or repair route, called with the firm's IT key (limited to them).
async fn admin(rig: &CalendarRig, method: reqwest::Method, path: &str) -> (u16, Value) {
    rig.call(OPERATOR_KEY, method, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_routes_find_and_repair_without_touching_the_rest() {
    use reqwest::Method;
    let rig = CalendarRig::start(RigOptions::default()).await;
    let kept = rig
        .advoware
        .insert_appointment(timed("Bleibt", 2, "09:00:00", "10:00:00"));
    let doubled = rig
        .advoware
        .insert_appointment(timed("Doppelt", 3, "09:00:00", "10:00:00"));
    let orphaned = rig
        .advoware
        .insert_appointment(timed("Verwaist", 4, "09:00:00", "10:00:00"));
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();

    // verify: says what a run would do, writes nothing.
    rig.advoware
        .user_update(kept, json!({ "text": "Bleibt (neu)" }));
    let (google_calls, advoware_calls) =
        (rig.google.calls().len(), rig.advoware.api_requests().len());
    let (status, verified) = admin(&rig, Method::GET, "/advoware/calendar/verify/SB").await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(
        verified["planned"],
        json!([{ "fr_nr": kept, "event_id": by_fr_nr(&rig.events("SB"), kept)[0]["id"], "action": "UpdateGoogle" }])
    );
    assert_eq!(verified["refused"], Value::Null);
    assert_eq!(
        rig.writes_since(google_calls, advoware_calls),
        Vec::<String>::new()
    );

    // duplicates: a copy linked to the same appointment is found, and deleted on request.
    let original = by_fr_nr(&rig.events("SB"), doubled)[0].clone();
    let mut copy = original.clone();
    for field in ["id", "etag", "created", "updated", "kind"] {
        copy.as_object_mut().unwrap().remove(field);
    }
    let copy_id = rig.google.user_insert(&calendar, copy);
    let (status, found) = admin(&rig, Method::GET, "/advoware/calendar/duplicates/SB").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["duplicates"][0]["fr_nr"], doubled);
    assert_eq!(
        found["duplicates"][0]["kept"], original["id"],
        "the derived id is kept"
    );
    assert_eq!(found["deleted"], json!([]));
    // Repairs need a key the tenant limited to them: the firm's ordinary key is refused.
    for path in [
        "/advoware/calendar/duplicates/SB",
        "/advoware/calendar/orphans/SB",
        "/advoware/calendar/locks/SB",
    ] {
        let (status, refused) = rig.call(API_KEY, Method::DELETE, path, None).await;
        assert_eq!(status, 403, "{path}: {refused}");
        assert_eq!(refused["error"], "forbidden");
        assert!(
            refused["message"].as_str().unwrap().contains("routes"),
            "{refused}"
        );
    }
    // The scope is the host's word: a client claiming it is not believed.
    let response = rig
        .host
        .client
        .delete(rig.host.url("/advoware/calendar/duplicates/SB"))
        .header("apikey", API_KEY)
        .header("x-bitbylaw-key-scope", "routes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (status, _) = rig
        .call(
            API_KEY,
            Method::GET,
            "/advoware/calendar/duplicates/SB",
            None,
        )
        .await;
    assert_eq!(status, 200, "reading is for every key");
    assert_eq!(
        by_fr_nr(&rig.live_events("SB"), doubled).len(),
        2,
        "nothing deleted"
    );
    let (_, repaired) = admin(&rig, Method::DELETE, "/advoware/calendar/duplicates/SB").await;
    assert_eq!(repaired["deleted"], json!([copy_id]));
    assert_eq!(by_fr_nr(&rig.live_events("SB"), doubled).len(), 1);

    // orphans: a linked event whose appointment is gone from Advoware.
    rig.advoware.user_delete(orphaned);
    let (_, found) = admin(&rig, Method::GET, "/advoware/calendar/orphans/SB").await;
    let orphan_id = by_fr_nr(&rig.events("SB"), orphaned)[0]["id"].clone();
    assert_eq!(found["orphans"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["orphans"][0]["event_id"], orphan_id);
    let (_, cleaned) = admin(&rig, Method::DELETE, "/advoware/calendar/orphans/SB").await;
    assert_eq!(cleaned["deleted"], json!([orphan_id]));
    assert_eq!(rig.live_events("SB").len(), 2);

    // lookup: both sides and what the sync stored.
    let (status, looked) = admin(
        &rig,
        Method::GET,
        &format!("/advoware/calendar/lookup/SB?fr_nr={kept}"),
    )
    .await;
    assert_eq!(status, 200, "{looked}");
    assert_eq!(looked["advoware"]["text"], "Bleibt (neu)");
    assert_eq!(looked["google"][0]["google"]["summary"], "Bleibt");
    assert_eq!(looked["google"][0]["stored"]["fr_nr"], kept);
    let (status, refused) =
        admin(&rig, Method::GET, "/advoware/calendar/lookup/SB?fr_nr=abc").await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("fr_nr"));

    // locks: a run holds one while it lasts; it can be released by hand.
    rig.advoware.set_latency(Duration::from_millis(500));
    let running = rig.spawn_run("SB");
    wait_for(Duration::from_secs(10), || async {
        let (_, locks) = admin(&rig, Method::GET, "/advoware/calendar/locks").await;
        (locks["held"] == json!(["SB"])).then_some(())
    })
    .await;
    // The run is live: freeing its lock is refused unless forced; forced,
    // the run stops before its next write (409) instead of writing beside another.
    let (status, live) = admin(&rig, Method::DELETE, "/advoware/calendar/locks/SB").await;
    assert_eq!(status, 409, "{live}");
    assert_eq!(live["error"], "live");
    let (_, released) = admin(
        &rig,
        Method::DELETE,
        "/advoware/calendar/locks/SB?force=true",
    )
    .await;
    assert_eq!(released, json!({ "kuerzel": "SB", "released": true }));
    assert_eq!(running.await.unwrap().0, 409);
    rig.advoware.set_latency(Duration::ZERO);
    let (_, locks) = admin(&rig, Method::GET, "/advoware/calendar/locks").await;
    assert_eq!(locks["held"], json!([]));

    // Bad input is named.
    let (status, answer) = rig.trigger(json!({ "kuerzel": "S B" })).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = rig.trigger(json!({ "kuerzel": "ZZ" })).await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().contains("mailbox"),
        "{answer}"
    );
    let (status, answer) = rig.trigger(json!({ "kuerzel": "SB", "full": true })).await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().contains("full"),
        "{answer}"
    );
    let (status, answer) = rig
        .trigger(json!({ "kuerzel": "sb", "full_content": false }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({ "status": "triggered", "kuerzel": "SB", "full_content": false, "message": "sync of SB triggered" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_syncs_every_employee_through_the_events_and_neutral_mode_hides_text() {
    let rig = CalendarRig::start(RigOptions {
        employees: vec![
            ("SB".into(), "sabine@kanzlei.example".into()),
            ("MK".into(), "markus@kanzlei.example".into()),
        ],
        ..RigOptions::default()
    })
    .await;
    rig.advoware
        .insert_appointment(timed("Mandant Müller", 2, "09:00:00", "10:00:00"));
    let mut for_mk = timed("Mandantin Schulz", 3, "11:00:00", "12:00:00");
    for_mk["kuerzel"] = json!("MK");
    rig.advoware.insert_appointment(for_mk);
    let (status, answer) = rig
        .trigger(json!({ "kuerzel": "ALL", "full_content": false }))
        .await;
    assert_eq!(status, 200, "{answer}");
    let reports = wait_for(Duration::from_secs(30), || async {
        let reports = rig.status().await;
        (reports.len() == 2 && reports.iter().all(|r| r["outcome"] == "ok")).then_some(reports)
    })
    .await;
    assert!(
        reports.iter().all(|r| r["google"]["created"] == 1),
        "{reports:?}"
    );
    for kuerzel in ["SB", "MK"] {
        let events = rig.live_events(kuerzel);
        assert_eq!(events.len(), 1, "{kuerzel}");
        assert_eq!(events[0]["summary"], "Termin", "neutral title");
        for text in ["description", "location"] {
            assert_eq!(
                events[0][text].as_str().unwrap_or_default(),
                "",
                "{}",
                events[0]
            );
        }
        assert_eq!(events[0]["transparency"], "opaque");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_subcommand_prints_what_the_routes_answer() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    rig.advoware
        .insert_appointment(timed("Frist", 2, "09:00:00", "10:00:00"));
    let url = rig.host.url("");
    let cli = |key: &str, args: &[&str]| {
        let output = std::process::Command::new(bitbylaw_tests::host_binary())
            .args(["calendar", "--url", &url, "--api-key", key])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| cli(API_KEY, &["run", "SB"]));
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["google"]["created"], 1, "{out}");
    let (code, out, err) = tokio::task::block_in_place(|| cli(API_KEY, &["status"]));
    assert_eq!(code, Some(0), "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["employees"][0]["kuerzel"], "SB", "{out}");
    let (code, out, _) = tokio::task::block_in_place(|| cli(API_KEY, &["verify", "SB"]));
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["planned"],
        json!([])
    );
    let (code, _, err) = tokio::task::block_in_place(|| cli(API_KEY, &["unlock", "SB"]));
    assert_eq!(code, Some(2), "a refusal is an error");
    assert!(err.contains("403") && err.contains("routes"), "{err}");
    let (code, _, err) = tokio::task::block_in_place(|| cli(OPERATOR_KEY, &["unlock", "ZZ"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("400") && err.contains("mailbox"), "{err}");
    let (code, out, err) = tokio::task::block_in_place(|| cli(OPERATOR_KEY, &["unlock", "SB"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("\"released\": false"),
        "no run holds it: {out}"
    );
}

/// Both sides change one appointment between runs: Advoware's version first, Google's a moment later.
async fn conflict(policy: &str) -> (Value, Value, Value) {
    let rig = CalendarRig::start(RigOptions {
        config: format!("write_to_advoware = true\nconflict_policy = \"{policy}\""),
        ..RigOptions::default()
    })
    .await;
    let fr_nr = rig
        .advoware
        .insert_appointment(timed("Termin", 2, "09:00:00", "10:00:00"));
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let id = by_fr_nr(&rig.events("SB"), fr_nr)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    rig.advoware
        .user_update(fr_nr, json!({ "text": "Termin (Advoware)" }));
    rig.google
        .user_update(&calendar, &id, json!({ "summary": "Termin (Google)" }));
    let report = rig.run_ok("SB").await;
    let advoware = rig
        .advoware
        .appointments()
        .into_iter()
        .find(|a| a["frNr"] == fr_nr)
        .unwrap();
    let google = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    (report, advoware, google)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_follow_the_tenants_policy() {
    let (report, advoware, google) = conflict("advoware_wins").await;
    assert_eq!(report["conflicts"], 1, "{report}");
    assert_eq!(advoware["text"], "Termin (Advoware)");
    assert_eq!(
        google["summary"], "Termin (Advoware)",
        "Advoware wins by default"
    );

    let (report, advoware, google) = conflict("last_change_wins").await;
    assert_eq!(report["conflicts"], 1, "{report}");
    assert_eq!(advoware["text"], "Termin (Google)", "Google changed last");
    assert_eq!(google["summary"], "Termin (Google)");
}
