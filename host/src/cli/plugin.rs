//! `bitbylaw plugin …`: for plugin authors, on this machine, without a
//! running deployment. `new` makes a plugin crate from the template, `build`
//! builds it for wasm32-wasip2 and checks the component, and `inspect` loads
//! a component the way a tenant would (an embedded host with no tenants) and
//! says what it is.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// A new plugin crate: one route, one event handler, one schedule, a test
    /// and a README. Inside a bitbylaw checkout's `plugins/` it joins the
    /// workspace; elsewhere it stands alone and takes the SDK by path.
    New {
        /// The plugin's name: lower case letters, digits and `-`, e.g. `leads`.
        name: String,
        /// Where to make it (default: `./<name>`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK (`plugins/sdk` of a bitbylaw checkout); found by itself when
        /// the folder is inside one.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Builds the plugin (`cargo build --release --target wasm32-wasip2`) and
    /// checks the component against this host's world.
    Build {
        /// The plugin's folder (default: the current one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Name, version, routes, topics, schedules and imports of a component,
    /// and whether this host can serve it (and for which world it was built).
    Inspect {
        /// The component, e.g. `target/wasm32-wasip2/release/my_plugin.wasm`.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `inspect` found, as printed.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// The `bitbylaw:plugin` world versions its imports name (`0.1.0`).
    pub worlds: Vec<String>,
    pub host_world: &'static str,
    /// Whether this host loads and serves it; when not, why.
    pub fits: bool,
    pub error: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub routes: Vec<String>,
    pub topics: Vec<String>,
    pub schedules: Vec<String>,
    pub imports: Vec<String>,
}

/// The world this host serves.
pub const HOST_WORLD: &str = crate::runtime::WORLD;

pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New { name, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold(&name, &dir, sdk.as_deref())?;
            println!(
                "made plugin `{name}` in {}\nnext: cd {} && bitbylaw plugin build && cargo test",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let wasm = build(&dir)?;
            let inspection = inspect(&wasm).await?;
            print!("{}", text(&inspection));
            if !inspection.fits {
                anyhow::bail!("{} builds, but this host cannot serve it", wasm.display());
            }
            Ok(())
        }
        PluginCommand::Inspect { file, json } => {
            let inspection = inspect(&file).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                print!("{}", text(&inspection));
            }
            if !inspection.fits {
                anyhow::bail!("{} cannot be served by this host", inspection.file);
            }
            Ok(())
        }
    }
}

const TEMPLATE_LIB: &str = include_str!("template/lib.rs.txt");
const TEMPLATE_CARGO: &str = include_str!("template/Cargo.toml.txt");
const TEMPLATE_README: &str = include_str!("template/README.md.txt");
const TEMPLATE_TEST: &str = include_str!("template/plugin.rs.txt");

/// The tail of a standalone plugin's Cargo.toml: its own workspace, with the
/// profiles of the host's.
const STANDALONE: &str = r#"
[workspace]

# As bitbylaw's own workspace: dependencies optimised once, so the harness
# compiles the component quickly in every test run.
[profile.dev.package."*"]
opt-level = 2
debug = false

[profile.dev]
debug = "line-tables-only"

[profile.release]
debug = "line-tables-only"

[profile.release.package.bitbylaw-sdk]
opt-level = "s"
"#;

