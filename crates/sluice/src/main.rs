//! The `sluice` binary: the command line, and the wiring of Sluice's roles.
//!
//! Roles: `sluice up` (everything on one machine), `sluice server` (a
//! control-plane node), `sluice gateway` (a standalone gateway following the
//! control plane) and `sluice agent` (host metrics pushed to the control plane);
//! clients: `sluice svc`, `health`, `alarms`, `errors`, `mute`, `ban`, `apply`,
//! `get`; and `sluice store check`.
//
// Doc comments of the command-line types are clap's help text, written for a
// terminal (`<data>`, `[/PREFIX]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod agent;
mod cli;
mod config;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc: the gateway's per-request allocations cost less than with glibc's
/// malloc, for little more memory (docs/BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Start Sluice on this machine: control plane, naming service and gateway on the embedded store.
    Up(config::ServerArgs),
    /// Start a control-plane node (run several against one etcd for high availability).
    Server(config::ServerArgs),
    /// Start a standalone gateway that follows the control plane at --control.
    Gateway(config::GatewayArgs),
    /// Run on each host: sample its CPU, memory, load, network and disk, and push them to the control plane.
    Agent(agent::AgentArgs),
    /// Services and instances.
    Svc {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::svc::SvcCommand,
    },
    /// The API-health board: QPS, error rate, p50/p98/p99, status codes, top APIs.
    Health {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// The window, such as 5m or 1h.
        #[arg(long, default_value = "5m")]
        window: String,
    },
    /// Alarms: list them, acknowledge one.
    Alarms {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::alarms::AlarmsCommand,
    },
    /// Config items: get, put, edit, diff, history, rollback, gray, promote, abort, watch.
    Config {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::config::ConfigCommand,
    },
    /// Error groups from error reports: list them, show one with its stack.
    Errors {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::errors::ErrorsCommand,
    },
    /// Traces: show one as a waterfall, find slow or failed ones, the dependency graph.
    Trace {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::trace::TraceCommand,
    },
    /// Mute alarms' notifications for a while, list and lift mutes.
    Mute {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::mute::MuteCommand,
    },
    /// Ban client addresses or header values (with an expiry), list and lift bans.
    Ban {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::ban::BanCommand,
    },
    /// Create or update the resources in a YAML or JSON file (`-` for standard input).
    Apply {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// The file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Show resources of a kind, or one resource.
    Get {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// Resource kind, such as Service or Route.
        kind: String,
        /// Resource name.
        name: Option<String>,
    },
    /// Work with a store directly: check that it works.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// Tools for tests and diagnosis.
    #[command(subcommand, hide = true)]
    Debug(cli::store::DebugCommand),
}

/// The nice value of the control plane's threads next to a gateway: on a core
/// both want, CFS gives a gateway thread 68 times their share (weights 1024 and
/// 15); on a core the gateway leaves idle the control plane runs at full speed.
/// Measured with bench/gateway-busy.sh (docs/BENCHMARKS.md): nice 0 let a large
/// apply raise the gateway's p99 19-fold at 25,000 requests/s, nice 10 5-fold,
/// nice 19 not beyond noise — and the apply took no longer.
const CONTROL_PLANE_NICE: i32 = 19;

/// Lowers the calling thread's priority (Linux: the nice value is per thread).
fn lower_priority() {
    #[cfg(unix)]
    if let Err(error) = rustix::process::setpriority_process(None, CONTROL_PLANE_NICE) {
        tracing::debug!(%error, "cannot lower the control plane's priority");
    }
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
    // Every client and upstream connection is a file descriptor: take all the
    // system allows (the soft limit is often 1024), as Go programs do.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(%error, "cannot raise the open-files limit");
    }
    // With a gateway in the process, the control plane's threads yield to the
    // gateway's (docs/ARCHITECTURE.md, "Threads").
    let serves_requests = matches!(cli.command, Command::Up(_) | Command::Gateway(_));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-control")
        .on_thread_start(move || {
            if serves_requests {
                lower_priority();
            }
        })
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => {
                serve::run(args.resolve(Some("127.0.0.1:7780"))?, serve::Role::Up).await
            }
            Command::Server(args) => serve::run(args.resolve(None)?, serve::Role::Server).await,
            Command::Gateway(args) => serve::run_gateway(args.resolve()?).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Svc { client, command } => cli::svc::run(client, command).await,
            Command::Ban { client, command } => cli::ban::run(client, command).await,
            Command::Alarms { client, command } => cli::alarms::run(client, command).await,
            Command::Mute { client, command } => cli::mute::run(client, command).await,
            Command::Errors { client, command } => cli::errors::run(client, command).await,
            Command::Config { client, command } => cli::config::run(client, command).await,
            Command::Trace { client, command } => cli::trace::run(client, command).await,
            Command::Health {
                client,
                service,
                window,
            } => cli::health::run(client, service, window).await,
            Command::Apply { client, file } => cli::resources::apply(client, file).await,
            Command::Get { client, kind, name } => cli::resources::get(client, kind, name).await,
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

#[cfg(test)]
mod tests {
    /// clap's own checks of every command and flag (unique names, valid defaults).
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
