//! Advoware as the integrations see it: the configurator (discovery), the
//! security gateway (the HMAC-512 token flow) and the REST API behind it
//! (`employees`, `appointments`, `Beteiligte`), with faults on demand.
//!
//! Token: `POST /api/v1/Token` with exactly `AppID`, `Kanzlei`, `Database`,
//! `User`, `Role`, `Product`, `Password`, `Nonce`, `RequestTimeStamp`,
//! `HMAC512Signature`; the signature is base64(HMAC-SHA512(base64-decoded API
//! key, "{Product}:{AppID}:{Nonce}:{RequestTimeStamp}")). Wrong credentials,
//! a wrong signature, a stale timestamp or a reused nonce are refused (401,
//! German message as the real gateway sends). Tokens expire.
//!
//! Appointments keep the quirks of real Advoware data: the server numbers them
//! (`frNr`) and stamps `zuletztGeaendertAm`; an all-day appointment
//! (`dauertermin: 1`) ends at 23:59; a series keeps its end in `datumBis` (2037
//! for an endless one) and is listed for every range it overlaps.
//! `POST appointments` answers with the new number only (`{"frNr": N}`), as
//! the reference says; `PUT appointments/{frNr}` *replaces* the record (the
//! reference is silent: the stricter reading, so a client that sends only
//! what it changed loses the rest). [`Advoware::set_write_rules`]
//! switches to a whole-record answer or a merging `PUT`.
//!
//! `Beteiligte` (parties) are *assumed* (not in the reference; `PUT` replaces
//! as for appointments): numbered by
//! `betNr`, stored as sent. The list filters by `name` (a part of it, any
//! case) and by `telefon` (equal to the party's `telefon` or `mobil` as
//! stored: no normalising, the stricter reading). A party's notes
//! (`Beteiligte/{betNr}/Notizen`, *assumed*) are only added and listed:
//! `POST` takes `{"text", ...}` and answers the note with its `id`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};
use sha2::Sha512;

/// How far a request's timestamp may be from the gateway's clock.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How long tokens live, as Advoware's do (about 55 minutes).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3300);

/// Where the REST API lives below the relay URL (the reference's assumption).
pub const API_PATH: &str = "api/v1/advonet/";

/// The one firm account the simulator knows.
#[derive(Debug, Clone)]
pub struct Account {
    pub app_id: String,
    /// Base64, as Advoware hands it out.
    pub api_key: String,
    pub kanzlei: String,
    pub database: String,
    pub user: String,
    pub password: String,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            app_id: "app-123".into(),
            api_key: "dGVzdC1zZWNyZXQta2V5".into(),
            kanzlei: "KANZLEI1".into(),
            database: "ADVOWARE".into(),
            user: "SB".into(),
            password: "geheim".into(),
        }
    }
}

/// base64(HMAC-SHA512(base64-decoded `api_key`, "{product}:{app_id}:{nonce}:{timestamp}")).
/// HMAC is written out here from RFC 2104 over plain SHA-512, sharing no code
/// with the host's signing (which uses the `hmac` crate): the two cannot be
/// wrong together, and the public test vector checks both.
pub fn signature(
    api_key: &str,
    product: u64,
    app_id: &str,
    nonce: &str,
    timestamp: &str,
) -> Option<String> {
    let key = STANDARD.decode(api_key).ok()?;
    let message = format!("{product}:{app_id}:{nonce}:{timestamp}");
    Some(STANDARD.encode(hmac_sha512(&key, message.as_bytes())))
}

/// RFC 2104 with SHA-512 (block size 128 bytes).
fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
    super::hmac::<Sha512, 128>(key, message)
}

/// One request that reached the REST API (after faults, before auth).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Below the API base, e.g. `appointments/1001`.
    pub path: String,
    /// The whole path as received, e.g. `/api/v1/advonet/appointments/1001`.
    pub full_path: String,
    /// The raw query string as received.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How the security gateway misbehaves, for testing what a client does with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenFault {
    #[default]
    None,
    /// Refuses every token request, quoting the whole request (password and all) in its message.
    EchoRequest,
    /// Answers 200 with the new token as a bare JSON string instead of an object.
    BareString,
}

/// How writes behave where the reference is silent or Advoware versions may
/// differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteRules {
    /// `POST appointments` answers with the whole stored record instead of `{"frNr": N}`.
    pub create_answers_whole_record: bool,
    /// `PUT appointments/{frNr}` and `PUT Beteiligte/{betNr}` merge the fields
    /// sent into the record instead of replacing it.
    pub put_merges: bool,
}