/// Writes a new plugin crate `name` into `dir` (which must not hold files).
pub fn scaffold(
    name: &str,
    dir: &std::path::Path,
    sdk: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        anyhow::bail!(
            "`{name}`: a plugin's name is lower case letters, digits and `-`, starting with a letter"
        );
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    let dir = dir.canonicalize()?;
    // Inside a checkout's `plugins/`: a workspace member beside the SDK.
    let checkout_sdk = dir
        .parent()
        .filter(|parent| parent.file_name().is_some_and(|n| n == "plugins"))
        .map(|plugins| plugins.join("sdk"))
        .filter(|sdk| sdk.join("Cargo.toml").exists());
    let (sdk_line, workspace, checkout) = match (checkout_sdk, sdk) {
        (Some(sdk), _) => (
            r#"bitbylaw-sdk = { path = "../sdk" }"#.to_owned(),
            String::new(),
            sdk.join("../.."),
        ),
        (None, Some(sdk)) => {
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("the SDK folder {}", sdk.display()))?;
            if !sdk.join("Cargo.toml").exists() {
                anyhow::bail!(
                    "{} has no Cargo.toml: name `plugins/sdk` of a bitbylaw checkout",
                    sdk.display()
                );
            }
            (
                format!(
                    "bitbylaw-sdk = {{ path = {:?} }}",
                    sdk.display().to_string()
                ),
                // Not part of a workspace it may sit in; built as the host's
                // own workspace builds (compiled Wasm in tests stays fast).
                STANDALONE.to_owned(),
                sdk.join("../.."),
            )
        }
        (None, None) => {
            let _ = std::fs::remove_dir_all(&dir);
            anyhow::bail!(
                "where is the SDK? give `--sdk <bitbylaw checkout>/plugins/sdk` (or make the plugin in the checkout's plugins/ folder)"
            );
        }
    };
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let topic = name.replace('-', "_");
    let wasm = format!("target/wasm32-wasip2/release/{topic}.wasm");
    let testing = checkout.join("host/crates/testing");
    let testing_line = if workspace.is_empty() {
        r#"bitbylaw-testing = { path = "../../host/crates/testing" }"#.to_owned()
    } else {
        format!(
            "bitbylaw-testing = {{ path = {:?} }}",
            testing
                .canonicalize()
                .unwrap_or(testing)
                .display()
                .to_string()
        )
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{type_name}}", &type_name)
            .replace("{{topic}}", &topic)
            .replace("{{wasm}}", &wasm)
            .replace("{{sdk}}", &sdk_line)
            .replace("{{testing}}", &testing_line)
            .replace("{{workspace}}", &workspace)
    };
    std::fs::write(dir.join("Cargo.toml"), fill(TEMPLATE_CARGO))?;
    std::fs::write(dir.join("src/lib.rs"), fill(TEMPLATE_LIB))?;
    std::fs::write(dir.join("README.md"), fill(TEMPLATE_README))?;
    std::fs::write(dir.join("tests/plugin.rs"), fill(TEMPLATE_TEST))?;
    // The checkout's resolved versions: the plugin builds with what the host
    // was tested with (and shares a build folder's artifacts with it).
    if !workspace.is_empty() {
        let _ = std::fs::copy(checkout.join("Cargo.lock"), dir.join("Cargo.lock"));
    }
    Ok(())
}

/// Builds the plugin in `dir` for wasm32-wasip2 (release); the component's path.
pub fn build(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(output) = installed
        && output.status.success()
        && !String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|t| t.trim() == "wasm32-wasip2")
    {
        anyhow::bail!("the wasm32-wasip2 target is missing: `rustup target add wasm32-wasip2`");
    }
    let output = std::process::Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        anyhow::bail!("the build failed (cargo's messages above)");
    }
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .find(|path| path.extension().is_some_and(|ext| ext == "wasm"));
    wasm.ok_or_else(|| {
        anyhow::anyhow!("the build made no .wasm: is `crate-type = [\"cdylib\"]` in Cargo.toml?")
    })
}

