//! Test support: start the host on port 0 with tenants written to a temporary
//! folder, against real Redis under a unique key prefix that is removed again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitbylaw::host::Host;

pub mod bench;
pub mod calendar;
pub mod deployment;
pub mod redis_target;
pub mod simulators;
pub mod vmh;
pub mod webdriver;

pub use redis_target::{TestConnection, on_cluster};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The operators' token (`ops.token`) of every test host.
pub const OPS_TOKEN: &str = "test-ops-token";

/// The compiled test or example component `name` (`target/wasm32-wasip2/release/<name>.wasm`).
pub fn component(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "component {} is missing: build the components first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Which state store a test host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

pub struct TestHostBuilder {
    backend: Backend,
    key_prefix: Option<String>,
    cache_dir: Option<PathBuf>,
    host_toml: String,
    max_instances: Option<u32>,
    redis_url: Option<String>,
    tenants: Vec<(String, String, Option<String>)>,
}

impl TestHostBuilder {
    /// Where compiled components are cached (default: one folder shared by all tests).
    pub fn cache_dir(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_owned());
        self
    }

    /// The store's key prefix; hosts given the same one share their state like instances
    /// of one deployment. Default: unique to this host.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = Some(prefix.to_owned());
        self
    }

    /// Extra lines for `host.toml` (sections such as `[plugin_defaults]`).
    /// Redis at `url` instead of the machine's (for tests that stop it).
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_owned());
        self
    }

    /// The pooling allocator's slots (`runtime.max_instances`; 64 unless set).
    pub fn max_instances(mut self, slots: u32) -> Self {
        self.max_instances = Some(slots);
        self
    }

    pub fn host_toml(mut self, text: &str) -> Self {
        self.host_toml.push_str(text);
        self.host_toml.push('\n');
        self
    }

    /// A tenant with API key `api_key` (written to a secret file) and the given TOML
    /// (plugins etc.). In the TOML, `{component:NAME}` stands for the component's path.
    pub fn tenant(mut self, id: &str, api_key: Option<&str>, toml: &str) -> Self {
        self.tenants
            .push((id.to_owned(), toml.to_owned(), api_key.map(str::to_owned)));
        self
    }

    pub async fn start(self) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let tenants_dir = dir.path().join("tenants");
        std::fs::create_dir_all(&tenants_dir).unwrap();
        let prefix = self
            .key_prefix
            .unwrap_or_else(|| format!("test-{}", uuid::Uuid::new_v4().simple()));
        let store = match self.backend {
            Backend::Redis => format!(
                "[store]\n{}\nkey_prefix = \"{prefix}\"\n",
                self.redis_url
                    .map(|url| format!("redis_url = \"{url}\""))
                    .unwrap_or_else(redis_target::store_toml)
            ),
            Backend::Memory => format!("[store]\nkey_prefix = \"{prefix}\"\n"),
        };
        // Tests reload tenants themselves; the file watcher runs only where a test
        // asks for it with its own `[reload]` table, so it cannot do their work unseen.
        let reload = if self.host_toml.contains("[reload]") {
            ""
        } else {
            "[reload]\npoll_ms = 0\n"
        };
        let host_toml = format!(
            "listen = \"127.0.0.1:0\"\n{}\n[runtime]\nmax_instances = {}\ncache_dir = \"{}\"\n{reload}{}",
            store,
            self.max_instances.unwrap_or(64),
            self.cache_dir.unwrap_or_else(cache_dir).display(),
            self.host_toml
        );
        // Every test host has an operators' token, so tests can read `/metrics`
        // and `/ready`'s detail as an operator would.
        let host_toml = if host_toml.contains("[ops]") {
            host_toml
        } else {
            let token_file = dir.path().join("ops-token");
            std::fs::write(&token_file, OPS_TOKEN).unwrap();
            format!(
                "{host_toml}\n[ops]\ntoken = {{ file = \"{}\" }}\n",
                token_file.display()
            )
        };
        let host_file = dir.path().join("host.toml");
        std::fs::write(&host_file, host_toml).unwrap();
        for (id, toml, api_key) in &self.tenants {
            let mut text = String::new();
            if let Some(key) = api_key {
                let key_file = dir.path().join(format!("{id}.key"));
                std::fs::write(&key_file, key).unwrap();
                text.push_str(&format!(
                    "api_keys = [{{ file = \"{}\" }}]\n",
                    key_file.display()
                ));
            }
            text.push_str(&expand_components(toml));
            std::fs::write(tenants_dir.join(format!("{id}.toml")), text).unwrap();
        }
        let config = bitbylaw::config::load(&host_file).unwrap();
        let host = Host::start(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(bitbylaw::server::run(listener, host.clone(), async move {
            let _ = stopped.await;
        }));
        TestHost {
            addr,
            host,
            client: reqwest::Client::new(),
            prefix,
            backend: self.backend,
            _dir: dir,
            _stop: stop,
            _server: server,
        }
    }
}

/// The tenant file with `{component:NAME}` replaced by the component's path.
pub(crate) fn expand_components(toml: &str) -> String {
    let mut text = toml.to_owned();
    while let Some(start) = text.find("{component:") {
        let end = start + text[start..].find('}').unwrap();
        let name = &text[start + "{component:".len()..end];
        let path = component(name).display().to_string();
        text.replace_range(start..=end, &path);
    }
    text
}

