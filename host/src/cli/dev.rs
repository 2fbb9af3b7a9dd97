//! `bitbylaw dev`: the plugin author's loop. Builds the plugin in a folder,
//! serves it on a dev tenant of an embedded host (memory store, no Redis),
//! and on every change of its sources builds again and swaps the new
//! component in, the way a tenant's plugin is swapped in production. A build
//! that fails, or a component that does not fit, leaves the last good one
//! serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;

use crate::host::Host;

/// The dev tenant's id and its API key (for `curl -H 'apikey: dev-key'`).
const TENANT: &str = "dev";
const API_KEY: &str = "dev-key";

#[derive(Args)]
pub struct DevArgs {
    /// The plugin's folder (default: the current one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to serve (port 0: a free one, printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// A tenant file to start from (its `[plugins.<name>]` gets the built
    /// component; config, secrets and upstreams as in production). Default:
    /// `dev-tenant.toml` in the plugin's folder when it is there.
    #[arg(long)]
    tenant: Option<PathBuf>,
    /// How often to look for changed sources, in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from("."))
        .canonicalize()
        .context("the plugin's folder")?;
    let name = package_name(&dir)?;
    say(&format!("building {name} in {}", dir.display()));
    let first = build_blocking(&dir).await;
    let wasm = match &first {
        Ok(wasm) => wasm.clone(),
        Err(error) => anyhow::bail!("{error:#}"),
    };
    // `<target>/wasm32-wasip2/release/<name>.wasm`: the dev host lives beside it.
    let target = wasm
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("target"));
    let work = target.join("bitbylaw-dev").join(&name);
    std::fs::create_dir_all(work.join("tenants"))?;
    let serving = work.join("serving.wasm");
    install(&wasm, &serving)?;
    let tenant_file = work.join("tenants").join(format!("{TENANT}.toml"));
    let template = args
        .tenant
        .or_else(|| Some(dir.join("dev-tenant.toml")).filter(|file| file.exists()));
    write_tenant(&tenant_file, template.as_deref(), &name, &serving, &work)?;
    let host_file = work.join("host.toml");
    std::fs::write(
        &host_file,
        format!(
            "listen = \"{}\"\ntenants_dir = \"tenants\"\n[log]\nformat = \"human\"\nfilter = \"info,bitbylaw::access=warn\"\n\
             [runtime]\ncache_dir = {:?}\n[reload]\npoll_ms = 0\n",
            args.listen,
            target.join("component-cache").display().to_string()
        ),
    )?;

    let config = crate::config::load(&host_file)?;
    crate::telemetry::init(&config.host.log);
    let host = Host::start(config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    say(&format!(
        "listening on http://{address} (tenant `{TENANT}`, header `apikey: {API_KEY}`)"
    ));
    report(&host, &name, address);
    tokio::spawn(print_events(host.clone()));

    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch(
        Watched {
            host: host.clone(),
            dir,
            name,
            serving,
            tenant_file,
            address,
        },
        Duration::from_millis(args.poll_ms.max(50)),
        stop.clone(),
    ));
    crate::server::run(listener, host, crate::server::shutdown_signal()).await?;
    stop.cancel();
    let _ = watcher.await;
    Ok(())
}

/// What the dev loop works on: the host, the plugin's folder and name, where
/// the dev tenant reads the component, the tenant file, the address served.
struct Watched {
    host: Arc<Host>,
    dir: PathBuf,
    name: String,
    serving: PathBuf,
    tenant_file: PathBuf,
    address: std::net::SocketAddr,
}

/// Builds on every change of the sources, and swaps each good component in.
async fn watch(watched: Watched, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let Watched {
        host,
        dir,
        name,
        serving,
        tenant_file,
        address,
    } = watched;
    let mut seen = newest_source(&dir);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = newest_source(&dir);
        if now == seen {
            continue;
        }
        // Editors write in several steps: wait until the sources hold still.
        tokio::time::sleep(every).await;
        let settled = newest_source(&dir);
        if settled != now {
            continue;
        }
        seen = settled;
        say("sources changed; building");
        let wasm = match build_blocking(&dir).await {
            Ok(wasm) => wasm,
            Err(error) => {
                say(&format!("{error:#}; still serving the last good version"));
                continue;
            }
        };
        // Checked before it replaces the one serving, so a bad one never does.
        let bytes = match std::fs::read(&wasm) {
            Ok(bytes) => bytes,
            Err(error) => {
                say(&format!("cannot read {}: {error}", wasm.display()));
                continue;
            }
        };
        if let Err(error) = host.check_component(bytes.into()).await {
            say(&format!(
                "the new component does not fit ({error:#}); still serving the last good version"
            ));
            continue;
        }
        if let Err(error) = install(&wasm, &serving) {
            say(&format!("cannot install the component: {error:#}"));
            continue;
        }
        host.reload_tenant_file(&tenant_file).await;
        match host.broken_tenants().get(TENANT) {
            Some(error) => say(&format!(
                "not reloaded ({error}); still serving the last good version"
            )),
            None => {
                say("reloaded");
                report(&host, &name, address);
            }
        }
    }
}

