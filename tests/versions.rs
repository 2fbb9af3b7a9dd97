//! The component store and version switches through the admin API: upload
//! (checked before stored), switch, roll back, list, all while traffic flows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bitbylaw_tests::{Backend, TestHost, component};
use serde_json::Value;

const TOKEN: &str = "versions-admin-token";

struct Setup {
    app: TestHost,
    _dir: tempfile::TempDir,
}

/// The admin API on (token `TOKEN`) and a component store, in `dir`.
fn admin_host(dir: &tempfile::TempDir) -> bitbylaw_tests::TestHostBuilder {
    std::fs::write(dir.path().join("admin-token"), TOKEN).unwrap();
    TestHost::builder(Backend::Redis).host_toml(&format!(
        "[admin]\ntoken = {{ file = \"{}\" }}\n[components]\ndir = \"{}\"",
        dir.path().join("admin-token").display(),
        dir.path().join("store").display()
    ))
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let app = admin_host(&dir)
        .tenant(
            "firm-a",
            Some("k"),
            &format!(
                "[plugins.greeter]\ncomponent = \"{}\"\n",
                component("greeter-v1").display()
            ),
        )
        .tenant(
            "firm-b",
            Some("kb"),
            "[plugins.greeter]\ncomponent = \"{component:greeter-v1}\"\n",
        )
        .start()
        .await;
    Setup { app, _dir: dir }
}

async fn admin(app: &TestHost, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn upload(app: &TestHost, package: &str, version: &str, file: &str) -> (u16, Value) {
    let bytes = std::fs::read(component(file)).unwrap();
    admin(
        app,
        reqwest::Method::PUT,
        &format!("/admin/components/{package}/{version}"),
        bytes,
    )
    .await
}

async fn switch(app: &TestHost, version: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&serde_json::json!({ "version": version })).unwrap();
    admin(
        app,
        reqwest::Method::POST,
        "/admin/tenants/firm-a/plugins/greeter/version",
        body,
    )
    .await
}

async fn greeting_version(app: &TestHost, key: &str) -> String {
    let body: Value = app.get("/greet", key).await.json().await.unwrap();
    body["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_stored_once_and_listed() {
    let Setup { app, _dir } = setup().await;
    let (status, body) = upload(&app, "greeter", "2.0.0", "greeter-v2").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["plugin"]["version"], "2.0.0");
    assert_eq!(body["plugin"]["routes"][0], "GET /greet");
    let sha = body["component"]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 64);

    assert_eq!(
        upload(&app, "greeter", "2.0.0", "greeter-v2").await.0,
        201,
        "the same bytes again are fine"
    );
    let (status, body) = upload(&app, "greeter", "2.0.0", "greeter-v1").await;
    assert_eq!(status, 409, "{body}");

    let garbage = admin(
        &app,
        reqwest::Method::PUT,
        "/admin/components/greeter/9.9.9",
        b"\0asm garbage".to_vec(),
    )
    .await;
    assert_eq!(garbage.0, 422);
    assert_eq!(garbage.1["error"], "invalid_component");
    let (status, body) = upload(&app, "greeter", "9.9.8", "other-world").await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bitbylaw:plugin"),
        "{body}"
    );
    assert_eq!(
        admin(
            &app,
            reqwest::Method::PUT,
            "/admin/components/..%2Fx/1.0.0",
            vec![1]
        )
        .await
        .0,
        400
    );
    assert_eq!(
        upload(&app, "greeter", "bad version!", "greeter-v2")
            .await
            .0,
        400
    );

    let (_, listed) = admin(&app, reqwest::Method::GET, "/admin/components", Vec::new()).await;
    let components = listed["components"].as_array().unwrap();
    assert_eq!(
        components.len(),
        1,
        "refused uploads are not stored: {listed}"
    );
    assert_eq!(components[0]["version"], "2.0.0");
    assert_eq!(components[0]["sha256"], sha);

    let unauthorized = app
        .client
        .put(app.url("/admin/components/greeter/3.0.0"))
        .body(vec![1])
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_and_rolling_back_under_load_fails_no_request() {
    let Setup { app, _dir } = setup().await;
    assert_eq!(upload(&app, "greeter", "1.0.0", "greeter-v1").await.0, 201);
    assert_eq!(upload(&app, "greeter", "2.0.0", "greeter-v2").await.0, 201);

    let traffic = bitbylaw_tests::Traffic::start(app.client.clone(), app.url("/greet"), "k");
    for _ in 0..10 {
        for version in ["2.0.0", "1.0.0"] {
            let (status, body) = switch(&app, version).await;
            assert_eq!(status, 200, "{body}");
            // The switch answers once the new version serves.
            assert_eq!(greeting_version(&app, "k").await, version);
        }
    }
    let versions = traffic.stop_all_ok().await;
    let changes = bitbylaw_tests::version_changes(&versions);
    assert!(changes >= 10, "answers changed only {changes} times");

    // A version that is not in the store is refused; the running one serves on.
    let (status, body) = switch(&app, "7.7.7").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(greeting_version(&app, "k").await, "1.0.0");

    // One call rolls back to the version before.
    let (status, body) = admin(
        &app,
        reqwest::Method::POST,
        "/admin/tenants/firm-a/plugins/greeter/rollback",
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["now"]["version"], "2.0.0");
    assert_eq!(greeting_version(&app, "k").await, "2.0.0");
    assert_eq!(
        greeting_version(&app, "kb").await,
        "1.0.0",
        "tenant B keeps its own version"
    );

    // The tenant file says what runs, and the listing shows it.
    let file = std::fs::read_to_string(app.tenant_file("firm-a")).unwrap();
    assert!(file.contains("version = \"2.0.0\""), "{file}");
    let (_, tenants) = admin(&app, reqwest::Method::GET, "/admin/tenants", Vec::new()).await;
    let greeter = &tenants["tenants"]["firm-a"]["plugins"]["greeter"];
    assert_eq!(greeter["version"], "2.0.0");
    assert_eq!(greeter["pinned"]["version"], "2.0.0");
    assert_eq!(greeter["routes"][0], "GET /greet");
    assert_eq!(tenants["tenants"]["firm-a"]["state"], "running");
}

