//! EspoCRM (the firm's "VMH" CRM) as the integrations see it: the REST API
//! below `/api/v1/` (records of `CBeteiligte`, `Lead` and any other entity it
//! is told of), its two ways of signing in, and its webhooks, which a
//! scheduled job delivers in signed batches with EspoCRM's retry rules.
//! Written from `../shared/reference/upstreams.md` ("EspoCRM"); the HMACs are
//! computed here from RFC 2104 over plain SHA-256, sharing no code with the
//! code under test, so a mistake there is not mirrored here.
//!
//! Auth: `X-Api-Key: <key>`, or `X-Hmac-Authorization:
//! base64(key + ":" + hex(HMAC-SHA256(secret, "<METHOD> <path below /api/v1>")))`
//! (no query). Anything else: 401, empty body, `X-Status-Reason: Unauthorized`.
//!
//! Records are stored as sent plus `id` (17 lowercase hex), `createdAt`,
//! `modifiedAt` (UTC `YYYY-MM-DD HH:mm:ss`) and `deleted: false`; those four
//! are the server's and ignored in request bodies. PUT and PATCH both change
//! only the attributes given (EspoCRM's v1 PUT is a partial update). Errors
//! answer as EspoCRM does: the reason in `X-Status-Reason`, mostly no body.
//!
//! Lists (`{"list":[...],"total":N}`) are newest first unless `orderBy` says
//! otherwise (EspoCRM's default for custom entities: `createdAt` desc). `where`
//! compares strings case-insensitively, as MySQL's default collation does;
//! `notEquals` and `in` never match a missing or null attribute (SQL's NULL).
//!
//! Duplicates (the simulator's simple rule): on create, a record of the same
//! entity with the same `name` (trimmed, case-insensitive) is a duplicate,
//! unless both have an `emailAddress` and they differ (case-insensitive). The
//! answer is 409 with the duplicates as `[{"id", "name"}]`, unless the request
//! says `X-Skip-Duplicate-Check: true`. Changes made "in the UI" (`user_*`)
//! are never checked: a person there confirmed the warning.
//!
//! Webhooks: every change (REST or `user_*`) queues one item per webhook of
//! its event (`<Entity>.create` carrying all attributes, `.update` the changed
//! ones plus `id`, `.delete` only `{"id"}`). [`EspoCrm::deliver`] is one run
//! of the scheduled job: it takes everything queued when it starts and POSTs
//! it per webhook in batches of at most 50. EspoCRM retries 10 minutes after
//! a failure; here a retry is due at the next run, so tests need not wait.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// Where the REST API lives below the base URL.
pub const API_PATH: &str = "api/v1/";

/// The entities known from the start; others with [`EspoCrm::add_entity`].
pub const DEFAULT_ENTITIES: [&str; 7] = [
    "CBeteiligte",
    "Lead",
    "Contact",
    "Account",
    "TargetList",
    "Call",
    "Task",
];

/// A list's size when the request names none.
pub const DEFAULT_MAX_SIZE: usize = 20;

/// The largest `maxSize` allowed (EspoCRM's `recordListMaxSizeLimit`).
pub const MAX_SIZE_LIMIT: usize = 200;

/// Items per webhook request (EspoCRM's `webhookBatchSize`).
pub const BATCH_SIZE: usize = 50;

/// Tries per item, the first included (EspoCRM's `webhookMaxAttemptNumber`).
pub const MAX_ATTEMPTS: u32 = 4;

/// How long a webhook request may take (EspoCRM's `webhookTimeout`).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to a webhook URL may take (EspoCRM's `webhookConnectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attributes the server sets; request bodies cannot change them.
const MANAGED: [&str; 4] = ["id", "createdAt", "modifiedAt", "deleted"];

/// Attributes that must be a non-empty string, per entity.
const REQUIRED: [(&str, &str); 4] = [
    ("CBeteiligte", "name"),
    ("Call", "name"),
    ("Call", "dateStart"),
    ("Task", "name"),
];

/// The API user the simulator knows.
#[derive(Debug, Clone)]
pub struct EspoAccount {
    pub api_key: String,
    /// An API user has one authentication method, as in EspoCRM: with a
    /// secret key only `X-Hmac-Authorization` works, without one only `X-Api-Key`.
    pub secret_key: Option<String>,
    /// Take the MAC of `X-Hmac-Authorization` in hex as well (EspoCRM 8.4.1
    /// and later); by default only the raw digest, which every version takes.
    pub hex_hmac_accepted: bool,
}

impl Default for EspoAccount {
    fn default() -> Self {
        Self {
            api_key: "demo-espocrm-key".into(),
            secret_key: Some("demo-espocrm-secret".into()),
            hex_hmac_accepted: false,
        }
    }
}

impl EspoAccount {
    /// The demo's API user: authenticated by its key alone, so the README's
    /// `curl -H 'X-Api-Key: demo-espocrm-key'` works.
    pub fn demo() -> Self {
        Self {
            secret_key: None,
            ..Self::default()
        }
    }
}

/// The demo's webhook of `action` (`create`, `update`, `delete`): its id and
/// secret, as `scripts/demo.sh` hands them to the demo tenant. Not secrets.
pub fn demo_webhook(action: &str) -> (String, String) {
    (
        format!("demo-webhook-{action}"),
        format!("demo-secret-{action}"),
    )
}

