//! `calendar-sync` never duplicates, reassigns, erases or overexposes a
//! firm's appointments in the cases a firm meets in its first weeks: imports
//! answered with only a number, firm-wide and private appointments, fields
//! the sync does not own (Advoware's `PUT` replaces the record here), request
//! overrides, operator keys, one form of employee codes, a second run beside
//! a live one, appointments that come back or move to another employee.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw_tests::calendar::{
    API_KEY, CalendarRig, OPERATOR_KEY, RigOptions, berlin, by_fr_nr, day, timed,
};
use bitbylaw_tests::wait_for;
use serde_json::{Value, json};

fn two_employees(config: &str) -> RigOptions {
    RigOptions {
        employees: vec![
            ("SB".into(), "sabine@kanzlei.example".into()),
            ("MK".into(), "markus@kanzlei.example".into()),
        ],
        config: config.into(),
        ..RigOptions::default()
    }
}

/// A timed Google event made by a person, `days` from today, 15:00 to 16:00.
fn google_event(title: &str, days: u64) -> Value {
    json!({
        "summary": title,
        "start": { "dateTime": format!("{}T15:00:00+01:00", day(days)), "timeZone": "Europe/Berlin" },
        "end": { "dateTime": format!("{}T16:00:00+01:00", day(days)), "timeZone": "Europe/Berlin" },
    })
}

fn writes(report: &Value) -> u64 {
    ["google", "advoware"]
        .iter()
        .flat_map(|side| {
            ["created", "updated", "deleted", "restored", "linked"]
                .map(|k| report[side][k].as_u64().unwrap_or(0))
        })
        .sum()
}

/// Item 1: Advoware's `POST appointments` answers `{"frNr": N}` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_answered_with_only_its_number_is_linked_once_even_when_changed_before_the_next_run()
 {
    let rig = CalendarRig::start(RigOptions::default()).await;
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let event = rig
        .google
        .user_insert(&calendar, google_event("Termin aus Google", 5));

    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["created"], 1, "{report}");
    assert_eq!(report["google"]["linked"], 1, "{report}");
    let appointments = rig.advoware.appointments();
    assert_eq!(appointments.len(), 1, "{appointments:?}");
    let fr_nr = appointments[0]["frNr"].as_i64().unwrap();
    assert_eq!(appointments[0]["text"], "Termin aus Google");
    let linked = by_fr_nr(&rig.live_events("SB"), fr_nr);
    assert_eq!(linked.len(), 1);
    assert_eq!(
        linked[0]["id"],
        event.as_str(),
        "the person's event, linked"
    );

    // Changed in Advoware before the next run: followed, never imported again.
    rig.advoware
        .user_update(fr_nr, json!({ "text": "in Advoware umbenannt" }));
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["created"], 0, "{report}");
    assert_eq!(rig.advoware.appointments().len(), 1);
    let events = rig.live_events("SB");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["summary"], "in Advoware umbenannt");
    assert_eq!(writes(&rig.run_ok("SB").await), 0, "quiet");
}

/// Item 2: a firm-wide appointment (`ALLE`) is everyone's; one calendar's
/// change or deletion is put back from Advoware, never reassigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firm_wide_appointment_changed_or_deleted_in_one_calendar_is_put_back_not_reassigned() {
    let rig = CalendarRig::start(two_employees("write_to_advoware = true")).await;
    let mut all = timed("Betriebsausflug", 6, "10:00:00", "17:00:00");
    all["kuerzel"] = json!("ALLE");
    all["anwalt"] = json!("ALLE");
    let fr_nr = rig.advoware.insert_appointment(all);
    for kuerzel in ["SB", "MK"] {
        assert_eq!(rig.run_ok(kuerzel).await["google"]["created"], 1);
    }
    let sb_calendar = rig.calendar_id("SB").unwrap();
    let sb_event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    rig.google.user_update(
        &sb_calendar,
        sb_event["id"].as_str().unwrap(),
        json!({ "summary": "Nur Sabine", "location": "Zuhause" }),
    );
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["restored"], 1, "{report}");
    assert_eq!(report["advoware"]["updated"], 0, "{report}");
    let stored = rig.advoware.appointment(fr_nr).unwrap();
    assert_eq!(
        (&stored["kuerzel"], &stored["anwalt"], &stored["text"]),
        (&json!("ALLE"), &json!("ALLE"), &json!("Betriebsausflug"))
    );
    assert_eq!(
        by_fr_nr(&rig.live_events("SB"), fr_nr)[0]["summary"],
        "Betriebsausflug"
    );

    // Deleted in one calendar: restored there, kept in Advoware and in the other calendar.
    rig.google
        .user_delete(&sb_calendar, sb_event["id"].as_str().unwrap());
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["deleted"], 0, "{report}");
    assert_eq!(report["google"]["restored"], 1, "{report}");
    assert_eq!(rig.advoware.appointments().len(), 1);
    assert_eq!(by_fr_nr(&rig.live_events("SB"), fr_nr).len(), 1);
    assert_eq!(
        by_fr_nr(&rig.live_events("MK"), fr_nr)[0]["summary"],
        "Betriebsausflug"
    );
    for kuerzel in ["SB", "MK"] {
        assert_eq!(writes(&rig.run_ok(kuerzel).await), 0, "{kuerzel} quiet");
    }
}

