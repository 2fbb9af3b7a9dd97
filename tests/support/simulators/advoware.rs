//! Advoware's security gateway (the HMAC-512 token flow) and the REST API
//! behind it, as far as the integrations use it.
//!
//! Token: `POST /api/v1/Token` with exactly `AppID`, `Kanzlei`, `Database`,
//! `User`, `Role`, `Product`, `Password`, `Nonce`, `RequestTimeStamp`,
//! `HMAC512Signature`; the signature is base64(HMAC-SHA512(base64-decoded API
//! key, "{Product}:{AppID}:{Nonce}:{RequestTimeStamp}")). Wrong credentials,
//! a wrong signature, a stale timestamp or a reused nonce are refused (401,
//! German message as the real gateway sends). Tokens expire.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha512;

/// How far a request's timestamp may be from the gateway's clock.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

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
pub fn signature(
    api_key: &str,
    product: u64,
    app_id: &str,
    nonce: &str,
    timestamp: &str,
) -> Option<String> {
    let key = STANDARD.decode(api_key).ok()?;
    let mut mac = Hmac::<Sha512>::new_from_slice(&key).ok()?;
    mac.update(format!("{product}:{app_id}:{nonce}:{timestamp}").as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

#[derive(Default)]
struct Gateway {
    seen_nonces: HashSet<String>,
    tokens: HashMap<String, DateTime<Utc>>,
    token_requests: u64,
}

/// A running simulator; stops when dropped.
pub struct Advoware {
    pub addr: SocketAddr,
    account: Account,
    token_lifetime: Duration,
    gateway: Arc<Mutex<Gateway>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    account: Account,
    token_lifetime: Duration,
    gateway: Arc<Mutex<Gateway>>,
}

impl Advoware {
    pub async fn start(account: Account, token_lifetime: Duration) -> Self {
        let gateway = Arc::new(Mutex::new(Gateway::default()));
        let shared = Shared {
            account: account.clone(),
            token_lifetime,
            gateway: gateway.clone(),
        };
        let app = axum::Router::new()
            .route("/api/v1/Token", post(token))
            .route("/api/v1/advonet/employees", get(employees))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            account,
            token_lifetime,
            gateway,
            server,
        }
    }

    /// `http://127.0.0.1:<port>/`: security gateway and relay in one.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
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

    /// Invalidates every token: the next call with one gets 401.
    pub fn revoke_all_tokens(&self) {
        self.gateway.lock().unwrap().tokens.clear();
    }

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

impl Drop for Advoware {
    fn drop(&mut self) {
        self.server.abort();
    }
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

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "Message": message }))).into_response()
}

async fn token(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut gateway = shared.gateway.lock().unwrap();
    gateway.token_requests += 1;
    let Some(fields) = body.as_object() else {
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
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": shared.token_lifetime.as_secs(),
        "expiration_utc": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let gateway = shared.gateway.lock().unwrap();
    gateway
        .tokens
        .get(token)
        .is_some_and(|expires| *expires > Utc::now())
}

async fn employees(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
        );
    }
    Json(json!([
        { "kuerzel": "SB", "name": "Sabine Berger" },
        { "kuerzel": "MK", "name": "Markus König" },
    ]))
    .into_response()
}
