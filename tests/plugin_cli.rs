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

/// A plugin built for a world this host does not load gets one message
/// naming both worlds, from `inspect` as from a tenant load.
#[test]
fn a_component_of_a_later_world_is_named_as_such() {
    let (ok, text) = inspect("future-world", false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("built for bitbylaw:plugin@0.9.0; this host serves bitbylaw:plugin@0.1.0"),
        "{text}"
    );
    assert!(
        text.contains("built for bitbylaw:plugin@0.9.0, a world this host does not load (it loads bitbylaw:plugin@0.1.0)"),
        "{text}"
    );
}

/// The target folder of this build: the new plugin has the workspace's
/// profiles and resolved versions, so it reuses what the workspace built.
fn scaffold_target() -> std::path::PathBuf {
    host_binary()
        .parent()
        .and_then(|debug| debug.parent())
        .unwrap()
        .to_owned()
}

/// `plugin new` outside a checkout, then `plugin build` (the component
/// checked against this host's world), then the new plugin's own tests (its
/// harness test included), then `bitbylaw dev` on it: a change is served, a
/// broken build is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_builds_fits_passes_its_own_tests_and_serves_in_dev() {
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
    assert!(
        text.contains("test a_greeting_is_answered_announced_and_counted ... ok"),
        "{text}"
    );

    dev_serves_changes_and_keeps_the_last_good_build(&plugin).await;
}

/// `bitbylaw dev` in the plugin's folder: serves it, swaps in a changed
/// build, and keeps serving that one when the next build fails.
async fn dev_serves_changes_and_keeps_the_last_good_build(plugin: &std::path::Path) {
    let mut dev = DevProcess::spawn(plugin);
    let listening = dev.wait_for("listening on http://");
    let address = listening
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let routes = dev.wait_for("serving lead-desk 0.1.0");
    assert!(routes.contains("serving lead-desk 0.1.0"), "{routes}");
    let greet = || async {
        let answer = reqwest::Client::new()
            .get(format!("http://{address}/lead-desk/hello/Ada"))
            .header("apikey", "dev-key")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json::<Value>().await.unwrap()["greeting"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(greet().await, "Hallo, Ada!");

    let source = plugin.join("src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    bitbylaw_tests::replace_file(&source, &text.replace("Hallo, {name}!", "Servus, {name}!"));
    dev.wait_for("[dev] reloaded");
    assert_eq!(greet().await, "Servus, Ada!");

    bitbylaw_tests::replace_file(&source, &format!("{text}\nfn broken( {{\n"));
    let failed = dev.wait_for("build failed");
    assert!(
        failed.contains("still serving the last good version"),
        "{failed}"
    );
    assert_eq!(greet().await, "Servus, Ada!");
}

/// `bitbylaw dev` as its own process, its lines read as they come.
struct DevProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl DevProcess {
    fn spawn(plugin: &std::path::Path) -> Self {
        let mut child = Command::new(host_binary())
            .args(["dev", "--listen", "127.0.0.1:0", "--poll-ms", "100"])
            .current_dir(plugin)
            .env("CARGO_TARGET_DIR", scaffold_target())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// The first new line containing `text` (builds take minutes at most).
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        tokio::task::block_in_place(|| {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => {
                        self.seen.push_str(&line);
                        self.seen.push('\n');
                        if line.contains(text) {
                            return line;
                        }
                    }
                    Err(_) => panic!("`{text}` not printed within 300 s; so far:\n{}", self.seen),
                }
            }
        })
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