#[derive(Default)]
struct Faults {
    token: TokenFault,
    /// Discovery names a connector URL (`<base>connector/`) besides the relay.
    connector: bool,
    /// Latency, and statuses for the API requests: queued, or 503 after a break.
    api: super::Faults<u16>,
    /// Every API request answers 401, valid token or not.
    refuse_all_tokens: bool,
    /// The next API writes are carried out, but answered with this status
    /// instead (a gateway that timed out after Advoware committed), one each.
    lost_answers: VecDeque<u16>,
}

#[derive(Default)]
struct Data {
    employees: Vec<Value>,
    appointments: BTreeMap<i64, Value>,
    next_fr_nr: i64,
    parties: BTreeMap<i64, Value>,
    next_bet_nr: i64,
    /// Notes by party, in the order written.
    notes: BTreeMap<i64, Vec<Value>>,
    next_note_id: i64,
}

#[derive(Default)]
struct Gateway {
    write_rules: WriteRules,
    seen_nonces: HashSet<String>,
    tokens: HashMap<String, DateTime<Utc>>,
    issued: Vec<String>,
    token_requests: u64,
    api_requests: Vec<Recorded>,
    faults: Faults,
    data: Data,
}

#[derive(Clone)]
struct Shared {
    /// While true, appointment listings wait (see [`Advoware::hold_listings`]).
    hold: tokio::sync::watch::Sender<bool>,
    /// Listings waiting now.
    held: Arc<std::sync::atomic::AtomicUsize>,
    account: Account,
    token_lifetime: Duration,
    addr: SocketAddr,
    gateway: Arc<Mutex<Gateway>>,
}

/// A running simulator; stops when dropped.
pub struct Advoware {
    pub addr: SocketAddr,
    hold: tokio::sync::watch::Sender<bool>,
    held: Arc<std::sync::atomic::AtomicUsize>,
    account: Account,
    token_lifetime: Duration,
    gateway: Arc<Mutex<Gateway>>,
    server: super::Server,
}

