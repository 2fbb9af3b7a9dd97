//! A test harness for bitbylaw plugins, for a plugin's own `cargo test`.
//!
//! The plugin runs as it will in production: its built component is loaded
//! into an embedded host (memory store, no Redis), served on a free port of
//! 127.0.0.1 and called over HTTP, with events and schedules going through the
//! host's own paths. Upstreams are HTTP servers on this machine ([`stub`]):
//! canned or scripted answers, and every request they got to assert on.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bitbylaw_testing::{Harness, stub};
//!
//! let advoware = stub::Advoware::start().await?;
//! advoware.answer("GET", "/employees", 200, serde_json::json!([{ "kuerzel": "SB" }]));
//! let harness = Harness::builder()
//!     .plugin(bitbylaw_testing::this_plugin!().upstream("advoware"))
//!     .upstream(advoware.account("advoware"))
//!     .start()
//!     .await?;
//! let reply = harness.get("/my-plugin/employees").await?;
//! assert_eq!(reply.status, 200);
//! assert_eq!(harness.kv("my-plugin").get_string("last-sync").await?, Some("SB".into()));
//! # Ok(()) }
//! ```

pub mod logs;
pub mod stub;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bitbylaw::capabilities::wit_handler as wit;
use bitbylaw::host::Host;

pub use bitbylaw::events::Emitted;
/// For requests made with [`Harness::request`]: `Method::PUT`, headers.
pub use http::{self, Method};
pub use logs::{LogCapture, LogLine};
pub use reqwest;

/// The crate under test as a plugin: its component from this workspace's
/// build folder, built first when missing or older than the crate's own
/// sources (`Cargo.toml`, `src/`; after changing a path dependency such as
/// the SDK, run `bitbylaw plugin build` first).
#[macro_export]
macro_rules! this_plugin {
    () => {
        $crate::Plugin::built(env!("CARGO_PKG_NAME"), env!("CARGO_MANIFEST_DIR"))
    };
}

/// One plugin of the harness tenant: its component and its tenant-file settings.
#[derive(Debug, Clone)]
pub struct Plugin {
    name: String,
    component: PathBuf,
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    upstreams: Vec<String>,
    origins: Vec<String>,
    extra: String,
}

impl Plugin {
    /// Plugin `name` (as in its description) from a component file.
    pub fn new(name: &str, component: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            component: component.into(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            upstreams: Vec::new(),
            origins: Vec::new(),
            extra: String::new(),
        }
    }

    /// The plugin of the crate in `manifest_dir` (see [`this_plugin!`]).
    /// Panics with what to do when it cannot be built: this runs in tests.
    pub fn built(name: &str, manifest_dir: &str) -> Self {
        match component_of(Path::new(manifest_dir)) {
            Ok(component) => Self::new(name, component),
            Err(error) => panic!("the component of `{name}`: {error:#}"),
        }
    }

    /// A key of `[plugins.<name>.config]`.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A secret the plugin reads through `secrets.get` (written to a file of the harness).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Grants the tenant's upstream account `name` (see [`HarnessBuilder::upstream`]).
    pub fn upstream(mut self, name: &str) -> Self {
        self.upstreams.push(name.to_owned());
        self
    }

    /// Lets the plugin's outbound HTTP reach `origin` (`http://127.0.0.1:PORT`).
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.origins.push(origin.trim_end_matches('/').to_owned());
        self
    }

    /// More lines of the plugin's tenant-file table (`[plugins.<name>]`), e.g. `limits`.
    pub fn toml(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }
}

/// An upstream account for the harness tenant: `[upstreams.<name>]` with its keys.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// The table's body, e.g. `kind = "advoware"\napi_url = "..."`.
    pub toml: String,
}

