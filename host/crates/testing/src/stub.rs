//! Stub upstreams: real HTTP servers on 127.0.0.1 with canned or scripted
//! answers, recording every request they get.
//!
//! A stub is for a plugin's own tests: it answers what the test says and
//! checks only what the host must always send (the Advoware stub: a bearer
//! token it issued). The project's own tests use full simulators instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::Upstream;

/// One request a stub got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path below the stub's API base (for Advoware: below `api/v1/advonet`).
    pub path: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// An answer: status, JSON body (`Null` for none).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

type Script = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

#[derive(Default)]
struct Book {
    /// Canned answers by (method, path), each used in turn; the last one repeats.
    canned: HashMap<(String, String), Vec<Answer>>,
    script: Option<Script>,
    received: Vec<Received>,
}

/// An HTTP server answering from a book of canned answers.
#[derive(Clone)]
pub struct Http {
    addr: SocketAddr,
    book: Arc<Mutex<Book>>,
    task: Arc<tokio::task::AbortHandle>,
}

impl Drop for Http {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Http {
    /// A stub on a free port of 127.0.0.1; unknown requests get 404 with a JSON body.
    pub async fn start() -> anyhow::Result<Self> {
        Self::serve(String::new(), None).await
    }

    async fn serve(base: String, token: Option<String>) -> anyhow::Result<Self> {
        let book = Arc::new(Mutex::new(Book::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Served {
            book: book.clone(),
            base,
            token,
        };
        let app = axum::Router::new().fallback(answer).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            book,
            task: Arc::new(task.abort_handle()),
        })
    }

    /// `http://127.0.0.1:PORT` (the origin to allow for a plugin).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `method path` with `status` and JSON `body`. Given more than
    /// once for the same request, the answers are used in turn and the last repeats.
    pub fn answer(&self, method: &str, path: &str, status: u16, body: serde_json::Value) {
        lock(&self.book)
            .canned
            .entry((method.to_ascii_uppercase(), path.to_owned()))
            .or_default()
            .push(Answer { status, body });
    }

    /// Answers every request that has no canned answer with `script`.
    pub fn script(&self, script: impl Fn(&Received) -> Answer + Send + Sync + 'static) {
        lock(&self.book).script = Some(Arc::new(script));
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.book).received.clone()
    }

    /// The requests so far to `method path`.
    pub fn received_at(&self, method: &str, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .collect()
    }
}

#[derive(Clone)]
struct Served {
    book: Arc<Mutex<Book>>,
    /// The API's path below the origin (`/api/v1/advonet`), or empty.
    base: String,
    /// The bearer token the API requires, when it requires one.
    token: Option<String>,
}

async fn answer(
    State(served): State<Served>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = uri.path();
    if let Some(token) = &served.token {
        // The security gateway: any signed request gets the stub's token
        // (the host's signing is tested against the simulator).
        if method == Method::POST && full == "/api/v1/Token" {
            return axum::Json(serde_json::json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 3600,
            }))
            .into_response();
        }
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({ "error": "no or wrong bearer token" })),
            )
                .into_response();
        }
    }
    let Some(path) = full.strip_prefix(served.base.as_str()) else {
        return not_found(&method, full);
    };
    let received = Received {
        method: method.to_string(),
        path: path.to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    };
    let chosen = {
        let mut book = lock(&served.book);
        book.received.push(received.clone());
        let canned = book
            .canned
            .get_mut(&(received.method.clone(), received.path.clone()))
            .and_then(|answers| {
                if answers.len() > 1 {
                    Some(answers.remove(0))
                } else {
                    answers.first().cloned()
                }
            });
        canned.or_else(|| book.script.clone().map(|script| script(&received)))
    };
    match chosen {
        Some(Answer { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if body.is_null() {
                status.into_response()
            } else {
                (status, axum::Json(body)).into_response()
            }
        }
        None => not_found(&method, path),
    }
}

fn not_found(method: &Method, path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": format!("the stub has no answer for {method} {path}")
        })),
    )
        .into_response()
}

/// Advoware for a plugin's tests: the security gateway and the REST API
/// (`api/v1/advonet/...`) on one port. Paths given to [`Advoware::answer`]
/// are below the API base, as the plugin names them (`/employees`).
pub struct Advoware {
    http: Http,
    secrets: tempfile::TempDir,
}

impl Advoware {
    pub async fn start() -> anyhow::Result<Self> {
        let token = format!("stub-token-{}", uuid::Uuid::new_v4().simple());
        let http = Http::serve("/api/v1/advonet".into(), Some(token)).await?;
        let secrets = tempfile::tempdir()?;
        // Advoware hands out base64 API keys; the host checks the form.
        std::fs::write(secrets.path().join("api-key"), "c3R1Yi1hcGkta2V5")?;
        std::fs::write(secrets.path().join("password"), "stub-password")?;
        Ok(Self { http, secrets })
    }

    /// The tenant's account of kind `advoware` named `name`, pointing at the stub.
    pub fn account(&self, name: &str) -> Upstream {
        let origin = self.http.origin();
        let file = |name: &str| {
            serde_json::Value::String(self.secrets.path().join(name).display().to_string())
        };
        Upstream {
            name: name.to_owned(),
            toml: format!(
                "kind = \"advoware\"\napi_url = \"{origin}/\"\nsecurity_gateway = \"{origin}/\"\n\
                 app_id = \"stub-app\"\nkanzlei = \"STUB\"\ndatabase = \"STUB\"\nuser = \"STUB\"\n\
                 api_key = {{ file = {} }}\npassword = {{ file = {} }}\n",
                file("api-key"),
                file("password")
            ),
        }
    }

    /// See [`Http::answer`]; `path` is below the API base, e.g. `/employees`.
    pub fn answer(&self, method: &str, path: &str, status: u16, body: serde_json::Value) {
        self.http.answer(method, path, status, body);
    }

    pub fn script(&self, script: impl Fn(&Received) -> Answer + Send + Sync + 'static) {
        self.http.script(script);
    }

    /// The API requests so far (token requests are not listed).
    pub fn received(&self) -> Vec<Received> {
        self.http.received()
    }

    pub fn received_at(&self, method: &str, path: &str) -> Vec<Received> {
        self.http.received_at(method, path)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