impl Advoware {
    /// On a free port of 127.0.0.1.
    pub async fn start(account: Account, token_lifetime: Duration) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), account, token_lifetime)
            .await
            .unwrap()
    }

    /// The default account, tokens living [`TOKEN_LIFETIME`].
    pub async fn start_default() -> Self {
        Self::start(Account::default(), TOKEN_LIFETIME).await
    }

    /// On `addr` (the demo uses a fixed port).
    pub async fn start_on(
        addr: SocketAddr,
        account: Account,
        token_lifetime: Duration,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let gateway = Arc::new(Mutex::new(Gateway::default()));
        {
            let mut state = gateway.lock().unwrap();
            state.data.employees = vec![
                json!({ "kuerzel": "SB", "name": "Berger", "vorname": "Sabine" }),
                json!({ "kuerzel": "MK", "name": "König", "vorname": "Markus" }),
            ];
            state.data.next_fr_nr = 1001;
            state.data.next_bet_nr = 5001;
        }
        let (hold, _) = tokio::sync::watch::channel(false);
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shared = Shared {
            hold: hold.clone(),
            held: held.clone(),
            account: account.clone(),
            token_lifetime,
            addr,
            gateway: gateway.clone(),
        };
        let app = Router::new()
            .route("/api/v1/Token", post(token))
            .route("/AdvonetConfigurator/api/Url", get(discovery))
            .nest(RELAY_API, api(&shared, RELAY_API))
            .nest(CONNECTOR_API, api(&shared, CONNECTOR_API))
            .layer(middleware::from_fn_with_state(shared.clone(), latency))
            .with_state(shared);
        Ok(Self {
            addr,
            hold,
            held,
            account,
            token_lifetime,
            gateway,
            server: super::Server::start(listener, app),
        })
    }

    /// `http://127.0.0.1:<port>/`: configurator, security gateway and relay in one.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The REST API's base: `<base_url>api/v1/advonet/`.
    pub fn api_base(&self) -> String {
        format!("{}{API_PATH}", self.base_url())
    }

    /// The configurator, to be asked with `?Kanzlei=<firm>`.
    pub fn discovery_url(&self) -> String {
        format!("{}AdvonetConfigurator/api/Url", self.base_url())
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// Token requests answered so far (good or bad).
    pub fn token_requests(&self) -> u64 {
        self.gateway.lock().unwrap().token_requests
    }

    /// Tokens issued and still valid.
    pub fn live_tokens(&self) -> usize {
        let now = Utc::now();
        let state = self.gateway.lock().unwrap();
        state.tokens.values().filter(|at| **at > now).count()
    }

    /// Every token ever issued, revoked ones included (to look for them in logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.gateway.lock().unwrap().issued.clone()
    }

    /// Requests that reached the REST API, in order.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.gateway.lock().unwrap().api_requests.clone()
    }

    /// Invalidates every token: the next call with one gets 401.
    pub fn revoke_all_tokens(&self) {
        self.gateway.lock().unwrap().tokens.clear();
    }

    /// From now on every API request answers 401, even with a fresh token.
    pub fn refuse_all_tokens(&self, refuse: bool) {
        self.gateway.lock().unwrap().faults.refuse_all_tokens = refuse;
    }

    /// Every answer (token and API) waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.gateway.lock().unwrap().faults.api.latency = latency;
    }

    /// How the security gateway misbehaves from now on.
    pub fn set_token_fault(&self, fault: TokenFault) {
        self.gateway.lock().unwrap().faults.token = fault;
    }

    /// Discovery names a connector (`<base_url>connector/`, serving the same API) from now on.
    pub fn offer_connector(&self, offer: bool) {
        self.gateway.lock().unwrap().faults.connector = offer;
    }

    /// While `hold` is true, `GET appointments` (the listing) waits before it
    /// answers: a test can hold a run between its reads and its writes.
    pub fn hold_listings(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// How many listings wait now.
    pub fn held_listings(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How appointment writes behave (default: number-only answers, replacing `PUT`).
    pub fn set_write_rules(&self, rules: WriteRules) {
        self.gateway.lock().unwrap().write_rules = rules;
    }

    /// The next `count` API requests answer `status` (e.g. 500, 503).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.gateway
            .lock()
            .unwrap()
            .faults
            .api
            .fail_next(count, status);
    }

    /// The next `count` writes (POST, PUT, DELETE) are carried out, but their
    /// answers are lost: the caller gets `status` (e.g. 504) instead.
    pub fn lose_next_answers(&self, count: usize, status: u16) {
        let mut state = self.gateway.lock().unwrap();
        state
            .faults
            .lost_answers
            .extend(std::iter::repeat_n(status, count));
    }

    /// After `requests` more API requests, every one answers 503 until [`Advoware::heal`].
    pub fn break_after(&self, requests: usize) {
        self.gateway
            .lock()
            .unwrap()
            .faults
            .api
            .break_after(requests);
    }

    /// Ends [`Advoware::break_after`] and drops pending failures.
    pub fn heal(&self) {
        self.gateway.lock().unwrap().faults.api.heal();
    }

    /// Changes an appointment as a user in Advoware would.
    pub fn user_update(&self, fr_nr: i64, change: Value) {
        let mut state = self.gateway.lock().unwrap();
        let Some(Value::Object(fields)) = state.data.appointments.get(&fr_nr).cloned() else {
            panic!("no appointment {fr_nr}");
        };
        let Value::Object(change) = change else {
            panic!("a change is a JSON object")
        };
        let mut fields = fields;
        fields.extend(change);
        normalise_appointment(&mut fields).unwrap();
        state.data.appointments.insert(fr_nr, Value::Object(fields));
    }

    /// A party made by hand in Advoware (not through the API's callers); its `betNr`.
    pub fn insert_party(&self, party: Value) -> i64 {
        let Value::Object(fields) = party else {
            panic!("a party is a JSON object")
        };
        let mut state = self.gateway.lock().unwrap();
        store_party(&mut state.data, fields)
    }

    /// Changes a party as a user in Advoware would (merged).
    pub fn user_update_party(&self, bet_nr: i64, change: Value) {
        let mut state = self.gateway.lock().unwrap();
        let Some(Value::Object(fields)) = state.data.parties.get_mut(&bet_nr) else {
            panic!("no party {bet_nr}");
        };
        let Value::Object(change) = change else {
            panic!("a change is a JSON object")
        };
        fields.extend(change);
    }

    /// Deletes an appointment as a user would; whether it existed.
    pub fn user_delete(&self, fr_nr: i64) -> bool {
        self.gateway
            .lock()
            .unwrap()
            .data
            .appointments
            .remove(&fr_nr)
            .is_some()
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub fn refuse_connections(&self) {
        self.server.refuse_connections();
    }

    /// Listens again on the same address after [`Advoware::refuse_connections`].
    pub async fn accept_connections(&self) {
        self.server.accept_connections().await;
    }

    /// Replaces the employee list (`kuerzel`, `name`, `vorname`).
    pub fn set_employees(&self, employees: Vec<Value>) {
        self.gateway.lock().unwrap().data.employees = employees;
    }

    /// The appointment `fr_nr`, if there is one.
    pub fn appointment(&self, fr_nr: i64) -> Option<Value> {
        self.gateway
            .lock()
            .unwrap()
            .data
            .appointments
            .get(&fr_nr)
            .cloned()
    }

    /// All appointments, by `frNr`.
    pub fn appointments(&self) -> Vec<Value> {
        let state = self.gateway.lock().unwrap();
        state.data.appointments.values().cloned().collect()
    }

    /// Stores an appointment as the server would on POST; returns its `frNr`.
    /// An appointment with its own (e.g. negative) `frNr` keeps it.
    pub fn insert_appointment(&self, appointment: Value) -> i64 {
        let mut state = self.gateway.lock().unwrap();
        let Value::Object(fields) = appointment else {
            panic!("an appointment is a JSON object");
        };
        store_appointment(&mut state.data, fields).unwrap()
    }

    /// Deletes a party as a user would; whether it existed.
    pub fn user_delete_party(&self, bet_nr: i64) -> bool {
        let mut state = self.gateway.lock().unwrap();
        state.data.parties.remove(&bet_nr).is_some()
    }

    /// A party's notes, in the order written.
    pub fn notes(&self, bet_nr: i64) -> Vec<Value> {
        let state = self.gateway.lock().unwrap();
        state.data.notes.get(&bet_nr).cloned().unwrap_or_default()
    }

    /// All parties, by `betNr`.
    pub fn parties(&self) -> Vec<Value> {
        let state = self.gateway.lock().unwrap();
        state.data.parties.values().cloned().collect()
    }

    /// `[upstreams.<name>]` for this simulator's account, its secrets written
    /// as files into `dir`: the section a tenant file needs to use it.
    pub fn upstream_toml(&self, name: &str, dir: &std::path::Path) -> String {
        let account = self.account();
        let api_key = dir.join(format!("{name}-api_key"));
        let password = dir.join(format!("{name}-password"));
        std::fs::write(&api_key, &account.api_key).unwrap();
        std::fs::write(&password, &account.password).unwrap();
        format!(
            "[upstreams.{name}]\nkind = \"advoware\"\napi_url = \"{base}\"\nsecurity_gateway = \"{base}\"\napp_id = \"{}\"\nkanzlei = \"{}\"\ndatabase = \"{}\"\nuser = \"{}\"\napi_key = {{ file = \"{}\" }}\npassword = {{ file = \"{}\" }}\n",
            account.app_id,
            account.kanzlei,
            account.database,
            account.user,
            api_key.display(),
            password.display(),
            base = self.base_url(),
        )
    }

    /// A few employees, appointments (with the quirks above) and parties to look at.
    pub fn seed_demo_data(&self) {
        // Dates from today on, so the demo's sync window always holds them.
        let day = |days: u64| {
            (Utc::now()
                .with_timezone(&chrono_tz::Europe::Berlin)
                .date_naive()
                + chrono::Days::new(days))
            .format("%Y-%m-%dT00:00:00")
            .to_string()
        };
        for appointment in [
            json!({ "kuerzel": "SB", "text": "Mandantengespräch Müller", "ort": "Besprechungsraum 1",
                    "datum": day(1), "uhrzeitVon": "10:00:00",
                    "datumBis": day(1), "uhrzeitBis": "11:30:00" }),
            json!({ "kuerzel": "SB", "text": "Fortbildung Mietrecht", "dauertermin": 1,
                    "datum": day(3), "datumBis": day(4) }),
            json!({ "kuerzel": "SB", "text": "Kanzleirunde", "turnus": 1, "turnusArt": 2,
                    "datum": day(0), "uhrzeitVon": "08:30:00",
                    "datumBis": "2037-12-31T00:00:00", "uhrzeitBis": "09:00:00" }),
            json!({ "kuerzel": "MK", "text": "Gerichtstermin LG Berlin", "ort": "Littenstraße 12",
                    "datum": day(2), "datumBis": day(2), "uhrzeitBis": "12:00:00",
                    "notiz": "Uhrzeit fehlt: beginnt um 09:00" }),
            json!({ "frNr": -1, "kuerzel": "ALLE", "text": "Betriebsferien", "dauertermin": 1,
                    "datum": day(20), "datumBis": day(27) }),
        ] {
            self.insert_appointment(appointment);
        }
        let mut state = self.gateway.lock().unwrap();
        for party in [
            json!({ "name": "Müller", "vorname": "Hans", "rechtsform": "Herr", "email": "hans.mueller@example.de" }),
            json!({ "name": "Hausverwaltung Nord GmbH", "rechtsform": "GmbH", "telefon": "+49301234567" }),
        ] {
            let Value::Object(fields) = party else {
                unreachable!()
            };
            store_party(&mut state.data, fields);
        }
    }
}

const RELAY_API: &str = "/api/v1/advonet";
const CONNECTOR_API: &str = "/connector/api/v1/advonet";

/// The REST API, mounted at `prefix` (the relay's path or the connector's).
fn api(shared: &Shared, prefix: &'static str) -> Router<Shared> {
    Router::new()
        .route("/employees", get(employees))
        .route(
            "/appointments",
            get(list_appointments).post(create_appointment),
        )
        .route(
            "/appointments/{fr_nr}",
            get(read_appointment)
                .put(update_appointment)
                .delete(delete_appointment),
        )
        .route("/Beteiligte", get(list_parties).post(create_party))
        .route(
            "/Beteiligte/{bet_nr}",
            get(read_party).put(update_party).delete(delete_party),
        )
        .route(
            "/Beteiligte/{bet_nr}/Notizen",
            get(list_notes).post(create_note),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            (shared.clone(), prefix),
            api_gate,
        ))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "Message": message }))).into_response()
}

