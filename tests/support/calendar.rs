//! A tenant running `calendar-sync` between the Advoware and Google
//! simulators, for the calendar tests and the benchmark.

use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::TestHost;
use crate::deployment::Deployment;
use crate::simulators::advoware::Advoware;
use crate::simulators::google::{Google, ServiceAccount};

pub const API_KEY: &str = "firm-a-key";

/// A key the tenant limits to the calendar's audit and repair routes: the
/// firm's IT, who may delete duplicates and free locks.
pub const OPERATOR_KEY: &str = "firm-a-operator-key";

/// The routes [`OPERATOR_KEY`] opens.
pub const OPERATOR_ROUTES: &str = r#"["GET /advoware/calendar/*", "DELETE /advoware/calendar/*"]"#;

/// What a rig is made of, beyond the defaults.
#[derive(Clone)]
pub struct RigOptions {
    /// Employee code → mailbox.
    pub employees: Vec<(String, String)>,
    /// Lines for `[plugins.calendar-sync.config]`.
    pub config: String,
    /// Lines for `[upstreams.google]`.
    pub google: String,
    /// Subscription concurrency of `calendar_sync_employee`.
    pub concurrency: u32,
    pub key_prefix: Option<String>,
    /// More host settings, appended to the `[events]` table of [`HOST_TOML`].
    pub host: String,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            employees: vec![("SB".into(), "sabine@kanzlei.example".into())],
            config: "write_to_advoware = true".into(),
            google: String::new(),
            concurrency: 8,
            key_prefix: None,
            host: String::new(),
        }
    }
}

pub struct CalendarRig {
    pub advoware: Advoware,
    pub google: Google,
    pub host: TestHost,
    pub options: RigOptions,
    /// The tenant and host settings every instance of this rig shares.
    pub deployment: Deployment,
}

impl CalendarRig {
    pub async fn start(options: RigOptions) -> Self {
        let advoware = Advoware::start_default().await;
        let account = ServiceAccount::generate("sync@bitbylaw-test.iam.gserviceaccount.com");
        let google = Google::start(std::slice::from_ref(&account)).await;
        let mut deployment = Deployment::new("firm-a", options.key_prefix.as_deref());
        std::fs::write(
            deployment.files().join("google.json"),
            account.key_json(&google.token_uri()),
        )
        .unwrap();
        deployment.tenant_toml = tenant(&advoware, &google, deployment.files(), &options);
        deployment.host_toml = format!("{HOST_TOML}\n{}", options.host);
        let host = deployment.start().await;
        Self {
            advoware,
            google,
            host,
            options,
            deployment,
        }
    }

    /// A second host instance of the same deployment (same store prefix).
    pub async fn another_instance(&self) -> TestHost {
        self.deployment.start().await
    }

