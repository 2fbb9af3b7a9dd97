//! The `bitbylaw` binary refuses a bad config at start, naming the file and the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(host_toml: &str, tenant_toml: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::write(dir.path().join("host.toml"), host_toml).unwrap();
    if let Some(tenant) = tenant_toml {
        std::fs::write(dir.path().join("tenants/firm-a.toml"), tenant).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_bitbylaw"))
        .args(["check", "--config"])
        .arg(dir.path().join("host.toml"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn malformed_host_config_names_file_and_key() {
    let (code, stderr) = check("[ingress]\nmax_body_bytes = -5\n", None);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("host.toml: key `ingress.max_body_bytes`"),
        "{stderr}"
    );
}

#[test]
fn invalid_toml_names_the_file_and_line() {
    let (code, stderr) = check("listen = \n", None);
    assert_eq!(code, 2);
    assert!(stderr.contains("host.toml: invalid TOML"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn malformed_tenant_config_names_file_and_key() {
    let tenant = "[plugins.hello]\ncomponent = \"x.wasm\"\nallowed_origin = []\n";
    let (code, stderr) = check("", Some(tenant));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("firm-a.toml: key `plugins.hello.allowed_origin`"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn missing_secret_names_the_variable_not_a_value() {
    let tenant = "api_keys = [{ env = \"BITBYLAW_TEST_SURELY_UNSET\" }]\n";
    let (code, stderr) = check("", Some(tenant));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("firm-a.toml: key `api_keys[0]`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`BITBYLAW_TEST_SURELY_UNSET` is not set"),
        "{stderr}"
    );
}

#[test]
fn missing_component_names_the_key() {
    let tenant = "[plugins.hello]\ncomponent = \"missing.wasm\"\n";
    let (code, stderr) = check("", Some(tenant));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("firm-a.toml: key `plugins.hello.component`"),
        "{stderr}"
    );
}
