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

/// The target folder of this build, for the new plugin's own (kept apart
/// from the workspace's, so the two builds never wait for each other).
fn scaffold_target() -> std::path::PathBuf {
    host_binary()
        .parent()
        .and_then(|debug| debug.parent())
        .unwrap()
        .join("plugin-new")
}

/// `plugin new` outside a checkout, then `plugin build` (the component
/// checked against this host's world), then the new plugin's own tests.
#[test]
fn a_new_plugin_builds_fits_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
    let plugin = dir.path().join("lead-desk");
    let made = Command::new(host_binary())
        .args(["plugin", "new", "lead-desk", "--dir"])
        .arg(&plugin)
        .arg("--sdk")
        .arg(&sdk)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(plugin.join(file).exists(), "{file}");
    }

    let built = Command::new(host_binary())
        .args(["plugin", "build"])
        .current_dir(&plugin)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for expected in [
        "fits: yes",
        "plugin lead-desk 0.1.0",
        "GET /lead-desk/hello/{name}",
        "lead_desk.greeted",
        "lead_desk_tick 0 */5 * * * *",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }

    let tested = Command::new("cargo")
        .arg("test")
        .current_dir(&plugin)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(text.contains("test tests::greets_by_name ... ok"), "{text}");
}

#[test]
fn a_new_plugin_needs_a_good_name_an_empty_folder_and_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let new = |name: &str, sdk: bool| {
        let mut command = Command::new(host_binary());
        command
            .args(["plugin", "new", name])
            .current_dir(dir.path());
        if sdk {
            command
                .arg("--sdk")
                .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk"));
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, error) = new("Lead_Desk", true);
    assert!(!ok && error.contains("lower case letters"), "{error}");
    let (ok, error) = new("leads", false);
    assert!(!ok && error.contains("--sdk"), "{error}");
    assert!(!dir.path().join("leads").exists(), "nothing left behind");
    assert!(new("leads", true).0);
    let (ok, error) = new("leads", true);
    assert!(!ok && error.contains("is not empty"), "{error}");
}