/// Loads `file` into an embedded host with no tenants and describes it.
pub async fn inspect(file: &std::path::Path) -> anyhow::Result<Inspection> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let worlds = world_versions(&bytes);
    let scratch = std::env::temp_dir().join(format!(
        "bitbylaw-inspect-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(scratch.join("tenants"))?;
    // Compiled components are kept where the user's caches are, so a second
    // look at the same file is quick.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map_or_else(
            || scratch.join("cache"),
            |dir| dir.join("bitbylaw/component-cache"),
        );
    let host_file = scratch.join("host.toml");
    std::fs::write(
        &host_file,
        format!(
            "tenants_dir = \"tenants\"\n[log]\nfilter = \"error\"\n[runtime]\ncache_dir = {:?}\n[reload]\npoll_ms = 0\n",
            cache.display().to_string()
        ),
    )?;
    let result = async {
        let config = crate::config::load(&host_file)?;
        let host = crate::host::Host::start(config).await?;
        Ok::<_, anyhow::Error>(host.check_component(bytes.clone().into()).await)
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let mut inspection = Inspection {
        file: file.display().to_string(),
        sha256: sha256(&bytes),
        bytes: bytes.len() as u64,
        worlds,
        host_world: HOST_WORLD,
        fits: false,
        error: None,
        name: None,
        version: None,
        routes: Vec::new(),
        topics: Vec::new(),
        schedules: Vec::new(),
        imports: Vec::new(),
    };
    match result? {
        Ok(plugin) => {
            let description = &plugin.description;
            inspection.fits = true;
            inspection.name = Some(description.name.clone());
            inspection.version = Some(description.version.clone());
            inspection.routes = description
                .routes
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            inspection.topics = description.topics.clone();
            inspection.schedules = description
                .schedules
                .iter()
                .map(|s| format!("{} {}", s.name, s.cron))
                .collect();
            inspection.imports = plugin.imports.clone();
            // What it was built for, from the imports as the host read them.
            let worlds: std::collections::BTreeSet<String> = plugin
                .imports
                .iter()
                .filter_map(|import| import.strip_prefix("bitbylaw:plugin/")?.split_once('@'))
                .map(|(_, version)| version.to_owned())
                .collect();
            inspection.worlds = worlds.into_iter().collect();
        }
        Err(error) => inspection.error = Some(format!("{error:#}")),
    }
    Ok(inspection)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The versions of `bitbylaw:plugin@<version>` the component's bytes name
/// (its import names carry them), without loading it: for a component the
/// host refuses. Release versions only (digits and dots): the core module's
/// own names add suffixes to them.
fn world_versions(bytes: &[u8]) -> Vec<String> {
    const MARK: &[u8] = b"bitbylaw:plugin/";
    let mut versions = std::collections::BTreeSet::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(MARK.len()).position(|w| w == MARK) {
        let name: Vec<u8> = rest[at..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || b"-:/@.".contains(b))
            .copied()
            .collect();
        if let Some(version) = name.split(|b| *b == b'@').nth(1) {
            let version: Vec<u8> = version
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.')
                .copied()
                .collect();
            if !version.is_empty() {
                versions.insert(String::from_utf8_lossy(&version).into_owned());
            }
        }
        rest = &rest[at + MARK.len()..];
    }
    versions.into_iter().collect()
}

fn text(i: &Inspection) -> String {
    let mut out = format!("{}\n  sha256 {}, {} bytes\n", i.file, i.sha256, i.bytes);
    let built = if i.worlds.is_empty() {
        "no bitbylaw:plugin world".to_owned()
    } else {
        i.worlds
            .iter()
            .map(|v| format!("bitbylaw:plugin@{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!(
        "  built for {built}; this host serves {}\n",
        i.host_world
    ));
    match (&i.name, &i.error) {
        (Some(name), _) => {
            out.push_str(&format!(
                "  fits: yes\n  plugin {name} {}\n",
                i.version.as_deref().unwrap_or("")
            ));
            for (label, list) in [
                ("routes", &i.routes),
                ("topics", &i.topics),
                ("schedules", &i.schedules),
                ("imports", &i.imports),
            ] {
                out.push_str(&format!("  {label}:"));
                if list.is_empty() {
                    out.push_str(" none\n");
                } else {
                    out.push('\n');
                    for item in list {
                        out.push_str(&format!("    {item}\n"));
                    }
                }
            }
        }
        (None, error) => out.push_str(&format!(
            "  fits: no\n  {}\n",
            error.as_deref().unwrap_or("not a plugin")
        )),
    }
    out
}