/// `plugin build` off the async threads (it waits for cargo).
async fn build_blocking(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || super::plugin::build(&dir))
        .await
        .context("the build task")?
}

/// Copies the built component to where the dev tenant reads it, whole or not at all.
fn install(wasm: &Path, serving: &Path) -> anyhow::Result<()> {
    let partial = serving.with_extension("wasm.partial");
    std::fs::copy(wasm, &partial)
        .with_context(|| format!("copying {} to {}", wasm.display(), partial.display()))?;
    std::fs::rename(&partial, serving)?;
    Ok(())
}

/// The dev tenant: the author's file (or an empty one) with the plugin
/// pointed at the serving component and the dev API key.
fn write_tenant(
    file: &Path,
    template: Option<&Path>,
    name: &str,
    serving: &Path,
    work: &Path,
) -> anyhow::Result<()> {
    let text = match template {
        Some(template) => std::fs::read_to_string(template)
            .with_context(|| format!("cannot read {}", template.display()))?,
        None => String::new(),
    };
    let mut document: toml_edit::DocumentMut = text.parse().with_context(|| {
        format!(
            "{} is not TOML",
            template
                .map(|t| t.display().to_string())
                .unwrap_or_default()
        )
    })?;
    let key_file = work.join("api-key");
    std::fs::write(&key_file, API_KEY)?;
    let mut key = toml_edit::InlineTable::new();
    key.insert("file", key_file.display().to_string().into());
    let mut keys = toml_edit::Array::new();
    keys.push(key);
    document["api_keys"] = toml_edit::value(keys);
    if !document.contains_table("plugins") {
        let mut plugins = toml_edit::Table::new();
        plugins.set_implicit(true);
        document["plugins"] = toml_edit::Item::Table(plugins);
    }
    let plugins = document["plugins"]
        .as_table_mut()
        .context("`plugins` is not a table")?;
    if !plugins.contains_key(name) {
        plugins.insert(name, toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let plugin = plugins[name]
        .as_table_mut()
        .with_context(|| format!("`plugins.{name}` is not a table"))?;
    plugin.remove("version");
    plugin.insert("component", toml_edit::value(serving.display().to_string()));
    std::fs::write(file, document.to_string())?;
    Ok(())
}

/// Prints what the dev tenant serves now, or why it does not.
fn report(host: &Host, name: &str, address: std::net::SocketAddr) {
    if let Some(error) = host.broken_tenants().get(TENANT) {
        say(&format!("the dev tenant did not load: {error}"));
        return;
    }
    let deployment = host.registry().current();
    let Some(plugin) = deployment
        .tenant(TENANT)
        .and_then(|tenant| tenant.plugins.get(name))
    else {
        say(&format!("plugin `{name}` is not running"));
        return;
    };
    let description = &plugin.description;
    let worlds: std::collections::BTreeSet<&str> = plugin
        .imports
        .iter()
        .filter_map(|import| import.strip_prefix("bitbylaw:plugin/")?.split_once('@'))
        .map(|(_, version)| version)
        .collect();
    let worlds: Vec<String> = worlds
        .into_iter()
        .map(|version| format!("bitbylaw:plugin@{version}"))
        .collect();
    let mut text = format!(
        "serving {} {} (built for {}; this host serves {})",
        description.name,
        description.version,
        worlds.join(", "),
        crate::runtime::WORLD
    );
    for route in &description.routes {
        text.push_str(&format!(
            "\n  {} http://{address}{}",
            route.method, route.path
        ));
    }
    for topic in &description.topics {
        text.push_str(&format!("\n  topic {topic}"));
    }
    for schedule in &description.schedules {
        text.push_str(&format!("\n  schedule {} {}", schedule.name, schedule.cron));
    }
    say(&text);
}

/// Says each event as it is emitted, so the author sees the flow.
async fn print_events(host: Arc<Host>) {
    let mut events = host.events().watch();
    loop {
        match events.recv().await {
            Ok(event) => say(&format!(
                "event {} {}",
                event.topic,
                String::from_utf8_lossy(&event.payload)
            )),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                say(&format!("({missed} events not shown)"));
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A line for the author, on standard output (logs go to standard error).
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[dev] {text}");
    let _ = out.flush();
}

/// The `name` of `[package]` in the folder's Cargo.toml.
fn package_name(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} has no Cargo.toml: is it a plugin's folder?",
            dir.display()
        )
    })?;
    let document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not TOML", manifest.display()))?;
    document["package"]["name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{}: no `package.name`", manifest.display()))
}

/// When the plugin's sources last changed: `Cargo.toml`, `src/`, `wit/`
/// (also what the test harness compares its component with).
pub fn newest_source(dir: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(Some(modified));
            }
        }
    }
    let mut newest = std::fs::metadata(dir.join("Cargo.toml"))
        .and_then(|m| m.modified())
        .ok();
    walk(&dir.join("src"), &mut newest);
    walk(&dir.join("wit"), &mut newest);
    newest
}