async fn latency(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let latency = shared.gateway.lock().unwrap().faults.api.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}

/// Records the request, answers injected failures, checks the Bearer token.
async fn api_gate(
    State((shared, prefix)): State<(Shared, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Anfrage zu groß");
    };
    let failure = {
        let mut state = shared.gateway.lock().unwrap();
        let full_path = format!("{prefix}{}", parts.uri.path());
        state.api_requests.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().trim_start_matches('/').to_owned(),
            full_path,
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        match state.faults.api.next() {
            Some(super::Fault::Broken) => Some(503),
            Some(super::Fault::Failure(status)) => Some(status),
            None => None,
        }
    };
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return refuse(status, "Interner Serverfehler");
    }
    if !authorized(&shared, &parts.headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
        );
    }
    let write = parts.method != axum::http::Method::GET;
    let answer = next.run(Request::from_parts(parts, Body::from(body))).await;
    if write
        && let Some(status) = shared
            .gateway
            .lock()
            .unwrap()
            .faults
            .lost_answers
            .pop_front()
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
        return refuse(status, "Gateway Timeout");
    }
    answer
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let state = shared.gateway.lock().unwrap();
    !state.faults.refuse_all_tokens
        && state
            .tokens
            .get(token)
            .is_some_and(|expires| *expires > Utc::now())
}

