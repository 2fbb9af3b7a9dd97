//! A 3CX V20 PBX as `../shared/reference/upstreams.md` describes it: the
//! client-credentials token endpoint, the Call Control API (`makecall`,
//! participants and their status, `drop`) and the XAPI's recordings and call
//! history with OData `$filter`, `$orderby` and `$top`, and the audio
//! download. Every API request needs a bearer token this simulator issued and
//! that has not expired; tokens and credentials are checked here, by its own
//! code.
//!
//! Where the reference is silent the simulator is strict and says so:
//! - `makecall` answers `{"finalstatus": "Success", "result": <participant>}`
//!   (3CX's `CallControlResultResponse`); an unknown extension is 404, a
//!   missing `destination` 400.
//! - OData: `$filter` takes `<Field> gt|ge|lt|le|eq <value>` joined by `and`
//!   (numbers, or ISO-8601 times for the `…Time` fields); anything else is 400
//!   with an OData error body. `$top` is at most 100 (3CX pages its lists).
//! - Call history segments carry `SegmentId` and `CallId` beside the
//!   reference's fields, so the segments of one call (a transfer) can be told
//!   apart from another call's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The account the simulator accepts.
#[derive(Debug, Clone)]
pub struct ThreeCxAccount {
    pub client_id: String,
    pub client_secret: String,
}

impl Default for ThreeCxAccount {
    fn default() -> Self {
        Self {
            client_id: "bitbylaw".into(),
            client_secret: "3cx-demo-secret".into(),
        }
    }
}

/// A call's participant as the Call Control API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: u64,
    pub callid: u64,
    pub dn: String,
    /// `Dialing`, `Ringing`, `Connected`; a participant that ended is gone.
    pub status: String,
    pub party_dn: String,
    pub party_caller_id: String,
    pub party_caller_name: String,
    /// What `makecall` was given as `attacheddata`.
    pub attached: Value,
}

impl Participant {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "callid": self.callid, "dn": self.dn, "status": self.status,
            "party_dn": self.party_dn, "party_caller_id": self.party_caller_id,
            "party_caller_name": self.party_caller_name, "direct_control": false,
        })
    }
}

struct Sim {
    account: ThreeCxAccount,
    token_lifetime: Duration,
    tokens: BTreeMap<String, DateTime<Utc>>,
    token_requests: usize,
    extensions: Vec<String>,
    participants: Vec<Participant>,
    /// Every `makecall`, in order: (extension, destination, attached data).
    calls_made: Vec<(String, String, Value)>,
    next_id: u64,
    recordings: Vec<Map<String, Value>>,
    audio: BTreeMap<u64, Vec<u8>>,
    history: Vec<Map<String, Value>>,
    /// Authorised API requests: method and path with query.
    api_requests: Vec<(String, String)>,
    faults: super::Faults<u16>,
}

type Shared = Arc<Mutex<Sim>>;

/// The simulator; stops when dropped.
pub struct ThreeCx {
    addr: std::net::SocketAddr,
    sim: Shared,
    server: super::Server,
}

