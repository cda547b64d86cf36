//! The `sluice` binary: the command line, and the wiring of Sluice's roles.
//!
//! For now it opens and checks stores (`sluice store check`); later roles
//! (`sluice up`, `server`, `gateway`, `agent`) are wired here as they land.

mod store_cmd;

use clap::{Parser, Subcommand};

/// Sluice: one binary for a naming service, a protecting gateway, API health
/// monitoring, alarms, tracing, a config center and gray releases.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with a store directly: check that it works.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Tools for tests and diagnosis.
    #[command(subcommand, hide = true)]
    Debug(store_cmd::DebugCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Store(command) => command.run().await,
            Command::Debug(command) => command.run().await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