/// The `X-Hmac-Authorization` value for `METHOD path`, `path` being below
/// `/api/v1` (e.g. `/Lead/abc`; a missing leading `/` is added, a query
/// dropped), with the MAC in hex as the reference's vector has it (EspoCRM
/// 8.4.1 and later take it).
pub fn hmac_authorization(api_key: &str, secret: &str, method: &str, path: &str) -> String {
    let mac = hex(&request_mac(secret, method, path));
    STANDARD.encode(format!("{api_key}:{mac}"))
}

/// The same with the raw digest, as EspoCRM's own client sends it (every version takes it).
pub fn hmac_authorization_raw(api_key: &str, secret: &str, method: &str, path: &str) -> String {
    let mut signed = format!("{api_key}:").into_bytes();
    signed.extend_from_slice(&request_mac(secret, method, path));
    STANDARD.encode(signed)
}

fn request_mac(secret: &str, method: &str, path: &str) -> Vec<u8> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let slash = if path.starts_with('/') { "" } else { "/" };
    let signed = format!("{} {slash}{path}", method.to_uppercase());
    hmac_sha256(secret.as_bytes(), signed.as_bytes())
}

/// The `Signature` header (EspoCRM 9+): base64(id + ":" + hex(HMAC-SHA256(secret, body))).
pub fn webhook_signature(webhook_id: &str, secret: &str, body: &[u8]) -> String {
    let mac = hex(&hmac_sha256(secret.as_bytes(), body));
    STANDARD.encode(format!("{webhook_id}:{mac}"))
}

/// The older `X-Signature` header: base64(id + ":" + the raw HMAC bytes).
pub fn legacy_webhook_signature(webhook_id: &str, secret: &str, body: &[u8]) -> String {
    let mut signed = format!("{webhook_id}:").into_bytes();
    signed.extend_from_slice(&hmac_sha256(secret.as_bytes(), body));
    STANDARD.encode(signed)
}

/// RFC 2104 with SHA-256 (block size 64 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    super::hmac::<Sha256, 64>(key, message)
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Equal without stopping at the first difference, so timing tells nothing.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYY-MM-DD HH:mm:ss` in UTC, as EspoCRM stores datetimes.
fn now() -> String {
    Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `count` random lowercase hex digits.
fn random_hex(count: usize) -> String {
    let mut text = String::new();
    while text.len() < count {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(count);
    text
}

/// One request that reached the REST API (after latency, before faults and auth).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Below the API base, e.g. `CBeteiligte/6523a1f0c2b4d5e6f`.
    pub path: String,
    /// The raw query string as received.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A webhook subscription: EspoCRM POSTs `event`'s changes to `url`, signed with `secret_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub event: String,
    pub url: String,
    pub secret_key: String,
}

/// What became of one webhook request, by EspoCRM's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx or 3xx (redirects are not followed).
    Delivered,
    /// 401, 403, 404, 405, 408, 500, 503 or no answer: the items stay
    /// queued, but those at their [`MAX_ATTEMPTS`]th try are dropped.
    Retrying,
    /// Any other status, or a retried answer to items all at their last try: dropped.
    Failed,
    /// 410: the webhook and its queue are deleted.
    WebhookRemoved,
}

/// One webhook request the simulator made.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub event: String,
    pub url: String,
    /// The receiver's status; `None` when there was no answer (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The `id`s of the batch's items, in order.
    pub ids: Vec<String>,
    /// 1 on the first try, up to [`MAX_ATTEMPTS`] (of the batch's most-tried item).
    pub attempt: u32,
    pub outcome: Outcome,
    /// The raw JSON array sent, as signed.
    pub body: Bytes,
}

/// What one run of the delivery job did; counts are of queue items.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    pub deliveries: Vec<Delivery>,
    pub delivered: usize,
    /// Left queued for the next run.
    pub retrying: usize,
    /// Dropped: refused, tried too often, or their webhook was removed.
    pub failed: usize,
    /// Webhooks deleted because their URL answered 410.
    pub removed_webhooks: Vec<String>,
}

struct QueueItem {
    data: Value,
    /// Tries so far.
    attempts: u32,
}

struct StoredWebhook {
    hook: Webhook,
    queue: VecDeque<QueueItem>,
}

struct Sim {
    /// Entity -> records in creation order; the keys are the known entities.
    entities: BTreeMap<String, Vec<Map<String, Value>>>,
    /// Deleted records (EspoCRM deletes softly: an administrator can restore them).
    trash: Vec<(String, Map<String, Value>)>,
    webhooks: Vec<StoredWebhook>,
    /// Relationships: (entity, id, link) -> the linked records' ids
    /// (`POST /{entity}/{id}/{link}` with `{"id"}`; linking twice is no error).
    links: BTreeMap<(String, String, String), std::collections::BTreeSet<String>>,
    deliveries: Vec<Delivery>,
    api_requests: Vec<Recorded>,
    /// Requests the API answered (after auth), recorded once the answer was made.
    answered: Vec<Recorded>,
    /// Latency, and statuses for the API requests: queued, or 503 after a break.
    faults: super::Faults<u16>,
    batch_size: usize,
    delivery_timeout: Duration,
}

struct Inner {
    account: EspoAccount,
    sim: Mutex<Sim>,
    /// One delivery run at a time, as EspoCRM runs one job at a time.
    delivering: tokio::sync::Mutex<()>,
    client: reqwest::Client,
}