async fn discovery(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("Kanzlei") != Some(&shared.account.kanzlei) {
        return refuse(StatusCode::NOT_FOUND, "Kanzlei nicht gefunden");
    }
    let base = format!("http://{}/", shared.addr);
    let connector = shared
        .gateway
        .lock()
        .unwrap()
        .faults
        .connector
        .then(|| format!("{base}connector/"));
    Json(json!({ "relayUrl": base, "connectorUrl": connector, "securityGateway": base }))
        .into_response()
}

const FIELDS: [&str; 10] = [
    "AppID",
    "Kanzlei",
    "Database",
    "User",
    "Role",
    "Product",
    "Password",
    "Nonce",
    "RequestTimeStamp",
    "HMAC512Signature",
];

async fn token(State(shared): State<Shared>, body: Bytes) -> Response {
    let mut gateway = shared.gateway.lock().unwrap();
    gateway.token_requests += 1;
    if gateway.faults.token == TokenFault::EchoRequest {
        let echoed = format!(
            "Anmeldung fehlgeschlagen für {}",
            String::from_utf8_lossy(&body)
        );
        return refuse(StatusCode::UNAUTHORIZED, &echoed);
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "Ungültige Anfrage");
    };
    if fields.len() != FIELDS.len() || FIELDS.iter().any(|f| !fields.contains_key(*f)) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Ungültige Anfrage: Felder fehlen oder sind unbekannt",
        );
    }
    let text = |name: &str| fields[name].as_str().unwrap_or_default().to_owned();
    let account = &shared.account;
    let product = fields["Product"].as_u64().unwrap_or(0);
    if text("AppID") != account.app_id
        || text("Kanzlei") != account.kanzlei
        || text("Database") != account.database
        || text("User") != account.user
        || text("Password") != account.password
        || fields["Role"].as_u64() != Some(2)
        || product != 64
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Falscher Name oder falsches Kennwort",
        );
    }
    let (nonce, timestamp) = (text("Nonce"), text("RequestTimeStamp"));
    let expected = signature(
        &account.api_key,
        product,
        &account.app_id,
        &nonce,
        &timestamp,
    );
    if expected.as_deref() != Some(text("HMAC512Signature").as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "Ungültige Signatur");
    }
    let fresh = DateTime::parse_from_rfc3339(&timestamp)
        .map(|at| {
            (Utc::now() - at.with_timezone(&Utc))
                .abs()
                .to_std()
                .unwrap_or(Duration::MAX)
                <= CLOCK_SKEW
        })
        .unwrap_or(false);
    if !fresh {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Zeitstempel ungültig oder abgelaufen",
        );
    }
    if !gateway.seen_nonces.insert(nonce) {
        return refuse(StatusCode::UNAUTHORIZED, "Nonce wurde bereits verwendet");
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    let expires = Utc::now() + chrono::Duration::from_std(shared.token_lifetime).unwrap();
    gateway.tokens.insert(access_token.clone(), expires);
    gateway.issued.push(access_token.clone());
    if gateway.faults.token == TokenFault::BareString {
        return Json(json!(access_token)).into_response();
    }
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": shared.token_lifetime.as_secs(),
        "expiration_utc": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .into_response()
}