impl ThreeCx {
    pub async fn start(account: ThreeCxAccount) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), account)
            .await
            .unwrap()
    }

    /// On `addr` (the demo's fixed port).
    pub async fn start_on(
        addr: std::net::SocketAddr,
        account: ThreeCxAccount,
    ) -> std::io::Result<Self> {
        let sim = Arc::new(Mutex::new(Sim {
            account,
            token_lifetime: Duration::from_secs(3600),
            tokens: BTreeMap::new(),
            token_requests: 0,
            extensions: vec!["100".into(), "101".into(), "102".into()],
            participants: Vec::new(),
            calls_made: Vec::new(),
            next_id: 1,
            recordings: Vec::new(),
            audio: BTreeMap::new(),
            history: Vec::new(),
            api_requests: Vec::new(),
            faults: super::Faults::default(),
        }));
        let api = Router::new()
            .route("/callcontrol/{dn}/makecall", post(makecall))
            .route("/callcontrol/{dn}/participants", get(participants))
            .route("/callcontrol/{dn}/participants/{id}", get(participant))
            .route(
                "/callcontrol/{dn}/participants/{id}/drop",
                post(drop_participant),
            )
            .route("/xapi/v1/Recordings", get(recordings))
            .route("/xapi/v1/Recordings/{download}", get(download))
            .route("/xapi/v1/CallHistoryView", get(history))
            .layer(axum::middleware::from_fn_with_state(sim.clone(), gate));
        let app = Router::new()
            .route("/connect/token", post(token))
            .merge(api)
            .with_state(sim.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            addr,
            sim,
            server: super::Server::start(listener, app),
        })
    }

    pub async fn start_default() -> Self {
        Self::start(ThreeCxAccount::default()).await
    }

    fn sim(&self) -> std::sync::MutexGuard<'_, Sim> {
        self.sim.lock().unwrap()
    }

    /// `http://127.0.0.1:<port>/` (the account's "FQDN" in tests).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn account(&self) -> ThreeCxAccount {
        self.sim().account.clone()
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.sim().token_lifetime = lifetime;
    }

    /// Every token issued so far stops working (3CX restarted, the client
    /// was re-created): the next API request with one gets 401.
    pub fn revoke_tokens(&self) {
        self.sim().tokens.clear();
    }

    pub fn token_requests(&self) -> usize {
        self.sim().token_requests
    }

    /// Every `makecall` so far: (extension, destination, attached data).
    pub fn calls_made(&self) -> Vec<(String, String, Value)> {
        self.sim().calls_made.clone()
    }

    /// The calls' participants now (ended ones are gone).
    pub fn participants(&self) -> Vec<Participant> {
        self.sim().participants.clone()
    }

    /// A tenant file's `[upstreams.<name>]` for this PBX (the secret in `dir`).
    pub fn upstream_toml(&self, name: &str, dir: &std::path::Path) -> String {
        let secret = dir.join(format!("{name}-client-secret"));
        std::fs::write(&secret, &self.account().client_secret).unwrap();
        format!(
            "[upstreams.{name}]\nkind = \"3cx\"\nurl = \"{}\"\nclient_id = \"{}\"\n\
             client_secret = {{ file = \"{}\" }}\nrequests_per_minute = 600\n",
            self.base_url(),
            self.account().client_id,
            secret.display()
        )
    }

    /// The authorised API requests so far (method, path and query).
    pub fn api_requests(&self) -> Vec<(String, String)> {
        self.sim().api_requests.clone()
    }

    /// The participant `id` takes status `status` (`Ringing`, `Connected`);
    /// `None` ends it (hung up, or nobody answered).
    pub fn set_status(&self, id: u64, status: Option<&str>) {
        let mut sim = self.sim();
        match status {
            Some(status) => {
                if let Some(p) = sim.participants.iter_mut().find(|p| p.id == id) {
                    p.status = status.to_owned();
                }
            }
            None => sim.participants.retain(|p| p.id != id),
        }
    }

    /// A recording of 3CX (fields as the XAPI names them; `Id` is given the
    /// next number) with its audio; returns its id.
    pub fn add_recording(&self, mut fields: Map<String, Value>, audio: &[u8]) -> u64 {
        let mut sim = self.sim();
        let id = sim.next_id;
        sim.next_id += 1;
        fields.insert("Id".into(), json!(id));
        fields
            .entry("RecordingUrl")
            .or_insert_with(|| json!(format!("recording-{id}.wav")));
        sim.recordings.push(fields);
        sim.audio.insert(id, audio.to_vec());
        id
    }

    /// A call-history segment (fields as the XAPI names them; `SegmentId` is
    /// given the next number).
    pub fn add_segment(&self, mut fields: Map<String, Value>) -> u64 {
        let mut sim = self.sim();
        let id = sim.next_id;
        sim.next_id += 1;
        fields.insert("SegmentId".into(), json!(id));
        sim.history.push(fields);
        id
    }

    pub fn set_latency(&self, latency: Duration) {
        self.sim().faults.latency = latency;
    }

    pub fn fail_next(&self, count: usize, status: u16) {
        self.sim().faults.fail_next(count, status);
    }

    pub fn break_after(&self, requests: usize) {
        self.sim().faults.break_after(requests);
    }

    pub fn heal(&self) {
        self.sim().faults.heal();
    }

    pub fn refuse_connections(&self) {
        self.server.refuse_connections();
    }

    pub async fn accept_connections(&self) {
        self.server.accept_connections().await;
    }
}