/// Two switches of one tenant at once (two plugins): both land in the tenant
/// file and in the running tenant, neither overwrites the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_switches_of_one_tenant_do_not_overwrite_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let app = admin_host(&dir)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.greeter]\ncomponent = \"{component:greeter-v1}\"\n\n[plugins.second]\npackage = \"greeter\"\nroute_prefix = \"/two\"\ncomponent = \"{component:greeter-v1}\"\n",
        )
        .start()
        .await;
    assert_eq!(upload(&app, "greeter", "2.0.0", "greeter-v2").await.0, 201);
    let body = serde_json::to_vec(&serde_json::json!({ "version": "2.0.0" })).unwrap();
    let (first, second) = tokio::join!(
        admin(
            &app,
            reqwest::Method::POST,
            "/admin/tenants/firm-a/plugins/greeter/version",
            body.clone(),
        ),
        admin(
            &app,
            reqwest::Method::POST,
            "/admin/tenants/firm-a/plugins/second/version",
            body,
        ),
    );
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let file = std::fs::read_to_string(app.tenant_file("firm-a")).unwrap();
    let parsed: toml::Table = file.parse().unwrap();
    for plugin in ["greeter", "second"] {
        assert_eq!(
            parsed["plugins"][plugin]["version"].as_str(),
            Some("2.0.0"),
            "{plugin} in:\n{file}"
        );
    }
    assert_eq!(greeting_version(&app, "k").await, "2.0.0");
    let body: Value = app.get("/two/greet", "k").await.json().await.unwrap();
    assert_eq!(body["version"], "2.0.0");
}

/// `chattr +i` on a folder while it lives: not even root can create a file
/// in it, so a tenant file there cannot be written.
struct Frozen(std::path::PathBuf);

impl Frozen {
    fn new(folder: &std::path::Path) -> Self {
        let frozen = std::process::Command::new("chattr")
            .arg("+i")
            .arg(folder)
            .status()
            .expect("chattr (e2fsprogs)");
        assert!(frozen.success(), "chattr +i {} failed", folder.display());
        Self(folder.to_owned())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A switch that cannot be carried through answers so, and it is true: the
/// running version serves on and the tenant file says what runs. Once when
/// the tenant file cannot be written, once when Redis refuses to ready the
/// new deployment's event delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_switch_leaves_the_running_version_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let app = admin_host(&dir)
        .tenant(
            "firm-a",
            Some("k"),
            "[plugins.greeter]\ncomponent = \"{component:greeter-v1}\"\n[plugins.flaky]\ncomponent = \"{component:flaky}\"\n",
        )
        .start()
        .await;
    assert_eq!(upload(&app, "greeter", "2.0.0", "greeter-v2").await.0, 201);
    let running = greeting_version(&app, "k").await;
    assert_ne!(running, "2.0.0");
    let file = app.tenant_file("firm-a");
    let written = std::fs::read_to_string(&file).unwrap();

    {
        let _frozen = Frozen::new(file.parent().unwrap());
        let (status, body) = switch(&app, "2.0.0").await;
        assert_eq!(status, 422, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("cannot write") && message.contains("keeps serving"),
            "{message}"
        );
        assert_eq!(
            greeting_version(&app, "k").await,
            running,
            "the answer is true"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // The flaky plugin's topic stream is no stream: Redis refuses its consumer group.
    let stream = format!("{}:{{firm-a}}:ev:topic:flaky", app.prefix);
    let mut redis = bitbylaw_tests::redis_connection();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut redis).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .query(&mut redis)
        .unwrap();
    let (status, body) = switch(&app, "2.0.0").await;
    assert!(status >= 400, "{status} {body}");
    assert!(
        body["message"].as_str().unwrap().contains("keeps serving"),
        "{body}"
    );
    assert_eq!(
        greeting_version(&app, "k").await,
        running,
        "the answer is true"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // With Redis well again, the same switch goes through.
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut redis).unwrap();
    let (status, body) = switch(&app, "2.0.0").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(greeting_version(&app, "k").await, "2.0.0");
}

/// A switch never writes over a tenant file someone changed while it ran: it
/// answers so, and the tenant runs as the file now says. The `slow-describe`
/// plugin holds the switch in its window (it takes 1.5 s to load and counts
/// its loads in the store, so the test edits the file exactly then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_does_not_write_over_a_file_changed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let app = std::sync::Arc::new(
        admin_host(&dir)
            .tenant(
                "firm-a",
                Some("k"),
                "[plugins.greeter]\ncomponent = \"{component:greeter-v1}\"\n[plugins.slow-describe]\ncomponent = \"{component:slow-describe}\"\n",
            )
            .start()
            .await,
    );
    assert_eq!(upload(&app, "greeter", "2.0.0", "greeter-v2").await.0, 201);
    let running = greeting_version(&app, "k").await;
    let loads_key = format!("{}:{{firm-a}}:slow-describe:kv:describing", app.prefix);
    let loads = || -> i64 {
        let loads: Option<i64> =
            redis::Commands::get(&mut bitbylaw_tests::redis_connection(), &loads_key).unwrap();
        loads.unwrap_or(0)
    };
    let before = loads();

