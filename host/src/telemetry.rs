//! Logging with `tracing`: human-readable by default, JSON lines for log shippers.
//! Request spans carry `request_id`, `tenant` and `plugin`, so every line of a
//! request names them. The host's own access lines (one per request, event
//! delivery and schedule run) go to the target [`ACCESS`]; `[log] access =
//! false` turns them off. Colour codes only on a terminal: a log file or the
//! journal gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// The target of the access lines.
pub const ACCESS: &str = "bitbylaw::access";

/// Installs the global subscriber writing to stdout. `RUST_LOG` wins over
/// `filter` when set. A second call (tests) leaves the first subscriber in place.
pub fn init(log: &LogConfig) {
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    install(log.format, &filter_of(log), ansi, std::io::stdout);
}

/// The filter as configured, with the access lines off when `access = false`.
fn filter_of(log: &LogConfig) -> String {
    match log.access {
        true => log.filter.clone(),
        false => format!("{},{ACCESS}=off", log.filter),
    }
}

/// Crates that put secrets into their own debug logs, held at `info`.
const QUIET_SECRETS: &str = "yup_oauth2=info";

/// Like [`init`], writing plain text to `writer` (tests capture the log this way).
pub fn init_with_writer<W>(format: LogFormat, filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    install(format, filter, false, writer);
}

fn install<W>(format: LogFormat, filter: &str, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // yup-oauth2 logs whole token requests and answers (a signed assertion,
    // an access token) at debug: never, whatever the filter says.
    let filter = match QUIET_SECRETS.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
    };
    drop(result);
}