fn odata_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": "", "message": message } })),
    )
        .into_response()
}

/// `POST /connect/token`: client credentials, form-encoded.
async fn token(State(sim): State<Shared>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut sim = sim.lock().unwrap();
    sim.token_requests += 1;
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "unsupported_grant_type" })),
        )
            .into_response();
    }
    let known = form.get("client_id") == Some(&sim.account.client_id)
        && form.get("client_secret") == Some(&sim.account.client_secret);
    if !known {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let lifetime = sim.token_lifetime;
    sim.tokens.insert(
        token.clone(),
        Utc::now() + chrono::Duration::from_std(lifetime).unwrap(),
    );
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "access_token": token,
    }))
    .into_response()
}

/// Every API request: the latency, a valid token, then the queued faults.
async fn gate(
    State(sim): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let latency = sim.lock().unwrap().faults.latency;
    tokio::time::sleep(latency).await;
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    {
        let mut sim = sim.lock().unwrap();
        let valid = bearer
            .as_ref()
            .and_then(|token| sim.tokens.get(token))
            .is_some_and(|expires| *expires > Utc::now());
        if !valid {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        sim.api_requests
            .push((request.method().to_string(), target));
        match sim.faults.next() {
            Some(super::Fault::Broken) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Some(super::Fault::Failure(status)) => {
                return StatusCode::from_u16(status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                    .into_response();
            }
            None => {}
        }
    }
    next.run(request).await
}

async fn makecall(State(sim): State<Shared>, Path(dn): Path<String>, body: Bytes) -> Response {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return odata_error(StatusCode::BAD_REQUEST, "the body is not a JSON object");
    };
    let Some(destination) = body.get("destination").and_then(Value::as_str) else {
        return odata_error(StatusCode::BAD_REQUEST, "destination is required");
    };
    let mut sim = sim.lock().unwrap();
    if !sim.extensions.contains(&dn) {
        return odata_error(StatusCode::NOT_FOUND, &format!("no extension {dn}"));
    }
    let attached = body.get("attacheddata").cloned().unwrap_or(Value::Null);
    sim.calls_made
        .push((dn.clone(), destination.to_owned(), attached.clone()));
    let id = sim.next_id;
    sim.next_id += 1;
    let participant = Participant {
        id,
        callid: 10_000 + id,
        dn,
        status: "Dialing".into(),
        party_dn: destination.to_owned(),
        party_caller_id: destination.to_owned(),
        party_caller_name: String::new(),
        attached,
    };
    let result = participant.json();
    sim.participants.push(participant);
    axum::Json(
        json!({ "finalstatus": "Success", "reason": "", "reasontext": "", "result": result }),
    )
    .into_response()
}

async fn participants(State(sim): State<Shared>, Path(dn): Path<String>) -> Response {
    let sim = sim.lock().unwrap();
    if !sim.extensions.contains(&dn) {
        return odata_error(StatusCode::NOT_FOUND, &format!("no extension {dn}"));
    }
    let list: Vec<Value> = sim
        .participants
        .iter()
        .filter(|p| p.dn == dn)
        .map(Participant::json)
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

async fn participant(
    State(sim): State<Shared>,
    Path((dn, id)): Path<(String, String)>,
) -> Response {
    let sim = sim.lock().unwrap();
    match sim
        .participants
        .iter()
        .find(|p| p.dn == dn && p.id.to_string() == id)
    {
        Some(p) => axum::Json(p.json()).into_response(),
        None => odata_error(StatusCode::NOT_FOUND, &format!("no participant {id}")),
    }
}

async fn drop_participant(
    State(sim): State<Shared>,
    Path((dn, id)): Path<(String, String)>,
) -> Response {
    let mut sim = sim.lock().unwrap();
    let before = sim.participants.len();
    sim.participants
        .retain(|p| !(p.dn == dn && p.id.to_string() == id));
    if sim.participants.len() == before {
        return odata_error(StatusCode::NOT_FOUND, &format!("no participant {id}"));
    }
    axum::Json(json!({ "finalstatus": "Success", "reason": "", "reasontext": "" })).into_response()
}

async fn recordings(
    State(sim): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let sim = sim.lock().unwrap();
    odata_list(&sim.recordings, &query, "Id")
}

async fn history(
    State(sim): State<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let sim = sim.lock().unwrap();
    odata_list(&sim.history, &query, "SegmentId")
}

/// `GET /xapi/v1/Recordings/Pbx.DownloadRecording(recId=<n>)`: the audio.
async fn download(State(sim): State<Shared>, Path(download): Path<String>) -> Response {
    let id = download
        .strip_prefix("Pbx.DownloadRecording(recId=")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|id| id.parse::<u64>().ok());
    let Some(id) = id else {
        return odata_error(StatusCode::NOT_FOUND, &format!("no resource {download}"));
    };
    let sim = sim.lock().unwrap();
    match sim.audio.get(&id) {
        Some(audio) => ([("content-type", "audio/wav")], audio.clone()).into_response(),
        None => odata_error(StatusCode::NOT_FOUND, &format!("no recording {id}")),
    }
}

/// The largest `$top`.
pub const MAX_TOP: usize = 100;

/// A list answered the OData way: `{"value": [...]}` after `$filter`,
/// `$orderby` (default: by `key` ascending) and `$top`.
fn odata_list(
    rows: &[Map<String, Value>],
    query: &BTreeMap<String, String>,
    key: &str,
) -> Response {
    let mut selected: Vec<&Map<String, Value>> = Vec::new();
    let conditions = match query.get("$filter").map(|f| parse_filter(f)).transpose() {
        Ok(conditions) => conditions.unwrap_or_default(),
        Err(message) => return odata_error(StatusCode::BAD_REQUEST, &message),
    };
    for row in rows {
        if conditions.iter().all(|c| c.holds(row)) {
            selected.push(row);
        }
    }
    let (field, descending) = match query.get("$orderby") {
        None => (key.to_owned(), false),
        Some(order) => {
            let mut parts = order.split_whitespace();
            let field = parts.next().unwrap_or(key).to_owned();
            match parts.next() {
                None | Some("asc") => (field, false),
                Some("desc") => (field, true),
                Some(other) => {
                    return odata_error(
                        StatusCode::BAD_REQUEST,
                        &format!("bad $orderby direction {other}"),
                    );
                }
            }
        }
    };
    selected.sort_by(|a, b| compare(a.get(&field), b.get(&field)));
    if descending {
        selected.reverse();
    }
    let top = match query.get("$top").map(|t| t.parse::<usize>()) {
        None => MAX_TOP,
        Some(Ok(top)) if top <= MAX_TOP => top,
        Some(_) => {
            return odata_error(
                StatusCode::BAD_REQUEST,
                &format!("$top must be 0..={MAX_TOP}"),
            );
        }
    };
    let value: Vec<Value> = selected
        .into_iter()
        .take(top)
        .map(|row| Value::Object(row.clone()))
        .collect();
    axum::Json(json!({ "value": value })).into_response()
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(std::cmp::Ordering::Equal),
        (Some(Value::String(a)), Some(Value::String(b))) => a.cmp(b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

struct Condition {
    field: String,
    op: String,
    value: Value,
}

impl Condition {
    fn holds(&self, row: &Map<String, Value>) -> bool {
        let Some(actual) = row.get(&self.field) else {
            return false;
        };
        let ordering = match (actual, &self.value) {
            (Value::String(a), Value::String(b)) if self.field.ends_with("Time") => {
                match (a.parse::<DateTime<Utc>>(), b.parse::<DateTime<Utc>>()) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    _ => return false,
                }
            }
            (a, b) => compare(Some(a), Some(b)),
        };
        match self.op.as_str() {
            "gt" => ordering.is_gt(),
            "ge" => ordering.is_ge(),
            "lt" => ordering.is_lt(),
            "le" => ordering.is_le(),
            _ => ordering.is_eq(),
        }
    }
}

/// `<Field> <op> <value> [and …]`: numbers, ISO-8601 times, or `'text'`.
fn parse_filter(filter: &str) -> Result<Vec<Condition>, String> {
    filter
        .split(" and ")
        .map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            let [field, op, value] = words.as_slice() else {
                return Err(format!("cannot read $filter `{part}`"));
            };
            if !["gt", "ge", "lt", "le", "eq"].contains(op) {
                return Err(format!("$filter operator `{op}` is not supported"));
            }
            let value =
                if let Some(text) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                    Value::String(text.to_owned())
                } else if let Ok(number) = value.parse::<i64>() {
                    json!(number)
                } else if value.parse::<DateTime<Utc>>().is_ok() {
                    Value::String((*value).to_owned())
                } else {
                    return Err(format!("cannot read the value `{value}` in $filter"));
                };
            Ok(Condition {
                field: (*field).to_owned(),
                op: (*op).to_owned(),
                value,
            })
        })
        .collect()
}