/// Item 3: Advoware's `PUT` replaces the record (the simulator's default);
/// Google's `update` would replace the event. Neither side loses a field the
/// sync does not own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_sync_does_not_own_survive_on_both_sides() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    let mut appointment = timed("Mandant Weber", 4, "09:00:00", "10:00:00");
    appointment["erinnerung"] = json!(15);
    appointment["aktenzeichen"] = json!("123/26");
    let fr_nr = rig.advoware.insert_appointment(appointment);
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let event_id = by_fr_nr(&rig.live_events("SB"), fr_nr)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let personal = json!({
        "attendees": [{ "email": "weber@example.de", "responseStatus": "accepted" }],
        "reminders": { "useDefault": false, "overrides": [{ "method": "popup", "minutes": 30 }] },
        "colorId": "5",
        "visibility": "confidential",
        "conferenceData": { "conferenceId": "abc-defg-hij" },
        "attachments": [{ "fileUrl": "https://drive.example/akte.pdf", "title": "Akte" }],
    });
    let mut change = personal.clone();
    change["summary"] = json!("Mandant Weber (Videocall)");
    rig.google.user_update(&calendar, &event_id, change);

    // Google's title goes to Advoware; the record keeps what the sync does not own.
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["updated"], 1, "{report}");
    let stored = rig.advoware.appointment(fr_nr).unwrap();
    assert_eq!(stored["text"], "Mandant Weber (Videocall)");
    assert_eq!(stored["erinnerung"], 15, "{stored}");
    assert_eq!(stored["aktenzeichen"], "123/26", "{stored}");
    assert_eq!(stored["kuerzel"], "SB");
    assert_eq!(stored["notiz"], "Notiz zu Mandant Weber");

    // Advoware's change goes to Google; the event keeps what the person set.
    rig.advoware.user_update(
        fr_nr,
        json!({ "uhrzeitVon": "11:00:00", "uhrzeitBis": "12:00:00" }),
    );
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["updated"], 1, "{report}");
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    for (field, value) in personal.as_object().unwrap() {
        assert_eq!(&event[field], value, "{field} kept: {event}");
    }
    assert_eq!(event["summary"], "Mandant Weber (Videocall)");
    assert_eq!(berlin(&event["start"]), format!("{} 11:00", day(4)));
    assert_eq!(writes(&rig.run_ok("SB").await), 0, "quiet");
}