    /// `POST /advoware/calendar/sync/{kuerzel}/now` on `host`: status and report.
    pub async fn run_on(host: &TestHost, kuerzel: &str) -> (u16, Value) {
        let response = host
            .client
            .post(host.url(&format!("/advoware/calendar/sync/{kuerzel}/now")))
            .header("apikey", API_KEY)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Any route with `key`: status and answer (JSON, or the text as a string).
    pub async fn call(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .host
            .client
            .request(method, self.host.url(path))
            .header("apikey", key)
            .timeout(Duration::from_secs(120));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `kuerzel`'s run (`…/now`) started in the background: status and report when it ends.
    pub fn spawn_run(&self, kuerzel: &str) -> tokio::task::JoinHandle<(u16, Value)> {
        let client = self.host.client.clone();
        let url = self
            .host
            .url(&format!("/advoware/calendar/sync/{kuerzel}/now"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("apikey", API_KEY)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    }

    /// `POST /advoware/calendar/sync` with `body`: status and answer.
    pub async fn trigger(&self, body: Value) -> (u16, Value) {
        let response = self
            .host
            .client
            .post(self.host.url("/advoware/calendar/sync"))
            .header("apikey", API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /advoware/calendar/status`: the last run of each employee.
    pub async fn status(&self) -> Vec<Value> {
        let response = self
            .host
            .client
            .get(self.host.url("/advoware/calendar/status"))
            .header("apikey", API_KEY)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["employees"].as_array().cloned().unwrap_or_default()
    }

    /// `kuerzel`'s run here and now with a request body (`{"full_content": …}`).
    pub async fn run_asking(&self, kuerzel: &str, body: Value) -> (u16, Value) {
        self.call(
            API_KEY,
            reqwest::Method::POST,
            &format!("/advoware/calendar/sync/{kuerzel}/now"),
            Some(body),
        )
        .await
    }

    pub async fn run(&self, kuerzel: &str) -> (u16, Value) {
        Self::run_on(&self.host, kuerzel).await
    }

    /// A run that must succeed; its report.
    pub async fn run_ok(&self, kuerzel: &str) -> Value {
        let (status, report) = self.run(kuerzel).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["outcome"], "ok", "{report}");
        report
    }

    pub fn mailbox(&self, kuerzel: &str) -> String {
        self.options
            .employees
            .iter()
            .find(|(k, _)| k == kuerzel)
            .map(|(_, m)| m.clone())
            .unwrap()
    }

    /// The employee's sync calendar, once a run made it.
    pub fn calendar_id(&self, kuerzel: &str) -> Option<String> {
        self.google
            .calendars_of(&self.mailbox(kuerzel))
            .into_iter()
            .find(|(_, summary)| summary == "Advoware")
            .map(|(id, _)| id)
    }

    /// The events of the employee's sync calendar, cancelled ones included.
    pub fn events(&self, kuerzel: &str) -> Vec<Value> {
        self.calendar_id(kuerzel)
            .map(|id| self.google.events(&id))
            .unwrap_or_default()
    }

    /// The events not deleted.
    pub fn live_events(&self, kuerzel: &str) -> Vec<Value> {
        self.events(kuerzel)
            .into_iter()
            .filter(|e| e["status"] != "cancelled")
            .collect()
    }

    /// Calls that changed something, on either simulator, since `google_from`/`advoware_from`.
    pub fn writes_since(&self, google_from: usize, advoware_from: usize) -> Vec<String> {
        let google = self
            .google
            .calls()
            .into_iter()
            .skip(google_from)
            .filter(|c| c.method != "GET")
            .map(|c| format!("Google {} {}", c.method, c.path));
        let advoware = self
            .advoware
            .api_requests()
            .into_iter()
            .skip(advoware_from)
            .filter(|r| r.method != "GET")
            .map(|r| format!("Advoware {} {}", r.method, r.path));
        google.chain(advoware).collect()
    }
}

// ---- what the calendar tests share ----

/// Today in Berlin.
pub fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
}

/// `YYYY-MM-DD`, `days` from today.
pub fn day(days: u64) -> String {
    (today() + Days::new(days)).format("%Y-%m-%d").to_string()
}

/// An appointment of SB's, `days` from today, `from` to `to` (`HH:MM:SS`).
pub fn timed(title: &str, days: u64, from: &str, to: &str) -> Value {
    json!({
        "kuerzel": "SB", "text": title, "notiz": format!("Notiz zu {title}"), "ort": "LG Berlin",
        "datum": format!("{}T00:00:00", day(days)), "uhrzeitVon": from,
        "datumBis": format!("{}T00:00:00", day(days)), "uhrzeitBis": to,
    })
}

/// A Google `start`/`end` with `dateTime` as Berlin wall-clock time, `YYYY-MM-DD HH:MM`.
pub fn berlin(time: &Value) -> String {
    let moment = chrono::DateTime::parse_from_rfc3339(time["dateTime"].as_str().unwrap()).unwrap();
    moment
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// The events linked to appointment `fr_nr`.
pub fn by_fr_nr(events: &[Value], fr_nr: i64) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            e["extendedProperties"]["private"]["advoware_frnr"].as_str() == Some(&fr_nr.to_string())
        })
        .cloned()
        .collect()
}

/// Event handlers (the employee runs) may take minutes: deliveries must wait longer.
pub const HOST_TOML: &str = r#"
[events]
visibility_timeout_ms = 600000
"#;

fn tenant(
    advoware: &Advoware,
    google: &Google,
    files: &std::path::Path,
    options: &RigOptions,
) -> String {
    let mailboxes: Vec<String> = options
        .employees
        .iter()
        .map(|(k, m)| format!("{k} = \"{m}\""))
        .collect();
    std::fs::write(files.join("api.key"), API_KEY).unwrap();
    std::fs::write(files.join("operator.key"), OPERATOR_KEY).unwrap();
    format!(
        r#"
api_keys = [
  {{ file = "{files}/api.key" }},
  {{ key = {{ file = "{files}/operator.key" }}, routes = {OPERATOR_ROUTES} }},
]
{advoware}
[upstreams.google]
kind = "google"
service_account_key = {{ file = "{files}/google.json" }}
api_base = "{google_api}"
{google_extra}

[plugins.calendar-sync]
component = "{{component:calendar-sync}}"
upstreams = ["advoware", "google"]

[plugins.calendar-sync.limits]
deadline_ms = 300000

[plugins.calendar-sync.subscriptions.calendar_sync_employee]
concurrency = {concurrency}

[plugins.calendar-sync.config]
{config}

[plugins.calendar-sync.config.mailboxes]
{mailboxes}
"#,
        advoware = advoware.upstream_toml("advoware", files),
        files = files.display(),
        google_api = google.api_base(),
        google_extra = options.google,
        concurrency = options.concurrency,
        config = options.config,
        mailboxes = mailboxes.join("\n"),
    )
}