    let switching = {
        let app = app.clone();
        tokio::spawn(async move { switch(&app, "2.0.0").await })
    };
    // The switch has read the tenant file and is loading the new version.
    bitbylaw_tests::wait_for(std::time::Duration::from_secs(30), || async {
        (loads() > before).then_some(())
    })
    .await;
    let file = app.tenant_file("firm-a");
    let edited = std::fs::read_to_string(&file).unwrap().replace(
        "[plugins.greeter]\n",
        "[plugins.greeter]\nroute_prefix = \"/edited\"\n",
    );
    bitbylaw_tests::replace_file(&file, &edited);

    let (status, body) = switching.await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("changed by someone else"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        edited,
        "not written over"
    );
    let body: Value = app.get("/edited/greet", "k").await.json().await.unwrap();
    assert_eq!(
        body["version"],
        running.as_str(),
        "running as the file says"
    );
}

/// The world-versioning policy (docs/plugins/writing-plugins.md): a component
/// built against an earlier `bitbylaw:plugin@0.1.x` world, which imports
/// fewer functions than the host offers and the REST interfaces with their
/// own request records of then, loads and is served; what it imports still
/// works: `events.emit` from before `emit-all`, and `advoware.send` and
/// `espocrm.send` against the simulators, their answers and their error cases
/// where the old variants put them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_the_previous_world_still_loads_and_serves() {
    use bitbylaw_tests::simulators::advoware::Advoware;
    use bitbylaw_tests::simulators::espocrm::EspoCrm;

    let advoware = Advoware::start_default().await;
    let espocrm = EspoCrm::start_default().await;
    let party = espocrm.user_create("CBeteiligte", serde_json::json!({ "name": "Hans Müller" }));
    let files = tempfile::tempdir().unwrap();
    let app = TestHost::builder(Backend::Redis)
        .tenant(
            "firm-a",
            Some("k"),
            &format!(
                "{}\n{}\n[plugins.old]\ncomponent = \"{{component:world-0-1-0}}\"\nupstreams = [\"kanzlei\", \"vmh\"]\n",
                advoware.upstream_toml("kanzlei", files.path()),
                espocrm.upstream_toml("vmh", files.path(), true),
            ),
        )
        .start()
        .await;
    let response = app.get("/old-world/ping", "k").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["emitted"], true, "{body}");
    let routes = app.running("firm-a").routes.describe();
    assert!(
        routes.contains(&("GET".into(), "/old-world/ping".into(), "old".into())),
        "{routes:?}"
    );

    let response = app.get("/old-world/advoware?path=employees", "k").await;
    assert_eq!(response.status(), 200, "signed in and answered");
    let employees: Value = response.json().await.unwrap();
    assert!(
        employees.as_array().is_some_and(|list| !list.is_empty()),
        "{employees}"
    );
    let response = app
        .get(&format!("/old-world/espocrm?path=CBeteiligte/{party}"), "k")
        .await;
    assert_eq!(response.status(), 200, "signed with the HMAC and answered");
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["name"], "Hans Müller");

    // The second case of each old variant, `invalid-request`: a path that
    // leaves the API base, refused by the host before sending.
    for upstream in ["advoware", "espocrm"] {
        let response = app
            .get(&format!("/old-world/{upstream}?path=..%2F..%2Fx"), "k")
            .await;
        assert_eq!(response.status(), 502, "{upstream}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid-request", "{upstream}: {body}");
    }
    // And a later case of Advoware's: `unauthorized`, a refused sign-in.
    advoware.refuse_all_tokens(true);
    advoware.revoke_all_tokens();
    let response = app.get("/old-world/advoware?path=employees", "k").await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");
}
