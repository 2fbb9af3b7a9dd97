//! Google Calendar (API v3) and Google's OAuth token endpoint, as the
//! integrations see them, written from `../shared/reference/upstreams.md` and
//! Google's public documentation, sharing no code with the host.
//!
//! Token: `POST /token`, form-encoded `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//! and `assertion=<JWT>`. The JWT must be RS256 (`{"alg":"RS256","typ":"JWT"}`),
//! signed by a service account the simulator knows (checked here with the
//! `rsa` crate against the public key; yup-oauth2 signs with ring), with
//! `iss` = its `client_email`, `aud` = this token URI, a `sub` (domain-wide
//! delegation), the calendar scope, `iat` near now and `exp` at most an hour
//! later. Base64url segments are accepted with or without `=` padding.
//! Anything else: 400 `invalid_grant` (or `invalid_scope`, `unauthorized_client`).
//!
//! Calendar: `/calendar/v3/calendars/{id}/events[/{eventId}]`, `/calendars[/{id}]`,
//! `/users/me/calendarList`, each needing a live bearer token, acting as its
//! mailbox. A mailbox sees its own calendar (`primary` or its address) and
//! the ones it created. Events keep Google's rules: client ids in base32hex
//! (`a-v`, `0-9`, 5 to 1024 long), 409 for a taken id (a cancelled event's too),
//! etags and `If-Match` (412), deletion as `status: cancelled` (listed with
//! `showDeleted` or in incremental results, with little more than the id), paging (`maxResults`,
//! `nextPageToken`), sync tokens (`nextSyncToken` on the last page only, 410
//! `fullSyncRequired` once expired), and 400 for parameters Google refuses
//! beside `syncToken`. Quotas per mailbox and per project over a sliding
//! window answer 403 `userRateLimitExceeded` / `rateLimitExceeded`; latency
//! and bursts of 5xx or 429 on demand.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};

/// The scope the host asks for.
pub const CALENDAR_SCOPE: &str = "https://www.googleapis.com/auth/calendar";

/// How long the simulator's access tokens live, as Google's do.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// A service account: its email and key pair, generated at test time.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    /// PKCS#8 PEM, as in Google's JSON key files.
    private_key_pem: String,
    private: RsaPrivateKey,
    public: RsaPublicKey,
}

impl ServiceAccount {
    /// A fresh 2048-bit key for `client_email`.
    pub fn generate(client_email: &str) -> Self {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let private_key_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        Self {
            client_email: client_email.to_owned(),
            private_key_pem,
            public: RsaPublicKey::from(&private),
            private,
        }
    }

    /// An assertion signed with this account's key, its segments base64url
    /// with or without `=` padding, to test the simulator's own checks.
    pub fn sign_assertion(&self, claims: &Value, padded: bool) -> String {
        let encode = |bytes: &[u8]| {
            if padded {
                base64::engine::general_purpose::URL_SAFE.encode(bytes)
            } else {
                URL_SAFE_NO_PAD.encode(bytes)
            }
        };
        let header = encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let signed = format!("{header}.{}", encode(claims.to_string().as_bytes()));
        let signature = SigningKey::<Sha256>::new(self.private.clone()).sign(signed.as_bytes());
        format!("{signed}.{}", encode(&signature.to_bytes()))
    }

    /// The JSON key file Google hands out, with `token_uri` pointing at `token_uri`.
    pub fn key_json(&self, token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "bitbylaw-test",
            "private_key_id": "0123456789abcdef",
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }
}

/// One call that reached the Calendar API (after faults, before auth).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub at: Instant,
}

/// Quotas over a sliding window (Google's is a minute; tests scale it down).
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub window: Duration,
    pub per_user: Option<usize>,
    pub per_project: Option<usize>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            per_user: Some(600),
            per_project: Some(10_000),
        }
    }
}

/// Statuses (and, when given, a raw body) for the next API calls, one each.
type Failure = (u16, Option<String>);

struct StoredEvent {
    body: Map<String, Value>,
    etag_version: u64,
    /// The calendar's change number when this event last changed.
    changed: u64,
}

struct StoredCalendar {
    body: Map<String, Value>,
    owner: String,
    events: BTreeMap<String, StoredEvent>,
    /// Counts every change to the calendar's events.
    changes: u64,
    /// Sync tokens name the epoch they were issued in; expiring them all
    /// starts a new one.
    epoch: u64,
}