/// Item 4: `privat` appointments reach Google as busy time only, private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_appointment_reaches_google_without_its_content() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    let mut appointment = timed("Arzttermin", 3, "08:00:00", "09:00:00");
    appointment["privat"] = json!(1);
    appointment["ort"] = json!("Praxis Dr. Roth");
    let fr_nr = rig.advoware.insert_appointment(appointment);
    let report = rig.run_ok("SB").await;
    assert_eq!(report["full_content"], true);
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    assert_eq!(event["summary"], "Termin", "{event}");
    assert_eq!(event["description"].as_str().unwrap_or_default(), "");
    assert_eq!(event["location"].as_str().unwrap_or_default(), "");
    assert_eq!(event["visibility"], "private");
    let text = event.to_string();
    assert!(
        !text.contains("Arzt") && !text.contains("Roth"),
        "nothing of the content: {text}"
    );

    // A time moved in Google goes to Advoware; the neutral title does not.
    let calendar = rig.calendar_id("SB").unwrap();
    rig.google.user_update(
        &calendar,
        event["id"].as_str().unwrap(),
        json!({
            "summary": "Privat",
            "start": { "dateTime": format!("{}T08:30:00+01:00", day(3)), "timeZone": "Europe/Berlin" },
            "end": { "dateTime": format!("{}T09:30:00+01:00", day(3)), "timeZone": "Europe/Berlin" },
        }),
    );
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["updated"], 1, "{report}");
    let stored = rig.advoware.appointments()[0].clone();
    assert_eq!(
        (&stored["text"], &stored["uhrzeitVon"]),
        (&json!("Arzttermin"), &json!("08:30:00"))
    );
    assert_eq!(
        by_fr_nr(&rig.live_events("SB"), fr_nr)[0]["summary"],
        "Termin"
    );

    // No longer private: the content comes, and the default visibility.
    rig.advoware.user_update(fr_nr, json!({ "privat": 0 }));
    rig.run_ok("SB").await;
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    assert_eq!(event["summary"], "Arzttermin");
    assert_eq!(event["location"], "Praxis Dr. Roth");
    assert_eq!(event["visibility"], "default");
    assert_eq!(writes(&rig.run_ok("SB").await), 0, "quiet");
}

/// Item 5: a request may ask for less content than the tenant's setting, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_can_narrow_full_content_never_widen_it() {
    let rig = CalendarRig::start(RigOptions {
        config: "write_to_advoware = true\nfull_content = false".into(),
        ..RigOptions::default()
    })
    .await;
    let fr_nr =
        rig.advoware
            .insert_appointment(timed("Mandant Vertraulich", 2, "09:00:00", "10:00:00"));
    let (status, report) = rig.run_asking("SB", json!({ "full_content": true })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["full_content"], false, "{report}");
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    assert_eq!(event["summary"], "Termin", "{event}");
    let (status, answer) = rig
        .call(
            API_KEY,
            reqwest::Method::POST,
            "/advoware/calendar/sync",
            Some(json!({ "kuerzel": "SB", "full_content": true })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["full_content"], false, "{answer}");

    // The other way round: a tenant with full content, a request for less.
    let rig = CalendarRig::start(RigOptions::default()).await;
    let fr_nr = rig
        .advoware
        .insert_appointment(timed("Mandant Offen", 2, "09:00:00", "10:00:00"));
    let (status, report) = rig.run_asking("SB", json!({ "full_content": false })).await;
    assert_eq!((status, &report["full_content"]), (200, &json!(false)));
    assert_eq!(
        by_fr_nr(&rig.live_events("SB"), fr_nr)[0]["summary"],
        "Termin"
    );
}

/// Item 6: `sb` in the settings and `SB` in a route are one employee: one
/// lock, one state, one status entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn employee_codes_are_one_form_everywhere() {
    let rig = CalendarRig::start(RigOptions {
        employees: vec![("sb".into(), "sabine@kanzlei.example".into())],
        config: "write_to_advoware = true\nemployees = [\"sb\"]".into(),
        ..RigOptions::default()
    })
    .await;
    rig.advoware
        .insert_appointment(timed("Frist", 2, "09:00:00", "10:00:00"));
    let (status, answer) = rig.trigger(json!({ "kuerzel": "ALL" })).await;
    assert_eq!(status, 200, "{answer}");
    let reports = wait_for(Duration::from_secs(30), || async {
        let reports = rig.status().await;
        (reports.iter().any(|r| r["outcome"] == "ok")).then_some(reports)
    })
    .await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["kuerzel"], "SB");
    let report = rig.run_ok("sb").await;
    assert_eq!(report["kuerzel"], "SB");
    assert_eq!(
        report["full_listing"], false,
        "the route's run continues the schedule's state: {report}"
    );
    assert_eq!(writes(&report), 0);
    let reports = rig.status().await;
    assert_eq!(
        reports
            .iter()
            .map(|r| r["kuerzel"].clone())
            .collect::<Vec<_>>(),
        [json!("SB")]
    );
}