type Shared = Arc<Inner>;

/// Why a change was refused: status, `X-Status-Reason` and an optional JSON body.
struct Refusal {
    status: StatusCode,
    reason: String,
    body: Option<Value>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &str) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            body: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        if let Ok(reason) = HeaderValue::from_str(&self.reason) {
            response.headers_mut().insert("x-status-reason", reason);
        }
        response
    }
}

fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "Not Found")
}

impl Sim {
    fn new() -> Self {
        Self {
            entities: DEFAULT_ENTITIES
                .iter()
                .map(|e| ((*e).to_owned(), Vec::new()))
                .collect(),
            trash: Vec::new(),
            webhooks: Vec::new(),
            links: BTreeMap::new(),
            deliveries: Vec::new(),
            api_requests: Vec::new(),
            answered: Vec::new(),
            faults: super::Faults::default(),
            batch_size: BATCH_SIZE,
            delivery_timeout: DELIVERY_TIMEOUT,
        }
    }

    /// A fresh 17-digit id, unique among records and webhooks.
    fn new_id(&self) -> String {
        loop {
            let id = random_hex(17);
            let taken = self
                .entities
                .values()
                .flatten()
                .any(|r| r.get("id").and_then(Value::as_str) == Some(&id))
                || self.webhooks.iter().any(|w| w.hook.id == id);
            if !taken {
                return id;
            }
        }
    }

    fn table(&mut self, entity: &str) -> Result<&mut Vec<Map<String, Value>>, Refusal> {
        self.entities.get_mut(entity).ok_or_else(not_found)
    }

    fn position(&mut self, entity: &str, id: &str) -> Result<usize, Refusal> {
        self.table(entity)?
            .iter()
            .position(|r| r.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(not_found)
    }

    /// Queues `data` for every webhook of `event`.
    fn queue(&mut self, event: &str, data: &Value) {
        for webhook in self.webhooks.iter_mut().filter(|w| w.hook.event == event) {
            webhook.queue.push_back(QueueItem {
                data: data.clone(),
                attempts: 0,
            });
        }
    }

    fn create(
        &mut self,
        entity: &str,
        mut fields: Map<String, Value>,
        check_duplicates: bool,
    ) -> Result<Map<String, Value>, Refusal> {
        self.table(entity)?;
        for managed in MANAGED {
            fields.remove(managed);
        }
        validate(entity, &fields)?;
        if check_duplicates {
            let duplicates: Vec<Value> = self.entities[entity]
                .iter()
                .filter(|r| duplicate(r, &fields))
                .map(|r| json!({ "id": r["id"], "name": r["name"] }))
                .collect();
            if !duplicates.is_empty() {
                return Err(Refusal {
                    status: StatusCode::CONFLICT,
                    reason: "duplicate".into(),
                    body: Some(Value::Array(duplicates)),
                });
            }
        }
        let at = now();
        fields.insert("id".into(), json!(self.new_id()));
        fields.insert("createdAt".into(), json!(at));
        fields.insert("modifiedAt".into(), json!(at));
        fields.insert("deleted".into(), json!(false));
        self.table(entity)?.push(fields.clone());
        self.queue(&format!("{entity}.create"), &Value::Object(fields.clone()));
        Ok(fields)
    }

    /// Changes the given attributes; only real changes bump `modifiedAt` and
    /// reach the `.update` webhooks.
    fn update(
        &mut self,
        entity: &str,
        id: &str,
        changes: Map<String, Value>,
    ) -> Result<Map<String, Value>, Refusal> {
        let at = self.position(entity, id)?;
        let mut record = self.entities[entity][at].clone();
        let mut changed = Map::new();
        for (key, value) in changes {
            if MANAGED.contains(&key.as_str()) {
                continue;
            }
            if record.get(&key).unwrap_or(&Value::Null) != &value {
                changed.insert(key.clone(), value.clone());
                record.insert(key, value);
            }
        }
        validate(entity, &record)?;
        if changed.is_empty() {
            return Ok(record);
        }
        record.insert("modifiedAt".into(), json!(now()));
        self.table(entity)?[at] = record.clone();
        changed.insert("id".into(), json!(id));
        self.queue(&format!("{entity}.update"), &Value::Object(changed));
        Ok(record)
    }

    fn delete(&mut self, entity: &str, id: &str) -> Result<(), Refusal> {
        let at = self.position(entity, id)?;
        let record = self.table(entity)?.remove(at);
        self.trash.push((entity.to_owned(), record));
        self.queue(&format!("{entity}.delete"), &json!({ "id": id }));
        Ok(())
    }

    /// `<known entity>.create|update|delete`.
    fn known_event(&self, event: &str) -> bool {
        event.rsplit_once('.').is_some_and(|(entity, action)| {
            self.entities.contains_key(entity) && ["create", "update", "delete"].contains(&action)
        })
    }

    fn add_webhook(&mut self, hook: Webhook) {
        self.webhooks.push(StoredWebhook {
            hook,
            queue: VecDeque::new(),
        });
    }
}

fn validate(entity: &str, record: &Map<String, Value>) -> Result<(), Refusal> {
    for (owner, field) in REQUIRED {
        let given = record
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.trim().is_empty());
        if owner == entity && !given {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                reason: format!(
                    "Field validation failure; entityType: {entity}, field: {field}, type: required."
                ),
                body: Some(json!({
                    "messageTranslation": {
                        "label": "validationFailure",
                        "scope": null,
                        "data": { "field": field, "type": "required" }
                    }
                })),
            });
        }
    }
    Ok(())
}