/// 3CX's side of the server-side CRM template: reads the template XML the
/// firm uploads (`deploy/3cx/bitbylaw-crm.xml`) and calls its scenarios the
/// way the PBX does, expanding its `[Variable]` expressions (the subset of
/// 3CX's expression language templates use: `.Replace`, `.ToString(format)`
/// on times and numbers, `.get_TotalSeconds()`), so a test exercises the
/// template itself, not a copy of what it should say.
pub mod template {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use quick_xml::events::Event;
    use serde_json::Value;

    #[derive(Debug, Clone, Default)]
    pub struct Scenario {
        pub url: String,
        pub method: String,
        pub encoding: String,
        pub skip_if: String,
        pub headers: Vec<(String, String)>,
        pub post_values: Vec<(String, String)>,
        pub rule_any: Vec<String>,
        pub variables: Vec<(String, String)>,
        pub outputs: Vec<(String, String)>,
    }

    #[derive(Debug, Clone)]
    pub struct Template {
        pub name: String,
        pub number_prefix: String,
        pub parameters: Vec<String>,
        pub scenarios: BTreeMap<String, Scenario>,
    }

    fn attr(element: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
        element
            .attributes()
            .flatten()
            .find(|a| a.key.as_ref() == name.as_bytes())
            .and_then(|a| {
                let raw = std::str::from_utf8(&a.value).ok()?;
                quick_xml::escape::unescape(raw)
                    .ok()
                    .map(|v| v.into_owned())
            })
    }

