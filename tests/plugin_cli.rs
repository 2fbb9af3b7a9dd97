//! `bitbylaw plugin inspect`: what a component is and whether this host
//! serves it, from the binary as an author runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bitbylaw_tests::{component, host_binary};
use serde_json::Value;

fn inspect(name: &str, json: bool) -> (bool, String) {
    let mut command = Command::new(host_binary());
    command.args(["plugin", "inspect"]).arg(component(name));
    if json {
        command.arg("--json");
    }
    let cache = tempfile::tempdir().unwrap();
    let output = command
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_plugin_is_described_with_its_world_and_imports() {
    let (ok, text) = inspect("hello", false);
    assert!(ok, "{text}");
    for expected in [
        "built for bitbylaw:plugin@0.1.0; this host serves bitbylaw:plugin@0.1.0",
        "fits: yes",
        "plugin hello",
        "GET /hello/{name}",
        "hello.note-saved",
        "bitbylaw:plugin/kv@0.1.0",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    let (ok, json) = inspect("calendar-sync", true);
    assert!(ok, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["name"], "calendar-sync");
    assert_eq!(json["fits"], true);
    assert!(
        json["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("0 */15 * * * *")),
        "{json}"
    );
    assert!(
        json["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "bitbylaw:plugin/google-calendar@0.1.0"),
        "{json}"
    );
}

#[test]
fn a_component_that_does_not_fit_gets_one_clear_message() {
    let (ok, text) = inspect("other-world", false);
    assert!(!ok, "{text}");
    assert!(text.contains("fits: no"), "{text}");
    assert!(text.contains("cannot be served by this host"), "{text}");
}