/// The module doc's rule: same name, and no two different e-mail addresses.
fn duplicate(existing: &Map<String, Value>, new: &Map<String, Value>) -> bool {
    let text = |record: &Map<String, Value>, key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
    };
    let same_name = text(new, "name").is_some_and(|n| text(existing, "name") == Some(n));
    let other_email = match (text(existing, "emailAddress"), text(new, "emailAddress")) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    same_name && !other_email
}

/// A running simulator; stops (with its delivery job) when dropped.
pub struct EspoCrm {
    pub addr: SocketAddr,
    inner: Shared,
    server: super::Server,
    jobs: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl EspoCrm {
    /// On a free port of 127.0.0.1.
    pub async fn start(account: EspoAccount) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), account)
            .await
            .unwrap()
    }

    /// The default account.
    pub async fn start_default() -> Self {
        Self::start(EspoAccount::default()).await
    }

    /// On `addr` (the demo uses a fixed port).
    pub async fn start_on(addr: SocketAddr, account: EspoAccount) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Webhook URLs are local in tests and the demo: no proxy, no redirects
        // (a 3xx counts as delivered, as EspoCRM's curl does not follow it).
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            account,
            sim: Mutex::new(Sim::new()),
            delivering: tokio::sync::Mutex::new(()),
            client,
        });
        let api = Router::new()
            .route("/Webhook", post(create_webhook))
            .route("/Webhook/{id}", delete(delete_webhook))
            .route("/{entity}", get(list).post(create))
            .route(
                "/{entity}/{id}",
                get(read).put(update).patch(update).delete(remove),
            )
            .route("/{entity}/{id}/{link}", get(linked).post(link))
            .fallback(|| async { not_found() })
            .layer(middleware::from_fn_with_state(inner.clone(), api_gate));
        let app = Router::new()
            .nest("/api/v1", api)
            .layer(middleware::from_fn_with_state(inner.clone(), latency))
            .with_state(inner.clone());
        Ok(Self {
            addr,
            inner,
            server: super::Server::start(listener, app),
            jobs: Mutex::new(Vec::new()),
        })
    }

    fn sim(&self) -> std::sync::MutexGuard<'_, Sim> {
        self.inner.sim.lock().unwrap()
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The REST API's base: `<base_url>api/v1/`.
    pub fn api_base(&self) -> String {
        format!("{}{API_PATH}", self.base_url())
    }

    pub fn account(&self) -> &EspoAccount {
        &self.inner.account
    }

    /// `[upstreams.<name>]` for this simulator's account, its secrets written
    /// as files into `dir`; `signed` adds the secret key (HMAC), for an
    /// account that has one. Webhooks are the caller's to add.
    pub fn upstream_toml(&self, name: &str, dir: &std::path::Path, signed: bool) -> String {
        let account = self.account();
        let api_key = dir.join(format!("{name}-api_key"));
        std::fs::write(&api_key, &account.api_key).unwrap();
        let mut toml = format!(
            "[upstreams.{name}]\nkind = \"espocrm\"\nbase_url = \"{}\"\napi_key = {{ file = \"{}\" }}\n",
            self.base_url(),
            api_key.display()
        );
        if let (Some(secret), true) = (&account.secret_key, signed) {
            let file = dir.join(format!("{name}-secret_key"));
            std::fs::write(&file, secret).unwrap();
            toml.push_str(&format!(
                "secret_key = {{ file = \"{}\" }}\n",
                file.display()
            ));
        }
        toml
    }

    /// The ids related to record `id` of `entity` through `link`.
    pub fn links(&self, entity: &str, id: &str, link: &str) -> Vec<String> {
        self.sim()
            .links
            .get(&(entity.to_owned(), id.to_owned(), link.to_owned()))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes `entity` known (e.g. `CAkte`).
    pub fn add_entity(&self, entity: &str) {
        self.sim().entities.entry(entity.to_owned()).or_default();
    }

    /// Requests that reached the REST API, in order.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.sim().api_requests.clone()
    }

    /// The requests the API has answered, in order: once a read is here, a
    /// change made afterwards is not in its answer.
    pub fn answered(&self) -> Vec<Recorded> {
        self.sim().answered.clone()
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.sim().faults.latency = latency;
    }

    /// The next `count` API requests answer `status` (e.g. 500, 503), as
    /// EspoCRM answers errors: no body, the reason in `X-Status-Reason`.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.sim().faults.fail_next(count, status);
    }

    /// After `requests` more API requests, every one answers 503 until [`EspoCrm::heal`].
    pub fn break_after(&self, requests: usize) {
        self.sim().faults.break_after(requests);
    }

    /// Ends [`EspoCrm::break_after`] and drops pending failures.
    pub fn heal(&self) {
        self.sim().faults.heal();
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub fn refuse_connections(&self) {
        self.server.refuse_connections();
    }

    /// Listens again on the same address after [`EspoCrm::refuse_connections`].
    pub async fn accept_connections(&self) {
        self.server.accept_connections().await;
    }

    /// The records of `entity`, oldest first.
    pub fn records(&self, entity: &str) -> Vec<Value> {
        let sim = self.sim();
        let records = sim.entities.get(entity);
        records
            .into_iter()
            .flatten()
            .cloned()
            .map(Value::Object)
            .collect()
    }

    pub fn record(&self, entity: &str, id: &str) -> Option<Value> {
        let sim = self.sim();
        sim.entities
            .get(entity)?
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            .cloned()
            .map(Value::Object)
    }

    /// Creates a record as a person in the CRM's UI would; its id. Queues webhooks.
    pub fn user_create(&self, entity: &str, fields: Value) -> String {
        let Value::Object(fields) = fields else {
            panic!("a record is a JSON object");
        };
        match self.sim().create(entity, fields, false) {
            Ok(record) => record["id"].as_str().unwrap().to_owned(),
            Err(refusal) => panic!("cannot create {entity}: {}", refusal.reason),
        }
    }

    /// Changes a record as a person in the UI would. Queues webhooks.
    pub fn user_update(&self, entity: &str, id: &str, changes: Value) {
        let Value::Object(changes) = changes else {
            panic!("a change is a JSON object");
        };
        if let Err(refusal) = self.sim().update(entity, id, changes) {
            panic!("cannot update {entity} {id}: {}", refusal.reason);
        }
    }

    /// Deletes a record as a person in the UI would; whether it existed. Queues webhooks.
    pub fn user_delete(&self, entity: &str, id: &str) -> bool {
        self.sim().delete(entity, id).is_ok()
    }

    /// Restores a deleted record with its id, as an administrator can; whether
    /// EspoCRM announces that is not documented, so nothing is queued (the
    /// next change of the record is).
    pub fn user_restore(&self, entity: &str, id: &str) -> bool {
        let mut sim = self.sim();
        let Some(at) = sim
            .trash
            .iter()
            .position(|(e, r)| e == entity && r.get("id").and_then(Value::as_str) == Some(id))
        else {
            return false;
        };
        let (_, record) = sim.trash.remove(at);
        sim.entities
            .entry(entity.to_owned())
            .or_default()
            .push(record);
        true
    }

    /// Subscribes `url` to `event` (e.g. `CBeteiligte.create`) with a fresh id and secret.
    pub fn register_webhook(&self, event: &str, url: &str) -> Webhook {
        let id = self.sim().new_id();
        self.register_webhook_with(event, url, &id, &random_hex(32))
    }

    /// Subscribes with a given id and secret (to compare signatures with fixed values).
    pub fn register_webhook_with(&self, event: &str, url: &str, id: &str, secret: &str) -> Webhook {
        let mut sim = self.sim();
        assert!(sim.known_event(event), "unknown webhook event {event}");
        let hook = Webhook {
            id: id.to_owned(),
            event: event.to_owned(),
            url: url.to_owned(),
            secret_key: secret.to_owned(),
        };
        sim.add_webhook(hook.clone());
        hook
    }

    /// The webhooks, in the order they were registered.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.sim().webhooks.iter().map(|w| w.hook.clone()).collect()
    }

    /// Items waiting for delivery, all webhooks together.
    pub fn queued(&self) -> usize {
        self.sim().webhooks.iter().map(|w| w.queue.len()).sum()
    }

    /// Items per webhook request (default [`BATCH_SIZE`]).
    pub fn set_batch_size(&self, size: usize) {
        assert!(size > 0, "a batch holds at least one item");
        self.sim().batch_size = size;
    }

    /// How long a webhook request may take (default [`DELIVERY_TIMEOUT`]).
    pub fn set_delivery_timeout(&self, timeout: Duration) {
        self.sim().delivery_timeout = timeout;
    }

    /// Every webhook request made so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.sim().deliveries.clone()
    }

    /// One run of the delivery job (see the module doc).
    pub async fn deliver(&self) -> DeliveryReport {
        deliver(&self.inner).await
    }

    /// Runs the delivery job every `period` in the background (for the demo)
    /// until the simulator is dropped.
    pub fn start_delivery_every(&self, period: Duration) {
        let inner = self.inner.clone();
        let job = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                deliver(&inner).await;
            }
        });
        self.jobs.lock().unwrap().push(job);
    }

    /// A few `CBeteiligte` (a client, an opponent, another client) to look at.
    /// The demo's webhooks (`deploy/demo`, `scripts/demo.sh`): one per action
    /// of `CBeteiligte`, posting to `url_template` with `{action}` replaced,
    /// with the ids and secrets [`demo_webhook`] names.
    pub fn register_demo_webhooks(&self, url_template: &str) {
        for action in ["create", "update", "delete"] {
            let (id, secret) = demo_webhook(action);
            self.register_webhook_with(
                &format!("CBeteiligte.{action}"),
                &url_template.replace("{action}", action),
                &id,
                &secret,
            );
        }
    }

    pub fn seed_demo_data(&self) {
        for party in [
            json!({
                "name": "Hans Müller", "salutationName": "Herr",
                "firstName": "Hans", "lastName": "Müller",
                "emailAddress": "hans.mueller@example.de", "phoneNumber": "+49 30 12345678",
                "addressStreet": "Friedrichstraße 123", "addressPostalCode": "10117",
                "addressCity": "Berlin", "addressCountry": "Deutschland", "cRolle": "Mandant"
            }),
            json!({
                "name": "Petra Schneider", "salutationName": "Frau",
                "firstName": "Petra", "lastName": "Schneider",
                "emailAddress": "p.schneider@example.com", "phoneNumber": "+49 40 98765432",
                "addressStreet": "Mönckebergstraße 7", "addressPostalCode": "20095",
                "addressCity": "Hamburg", "addressCountry": "Deutschland", "cRolle": "Gegner"
            }),
            json!({
                "name": "Jürgen Weiß", "salutationName": "Herr",
                "firstName": "Jürgen", "lastName": "Weiß",
                "emailAddress": "juergen.weiss@example.org", "phoneNumber": "+49 89 5550123",
                "addressStreet": "Leopoldstraße 44", "addressPostalCode": "80802",
                "addressCity": "München", "addressCountry": "Deutschland", "cRolle": "Mandant"
            }),
        ] {
            self.user_create("CBeteiligte", party);
        }
    }
}