/// Item 6: an operator frees the lock of a live run and a second run starts
/// while the first is between its reads and its writes. The first stops
/// before its next write; nothing is made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_beside_a_live_one_makes_no_second_appointment_or_event() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    rig.google
        .user_insert(&calendar, google_event("Aus Google", 7));
    let fr_nr = rig
        .advoware
        .insert_appointment(timed("Aus Advoware", 8, "09:00:00", "10:00:00"));

    rig.advoware.hold_listings(true);
    let first = rig.spawn_run("SB");
    wait_for(Duration::from_secs(20), || async {
        (rig.advoware.held_listings() == 1).then_some(())
    })
    .await;
    let response = rig
        .host
        .client
        .delete(rig.host.url("/advoware/calendar/locks/SB?force=true"))
        .header("apikey", OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = rig.spawn_run("SB");
    wait_for(Duration::from_secs(20), || async {
        (rig.advoware.held_listings() == 2).then_some(())
    })
    .await;
    rig.advoware.hold_listings(false);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.0, 409, "the first run lost its lock: {first:?}");
    assert!(
        first.1["message"]
            .as_str()
            .unwrap()
            .contains("lost its lock"),
        "{first:?}"
    );
    assert_eq!(second.0, 200, "{second:?}");

    let appointments = rig.advoware.appointments();
    assert_eq!(
        appointments.len(),
        2,
        "one import, no second: {appointments:#?}"
    );
    let events = rig.live_events("SB");
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(by_fr_nr(&events, fr_nr).len(), 1);
    assert_eq!(writes(&rig.run_ok("SB").await), 0, "quiet after");
}

/// Item 8: an appointment deleted in Advoware and back under its number is
/// restored once, then the runs are quiet (the entry marked gone is cleared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_that_comes_back_is_restored_once_not_every_run() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    // Advoware is never empty (an empty answer beside linked events stops a run).
    rig.advoware
        .insert_appointment(timed("Anker", 1, "08:00:00", "08:15:00"));
    let mut appointment = timed("Wiedervorlage", 3, "09:00:00", "10:00:00");
    let fr_nr = rig.advoware.insert_appointment(appointment.clone());
    rig.run_ok("SB").await;
    assert!(rig.advoware.user_delete(fr_nr));
    assert_eq!(rig.run_ok("SB").await["google"]["deleted"], 1);
    appointment["frNr"] = json!(fr_nr);
    rig.advoware.insert_appointment(appointment);
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["restored"], 1, "{report}");
    for _ in 0..2 {
        let report = rig.run_ok("SB").await;
        assert_eq!(writes(&report), 0, "{report}");
    }
    assert_eq!(by_fr_nr(&rig.live_events("SB"), fr_nr).len(), 1);
}

/// Item 8: an appointment given to another employee in Advoware leaves the
/// old employee's calendar and appears in the new one, once; Advoware keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_given_to_another_employee_moves_calendars_once() {
    let rig = CalendarRig::start(two_employees("write_to_advoware = true")).await;
    rig.advoware
        .insert_appointment(timed("Anker", 1, "08:00:00", "08:15:00"));
    let fr_nr = rig
        .advoware
        .insert_appointment(timed("Übergabe", 5, "09:00:00", "10:00:00"));
    rig.run_ok("SB").await;
    rig.run_ok("MK").await;
    assert_eq!(by_fr_nr(&rig.live_events("SB"), fr_nr).len(), 1);
    rig.advoware
        .user_update(fr_nr, json!({ "kuerzel": "MK", "anwalt": "MK" }));
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["deleted"], 1, "{report}");
    assert_eq!(report["advoware"]["deleted"], 0, "{report}");
    let report = rig.run_ok("MK").await;
    assert_eq!(report["google"]["created"], 1, "{report}");
    for kuerzel in ["SB", "MK"] {
        assert_eq!(writes(&rig.run_ok(kuerzel).await), 0, "{kuerzel} quiet");
    }
    assert!(by_fr_nr(&rig.live_events("SB"), fr_nr).is_empty());
    assert_eq!(by_fr_nr(&rig.live_events("MK"), fr_nr).len(), 1);
    let moved = rig.advoware.appointment(fr_nr).expect("Advoware keeps it");
    assert_eq!(moved["kuerzel"], "MK");
}

