//! `bitbylaw calendar …`: the audit and repair routes of the `calendar-sync`
//! plugin from a shell (`docs/plugins/calendar-sync.md`). Each subcommand is
//! one HTTP call; the answer's JSON is printed as it is, and a refusal ends
//! with exit code 2 and the plugin's message.

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;

#[derive(Args)]
pub struct CalendarArgs {
    /// Where the deployment answers (Kong or the host), e.g. `https://api.kanzlei.de`.
    #[arg(long, env = "CALENDAR_URL")]
    url: String,
    /// The tenant's API key, sent as `apikey` (the header Kong's key-auth reads).
    #[arg(long, env = "CALENDAR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Another header, `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The routes' prefix, when the tenant has one (`route_prefix`).
    #[arg(long, default_value = "")]
    prefix: String,
    #[command(subcommand)]
    command: CalendarCommand,
}

#[derive(Subcommand)]
pub enum CalendarCommand {
    /// Each employee's last run.
    Status,
    /// Runs one employee now and prints its report.
    Run { kuerzel: String },
    /// Triggers a run of every employee (or one) in the background.
    Trigger {
        #[arg(default_value = "ALL")]
        kuerzel: String,
    },
    /// What a run would do now, without writing.
    Verify { kuerzel: String },
    /// Google events linked to the same appointment; `--delete` keeps one.
    Duplicates {
        kuerzel: String,
        #[arg(long)]
        delete: bool,
    },
    /// Linked events whose appointment Advoware no longer has; `--delete` removes them.
    Orphans {
        kuerzel: String,
        #[arg(long)]
        delete: bool,
    },
    /// One appointment (`--fr-nr`) or Google event (`--event-id`), both sides.
    Lookup {
        kuerzel: String,
        #[arg(
            long,
            conflicts_with = "event_id",
            required_unless_present = "event_id"
        )]
        fr_nr: Option<i64>,
        #[arg(long)]
        event_id: Option<String>,
    },
    /// Employees whose lock a run holds.
    Locks,
    /// Releases an employee's lock.
    Unlock { kuerzel: String },
}

impl CalendarArgs {
    /// The request a subcommand makes: method, path below the prefix, body.
    fn request(&self) -> (Method, String, Option<serde_json::Value>) {
        use CalendarCommand as C;
        let base = "/advoware/calendar";
        let code = |k: &str| {
            percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let delete_or_get = |delete: bool| if delete { Method::DELETE } else { Method::GET };
        match &self.command {
            C::Status => (Method::GET, format!("{base}/status"), None),
            C::Run { kuerzel } => (
                Method::POST,
                format!("{base}/sync/{}/now", code(kuerzel)),
                None,
            ),
            C::Trigger { kuerzel } => (
                Method::POST,
                format!("{base}/sync"),
                Some(serde_json::json!({ "kuerzel": kuerzel })),
            ),
            C::Verify { kuerzel } => (
                Method::GET,
                format!("{base}/verify/{}", code(kuerzel)),
                None,
            ),
            C::Duplicates { kuerzel, delete } => (
                delete_or_get(*delete),
                format!("{base}/duplicates/{}", code(kuerzel)),
                None,
            ),
            C::Orphans { kuerzel, delete } => (
                delete_or_get(*delete),
                format!("{base}/orphans/{}", code(kuerzel)),
                None,
            ),
            C::Lookup {
                kuerzel,
                fr_nr,
                event_id,
            } => {
                let query = match (fr_nr, event_id) {
                    (Some(fr_nr), _) => format!("fr_nr={fr_nr}"),
                    (None, Some(id)) => format!("event_id={}", code(id)),
                    (None, None) => String::new(),
                };
                (
                    Method::GET,
                    format!("{base}/lookup/{}?{query}", code(kuerzel)),
                    None,
                )
            }
            C::Locks => (Method::GET, format!("{base}/locks"), None),
            C::Unlock { kuerzel } => (
                Method::DELETE,
                format!("{base}/locks/{}", code(kuerzel)),
                None,
            ),
        }
    }
}

/// Makes the call and prints the answer; an error for any status but 2xx.
pub async fn run(args: CalendarArgs) -> anyhow::Result<()> {
    let (method, path, body) = args.request();
    let url = format!(
        "{}{}{path}",
        args.url.trim_end_matches('/'),
        args.prefix.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(900))
        .build()
        .context("cannot build the HTTP client")?;
    let mut request = client.request(method, &url);
    if let Some(key) = &args.api_key {
        request = request.header("apikey", key);
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header `{header}` is not `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| serde_json::to_string_pretty(&json).ok())
        .unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}:\n{pretty}")
    }
}