impl Drop for EspoCrm {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            for job in jobs.drain(..) {
                job.abort();
            }
        }
    }
}

// ---- delivery ----

/// EspoCRM's rules for a webhook answer (`None`: no answer at all).
fn verdict(status: Option<u16>) -> Outcome {
    match status {
        Some(200..=399) => Outcome::Delivered,
        Some(410) => Outcome::WebhookRemoved,
        None | Some(401 | 403 | 404 | 405 | 408 | 500 | 503) => Outcome::Retrying,
        _ => Outcome::Failed,
    }
}

async fn deliver(inner: &Inner) -> DeliveryReport {
    let _running = inner.delivering.lock().await;
    let (work, batch_size, timeout) = {
        let mut sim = inner.sim.lock().unwrap();
        let work: Vec<(Webhook, VecDeque<QueueItem>)> = sim
            .webhooks
            .iter_mut()
            .filter(|w| !w.queue.is_empty())
            .map(|w| (w.hook.clone(), std::mem::take(&mut w.queue)))
            .collect();
        (work, sim.batch_size, sim.delivery_timeout)
    };
    let mut report = DeliveryReport::default();
    for (hook, mut items) in work {
        let mut retry = Vec::new();
        let mut removed = false;
        while !items.is_empty() && !removed {
            let batch: Vec<QueueItem> = items.drain(..batch_size.min(items.len())).collect();
            let body = Bytes::from(
                serde_json::to_vec(&batch.iter().map(|i| &i.data).collect::<Vec<_>>()).unwrap(),
            );
            let attempt = batch.iter().map(|i| i.attempts).max().unwrap_or(0) + 1;
            let sent = inner
                .client
                .post(&hook.url)
                .timeout(timeout)
                .header("content-type", "application/json")
                .header(
                    "signature",
                    webhook_signature(&hook.id, &hook.secret_key, &body),
                )
                .header(
                    "x-signature",
                    legacy_webhook_signature(&hook.id, &hook.secret_key, &body),
                )
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match sent {
                Ok(answer) => (Some(answer.status().as_u16()), None),
                Err(error) => (None, Some(error.to_string())),
            };
            let ids = batch
                .iter()
                .map(|i| i.data["id"].as_str().unwrap_or_default().to_owned())
                .collect();
            let mut outcome = verdict(status);
            match outcome {
                Outcome::Delivered => report.delivered += batch.len(),
                Outcome::Failed => report.failed += batch.len(),
                Outcome::Retrying => {
                    // Tries count per item: those at their last are dropped.
                    let before = retry.len();
                    for mut item in batch {
                        item.attempts += 1;
                        if item.attempts < MAX_ATTEMPTS {
                            retry.push(item);
                        } else {
                            report.failed += 1;
                        }
                    }
                    report.retrying += retry.len() - before;
                    if retry.len() == before {
                        outcome = Outcome::Failed;
                    }
                }
                Outcome::WebhookRemoved => {
                    removed = true;
                    report.failed += batch.len() + items.len() + retry.len();
                    report.retrying -= retry.len();
                    report.removed_webhooks.push(hook.id.clone());
                }
            }
            let delivery = Delivery {
                webhook_id: hook.id.clone(),
                event: hook.event.clone(),
                url: hook.url.clone(),
                status,
                error,
                ids,
                attempt,
                outcome,
                body,
            };
            inner.sim.lock().unwrap().deliveries.push(delivery.clone());
            report.deliveries.push(delivery);
        }
        let mut sim = inner.sim.lock().unwrap();
        if removed {
            sim.webhooks.retain(|w| w.hook.id != hook.id);
        } else if let Some(webhook) = sim.webhooks.iter_mut().find(|w| w.hook.id == hook.id) {
            // Retries go before what was queued during this run, keeping the order.
            for item in retry.into_iter().rev() {
                webhook.queue.push_front(item);
            }
        }
    }
    report
}

