//! The `kube-xdp` command: the daemon and the tools that inspect it.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kube-xdp",
    version,
    about = "XDP layer-4 load balancer for Kubernetes"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Configuration file.
    #[arg(long, global = true, default_value = kube_xdp::config::DEFAULT_CONFIG)]
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
    /// Print the global verdict and reason counters.
    Stats {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the program and the pins.
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
        Command::Run { common } => cli::run::run(&common),
        Command::Stats { common, pins, json } => cli::stats::stats(&common, &pins, json),
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