async fn not_found(method: Method) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        &format!("Keine Ressource für {method} gefunden"),
    )
}

async fn employees(State(shared): State<Shared>) -> Response {
    Json(shared.gateway.lock().unwrap().data.employees.clone()).into_response()
}

// ---- appointments ----

/// `YYYY-MM-DD`, optionally followed by a time (`T...`), as Advoware writes dates.
fn date_of(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// `HH:MM`, `HH:MM:SS` or a full date-time whose time part counts.
fn valid_time(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return value.is_null();
    };
    let time = text.split_once('T').map_or(text, |(_, time)| time);
    chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").is_ok()
        || chrono::NaiveTime::parse_from_str(time, "%H:%M").is_ok()
}

/// Berlin local time, as Advoware stamps its records.
fn now_local() -> String {
    Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// Checks and normalises an appointment as the server stores it.
fn normalise_appointment(fields: &mut Map<String, Value>) -> Result<(), String> {
    let start = fields
        .get("datum")
        .and_then(date_of)
        .ok_or("Feld 'datum' fehlt oder ist kein Datum (YYYY-MM-DD)")?;
    match fields.get("datumBis") {
        None | Some(Value::Null) => {
            fields.insert("datumBis".into(), fields["datum"].clone());
        }
        Some(end) => {
            let end = date_of(end).ok_or("Feld 'datumBis' ist kein Datum (YYYY-MM-DD)")?;
            if end < start {
                return Err("'datumBis' liegt vor 'datum'".into());
            }
        }
    }
    for key in ["uhrzeitVon", "uhrzeitBis"] {
        if let Some(time) = fields.get(key)
            && !valid_time(time)
        {
            return Err(format!("Feld '{key}' ist keine Uhrzeit (HH:MM:SS)"));
        }
    }
    if let Some(kind) = fields.get("turnusArt")
        && !matches!(kind.as_u64(), Some(0..=4))
    {
        return Err("Feld 'turnusArt' muss 0 bis 4 sein".into());
    }
    match (
        fields.get("kuerzel").cloned(),
        fields.get("anwalt").cloned(),
    ) {
        (Some(kuerzel), None) => {
            fields.insert("anwalt".into(), kuerzel);
        }
        (None, Some(anwalt)) => {
            fields.insert("kuerzel".into(), anwalt);
        }
        (None, None) => return Err("Feld 'kuerzel' fehlt".into()),
        _ => {}
    }
    let all_day = fields
        .get("dauertermin")
        .is_some_and(|v| v.as_u64() == Some(1) || v.as_bool() == Some(true));
    if all_day {
        // Real data: an all-day appointment ends one minute before midnight.
        fields.insert("uhrzeitBis".into(), json!("23:59:00"));
    }
    fields.insert("zuletztGeaendertAm".into(), json!(now_local()));
    Ok(())
}

fn store_appointment(data: &mut Data, mut fields: Map<String, Value>) -> Result<i64, String> {
    normalise_appointment(&mut fields)?;
    let fr_nr = match fields.get("frNr").and_then(Value::as_i64) {
        Some(own) => own,
        None => {
            let next = data.next_fr_nr;
            data.next_fr_nr += 1;
            next
        }
    };
    fields.insert("frNr".into(), json!(fr_nr));
    data.appointments.insert(fr_nr, Value::Object(fields));
    Ok(fr_nr)
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

fn not_an_object() -> Response {
    refuse(
        StatusCode::BAD_REQUEST,
        "Der Anfrageinhalt ist kein JSON-Objekt",
    )
}

async fn list_appointments(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut hold = shared.hold.subscribe();
    if *hold.borrow_and_update() {
        shared
            .held
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = hold.wait_for(|held| !held).await;
        shared
            .held
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
    let bound = |key: &str| match query.get(key) {
        None => Ok(None),
        Some(text) => date_of(&json!(text))
            .map(Some)
            .ok_or_else(|| format!("Parameter '{key}' ist kein Datum (YYYY-MM-DD)")),
    };
    let (from, to) = match (bound("from"), bound("to")) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(message), _) | (_, Err(message)) => {
            return refuse(StatusCode::BAD_REQUEST, &message);
        }
    };
    let kuerzel = query.get("kuerzel").map(|k| k.to_uppercase());
    let state = shared.gateway.lock().unwrap();
    let listed: Vec<Value> = state
        .data
        .appointments
        .values()
        .filter(|a| {
            let owner = a["kuerzel"].as_str().unwrap_or_default().to_uppercase();
            kuerzel
                .as_ref()
                .is_none_or(|k| *k == owner || owner == "ALLE")
        })
        .filter(|a| {
            let (Some(start), Some(end)) = (date_of(&a["datum"]), date_of(&a["datumBis"])) else {
                return false;
            };
            from.is_none_or(|from| end >= from) && to.is_none_or(|to| start <= to)
        })
        .cloned()
        .collect();
    Json(listed).into_response()
}

async fn create_appointment(State(shared): State<Shared>, body: Bytes) -> Response {
    let Some(mut fields) = object(&body) else {
        return not_an_object();
    };
    // The server numbers appointments.
    fields.remove("frNr");
    let mut state = shared.gateway.lock().unwrap();
    match store_appointment(&mut state.data, fields) {
        Ok(fr_nr) if state.write_rules.create_answers_whole_record => {
            Json(state.data.appointments[&fr_nr].clone()).into_response()
        }
        Ok(fr_nr) => Json(json!({ "frNr": fr_nr })).into_response(),
        Err(message) => refuse(StatusCode::BAD_REQUEST, &message),
    }
}

async fn read_appointment(State(shared): State<Shared>, Path(fr_nr): Path<String>) -> Response {
    let state = shared.gateway.lock().unwrap();
    match fr_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| state.data.appointments.get(&n))
    {
        Some(appointment) => Json(appointment.clone()).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "Termin nicht gefunden"),
    }
}