// ---- server ----

async fn latency(State(inner): State<Shared>, request: Request, next: Next) -> Response {
    let latency = inner.sim.lock().unwrap().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}

/// Records the request, answers injected failures, checks the API key or HMAC.
async fn api_gate(State(inner): State<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response();
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().trim_start_matches('/').to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    let failure = {
        let mut sim = inner.sim.lock().unwrap();
        sim.api_requests.push(recorded.clone());
        match sim.faults.next() {
            Some(super::Fault::Broken) => Some(503),
            Some(super::Fault::Failure(status)) => Some(status),
            None => None,
        }
    };
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Error");
        return Refusal::new(status, reason).into_response();
    }
    if !authorized(
        &inner.account,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
    ) {
        return Refusal::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let answer = next.run(Request::from_parts(parts, Body::from(body))).await;
    inner.sim.lock().unwrap().answered.push(recorded);
    answer
}

/// `path` is below `/api/v1`, as signed.
/// EspoCRM's check: the user's one method. `X-Api-Key` for a key user;
/// `X-Hmac-Authorization` for an HMAC user, base64-decoded and split at the
/// first `:` (the raw MAC may hold more), the MAC raw (hex too from 8.4.1).
fn authorized(account: &EspoAccount, method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(secret) = &account.secret_key else {
        return header("x-api-key")
            .is_some_and(|key| same_bytes(key.as_bytes(), account.api_key.as_bytes()));
    };
    let Some(given) = header("x-hmac-authorization") else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(given.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (key, mac) = (&decoded[..colon], &decoded[colon + 1..]);
    let expected = hmac_sha256(secret.as_bytes(), format!("{method} {path}").as_bytes());
    // Both compared, so a wrong key takes as long as a wrong MAC.
    let key_ok = same_bytes(key, account.api_key.as_bytes());
    let raw_ok = same_bytes(mac, &expected);
    let hex_ok = account.hex_hmac_accepted && same_bytes(mac, hex(&expected).as_bytes());
    key_ok & (raw_ok | hex_ok)
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Bad Request: the body is not a JSON object",
        )),
    }
}