/// What a route answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How an event or tick handler ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `HandlerError::Retryable`: the host would deliver again.
    Retryable(String),
    /// `HandlerError::Permanent`: the host would put it in the dead letters.
    Permanent(String),
    /// The plugin trapped (a panic), ran out of time or memory, or was not found.
    Trap(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retryable(e) => write!(f, "retryable: {e}"),
            Failure::Permanent(e) => write!(f, "permanent: {e}"),
            Failure::Trap(e) => write!(f, "trap: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Sets up the harness tenant.
#[derive(Default)]
pub struct HarnessBuilder {
    plugins: Vec<Plugin>,
    upstreams: Vec<Upstream>,
    tenant_toml: String,
    host_toml: String,
}

impl HarnessBuilder {
    pub fn plugin(mut self, plugin: Plugin) -> Self {
        self.plugins.push(plugin);
        self
    }

    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstreams.push(upstream);
        self
    }

    /// More lines at the top of the tenant file (e.g. `route_prefix = "/firm"`).
    pub fn tenant_toml(mut self, lines: &str) -> Self {
        self.tenant_toml.push_str(lines);
        self.tenant_toml.push('\n');
        self
    }

    /// More lines of the host's config (e.g. an `[events]` table).
    pub fn host_toml(mut self, lines: &str) -> Self {
        self.host_toml.push_str(lines);
        self.host_toml.push('\n');
        self
    }

    /// Starts the host with the tenant; the error says why the tenant did not load.
    pub async fn start(self) -> anyhow::Result<Harness> {
        let logs = LogCapture::install();
        let dir = tempfile::tempdir()?;
        let tenant = format!(
            "plugin-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let tenants = dir.path().join("tenants");
        std::fs::create_dir_all(&tenants)?;
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets)?;
        std::fs::write(secrets.join("api-key"), &api_key)?;

        let mut file = format!(
            "api_keys = [{{ file = {} }}]\n{}",
            quoted(&secrets.join("api-key")),
            self.tenant_toml
        );
        for plugin in &self.plugins {
            file.push_str(&format!(
                "\n[plugins.{}]\ncomponent = {}\n",
                quoted_key(&plugin.name),
                quoted(&plugin.component)
            ));
            if !plugin.upstreams.is_empty() {
                file.push_str(&format!("upstreams = {}\n", list(&plugin.upstreams)));
            }
            if !plugin.origins.is_empty() {
                file.push_str(&format!("allowed_origins = {}\n", list(&plugin.origins)));
            }
            file.push_str(&plugin.extra);
            if !plugin.config.is_empty() {
                file.push_str(&format!("[plugins.{}.config]\n", quoted_key(&plugin.name)));
                for (key, value) in &plugin.config {
                    file.push_str(&format!("{} = {}\n", quoted_key(key), string(value)));
                }
            }
            if !plugin.secrets.is_empty() {
                file.push_str(&format!("[plugins.{}.secrets]\n", quoted_key(&plugin.name)));
                for (key, value) in &plugin.secrets {
                    let path = secrets.join(format!("{}-{key}", plugin.name));
                    std::fs::write(&path, value)?;
                    file.push_str(&format!(
                        "{} = {{ file = {} }}\n",
                        quoted_key(key),
                        quoted(&path)
                    ));
                }
            }
        }
        for upstream in &self.upstreams {
            file.push_str(&format!(
                "\n[upstreams.{}]\n{}\n",
                quoted_key(&upstream.name),
                upstream.toml
            ));
        }
        std::fs::write(tenants.join(format!("{tenant}.toml")), &file)?;

        let host_file = dir.path().join("host.toml");
        std::fs::write(
            &host_file,
            format!(
                "listen = \"127.0.0.1:0\"\ntenants_dir = \"tenants\"\n[store]\nkey_prefix = \"{tenant}\"\n\
                 [runtime]\ncache_dir = {}\n[reload]\npoll_ms = 0\n{}",
                quoted(&cache_dir(&self.plugins)),
                self.host_toml
            ),
        )?;
        let config = bitbylaw::config::load(&host_file)?;
        let host = Host::start(config).await?;
        if let Some(error) = host.broken_tenants().get(&tenant) {
            anyhow::bail!("the plugin did not load: {error}\n(the tenant file:)\n{file}");
        }

        // Read on demand (`emitted()` drains it), so what a plugin emitted
        // before a call returned is there when the test looks.
        let emitted = Arc::new(Mutex::new((host.events().watch(), Vec::new())));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(bitbylaw::server::run(listener, host.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Harness {
            host,
            addr,
            client: reqwest::Client::new(),
            tenant,
            api_key,
            emitted,
            logs,
            _dir: dir,
            _stop: stop,
            _server: server.abort_handle(),
        })
    }
}

/// A running embedded host with one tenant holding the plugins under test.
pub struct Harness {
    pub host: Arc<Host>,
    pub addr: SocketAddr,
    client: reqwest::Client,
    tenant: String,
    api_key: String,
    emitted: Arc<Mutex<EmittedLog>>,
    logs: LogCapture,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    _server: tokio::task::AbortHandle,
}

/// The host's feed of emitted events, and what was read from it (all tenants').
type EmittedLog = (tokio::sync::broadcast::Receiver<Emitted>, Vec<Emitted>);

impl Drop for Harness {
    fn drop(&mut self) {
        self._server.abort();
    }
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The harness tenant's id (unique per harness).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The tenant's API key, for requests made by hand.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request to the tenant's routes with its API key, to finish and [`Harness::send`].
    pub fn request(&self, method: http::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("apikey", &self.api_key)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        let response = request
            .send()
            .await
            .context("the harness host did not answer")?;
        Ok(Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await?,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.request(http::Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<Reply> {
        self.send(self.request(http::Method::POST, path).json(body))
            .await
    }

    fn plugin(&self, name: &str) -> anyhow::Result<Arc<bitbylaw::runtime::LoadedPlugin>> {
        let deployment = self.host.registry().current();
        let tenant = deployment
            .tenant(&self.tenant)
            .context("the harness tenant is not running")?;
        tenant
            .plugins
            .get(name)
            .cloned()
            .with_context(|| format!("no plugin `{name}` in the harness"))
    }

    /// Hands one event straight to `plugin`'s handler, as the host's delivery
    /// would (attempt 1), and says how it ended.
    pub async fn deliver(
        &self,
        plugin: &str,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> anyhow::Result<Result<(), Failure>> {
        let plugin = self.plugin(plugin)?;
        let event = wit::Event {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.to_owned(),
            payload: payload.into(),
            attempt: 1,
            emitted_at: bitbylaw::events::now_ms(),
        };
        Ok(outcome(plugin.handle_event(event, 5).await))
    }

    /// Runs `plugin`'s schedule `name` for the tick at `at`, as the scheduler would.
    pub async fn tick(
        &self,
        plugin: &str,
        name: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Result<(), Failure>> {
        let plugin = self.plugin(plugin)?;
        let tick = wit::Tick {
            name: name.to_owned(),
            scheduled_at: u64::try_from(at.timestamp_millis()).unwrap_or(0),
        };
        Ok(outcome(plugin.handle_schedule(tick).await))
    }

    /// Emits an event as a plugin of the tenant would: the host delivers it
    /// to every subscriber in the background ([`Harness::settle`] waits for that).
    pub async fn emit(&self, topic: &str, payload: impl Into<Vec<u8>>) -> anyhow::Result<String> {
        Ok(self
            .host
            .events()
            .emit(&self.tenant, topic, payload.into())
            .await?)
    }

    /// Waits (up to 30 s) until no event of the tenant waits, runs or retries.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let tenant = self
                .host
                .registry()
                .current()
                .tenant(&self.tenant)
                .cloned()
                .context("the harness tenant is not running")?;
            let stats = self.host.events().stats(&tenant).await?;
            let busy: u64 = stats
                .iter()
                .map(|s| s.backlog + s.in_flight + s.retrying)
                .sum();
            if busy == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("events still pending after 30 s: {stats:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every event emitted in the tenant since the harness started, in order.
    /// Panics when more than 1,024 came between two looks (some were missed).
    pub fn emitted(&self) -> Vec<Emitted> {
        let mut guard = lock(&self.emitted);
        let (feed, seen) = &mut *guard;
        loop {
            match feed.try_recv() {
                Ok(event) => seen.push(event),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => {
                    panic!("{missed} emitted events were missed: look at `emitted()` more often")
                }
                Err(_) => break,
            }
        }
        seen.iter()
            .filter(|event| event.tenant == self.tenant)
            .cloned()
            .collect()
    }

    /// The payloads emitted to `topic`, as JSON (`Value::Null` for other payloads).
    pub fn emitted_json(&self, topic: &str) -> Vec<serde_json::Value> {
        self.emitted()
            .iter()
            .filter(|event| event.topic == topic)
            .map(|event| serde_json::from_slice(&event.payload).unwrap_or_default())
            .collect()
    }

    /// The payloads emitted to `topic`, as text (lossy for other bytes).
    pub fn emitted_text(&self, topic: &str) -> Vec<String> {
        self.emitted()
            .iter()
            .filter(|event| event.topic == topic)
            .map(|event| String::from_utf8_lossy(&event.payload).into_owned())
            .collect()
    }

    /// The plugin's key-value state.
    pub fn kv(&self, plugin: &str) -> Kv {
        Kv {
            plugin: self.plugin(plugin),
        }
    }

    /// What the tenant's plugins logged (and the host logged about them).
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.lines_of(&self.tenant)
    }
}

/// A plugin's key-value state, read as the plugin would read it.
pub struct Kv {
    plugin: anyhow::Result<Arc<bitbylaw::runtime::LoadedPlugin>>,
}

impl Kv {
    fn scope(&self) -> anyhow::Result<&bitbylaw::capabilities::PluginContext> {
        match &self.plugin {
            Ok(plugin) => Ok(plugin.context()),
            Err(error) => anyhow::bail!("{error:#}"),
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let context = self.scope()?;
        Ok(context.store.get(&context.scope.kv(key)?).await?)
    }

    pub async fn get_string(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .get(key)
            .await?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The members of a set (`kv.set-add`), sorted.
    pub async fn members(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let context = self.scope()?;
        let mut members = context.store.set_members(&context.scope.kv(key)?).await?;
        members.sort();
        Ok(members)
    }
}

fn outcome(
    result: Result<Result<(), wit::HandlerError>, bitbylaw::runtime::CallError>,
) -> Result<(), Failure> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(wit::HandlerError::Retryable(e))) => Err(Failure::Retryable(e)),
        Ok(Err(wit::HandlerError::Permanent(e))) => Err(Failure::Permanent(e)),
        Err(error) => Err(Failure::Trap(error.to_string())),
    }
}

/// The component of the plugin crate in `manifest_dir`: built (release,
/// wasm32-wasip2) when missing or older than its sources.
pub fn component_of(manifest_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = std::fs::read_to_string(manifest_dir.join("Cargo.toml"))
        .with_context(|| format!("no Cargo.toml in {}", manifest_dir.display()))?;
    let name = manifest
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "name").then(|| value.trim().trim_matches('"').to_owned())
        })
        .context("Cargo.toml names no package")?;
    let target = target_dir(manifest_dir);
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    let stale = match built {
        None => true,
        Some(built) => {
            bitbylaw::cli::dev::newest_source(manifest_dir).is_some_and(|source| source > built)
        }
    };
    if stale {
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(manifest_dir)
                .status()
                .context("cannot run cargo to build the component")?;
        if !status.success() {
            anyhow::bail!(
                "building the component failed (is the target installed? `rustup target add wasm32-wasip2`)"
            );
        }
    }
    if !wasm.exists() {
        anyhow::bail!("{} is missing after the build", wasm.display());
    }
    Ok(wasm)
}

/// `CARGO_TARGET_DIR`, else the `target/` of the nearest folder (upwards) that has one.
fn target_dir(manifest_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    manifest_dir
        .ancestors()
        .map(|dir| dir.join("target"))
        .find(|target| target.is_dir())
        .unwrap_or_else(|| manifest_dir.join("target"))
}

/// Compiled components are kept beside them in the build folder
/// (`target/component-cache`), so a second test run is quick.
fn cache_dir(plugins: &[Plugin]) -> PathBuf {
    plugins
        .first()
        .and_then(|plugin| plugin.component.ancestors().nth(3))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("bitbylaw-testing"))
        .join("component-cache")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn quoted(path: &Path) -> String {
    string(&path.display().to_string())
}

fn string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn quoted_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        string(key)
    }
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| string(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