async fn update_appointment(
    State(shared): State<Shared>,
    Path(fr_nr): Path<String>,
    body: Bytes,
) -> Response {
    let Some(changes) = object(&body) else {
        return not_an_object();
    };
    let mut state = shared.gateway.lock().unwrap();
    let Some((fr_nr, current)) = fr_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| Some((n, state.data.appointments.get(&n)?.clone())))
    else {
        return refuse(StatusCode::NOT_FOUND, "Termin nicht gefunden");
    };
    let fields = if state.write_rules.put_merges {
        let Value::Object(mut fields) = current else {
            unreachable!()
        };
        fields.extend(changes);
        fields
    } else {
        // Replaced: what the body lacks is gone.
        changes
    };
    let mut fields = fields;
    fields.insert("frNr".into(), json!(fr_nr));
    match normalise_appointment(&mut fields) {
        Ok(()) => {
            state.data.appointments.insert(fr_nr, Value::Object(fields));
            Json(state.data.appointments[&fr_nr].clone()).into_response()
        }
        Err(message) => refuse(StatusCode::BAD_REQUEST, &message),
    }
}

async fn delete_appointment(State(shared): State<Shared>, Path(fr_nr): Path<String>) -> Response {
    let mut state = shared.gateway.lock().unwrap();
    match fr_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| state.data.appointments.remove(&n))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => refuse(StatusCode::NOT_FOUND, "Termin nicht gefunden"),
    }
}

// ---- parties (Beteiligte) ----

fn store_party(data: &mut Data, mut fields: Map<String, Value>) -> i64 {
    let bet_nr = data.next_bet_nr;
    data.next_bet_nr += 1;
    fields.insert("betNr".into(), json!(bet_nr));
    fields.insert("zuletztGeaendertAm".into(), json!(now_local()));
    data.parties.insert(bet_nr, Value::Object(fields));
    bet_nr
}

async fn list_parties(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let name = query.get("name").map(|n| n.to_lowercase());
    let phone = query.get("telefon");
    let state = shared.gateway.lock().unwrap();
    let listed: Vec<Value> = state
        .data
        .parties
        .values()
        .filter(|p| {
            name.as_ref().is_none_or(|name| {
                p["name"]
                    .as_str()
                    .is_some_and(|own| own.to_lowercase().contains(name))
            })
        })
        .filter(|p| {
            phone.is_none_or(|phone| {
                ["telefon", "mobil"]
                    .iter()
                    .any(|field| p[field].as_str() == Some(phone.as_str()))
            })
        })
        .cloned()
        .collect();
    Json(listed).into_response()
}