fn answer(result: Result<Value, Refusal>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn create(
    State(inner): State<Shared>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let skip = headers
        .get("x-skip-duplicate-check")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    answer(object(&body).and_then(|fields| {
        let mut sim = inner.sim.lock().unwrap();
        sim.create(&entity, fields, !skip).map(Value::Object)
    }))
}

async fn read(State(inner): State<Shared>, Path((entity, id)): Path<(String, String)>) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    answer(
        sim.position(&entity, &id)
            .map(|at| Value::Object(sim.entities[&entity][at].clone())),
    )
}

async fn update(
    State(inner): State<Shared>,
    Path((entity, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    // An unknown id is 404 before a bad body is 400.
    answer(sim.position(&entity, &id).and_then(|_| {
        let changes = object(&body)?;
        sim.update(&entity, &id, changes).map(Value::Object)
    }))
}

async fn remove(
    State(inner): State<Shared>,
    Path((entity, id)): Path<(String, String)>,
) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    answer(sim.delete(&entity, &id).map(|()| json!(true)))
}

/// `POST /{entity}/{id}/{link}` with `{"id": <foreign id>}`: relates the two
/// (EspoCRM answers `true`, also when they were related already).
async fn link(
    State(inner): State<Shared>,
    Path((entity, id, link)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    answer(sim.position(&entity, &id).and_then(|_| {
        let fields = object(&body)?;
        let Some(foreign) = fields.get("id").and_then(Value::as_str) else {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "No id"));
        };
        sim.links
            .entry((entity.clone(), id.clone(), link.clone()))
            .or_default()
            .insert(foreign.to_owned());
        Ok(json!(true))
    }))
}

/// `GET /{entity}/{id}/{link}`: the related records' ids.
async fn linked(
    State(inner): State<Shared>,
    Path((entity, id, link)): Path<(String, String, String)>,
) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    answer(sim.position(&entity, &id).map(|_| {
        let ids: Vec<Value> = sim
            .links
            .get(&(entity.clone(), id.clone(), link.clone()))
            .into_iter()
            .flatten()
            .map(|foreign| json!({ "id": foreign }))
            .collect();
        json!({ "total": ids.len(), "list": ids })
    }))
}

async fn create_webhook(State(inner): State<Shared>, body: Bytes) -> Response {
    let result = object(&body).and_then(|fields| {
        let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
        let (event, url) = (text("event"), text("url"));
        let mut sim = inner.sim.lock().unwrap();
        if !sim.known_event(event) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Bad Request: unknown or unsupported event",
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Bad Request: url must be http or https",
            ));
        }
        let hook = Webhook {
            id: sim.new_id(),
            event: event.to_owned(),
            url: url.to_owned(),
            secret_key: random_hex(32),
        };
        sim.add_webhook(hook.clone());
        let (entity_type, kind) = event.rsplit_once('.').unwrap_or_default();
        let at = now();
        Ok(json!({
            "id": hook.id, "event": hook.event, "url": hook.url,
            "secretKey": hook.secret_key, "isActive": true,
            "entityType": entity_type, "type": kind,
            "createdAt": at, "modifiedAt": at,
        }))
    });
    answer(result)
}

async fn delete_webhook(State(inner): State<Shared>, Path(id): Path<String>) -> Response {
    let mut sim = inner.sim.lock().unwrap();
    let before = sim.webhooks.len();
    sim.webhooks.retain(|w| w.hook.id != id);
    answer(if sim.webhooks.len() < before {
        Ok(json!(true))
    } else {
        Err(not_found())
    })
}

// ---- lists ----

#[derive(Default)]
struct Clause {
    kind: Option<String>,
    attribute: Option<String>,
    value: Option<String>,
    /// `where[i][value][]=...`, for `in`.
    values: Vec<String>,
}

