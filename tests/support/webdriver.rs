//! A small W3C WebDriver client for the browser tests: `chromedriver` as a
//! process, one headless Chromium session, and the handful of commands the
//! tests use (open, find, type, click, read, accept a confirmation, take a
//! screenshot). Plain HTTP and JSON over `reqwest`, as the protocol is, so no
//! browser-automation crate is needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::wait_for;

/// `chromedriver`: `CHROMEDRIVER` or Debian's `/usr/bin/chromedriver`.
fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// A running `chromedriver`; killed when dropped.
pub struct Driver {
    process: Child,
    base: String,
    client: reqwest::Client,
}

impl Driver {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (scripts/ensure-tools.sh installs chromium and chromium-driver)",
                    chromedriver().display()
                )
            });
        let driver = Self {
            process,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        wait_for(Duration::from_secs(20), || async {
            let status: Value = driver
                .client
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        driver
    }

    /// A headless Chromium session.
    pub async fn session(&self) -> Session {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ];
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if std::env::var_os("BROWSER_VISIBLE").is_some() {
            args.retain(|a| !a.starts_with("--headless"));
        }
        let answer: Value = self
            .client
            .post(format!("{}/session", self.base))
            .json(&json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "args": args, "binary": binary },
                }}
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Session {
            base: format!("{}/session/{id}", self.base),
            client: self.client.clone(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One browser window.
pub struct Session {
    base: String,
    client: reqwest::Client,
}

impl Session {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The first element matching `css`, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let value = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        // A web element is an object with one member, its reference; an
        // error is an object with `error`.
        if value.get("error").is_some() {
            return None;
        }
        value
            .as_object()?
            .values()
            .find_map(Value::as_str)
            .map(str::to_owned)
    }

    /// The first element matching `css`, waiting for it up to 20 s; when it
    /// does not come, the panic shows the page as it is.
    pub async fn wait(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            if tokio::time::Instant::now() > deadline {
                let url = self.command(reqwest::Method::GET, "/url", None).await;
                let source = self.command(reqwest::Method::GET, "/source", None).await;
                let source: String = source
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(3000)
                    .collect();
                panic!("no `{css}` within 20 s on {url}:\n{source}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, element: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_text(&self, element: &str, text: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn text(&self, element: &str) -> String {
        let value = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The page's whole text.
    pub async fn page_text(&self) -> String {
        let body = self.wait("body").await;
        self.text(&body).await
    }

    /// Accepts the open `confirm()` dialog, waiting for it to open.
    pub async fn accept_dialog(&self) {
        wait_for(Duration::from_secs(10), || async {
            let text = self
                .command(reqwest::Method::GET, "/alert/text", None)
                .await;
            text.is_string().then_some(())
        })
        .await;
        self.command(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let value = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}
