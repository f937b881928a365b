//! The `kube-xdp` command: the daemon and the tools that inspect it.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kube-xdp",
    version,
    about = "XDP layer-4 load balancer for Kubernetes API servers and NodePorts"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Configuration file.
    #[arg(long, default_value = kube_xdp::config::DEFAULT_CONFIG)]
    config: PathBuf,
}

/// Where to find the pins: `--pin-path`, else the configuration's
/// `pin_path`, else the default.
#[derive(clap::Args, Clone)]
pub struct PinArgs {
    /// Directory of the pinned maps (default: the config's pin_path).
    #[arg(long)]
    pin_path: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        #[command(flatten)]
        common: Common,
    },
    /// Validate the configuration and print the plan.
    CheckConfig {
        #[command(flatten)]
        common: Common,
    },
    /// Services and backends: state, weight, Maglev share, flows, traffic.
    Backends {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Global verdict and reason counters, and per-service totals.
    Stats {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The flow table: client, VIP, backend, SNAT address, state, age.
    Flows {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Include entries that are no longer live.
        #[arg(long)]
        all: bool,
    },
    /// Ask the running daemon to reload its configuration.
    Reload {
        #[command(flatten)]
        common: Common,
    },
    /// Remove the program from the interfaces, and the pins.
    Detach {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
    },
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let result = match args.command {
        Command::Run { common } => kube_xdp::daemon::run::run(&common.config),
        Command::CheckConfig { common } => cli::check_config::check_config(&common),
        Command::Backends { common, pins, json } => cli::backends::backends(&common, &pins, json),
        Command::Stats { common, pins, json } => cli::stats::stats(&common, &pins, json),
        Command::Flows {
            common,
            pins,
            json,
            all,
        } => cli::flows::flows(&common, &pins, json, all),
        Command::Reload { common } => cli::reload::reload(&common),
        Command::Detach { common, pins } => cli::detach::detach(&common, &pins),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kube-xdp: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