    impl Template {
        pub fn parse(xml: &str) -> Result<Self, String> {
            let mut reader = quick_xml::Reader::from_str(xml);
            reader.config_mut().trim_text(true);
            let mut template = Template {
                name: String::new(),
                number_prefix: String::new(),
                parameters: Vec::new(),
                scenarios: BTreeMap::new(),
            };
            let mut scenario: Option<(String, Scenario)> = None;
            let mut section = String::new();
            let mut value_key: Option<String> = None;
            let mut in_rule = false;
            let mut text_buffer = String::new();
            loop {
                let event = reader.read_event().map_err(|e| e.to_string())?;
                match event {
                    Event::Eof => break,
                    Event::Start(e) | Event::Empty(e) => {
                        text_buffer.clear();
                        let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        match tag.as_str() {
                            "Crm" => template.name = attr(&e, "Name").unwrap_or_default(),
                            "Number" => {
                                template.number_prefix = attr(&e, "Prefix").unwrap_or_default()
                            }
                            "Parameter" => template
                                .parameters
                                .push(attr(&e, "Name").unwrap_or_default()),
                            "Scenario" => {
                                scenario =
                                    Some((attr(&e, "Id").unwrap_or_default(), Scenario::default()))
                            }
                            "Request" => {
                                if let Some((_, s)) = &mut scenario {
                                    s.url = attr(&e, "Url").unwrap_or_default();
                                    s.method = attr(&e, "RequestType").unwrap_or_default();
                                    s.encoding = attr(&e, "RequestEncoding").unwrap_or_default();
                                    s.skip_if = attr(&e, "SkipIf").unwrap_or_default();
                                }
                            }
                            "Headers" | "PostValues" => section = tag.clone(),
                            "Value" => value_key = attr(&e, "Key"),
                            "Rule" => in_rule = attr(&e, "Type").as_deref() == Some("Any"),
                            "Variable" => {
                                if let Some((_, s)) = &mut scenario {
                                    s.variables.push((
                                        attr(&e, "Name").unwrap_or_default(),
                                        attr(&e, "Path").unwrap_or_default(),
                                    ));
                                }
                            }
                            "Output" => {
                                if let Some((_, s)) = &mut scenario {
                                    s.outputs.push((
                                        attr(&e, "Type").unwrap_or_default(),
                                        attr(&e, "Value").unwrap_or_default(),
                                    ));
                                }
                            }
                            _ => {}
                        }
                    }
                    Event::Text(text) => {
                        text_buffer.push_str(&text.decode().map_err(|e| e.to_string())?);
                    }
                    Event::GeneralRef(entity) => {
                        let name = entity.decode().map_err(|e| e.to_string())?;
                        let raw = format!("&{name};");
                        text_buffer.push_str(
                            &quick_xml::escape::unescape(&raw).map_err(|e| e.to_string())?,
                        );
                    }
                    Event::End(e) => {
                        let text = std::mem::take(&mut text_buffer).trim().to_owned();
                        match e.name().as_ref() {
                            b"Scenario" => {
                                if let Some((id, s)) = scenario.take() {
                                    template.scenarios.insert(id, s);
                                }
                            }
                            b"Headers" | b"PostValues" => section.clear(),
                            b"Value" => {
                                if let (Some((_, s)), Some(key)) = (&mut scenario, value_key.take())
                                {
                                    match section.as_str() {
                                        "Headers" => s.headers.push((key, text)),
                                        "PostValues" => s.post_values.push((key, text)),
                                        _ => {}
                                    }
                                }
                            }
                            b"Rule" => {
                                if let (Some((_, s)), true) = (&mut scenario, in_rule) {
                                    s.rule_any.push(text);
                                }
                                in_rule = false;
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            Ok(template)
        }
    }

    /// A value of 3CX's expression language.
    #[derive(Debug, Clone)]
    pub enum Var {
        Text(String),
        Time(DateTime<Utc>),
        /// A TimeSpan, in seconds.
        Span(f64),
        Number(f64),
    }

    impl Var {
        fn text(&self) -> String {
            match self {
                Var::Text(t) => t.clone(),
                // .NET's default rendering of a DateTime (en-US).
                Var::Time(t) => t.format("%m/%d/%Y %I:%M:%S %p").to_string(),
                Var::Span(s) => {
                    let s = *s as u64;
                    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                }
                Var::Number(n) => n.to_string(),
            }
        }
    }

    fn dotnet_to_chrono(format: &str) -> String {
        format
            .replace("yyyy", "%Y")
            .replace("MM", "%m")
            .replace("dd", "%d")
            .replace("HH", "%H")
            .replace("mm", "%M")
            .replace("ss", "%S")
    }

    fn quoted_args(args: &str) -> Vec<String> {
        args.split(',')
            .map(|a| a.trim().trim_matches('"').to_owned())
            .collect()
    }

    /// Index of the `]` closing the `[` at `open`.
    fn closing(text: &[char], open: usize) -> Option<usize> {
        let mut depth = 0;
        let mut quoted = false;
        for (i, c) in text.iter().enumerate().skip(open) {
            match c {
                '"' => quoted = !quoted,
                '[' if !quoted => depth += 1,
                ']' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// One bracketed expression's inside: `Name`, or `[inner].Method(args)`.
    fn evaluate(inner: &str, vars: &BTreeMap<String, Var>) -> Var {
        let chars: Vec<char> = inner.chars().collect();
        if chars.first() != Some(&'[') {
            return vars
                .get(inner)
                .cloned()
                .unwrap_or_else(|| Var::Text(String::new()));
        }
        let Some(end) = closing(&chars, 0) else {
            return Var::Text(inner.to_owned());
        };
        let target: String = chars[1..end].iter().collect();
        let value = evaluate(&target, vars);
        let call: String = chars[end + 1..].iter().collect();
        let Some(call) = call.strip_prefix('.') else {
            return value;
        };
        let (method, args) = call
            .split_once('(')
            .map(|(m, a)| (m, a.trim_end_matches(')')))
            .unwrap_or((call, ""));
        match (method, value) {
            ("Replace", v) => {
                let args = quoted_args(args);
                Var::Text(v.text().replace(&args[0], &args[1]))
            }
            ("ToString", Var::Time(t)) => Var::Text(
                t.format(&dotnet_to_chrono(args.trim_matches('"')))
                    .to_string(),
            ),
            ("ToString", Var::Number(n)) if args.trim_matches('"') == "F0" => {
                Var::Text(format!("{}", n.round() as i64))
            }
            ("get_TotalSeconds", Var::Span(s)) => Var::Number(s),
            ("get_TotalMinutes", Var::Span(s)) => Var::Number(s / 60.0),
            (_, v) => v,
        }
    }

    /// Expands every `[...]` in `text`.
    pub fn expand(text: &str, vars: &BTreeMap<String, Var>) -> String {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '['
                && let Some(end) = closing(&chars, i)
            {
                let inner: String = chars[i + 1..end].iter().collect();
                out.push_str(&evaluate(&inner, vars).text());
                i = end + 1;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }

    /// The screen pop 3CX shows: the outputs by type, per matching record.
    pub type ScreenPop = BTreeMap<String, String>;

    fn at_path<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(record, |value, part| value.get(part))
    }

    /// The PBX calling the template's scenarios.
    pub struct Pbx {
        pub template: Template,
        pub parameters: BTreeMap<String, Var>,
        pub client: reqwest::Client,
    }

    impl Pbx {
        /// The template in `path`, with the firm's parameter values.
        pub fn load(path: &std::path::Path, parameters: &[(&str, &str)]) -> Self {
            let xml = std::fs::read_to_string(path).unwrap();
            let template = Template::parse(&xml).unwrap();
            let mut values = BTreeMap::new();
            for (name, value) in parameters {
                assert!(
                    template.parameters.iter().any(|p| p == name),
                    "the template has no parameter {name}"
                );
                values.insert((*name).to_owned(), Var::Text((*value).to_owned()));
            }
            values.insert("MaxLength".into(), Var::Text(String::new()));
            Self {
                template,
                parameters: values,
                client: reqwest::Client::new(),
            }
        }

        fn scenario(&self, id: &str) -> &Scenario {
            self.template
                .scenarios
                .get(id)
                .unwrap_or_else(|| panic!("the template has no scenario `{id}`"))
        }

        async fn send(&self, scenario: &Scenario, vars: &BTreeMap<String, Var>) -> (u16, Value) {
            let url = expand(&scenario.url, vars);
            let mut request = match scenario.method.as_str() {
                "Get" => self.client.get(&url),
                "Post" => self.client.post(&url),
                other => panic!("RequestType {other}"),
            };
            for (name, value) in &scenario.headers {
                request = request.header(name, expand(value, vars));
            }
            if scenario.method == "Post" {
                let values: serde_json::Map<String, Value> = scenario
                    .post_values
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(expand(v, vars))))
                    .collect();
                request = match scenario.encoding.as_str() {
                    "Json" => request.json(&values),
                    _ => request.form(&values),
                };
            }
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json().await.unwrap_or(Value::Null))
        }

        /// The contact lookup for an incoming `number`, as it would show:
        /// one screen pop per record the rule accepts.
        pub async fn lookup(&self, number: &str) -> (u16, Vec<ScreenPop>) {
            let scenario = self.scenario("");
            let mut vars = self.parameters.clone();
            vars.insert("Number".into(), Var::Text(number.to_owned()));
            let (status, answer) = self.send(scenario, &vars).await;
            let (list_path, _) = scenario.rule_any[0].split_once('.').unwrap();
            let records = answer[list_path].as_array().cloned().unwrap_or_default();
            let pops = records
                .iter()
                .filter(|record| {
                    scenario.rule_any.iter().all(|rule| {
                        let field = rule.split_once('.').map_or(rule.as_str(), |(_, f)| f);
                        at_path(record, field)
                            .and_then(Value::as_str)
                            .is_some_and(|v| !v.is_empty())
                    })
                })
                .map(|record| {
                    let mut vars = vars.clone();
                    for (name, path) in &scenario.variables {
                        let field = path.split_once('.').map_or(path.as_str(), |(_, f)| f);
                        let value = at_path(record, field)
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        vars.insert(name.clone(), Var::Text(value.to_owned()));
                    }
                    scenario
                        .outputs
                        .iter()
                        .map(|(kind, value)| (kind.clone(), expand(value, &vars)))
                        .collect()
                })
                .collect();
            (status, pops)
        }

        /// The call journal for an ended call (one agent's part of it).
        pub async fn report_call(&self, call: &ReportedCall) -> (u16, Value) {
            let scenario = self.scenario("ReportCall");
            let mut vars = self.parameters.clone();
            vars.insert("ReportCallEnabled".into(), Var::Text("True".into()));
            for (name, value) in [
                ("CallType", call.call_type.as_str()),
                ("Number", call.number.as_str()),
                ("Name", call.name.as_str()),
                ("Agent", call.agent.as_str()),
                ("EntityId", call.entity_id.as_str()),
            ] {
                vars.insert(name.into(), Var::Text(value.to_owned()));
            }
            let seconds = (call.end - call.start).num_seconds() as f64;
            vars.insert("DurationTimespan".into(), Var::Span(call.talk_s as f64));
            vars.insert("Duration".into(), Var::Span(seconds));
            vars.insert(
                "DateTime".into(),
                Var::Text(call.start.format("%d.%m.%Y %H:%M:%S").to_string()),
            );
            vars.insert("CallStartTimeUTC".into(), Var::Time(call.start));
            vars.insert("CallEndTimeUTC".into(), Var::Time(call.end));
            let skip = expand(&scenario.skip_if, &vars);
            if let Some((a, b)) = skip.split_once("!=")
                && a.trim() != b.trim()
            {
                return (0, Value::Null);
            }
            self.send(scenario, &vars).await
        }
    }

    /// What 3CX knows of an ended call when it reports it.
    #[derive(Debug, Clone)]
    pub struct ReportedCall {
        /// `Inbound`, `Outbound`, `Missed`, `Notanswered`.
        pub call_type: String,
        pub number: String,
        pub name: String,
        pub agent: String,
        pub talk_s: u64,
        pub start: DateTime<Utc>,
        pub end: DateTime<Utc>,
        /// The screen pop's `EntityId`, empty when none.
        pub entity_id: String,
    }
}
