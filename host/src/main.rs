//! `bitbylaw`: the plugin host's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bitbylaw::config::LogFormat;

#[derive(Parser)]
#[command(
    name = "bitbylaw",
    version,
    about = "WebAssembly plugin host for law-firm integrations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host.
    Serve {
        /// The host config file; tenants are read from its `tenants_dir`.
        #[arg(long, short, env = "BITBYLAW_CONFIG")]
        config: PathBuf,
        /// Log as JSON lines (overrides `log.format`).
        #[arg(long)]
        json_logs: bool,
    },
    /// Check the config and compile every plugin, then exit.
    Check {
        #[arg(long, short, env = "BITBYLAW_CONFIG")]
        config: PathBuf,
    },
    /// Audit and repair the calendar sync of a running deployment (`calendar-sync`).
    Calendar(bitbylaw::cli::calendar::CalendarArgs),
    /// Make, build and inspect a plugin: `plugin new`, `plugin build`, `plugin inspect`.
    Plugin(bitbylaw::cli::plugin::PluginArgs),
    /// Serve the plugin in a folder on a dev tenant, rebuilding and swapping it on each change.
    Dev(bitbylaw::cli::dev::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, json_logs } => {
            let config = bitbylaw::config::load(&config)?;
            let mut log = config.host.log.clone();
            if json_logs {
                log.format = LogFormat::Json;
            }
            bitbylaw::telemetry::init(&log);
            let host = bitbylaw::host::Host::start(config).await?;
            let address = host.config().listen;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
            tracing::info!(address = %listener.local_addr()?, "bitbylaw listening");
            bitbylaw::systemd::notify("READY=1");
            bitbylaw::server::run(listener, host, bitbylaw::server::shutdown_signal()).await?;
            Ok(())
        }
        Command::Check { config } => {
            let config = bitbylaw::config::load(&config)?;
            bitbylaw::telemetry::init(&config.host.log);
            let tenants = config.tenants.len() + config.broken.len();
            let host = bitbylaw::host::Host::start(config).await?;
            let broken = host.broken_tenants();
            if !broken.is_empty() {
                let reasons: Vec<String> = broken.values().cloned().collect();
                anyhow::bail!(
                    "{} of {tenants} tenant(s) cannot be loaded:\n{}",
                    broken.len(),
                    reasons.join("\n")
                );
            }
            println!("config ok: {tenants} tenant(s) loaded");
            Ok(())
        }
        Command::Calendar(args) => bitbylaw::cli::calendar::run(args).await,
        Command::Plugin(args) => bitbylaw::cli::plugin::run(args).await,
        Command::Dev(args) => bitbylaw::cli::dev::run(args).await,
    }
}
