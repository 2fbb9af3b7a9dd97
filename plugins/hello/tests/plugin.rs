//! hello as a tenant runs it, in the plugin test harness: the built
//! component in an embedded host, its event handled by the host's delivery.

use bitbylaw_testing::{Harness, this_plugin};

/// A saved note is stored, announced, and recorded by the plugin's own handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_note_is_stored_announced_and_recorded() -> anyhow::Result<()> {
    let harness = Harness::builder().plugin(this_plugin!()).start().await?;

    let put = harness
        .send(
            harness
                .request(bitbylaw_testing::Method::PUT, "/hello/notes/n-1")
                .json(&serde_json::json!({ "text": "Akte anlegen" })),
        )
        .await?;
    assert_eq!(put.status, 200, "{}", put.text());
    harness.settle().await?;

    assert_eq!(harness.emitted_text("hello.note-saved"), ["n-1"]);
    let kv = harness.kv("hello");
    assert_eq!(kv.members("saved").await?, ["n-1"]);
    assert_eq!(
        kv.get_string("note:n-1").await?.as_deref(),
        Some(r#"{"text":"Akte anlegen"}"#)
    );
    let read = harness.get("/hello/notes/n-1").await?;
    assert_eq!(read.json()["text"], "Akte anlegen");
    Ok(())
}

/// The greeting comes from the tenant's config, and each visit is counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greets_with_the_configured_greeting_and_counts_visits() -> anyhow::Result<()> {
    let harness = Harness::builder()
        .plugin(this_plugin!().config("greeting", "Guten Tag"))
        .start()
        .await?;
    for visits in 1..=2 {
        let reply = harness.get("/hello/Ada").await?;
        assert_eq!(reply.json()["message"], "Guten Tag, Ada!");
        assert_eq!(reply.json()["visits"], visits);
    }
    let empty = harness
        .send(
            harness
                .request(bitbylaw_testing::Method::PUT, "/hello/notes/n-2")
                .json(&serde_json::json!({ "text": "" })),
        )
        .await?;
    assert_eq!(empty.status, 400, "{}", empty.text());
    assert!(
        harness.emitted().is_empty(),
        "a refused note announces nothing"
    );
    let greeted: Vec<_> = harness
        .logs()
        .into_iter()
        .filter(|line| line.target == "plugin" && line.message == "greeted Ada")
        .collect();
    assert_eq!(greeted.len(), 2, "{greeted:?}");
    Ok(())
}
