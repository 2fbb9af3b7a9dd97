//! What `deploy/` hands an operator, checked with the tools that will read it:
//! the systemd unit (`systemd-analyze verify`, and its environment against the
//! host file), the Prometheus rules (`promtool check rules`, `promtool test
//! rules`), and every metric the rules and the Grafana dashboard name, against
//! the `/metrics` of a running host. `scripts/ensure-tools.sh` installs the
//! tools on a fresh machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bitbylaw_tests::{Backend, TestHost};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/ensure-tools.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The unit as systemd reads it, with the binary of this build where the
/// unit expects the installed one (verify checks that it exists).
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(deploy("systemd/bitbylaw.service")).unwrap();
    for option in [
        "Restart=always",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Type=notify",
        "LoadCredential=",
        "StateDirectory=",
        "CacheDirectory=",
    ] {
        assert!(unit.contains(option), "the unit lacks {option}");
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = bitbylaw_tests::host_binary();
    let copy = dir.path().join("bitbylaw.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/bitbylaw", &binary.display().to_string()),
    )
    .unwrap();
    let text = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(
        text.trim().is_empty(),
        "systemd-analyze has remarks:\n{text}"
    );
}

/// The unit's `BITBYLAW_*` settings are keys of the host file, and its
/// example host file loads with them; the credentials it names are the ones
/// the unit loads.
#[test]
fn the_units_environment_and_credentials_fit_its_host_file() {
    let unit = std::fs::read_to_string(deploy("systemd/bitbylaw.service")).unwrap();
    let env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| name.starts_with("BITBYLAW_"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    assert!(env.len() >= 3, "{env:?}");
    let host = bitbylaw::config::load_host(&deploy("systemd/host.toml"), env).unwrap();
    assert_eq!(host.tenants_dir, Path::new("/var/lib/bitbylaw/tenants"));
    let loaded: BTreeSet<&str> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("LoadCredential="))
        .filter_map(|spec| spec.split_once(':').map(|(name, _)| name))
        .collect();
    let text = std::fs::read_to_string(deploy("systemd/host.toml")).unwrap();
    for named in text.split("/run/credentials/bitbylaw.service/").skip(1) {
        let name: String = named
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert!(
            loaded.contains(name.as_str()),
            "host.toml reads credential `{name}`, the unit loads {loaded:?}"
        );
    }
}

#[test]
fn the_alert_rules_check_and_their_unit_tests_pass() {
    let dir = deploy("prometheus");
    run(Command::new("promtool")
        .args(["check", "rules", "bitbylaw-rules.yml"])
        .current_dir(&dir));
    let text = run(Command::new("promtool")
        .args(["test", "rules", "bitbylaw-rules.test.yml"])
        .current_dir(&dir));
    assert!(text.contains("SUCCESS"), "{text}");
}

/// The sample names a host exports, from the `# TYPE` lines of `/metrics`
/// (a family is listed before it has a series).
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `bitbylaw_*` name in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("bitbylaw_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_rules_name_is_exported() {
    let app = TestHost::builder(Backend::Redis)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.hello]\ncomponent = \"{component:hello}\"\n",
        )
        .start()
        .await;
    let exported = exported(&app.metrics().await);
    let rules = std::fs::read_to_string(deploy("prometheus/bitbylaw-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/bitbylaw.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let names = named(text);
        assert!(names.len() > 5, "{file}: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics the host does not export: {missing:?}\nexported: {exported:?}"
        );
    }
}