/// Compiled components are cached across tests (and runs) like in production.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/component-cache")
}

/// A running host on a free port.
pub struct TestHost {
    pub addr: SocketAddr,
    pub host: Arc<Host>,
    pub client: reqwest::Client,
    /// The store's key prefix, unique to this test.
    pub prefix: String,
    backend: Backend,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestHost {
    pub fn builder(backend: Backend) -> TestHostBuilder {
        TestHostBuilder {
            backend,
            key_prefix: None,
            cache_dir: None,
            host_toml: String::new(),
            max_instances: None,
            redis_url: None,
            tenants: Vec::new(),
        }
    }

    /// The file tenant `id` was loaded from; edit it and call `host.reload_tenant`.
    pub fn tenant_file(&self, id: &str) -> PathBuf {
        self.host.tenant_file(id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The tenant `id` as it runs now.
    pub fn running(&self, id: &str) -> Arc<bitbylaw::tenants::Tenant> {
        self.host
            .registry()
            .current()
            .tenant(id)
            .cloned()
            .unwrap_or_else(|| panic!("tenant `{id}` is not running"))
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `/ready` with its detail (tenants, broken tenants, store), as an operator reads it.
    pub async fn ready_detail(&self) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url("/ready"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// A GET with the API key in the `apikey` header.
    /// A call of the admin API with `token`; its JSON answer, which must come with 200.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> serde_json::Value {
        let response = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str, api_key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("apikey", api_key)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if self.backend == Backend::Redis {
            delete_prefix(&self.prefix);
        }
    }
}

/// A plain Redis connection for looking at what the host wrote (to the
/// cluster when the tests run on one).
pub fn redis_connection() -> TestConnection {
    redis_target::connect().unwrap()
}

/// Every key under `prefix`.
pub fn keys_with_prefix(prefix: &str) -> Vec<String> {
    let mut connection = redis_connection();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut connection)
        .unwrap();
    keys.sort();
    keys
}

/// Removes every key under `prefix` (tests clean up after themselves).
pub fn delete_prefix(prefix: &str) {
    let Ok(mut connection) = redis_target::connect() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut connection)
        .unwrap_or_default();
    if on_cluster() {
        // Keys of several tenants live in several slots: one DEL each.
        for key in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut connection);
        }
    } else if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut connection);
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The `bitbylaw` binary of this build (`target/debug/bitbylaw`).
pub fn host_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/bitbylaw");
    assert!(
        path.exists(),
        "{} is missing: `cargo build -p bitbylaw` (scripts/test.sh builds it)",
        path.display()
    );
    path
}

/// A host running as its own process, as in production; killed when dropped.
pub struct HostProcess {
    child: std::process::Child,
    pub log: PathBuf,
}

impl HostProcess {
    /// Starts `bitbylaw serve --config <config>` with extra environment
    /// (`BITBYLAW_*` overrides), logging to `log`.
    pub fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = std::process::Command::new(host_binary());
        command
            .args(["serve", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("RUST_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        Self {
            child: command.spawn().unwrap(),
            log: log.to_owned(),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no shutdown, no cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to end; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address it listens on, once its log says so; a host that gave
    /// up starting (`error: …`, as `main` prints before exiting) fails the
    /// test at once with its log.
    pub async fn listening(&self) -> SocketAddr {
        wait_for(std::time::Duration::from_secs(30), || async {
            let log = self.log_text();
            assert!(
                !log.lines().any(|l| l.starts_with("error: ")),
                "the host did not start:\n{log}"
            );
            let line = log.lines().find(|l| l.contains("bitbylaw listening"))?;
            let start = line.find("127.0.0.1:")?;
            let digits: String = line[start + "127.0.0.1:".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            format!("127.0.0.1:{digits}").parse().ok()
        })
        .await
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replaces a file the way operators should replace tenant files: write a
/// temporary file beside it, then rename it over the old one.
pub fn replace_file(path: &Path, text: &str) {
    bitbylaw::components::write_atomically(path, text.as_bytes()).unwrap();
}

/// Requests without pause to one URL, recording each status and the `version`
/// field of the JSON answer, until stopped.
pub struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(u16, String)>>,
}

impl Traffic {
    pub fn start(client: reqwest::Client, url: String, api_key: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, key) = (stop.clone(), api_key.to_owned());
        let task = tokio::spawn(async move {
            let mut answers = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client
                    .get(&url)
                    .header("apikey", &key)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value =
                    response.json().await.unwrap_or(serde_json::Value::Null);
                answers.push((
                    status,
                    body["version"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            answers
        });
        Self { stop, task }
    }

    /// Stops and returns every answer: (status, version).
    pub async fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }

    /// Stops, asserts that every request got 200, and returns the versions in order.
    pub async fn stop_all_ok(self) -> Vec<String> {
        let answers = self.stop().await;
        let failed: Vec<_> = answers
            .iter()
            .filter(|(status, _)| *status != 200)
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {failed:?}",
            failed.len(),
            answers.len()
        );
        answers.into_iter().map(|(_, version)| version).collect()
    }
}

/// How often the answering version changed from one request to the next.
pub fn version_changes(versions: &[String]) -> usize {
    versions.windows(2).filter(|w| w[0] != w[1]).count()
}

/// The host's log lines in this test binary (shared with the plugin test harness).
pub use bitbylaw_testing::LogCapture;