struct ListParams {
    clauses: Vec<Clause>,
    max_size: usize,
    offset: usize,
    select: Option<Vec<String>>,
    order_by: Option<String>,
    descending: bool,
}

fn bad_request(reason: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, &format!("Bad Request: {reason}"))
}

fn list_params(query: &str) -> Result<ListParams, Refusal> {
    let mut clauses: BTreeMap<usize, Clause> = BTreeMap::new();
    let mut params = ListParams {
        clauses: Vec::new(),
        max_size: DEFAULT_MAX_SIZE,
        offset: 0,
        select: None,
        order_by: None,
        descending: false,
    };
    let number = |key: &str, value: &str| {
        value
            .parse::<usize>()
            .map_err(|_| bad_request(&format!("{key} is not a number")))
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        if let Some(rest) = key.strip_prefix("where[") {
            let bad = || bad_request(&format!("malformed {key}"));
            let (index, field) = rest.split_once(']').ok_or_else(bad)?;
            let clause = clauses
                .entry(index.parse().map_err(|_| bad())?)
                .or_default();
            match field {
                "[type]" => clause.kind = Some(value),
                "[attribute]" => clause.attribute = Some(value),
                "[value]" => clause.value = Some(value),
                _ if field.starts_with("[value][") && field.ends_with(']') => {
                    clause.values.push(value);
                }
                _ => return Err(bad()),
            }
            continue;
        }
        match &*key {
            "maxSize" => params.max_size = number("maxSize", &value)?,
            "offset" => params.offset = number("offset", &value)?,
            "select" => {
                params.select = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "orderBy" => params.order_by = Some(value).filter(|v| !v.is_empty()),
            "order" => {
                params.descending = match value.to_lowercase().as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(bad_request("order must be asc or desc")),
                }
            }
            // Other parameters (primaryFilter, textFilter, ...) are not simulated.
            _ => {}
        }
    }
    if params.max_size > MAX_SIZE_LIMIT {
        return Err(bad_request(&format!(
            "Max size should not exceed {MAX_SIZE_LIMIT}. Use offset and limit."
        )));
    }
    for clause in clauses.values() {
        let kind = clause.kind.as_deref().unwrap_or_default();
        if !["equals", "notEquals", "isNull", "isNotNull", "in"].contains(&kind) {
            return Err(bad_request(&format!("unsupported where type '{kind}'")));
        }
        if clause.attribute.is_none() {
            return Err(bad_request("where item without attribute"));
        }
        if ["equals", "notEquals"].contains(&kind) && clause.value.is_none() {
            return Err(bad_request("where item without value"));
        }
    }
    params.clauses = clauses.into_values().collect();
    Ok(params)
}

/// A scalar as the text a query compares it with; `None` for null and structures.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_lowercase()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// `true` also matches `1` and `false` `0`, as MySQL stores booleans.
fn same_text(own: &str, wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    own == wanted || matches!((own, wanted.as_str()), ("true", "1") | ("false", "0"))
}

fn matches(record: &Map<String, Value>, clause: &Clause) -> bool {
    let value = clause
        .attribute
        .as_deref()
        .and_then(|a| record.get(a))
        .unwrap_or(&Value::Null);
    let own = text_of(value);
    let wanted = clause.value.as_deref().unwrap_or_default();
    match clause.kind.as_deref().unwrap_or_default() {
        "equals" => own.is_some_and(|own| same_text(&own, wanted)),
        "notEquals" => own.is_some_and(|own| !same_text(&own, wanted)),
        "isNull" => value.is_null(),
        "isNotNull" => !value.is_null(),
        "in" => {
            let single = clause.value.iter();
            let wanted: Vec<&String> = if clause.values.is_empty() {
                single.collect()
            } else {
                clause.values.iter().collect()
            };
            own.is_some_and(|own| wanted.iter().any(|w| same_text(&own, w)))
        }
        _ => false,
    }
}

/// Nulls first, numbers by value, everything else by its (lowercased) text.
fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        _ => text_of(a).cmp(&text_of(b)),
    }
}

async fn list(
    State(inner): State<Shared>,
    Path(entity): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match list_params(query.as_deref().unwrap_or_default()) {
        Ok(params) => params,
        Err(refusal) => return refusal.into_response(),
    };
    let sim = inner.sim.lock().unwrap();
    let Some(records) = sim.entities.get(&entity) else {
        return not_found().into_response();
    };
    let mut found: Vec<&Map<String, Value>> = records
        .iter()
        .rev()
        .filter(|r| params.clauses.iter().all(|c| matches(r, c)))
        .collect();
    if let Some(attribute) = &params.order_by {
        let null = Value::Null;
        found.sort_by(|a, b| {
            let order = compare(
                a.get(attribute).unwrap_or(&null),
                b.get(attribute).unwrap_or(&null),
            );
            if params.descending {
                order.reverse()
            } else {
                order
            }
        });
    }
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(params.offset)
        .take(params.max_size)
        .map(|record| match &params.select {
            None => Value::Object(record.clone()),
            Some(select) => Value::Object(
                record
                    .iter()
                    .filter(|(key, _)| *key == "id" || select.contains(key))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            ),
        })
        .collect();
    Json(json!({ "list": page, "total": total })).into_response()
}