/// The last Sunday of October after tomorrow (within the sync's year ahead):
/// 02:00 to 03:00 happens twice that night.
fn next_autumn_change() -> chrono::NaiveDate {
    use chrono::Datelike;
    let tomorrow = bitbylaw_tests::calendar::today() + chrono::Days::new(1);
    (tomorrow.year()..=tomorrow.year() + 1)
        .map(|year| {
            let last = chrono::NaiveDate::from_ymd_opt(year, 10, 31).unwrap();
            last - chrono::Days::new(u64::from(last.weekday().num_days_from_sunday()))
        })
        .find(|day| *day > tomorrow)
        .unwrap()
}

/// Item 9: an event in the second 02:30 of the autumn night (winter time) is
/// imported as 02:30, and a later change in Advoware does not move it to the
/// first 02:30 (summer time): Google's start is left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_the_repeated_autumn_hour_keeps_its_offset() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    rig.advoware
        .insert_appointment(timed("Anker", 1, "08:00:00", "08:15:00"));
    rig.run_ok("SB").await;
    let calendar = rig.calendar_id("SB").unwrap();
    let night = next_autumn_change();
    let id = rig.google.user_insert(
        &calendar,
        json!({
            "summary": "Bereitschaft",
            "start": { "dateTime": format!("{night}T02:30:00+01:00"), "timeZone": "Europe/Berlin" },
            "end": { "dateTime": format!("{night}T03:30:00+01:00"), "timeZone": "Europe/Berlin" },
        }),
    );
    let instant = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["created"], 1, "{report}");
    let made = rig
        .advoware
        .appointments()
        .into_iter()
        .find(|a| a["text"] == "Bereitschaft")
        .unwrap();
    assert_eq!(made["uhrzeitVon"], "02:30:00");
    rig.advoware.user_update(
        made["frNr"].as_i64().unwrap(),
        json!({ "text": "Bereitschaft (Notdienst)" }),
    );
    let report = rig.run_ok("SB").await;
    assert_eq!(report["google"]["updated"], 1, "{report}");
    let event = rig
        .live_events("SB")
        .into_iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap();
    assert_eq!(event["summary"], "Bereitschaft (Notdienst)");
    assert_eq!(
        instant(&event["start"]["dateTime"]),
        format!("{night}T01:30"),
        "still 02:30 winter time: {event}"
    );
    assert_eq!(writes(&rig.run_ok("SB").await), 0, "quiet");
}

/// Found in review: a run asked for less content writes the neutral view; a
/// time moved in Google afterwards goes to Advoware with a full run, the
/// neutral title and empty notes never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neutral_view_changed_in_google_never_writes_its_text_to_advoware() {
    let rig = CalendarRig::start(RigOptions::default()).await;
    let fr_nr = rig
        .advoware
        .insert_appointment(timed("Mandant Krause", 4, "09:00:00", "10:00:00"));
    let (status, report) = rig.run_asking("SB", json!({ "full_content": false })).await;
    assert_eq!(status, 200, "{report}");
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    assert_eq!(event["summary"], "Termin");
    rig.google.user_update(
        &rig.calendar_id("SB").unwrap(),
        event["id"].as_str().unwrap(),
        json!({
            "start": { "dateTime": format!("{}T13:00:00+01:00", day(4)), "timeZone": "Europe/Berlin" },
            "end": { "dateTime": format!("{}T14:00:00+01:00", day(4)), "timeZone": "Europe/Berlin" },
        }),
    );
    let report = rig.run_ok("SB").await;
    assert_eq!(report["advoware"]["updated"], 1, "{report}");
    let stored = rig.advoware.appointment(fr_nr).unwrap();
    assert_eq!(stored["uhrzeitVon"], "13:00:00", "the time went");
    assert_eq!(
        (&stored["text"], &stored["notiz"], &stored["ort"]),
        (
            &json!("Mandant Krause"),
            &json!("Notiz zu Mandant Krause"),
            &json!("LG Berlin")
        ),
        "the text stayed: {stored}"
    );
    let event = by_fr_nr(&rig.live_events("SB"), fr_nr)[0].clone();
    assert_eq!(event["summary"], "Mandant Krause", "full content again");
}