async fn create_party(State(shared): State<Shared>, body: Bytes) -> Response {
    let Some(mut fields) = object(&body) else {
        return not_an_object();
    };
    let named = fields
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.trim().is_empty());
    if !named {
        return refuse(StatusCode::BAD_REQUEST, "Feld 'name' fehlt");
    }
    fields.remove("betNr");
    let mut state = shared.gateway.lock().unwrap();
    let bet_nr = store_party(&mut state.data, fields);
    Json(state.data.parties[&bet_nr].clone()).into_response()
}

fn party_number(state: &Gateway, bet_nr: &str) -> Option<i64> {
    bet_nr
        .parse::<i64>()
        .ok()
        .filter(|n| state.data.parties.contains_key(n))
}

async fn list_notes(State(shared): State<Shared>, Path(bet_nr): Path<String>) -> Response {
    let state = shared.gateway.lock().unwrap();
    let Some(bet_nr) = party_number(&state, &bet_nr) else {
        return refuse(StatusCode::NOT_FOUND, "Beteiligter nicht gefunden");
    };
    Json(state.data.notes.get(&bet_nr).cloned().unwrap_or_default()).into_response()
}

async fn create_note(
    State(shared): State<Shared>,
    Path(bet_nr): Path<String>,
    body: Bytes,
) -> Response {
    let Some(mut note) = object(&body) else {
        return not_an_object();
    };
    if note
        .get("text")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        return refuse(StatusCode::BAD_REQUEST, "Feld 'text' fehlt");
    }
    let mut state = shared.gateway.lock().unwrap();
    let Some(bet_nr) = party_number(&state, &bet_nr) else {
        return refuse(StatusCode::NOT_FOUND, "Beteiligter nicht gefunden");
    };
    state.data.next_note_id += 1;
    note.insert("id".into(), json!(state.data.next_note_id));
    note.insert("betNr".into(), json!(bet_nr));
    let note = Value::Object(note);
    state
        .data
        .notes
        .entry(bet_nr)
        .or_default()
        .push(note.clone());
    Json(note).into_response()
}

async fn read_party(State(shared): State<Shared>, Path(bet_nr): Path<String>) -> Response {
    let state = shared.gateway.lock().unwrap();
    match bet_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| state.data.parties.get(&n))
    {
        Some(party) => Json(party.clone()).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "Beteiligter nicht gefunden"),
    }
}

async fn update_party(
    State(shared): State<Shared>,
    Path(bet_nr): Path<String>,
    body: Bytes,
) -> Response {
    let Some(changes) = object(&body) else {
        return not_an_object();
    };
    let mut state = shared.gateway.lock().unwrap();
    let state_rules_merge = state.write_rules.put_merges;
    let Some(Value::Object(fields)) = bet_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| state.data.parties.get_mut(&n))
    else {
        return refuse(StatusCode::NOT_FOUND, "Beteiligter nicht gefunden");
    };
    let bet_nr = fields["betNr"].clone();
    if state_rules_merge {
        fields.extend(changes);
    } else {
        // Replaced: what the body lacks is gone.
        *fields = changes;
    }
    fields.insert("betNr".into(), bet_nr);
    fields.insert("zuletztGeaendertAm".into(), json!(now_local()));
    Json(Value::Object(fields.clone())).into_response()
}

async fn delete_party(State(shared): State<Shared>, Path(bet_nr): Path<String>) -> Response {
    let mut state = shared.gateway.lock().unwrap();
    match bet_nr
        .parse::<i64>()
        .ok()
        .and_then(|n| state.data.parties.remove(&n))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => refuse(StatusCode::NOT_FOUND, "Beteiligter nicht gefunden"),
    }
}

impl Advoware {
    /// A correctly signed token request body for `account`, as a client sends it.
    pub fn token_request(account: &Account, nonce: &str, timestamp: &str) -> Value {
        json!({
            "AppID": account.app_id,
            "Kanzlei": account.kanzlei,
            "Database": account.database,
            "User": account.user,
            "Role": 2,
            "Product": 64,
            "Password": account.password,
            "Nonce": nonce,
            "RequestTimeStamp": timestamp,
            "HMAC512Signature": signature(&account.api_key, 64, &account.app_id, nonce, timestamp),
        })
    }
}