#[derive(Default)]
struct Sim {
    accounts: HashMap<String, ServiceAccount>,
    /// `http://<addr>/token`: the audience assertions must name.
    token_uri: String,
    /// Live access tokens: token -> (mailbox, expiry).
    tokens: HashMap<String, (String, Instant)>,
    /// Token requests per mailbox, and those refused.
    token_requests: HashMap<String, u64>,
    refused_token_requests: u64,
    calendars: HashMap<String, StoredCalendar>,
    quotas: Quotas,
    /// Accepted calls per mailbox and overall, for the sliding windows.
    user_calls: HashMap<String, VecDeque<Instant>>,
    project_calls: VecDeque<Instant>,
    /// The most accepted calls seen within one window, per mailbox.
    user_peak: HashMap<String, usize>,
    quota_refusals: u64,
    faults: super::Faults<Failure>,
    calls: Vec<Recorded>,
    next_id: u64,
}

type Shared = Arc<Mutex<Sim>>;

/// A running simulator; stops when dropped.
pub struct Google {
    pub addr: SocketAddr,
    sim: Shared,
    server: super::Server,
}

impl Google {
    /// On a free port of 127.0.0.1, knowing `accounts`.
    pub async fn start(accounts: &[ServiceAccount]) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), accounts)
            .await
            .unwrap()
    }

    /// On `addr` (the demo uses a fixed port).
    pub async fn start_on(addr: SocketAddr, accounts: &[ServiceAccount]) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sim: Shared = Arc::new(Mutex::new(Sim {
            accounts: accounts
                .iter()
                .map(|a| (a.client_email.clone(), a.clone()))
                .collect(),
            token_uri: format!("http://{addr}/token"),
            ..Sim::default()
        }));
        let api = Router::new()
            .route("/calendars", post(insert_calendar))
            .route("/calendars/{calendar}", get(get_calendar))
            .route(
                "/calendars/{calendar}/events",
                get(list_events).post(insert_event),
            )
            .route(
                "/calendars/{calendar}/events/{event}",
                get(get_event)
                    .patch(patch_event)
                    .put(update_event)
                    .delete(delete_event),
            )
            .route("/users/me/calendarList", get(calendar_list));
        let app = Router::new()
            .route("/token", post(token))
            .nest("/calendar/v3", api)
            .with_state(sim.clone());
        Ok(Self {
            addr,
            sim,
            server: super::Server::start(listener, app),
        })
    }

    /// The token URI to put into key files.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The API base the host is configured with.
    pub fn api_base(&self) -> String {
        format!("http://{}/calendar/v3/", self.addr)
    }

    fn sim(&self) -> std::sync::MutexGuard<'_, Sim> {
        self.sim.lock().unwrap()
    }

    /// Token requests that were granted, per mailbox.
    pub fn token_requests(&self, mailbox: &str) -> u64 {
        self.sim().token_requests.get(mailbox).copied().unwrap_or(0)
    }

    /// Granted token requests, all mailboxes.
    pub fn token_requests_total(&self) -> u64 {
        self.sim().token_requests.values().sum()
    }

    pub fn refused_token_requests(&self) -> u64 {
        self.sim().refused_token_requests
    }

    /// Calls that reached the API.
    pub fn calls(&self) -> Vec<Recorded> {
        self.sim().calls.clone()
    }

    pub fn set_quotas(&self, quotas: Quotas) {
        self.sim().quotas = quotas;
    }

    /// 403s sent for quotas.
    pub fn quota_refusals(&self) -> u64 {
        self.sim().quota_refusals
    }

    /// The most calls of `mailbox` accepted within one quota window.
    pub fn peak_calls_in_window(&self, mailbox: &str) -> usize {
        self.sim().user_peak.get(mailbox).copied().unwrap_or(0)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.sim().faults.latency = latency;
    }

    /// The next `count` API calls answer `status` (5xx bursts, 429).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.sim().faults.fail_next(count, (status, None));
    }

    /// The next call answers `status` with `body` as it is (an HTML page from
    /// a front end, say), not Google's JSON.
    pub fn fail_next_raw(&self, status: u16, body: &str) {
        self.sim()
            .faults
            .fail_next(1, (status, Some(body.to_owned())));
    }

    /// After `calls` more API calls, every call answers 503 until [`Google::heal`].
    pub fn break_after(&self, calls: usize) {
        self.sim().faults.break_after(calls);
    }

    /// Ends [`Google::break_after`] and drops pending failures.
    pub fn heal(&self) {
        self.sim().faults.heal();
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub fn refuse_connections(&self) {
        self.server.refuse_connections();
    }

    /// Listens again on the same address after [`Google::refuse_connections`].
    pub async fn accept_connections(&self) {
        self.server.accept_connections().await;
    }

    /// Creates an event as a user in Google's UI would; its id.
    pub fn user_insert(&self, calendar: &str, body: Value) -> String {
        let mut sim = self.sim();
        let id = format!("usr{:020}", sim.new_id());
        let calendar = sim.calendars.get_mut(calendar).expect("no such calendar");
        let Value::Object(mut body) = body else {
            panic!("an event is a JSON object")
        };
        body.insert("id".into(), json!(id));
        body.entry("status").or_insert_with(|| json!("confirmed"));
        body.insert("created".into(), json!(now_text()));
        body.insert("updated".into(), json!(now_text()));
        calendar.changes += 1;
        let changed = calendar.changes;
        calendar.events.insert(
            id.clone(),
            StoredEvent {
                body,
                etag_version: 1,
                changed,
            },
        );
        id
    }

    /// Changes an event as a user would: `change`'s members replace the stored ones.
    pub fn user_update(&self, calendar: &str, id: &str, change: Value) {
        let mut sim = self.sim();
        let calendar = sim.calendars.get_mut(calendar).expect("no such calendar");
        calendar.changes += 1;
        let changed = calendar.changes;
        let event = calendar.events.get_mut(id).expect("no such event");
        let Value::Object(change) = change else {
            panic!("a change is a JSON object")
        };
        event.body.extend(change);
        event.body.insert("updated".into(), json!(now_text()));
        event.etag_version += 1;
        event.changed = changed;
    }

    /// Deletes an event as a user would (it stays, `cancelled`).
    pub fn user_delete(&self, calendar: &str, id: &str) {
        self.user_update(calendar, id, json!({ "status": "cancelled" }));
    }

    /// The ids of the calendars `owner` made (beside its own).
    pub fn calendars_of(&self, owner: &str) -> Vec<(String, String)> {
        self.sim()
            .calendars
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, c)| {
                (
                    id.clone(),
                    c.body["summary"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Every sync token issued so far answers 410 `fullSyncRequired`.
    pub fn expire_sync_tokens(&self) {
        for calendar in self.sim().calendars.values_mut() {
            calendar.epoch += 1;
        }
    }

    /// A live access token of `mailbox`, to call the API as the host would.
    pub fn live_token(&self, mailbox: &str) -> Option<String> {
        let now = Instant::now();
        self.sim()
            .tokens
            .iter()
            .find(|(_, (m, expires))| m == mailbox && *expires > now)
            .map(|(token, _)| token.clone())
    }

    /// A calendar of `owner` with a given id (Google's holiday calendars have
    /// ids like `en.german#holiday@group.v.calendar.google.com`).
    pub fn add_calendar(&self, owner: &str, id: &str, summary: &str) {
        self.sim().calendars.insert(
            id.to_owned(),
            StoredCalendar {
                body: json!({ "kind": "calendar#calendar", "id": id, "summary": summary, "timeZone": "Europe/Berlin" })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                owner: owner.to_owned(),
                events: BTreeMap::new(),
                changes: 0,
                epoch: 0,
            },
        );
    }

    /// Drops every access token (as if they expired).
    pub fn revoke_tokens(&self) {
        self.sim().tokens.clear();
    }

    /// The events of `calendar` as stored, cancelled ones included.
    pub fn events(&self, calendar: &str) -> Vec<Value> {
        self.sim()
            .calendars
            .get(calendar)
            .map(|c| {
                c.events
                    .values()
                    .map(|e| Value::Object(event_json(e)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes an event behind the host's back (as a user in Google's UI would).
    pub fn touch_event(&self, calendar: &str, id: &str, summary: &str) {
        let mut sim = self.sim();
        let Some(calendar) = sim.calendars.get_mut(calendar) else {
            return;
        };
        calendar.changes += 1;
        let change = calendar.changes;
        if let Some(event) = calendar.events.get_mut(id) {
            event.body.insert("summary".into(), json!(summary));
            event.etag_version += 1;
            event.changed = change;
        }
    }
}

// ---- token endpoint -------------------------------------------------------

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(State(sim): State<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing assertion",
        );
    };
    let mut sim = sim.lock().unwrap();
    let accounts: Vec<ServiceAccount> = sim.accounts.values().cloned().collect();
    let subject = match check_assertion(assertion, &accounts, &sim.token_uri) {
        Ok(subject) => subject,
        Err((error, description)) => {
            sim.refused_token_requests += 1;
            return token_error(StatusCode::BAD_REQUEST, error, &description);
        }
    };
    let access = format!("ya29.sim-{}", uuid::Uuid::new_v4().simple());
    sim.tokens.insert(
        access.clone(),
        (subject.clone(), Instant::now() + TOKEN_LIFETIME),
    );
    *sim.token_requests.entry(subject).or_default() += 1;
    Json(json!({
        "access_token": access,
        "expires_in": TOKEN_LIFETIME.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

/// Decodes a base64url segment, `=` padding or not.
fn segment(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Checks a JWT-bearer assertion made out to `audience` (this token URI);
/// the mailbox it asks for (`sub`) on success.
pub fn check_assertion(
    assertion: &str,
    accounts: &[ServiceAccount],
    audience: &str,
) -> Result<String, (&'static str, String)> {
    let invalid = |what: &str| ("invalid_grant", format!("Invalid JWT: {what}"));
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(invalid("not three segments"));
    };
    let header: Value = segment(header)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("header"))?;
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(invalid("header must be RS256 / JWT"));
    }
    let claims: Value = segment(claims)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("claims"))?;
    let issuer = claims["iss"].as_str().ok_or_else(|| invalid("iss"))?;
    let account = accounts
        .iter()
        .find(|a| a.client_email == issuer)
        .ok_or_else(|| ("invalid_grant", "Invalid JWT Signature.".to_owned()))?;
    let signature = segment(signature)
        .and_then(|b| Signature::try_from(b.as_slice()).ok())
        .ok_or_else(|| invalid("signature encoding"))?;
    // The signature covers the segments exactly as sent.
    let signed = &assertion[..assertion.rfind('.').unwrap_or(0)];
    VerifyingKey::<Sha256>::new(account.public.clone())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| ("invalid_grant", "Invalid JWT Signature.".to_owned()))?;
    let now = Utc::now().timestamp();
    let iat = claims["iat"].as_i64().ok_or_else(|| invalid("iat"))?;
    let exp = claims["exp"].as_i64().ok_or_else(|| invalid("exp"))?;
    if (iat - now).abs() > 300 || exp <= now || exp - iat > 3600 {
        return Err(invalid(
            "Token must be a short-lived token (60 minutes) and in a reasonable timeframe",
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == CALENDAR_SCOPE) {
        return Err(("invalid_scope", "Invalid scope".into()));
    }
    let subject = claims["sub"]
        .as_str()
        .filter(|s| s.contains('@'))
        .ok_or(("unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.".to_owned()))?;
    if claims["aud"].as_str() != Some(audience) {
        return Err(invalid("aud"));
    }
    Ok(subject.to_owned())
}

// ---- API plumbing -----------------------------------------------------------

/// The calling mailbox (see [`admit`]), or the handler answers with the refusal.
macro_rules! admitted {
    ($($arg:expr),* $(,)?) => {
        match admit($($arg),*).await {
            Ok(mailbox) => mailbox,
            Err(refusal) => return refusal,
        }
    };
}

fn google_error(status: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({
            "error": {
                "code": status,
                "message": message,
                "errors": [{ "domain": "global", "reason": reason, "message": message }],
            }
        })),
    )
        .into_response()
}

/// Faults, latency, auth and quotas, in the order Google would meet them;
/// the calling mailbox when the call may go on.
async fn admit(
    sim: &Shared,
    method: &str,
    path: &str,
    query: &Option<String>,
    headers: &HeaderMap,
) -> Result<String, Response> {
    let latency = {
        let mut state = sim.lock().unwrap();
        state.calls.push(Recorded {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.clone(),
            headers: headers.clone(),
            at: Instant::now(),
        });
        state.faults.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut state = sim.lock().unwrap();
    let failure = match state.faults.next() {
        Some(super::Fault::Broken) => {
            return Err(google_error(503, "backendError", "Simulated outage"));
        }
        Some(super::Fault::Failure(failure)) => Some(failure),
        None => None,
    };
    if let Some((status, raw)) = failure {
        if let Some(body) = raw {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err((status, [("content-type", "text/html")], body).into_response());
        }
        let reason = if status == 429 {
            "rateLimitExceeded"
        } else {
            "backendError"
        };
        return Err(google_error(status, reason, "Simulated failure"));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mailbox = match state.tokens.get(token) {
        Some((mailbox, expires)) if *expires > Instant::now() => mailbox.clone(),
        _ => {
            return Err(google_error(
                401,
                "authError",
                "Request had invalid authentication credentials.",
            ));
        }
    };
    let now = Instant::now();
    let quotas = state.quotas;
    let window_start = now.checked_sub(quotas.window).unwrap_or(now);
    let user_calls = state.user_calls.entry(mailbox.clone()).or_default();
    while user_calls.front().is_some_and(|t| *t <= window_start) {
        user_calls.pop_front();
    }
    let user_count = user_calls.len();
    while state
        .project_calls
        .front()
        .is_some_and(|t| *t <= window_start)
    {
        state.project_calls.pop_front();
    }
    if quotas.per_user.is_some_and(|limit| user_count >= limit) {
        state.quota_refusals += 1;
        return Err(google_error(
            403,
            "userRateLimitExceeded",
            "Rate Limit Exceeded",
        ));
    }
    if quotas
        .per_project
        .is_some_and(|limit| state.project_calls.len() >= limit)
    {
        state.quota_refusals += 1;
        return Err(google_error(
            403,
            "rateLimitExceeded",
            "Rate Limit Exceeded",
        ));
    }
    state.project_calls.push_back(now);
    let user_calls = state.user_calls.entry(mailbox.clone()).or_default();
    user_calls.push_back(now);
    let in_window = user_calls.len();
    let peak = state.user_peak.entry(mailbox.clone()).or_default();
    *peak = (*peak).max(in_window);
    Ok(mailbox)
}

/// The query pairs, decoded (`privateExtendedProperty` may repeat).
fn pairs(query: &Option<String>) -> Vec<(String, String)> {
    query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Sim {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The calendar `id` as `mailbox` addresses it, created on first use when
    /// it is the mailbox's own; `None` when the mailbox may not see it.
    fn calendar(&mut self, mailbox: &str, id: &str) -> Option<&mut StoredCalendar> {
        let id = if id == "primary" { mailbox } else { id };
        if id == mailbox && !self.calendars.contains_key(id) {
            self.calendars.insert(
                id.to_owned(),
                StoredCalendar {
                    body: json!({
                        "kind": "calendar#calendar",
                        "id": id,
                        "summary": id,
                        "timeZone": "Europe/Berlin",
                    })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                    owner: mailbox.to_owned(),
                    events: BTreeMap::new(),
                    changes: 0,
                    epoch: 0,
                },
            );
        }
        self.calendars.get_mut(id).filter(|c| c.owner == mailbox)
    }
}

fn not_found() -> Response {
    google_error(404, "notFound", "Not Found")
}

fn event_json(event: &StoredEvent) -> Map<String, Value> {
    let mut body = event.body.clone();
    body.insert("kind".into(), json!("calendar#event"));
    body.insert("etag".into(), json!(format!("\"{}\"", event.etag_version)));
    body
}

/// An event as a listing shows it: of a deleted one Google guarantees
/// little more than the id, so the simulator sends no more.
fn listed_json(event: &StoredEvent) -> Map<String, Value> {
    let full = event_json(event);
    if event.body.get("status") != Some(&json!("cancelled")) {
        return full;
    }
    full.into_iter()
        .filter(|(key, _)| {
            matches!(
                key.as_str(),
                "kind"
                    | "etag"
                    | "id"
                    | "status"
                    | "updated"
                    | "recurringEventId"
                    | "originalStartTime"
            )
        })
        .collect()
}

/// Client ids: base32hex (`a-v`, `0-9`), 5 to 1024 characters.
fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

fn if_match_fails(headers: &HeaderMap, event: &StoredEvent) -> bool {
    headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|wanted| wanted != "*" && wanted != format!("\"{}\"", event.etag_version))
}

/// `from` into `into`: objects merged member by member, `null` clears a
/// member, anything else replaced (Google's patch semantics).
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(target)), Value::Object(nested)) => merge(target, nested),
            (_, Value::Null) => {
                into.remove(&key);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Google's rules for an event's times: both ends, each a date or a
/// dateTime (not both), the end after the start, and a time zone on the
/// start of a recurring event. The refusal when one is broken.
fn check_times(event: &Map<String, Value>) -> Option<Response> {
    let (start, end) = (&event.get("start"), &event.get("end"));
    let (Some(start), Some(end)) = (start, end) else {
        return Some(google_error(400, "required", "Missing end time."));
    };
    for time in [start, end] {
        if time.get("date").is_some() && time.get("dateTime").is_some() {
            return Some(google_error(400, "invalid", "Invalid start time."));
        }
    }
    match (moment(start), moment(end)) {
        (Some(from), Some(to)) if to > from => {}
        (Some(_), Some(_)) => {
            return Some(google_error(
                400,
                "timeRangeEmpty",
                "The specified time range is empty.",
            ));
        }
        _ => return Some(google_error(400, "required", "Missing end time.")),
    }
    let recurring = event
        .get("recurrence")
        .and_then(Value::as_array)
        .is_some_and(|lines| !lines.is_empty());
    if recurring && start.get("timeZone").is_none() {
        return Some(google_error(
            400,
            "invalid",
            "Missing time zone definition for start time.",
        ));
    }
    None
}

/// The start or end of an event as a moment (all-day: midnight UTC).
fn moment(value: &Value) -> Option<DateTime<Utc>> {
    if let Some(text) = value["dateTime"].as_str() {
        return DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|m| m.with_timezone(&Utc));
    }
    value["date"]
        .as_str()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

// ---- events -----------------------------------------------------------------

async fn list_events(
    State(sim): State<Shared>,
    Path(calendar): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("calendars/{calendar}/events");
    let mailbox = admitted!(&sim, "GET", &path, &query, &headers);
    let pairs = pairs(&query);
    let sync_token = param(&pairs, "syncToken");
    if sync_token.is_some() {
        for refused in [
            "timeMin",
            "timeMax",
            "q",
            "orderBy",
            "privateExtendedProperty",
            "sharedExtendedProperty",
            "iCalUID",
            "updatedMin",
        ] {
            if param(&pairs, refused).is_some() {
                return google_error(
                    400,
                    "invalid",
                    &format!("The parameter {refused} cannot be used together with syncToken."),
                );
            }
        }
    }
    let max_results: usize = match param(&pairs, "maxResults").map(str::parse::<usize>) {
        None => 250,
        Some(Ok(n)) if (1..=2500).contains(&n) => n,
        Some(_) => return google_error(400, "invalid", "Invalid value for maxResults"),
    };
    let show_deleted = param(&pairs, "showDeleted") == Some("true");
    let time_min = param(&pairs, "timeMin").map(DateTime::parse_from_rfc3339);
    let time_max = param(&pairs, "timeMax").map(DateTime::parse_from_rfc3339);
    if matches!(time_min, Some(Err(_))) || matches!(time_max, Some(Err(_))) {
        return google_error(400, "invalid", "Bad Request");
    }
    let filters: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| k == "privateExtendedProperty")
        .filter_map(|(_, v)| v.split_once('='))
        .collect();
    let mut state = sim.lock().unwrap();
    let Some(stored) = state.calendar(&mailbox, &calendar) else {
        return not_found();
    };
    // Page tokens carry the offset and the change number the listing started at.
    let (offset, snapshot) = match param(&pairs, "pageToken") {
        Some(token) => match token
            .split_once('.')
            .and_then(|(o, s)| Some((o.parse::<usize>().ok()?, s.parse::<u64>().ok()?)))
        {
            Some(page) => page,
            None => return google_error(400, "invalid", "Invalid page token"),
        },
        None => (0, stored.changes),
    };
    let since = match sync_token {
        None => None,
        Some(token) => match token
            .strip_prefix("sync.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(epoch, n)| Some((epoch.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
        {
            Some((epoch, n)) if epoch == stored.epoch && n <= stored.changes => Some(n),
            Some(_) => {
                return google_error(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                );
            }
            None => return google_error(400, "invalid", "Invalid sync token value."),
        },
    };
    let matching: Vec<Map<String, Value>> = stored
        .events
        .values()
        .filter(|event| match since {
            Some(since) => event.changed > since,
            None => {
                let cancelled = event.body.get("status") == Some(&json!("cancelled"));
                let body = Value::Object(event.body.clone());
                let in_window = time_min.as_ref().is_none_or(|min| {
                    min.as_ref()
                        .is_ok_and(|min| moment(&body["end"]).is_none_or(|end| end > *min))
                }) && time_max.as_ref().is_none_or(|max| {
                    max.as_ref()
                        .is_ok_and(|max| moment(&body["start"]).is_none_or(|start| start < *max))
                });
                let properties = filters.iter().all(|(key, value)| {
                    body["extendedProperties"]["private"][*key].as_str() == Some(*value)
                });
                (show_deleted || !cancelled) && in_window && properties
            }
        })
        .map(listed_json)
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(max_results)
        .cloned()
        .map(Value::Object)
        .collect();
    let last = offset + max_results >= matching.len();
    let mut body = json!({
        "kind": "calendar#events",
        "summary": calendar,
        "updated": now_text(),
        "timeZone": "Europe/Berlin",
        "items": page,
    });
    if last {
        body["nextSyncToken"] = json!(format!("sync.{}.{snapshot}", stored.epoch));
    } else {
        body["nextPageToken"] = json!(format!("{}.{snapshot}", offset + max_results));
    }
    Json(body).into_response()
}

async fn get_event(
    State(sim): State<Shared>,
    Path((calendar, event)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("calendars/{calendar}/events/{event}");
    let mailbox = admitted!(&sim, "GET", &path, &query, &headers);
    let mut state = sim.lock().unwrap();
    let Some(stored) = state.calendar(&mailbox, &calendar) else {
        return not_found();
    };
    match stored.events.get(&event) {
        Some(found) => Json(Value::Object(event_json(found))).into_response(),
        None => not_found(),
    }
}

async fn insert_event(
    State(sim): State<Shared>,
    Path(calendar): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("calendars/{calendar}/events");
    let mailbox = admitted!(&sim, "POST", &path, &query, &headers);
    let Ok(Value::Object(mut event)) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "parseError", "Parse Error");
    };
    if let Some(refusal) = check_times(&event) {
        return refusal;
    }
    let mut state = sim.lock().unwrap();
    let generated = format!("sim{:020}", state.new_id());
    let Some(stored) = state.calendar(&mailbox, &calendar) else {
        return not_found();
    };
    let id = match event.get("id").and_then(Value::as_str) {
        Some(id) if !valid_event_id(id) => {
            return google_error(400, "invalid", "Invalid resource id value.");
        }
        Some(id) => id.to_owned(),
        None => generated,
    };
    if stored.events.contains_key(&id) {
        return google_error(409, "duplicate", "The requested identifier already exists.");
    }
    event.insert("id".into(), json!(id));
    event.remove("etag");
    event.entry("status").or_insert_with(|| json!("confirmed"));
    event.insert("created".into(), json!(now_text()));
    event.insert("updated".into(), json!(now_text()));
    stored.changes += 1;
    let stored_event = StoredEvent {
        body: event,
        etag_version: 1,
        changed: stored.changes,
    };
    let answer = event_json(&stored_event);
    stored.events.insert(id, stored_event);
    Json(Value::Object(answer)).into_response()
}

/// Patch and update: Google's rules for both, `replace` for update.
async fn change_event(
    sim: Shared,
    calendar: String,
    event: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    replace: bool,
) -> Response {
    let path = format!("calendars/{calendar}/events/{event}");
    let method = if replace { "PUT" } else { "PATCH" };
    let mailbox = admitted!(&sim, method, &path, &query, &headers);
    let Ok(Value::Object(mut change)) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "parseError", "Parse Error");
    };
    let mut state = sim.lock().unwrap();
    let Some(stored) = state.calendar(&mailbox, &calendar) else {
        return not_found();
    };
    let change_number = stored.changes + 1;
    let Some(found) = stored.events.get_mut(&event) else {
        return not_found();
    };
    if if_match_fails(&headers, found) {
        return google_error(412, "conditionNotMet", "Precondition Failed");
    }
    // The new body is checked before it replaces the stored one.
    let mut body = found.body.clone();
    if replace {
        let kept: Vec<(String, Value)> = ["id", "created", "recurringEventId"]
            .iter()
            .filter_map(|k| body.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        body = change;
        body.extend(kept);
        body.entry("status").or_insert_with(|| json!("confirmed"));
    } else {
        change.remove("id");
        change.remove("etag");
        // A patch merges nested objects and replaces everything else, as Google does.
        merge(&mut body, change);
    }
    if let Some(refusal) = check_times(&body) {
        return refusal;
    }
    found.body = body;
    found.body.insert("updated".into(), json!(now_text()));
    found.etag_version += 1;
    found.changed = change_number;
    let answer = event_json(found);
    stored.changes = change_number;
    Json(Value::Object(answer)).into_response()
}

async fn patch_event(
    State(sim): State<Shared>,
    Path((calendar, event)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_event(sim, calendar, event, query, headers, body, false).await
}

async fn update_event(
    State(sim): State<Shared>,
    Path((calendar, event)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change_event(sim, calendar, event, query, headers, body, true).await
}

async fn delete_event(
    State(sim): State<Shared>,
    Path((calendar, event)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("calendars/{calendar}/events/{event}");
    let mailbox = admitted!(&sim, "DELETE", &path, &query, &headers);
    let mut state = sim.lock().unwrap();
    let Some(stored) = state.calendar(&mailbox, &calendar) else {
        return not_found();
    };
    let change_number = stored.changes + 1;
    let Some(found) = stored.events.get_mut(&event) else {
        return not_found();
    };
    if found.body.get("status") == Some(&json!("cancelled")) {
        return google_error(410, "deleted", "Resource has been deleted");
    }
    if if_match_fails(&headers, found) {
        return google_error(412, "conditionNotMet", "Precondition Failed");
    }
    found.body.insert("status".into(), json!("cancelled"));
    found.body.insert("updated".into(), json!(now_text()));
    found.etag_version += 1;
    found.changed = change_number;
    stored.changes = change_number;
    StatusCode::NO_CONTENT.into_response()
}

// ---- calendars --------------------------------------------------------------

async fn insert_calendar(
    State(sim): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mailbox = admitted!(&sim, "POST", "calendars", &query, &headers);
    let Ok(Value::Object(mut calendar)) = serde_json::from_slice::<Value>(&body) else {
        return google_error(400, "parseError", "Parse Error");
    };
    if calendar
        .get("summary")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return google_error(400, "required", "Missing title.");
    }
    let mut state = sim.lock().unwrap();
    let id = format!("c_{:016x}@group.calendar.google.com", state.new_id());
    calendar.insert("id".into(), json!(id));
    calendar.insert("kind".into(), json!("calendar#calendar"));
    calendar.entry("timeZone").or_insert_with(|| json!("UTC"));
    state.calendars.insert(
        id,
        StoredCalendar {
            body: calendar.clone(),
            owner: mailbox,
            events: BTreeMap::new(),
            changes: 0,
            epoch: 0,
        },
    );
    Json(Value::Object(calendar)).into_response()
}

async fn get_calendar(
    State(sim): State<Shared>,
    Path(calendar): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = format!("calendars/{calendar}");
    let mailbox = admitted!(&sim, "GET", &path, &query, &headers);
    let mut state = sim.lock().unwrap();
    match state.calendar(&mailbox, &calendar) {
        Some(found) => Json(Value::Object(found.body.clone())).into_response(),
        None => not_found(),
    }
}

async fn calendar_list(
    State(sim): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mailbox = admitted!(&sim, "GET", "users/me/calendarList", &query, &headers);
    let mut state = sim.lock().unwrap();
    state.calendar(&mailbox, "primary");
    let mut items: Vec<Value> = state
        .calendars
        .values()
        .filter(|c| c.owner == mailbox)
        .map(|c| {
            let mut entry = c.body.clone();
            entry.insert("kind".into(), json!("calendar#calendarListEntry"));
            entry.insert("accessRole".into(), json!("owner"));
            Value::Object(entry)
        })
        .collect();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({ "kind": "calendar#calendarList", "items": items })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32hex_ids() {
        assert!(valid_event_id("abc0123v"));
        assert!(!valid_event_id("abcw1234"), "w is past base32hex");
        assert!(!valid_event_id("ab12"), "too short");
        assert!(!valid_event_id("ABC12345"), "upper case");
    }
}
