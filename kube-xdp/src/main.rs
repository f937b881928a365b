//! The `kube-xdp` command: the daemon and the tools that inspect it.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use std::{path::PathBuf, time::Duration};

#[derive(Parser)]
#[command(
    name = "kube-xdp",
    version,
    about = "XDP layer-4 load balancer for Kubernetes API servers and NodePorts"
)]
struct Args {
    /// Log format on stderr: text (for journald) or json (one object per
    /// line). Default: $KUBE_XDP_LOG_FORMAT, else text.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// How the event log is written.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The environment variable `--log-format` falls back to.
const LOG_FORMAT_ENV: &str = "KUBE_XDP_LOG_FORMAT";

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
    /// Live view of services and backends: per-second rates and state.
    Top {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
        /// Print one frame (two samples --interval apart) and exit.
        #[arg(long, conflicts_with = "frames")]
        once: bool,
        /// Time between samples, e.g. 1s, 500ms.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Exit after this many frames.
        #[arg(long)]
        frames: Option<u64>,
    },
    /// The pair's VRRP state: MASTER, BACKUP or FAULT, since when, the
    /// peers heard, the last transitions.
    Ha {
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to reload its configuration.
    Reload {
        #[command(flatten)]
        common: Common,
    },
    /// Translate an haproxy.cfg into kube-xdp.toml.
    ///
    /// Prints the TOML (or writes it to --output) with a comment wherever
    /// a choice was made or something could not be translated, and a
    /// summary on stderr of what was translated, approximated and left
    /// out. TCP frontends, listen sections, backends, servers and their
    /// checks become services; `mode http` frontends, ACLs and
    /// stick-tables are left out; a stats frontend becomes the stats page.
    /// Variables (`${VAR}`) are taken from the environment. Exits
    /// non-zero only when nothing usable was found. Check the result with
    /// `kube-xdp check-config --config OUT`.
    #[command(name = "import-haproxy")]
    ImportHaproxy {
        /// The haproxy.cfg to read.
        file: PathBuf,
        /// Write the TOML here instead of standard output.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// The VIP of binds on every address (`bind *:6443`); without it,
        /// a placeholder that check-config refuses is written.
        #[arg(long)]
        vip: Option<std::net::Ipv4Addr>,
        /// The interface the VIPs arrive on ([daemon] interfaces;
        /// default eth0).
        #[arg(long, value_name = "NAME")]
        interface: Option<String>,
    },
    /// Remove the program from the interfaces, and the pins.
    Detach {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        pins: PinArgs,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err("must be at least 10ms".into());
    }
    Ok(d)
}

/// The event log on stderr: text (journald adds its own timestamps, but
/// a terminal wants them too) or one JSON object per line, with the
/// event's fields at the top level.
fn init_logging(flag: Option<LogFormat>) -> LogFormat {
    use std::io::IsTerminal;
    let mut bad_env = None;
    let format = flag.unwrap_or_else(|| match std::env::var(LOG_FORMAT_ENV) {
        Ok(v) if !v.is_empty() => LogFormat::from_str(&v, true).unwrap_or_else(|_| {
            bad_env = Some(v);
            LogFormat::Text
        }),
        _ => LogFormat::Text,
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init(),
    }
    if let Some(v) = bad_env {
        tracing::warn!("{LOG_FORMAT_ENV}={v:?} is neither text nor json: logging text");
    }
    format
}

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("run") {
        // Until the daemon installs its handlers, a SIGHUP (`systemctl
        // reload` during the start) must not kill it: the start reads the
        // file anyway.
        // SAFETY: setting a signal's disposition to SIG_IGN has no
        // memory-safety preconditions.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    }
    let args = Args::parse();
    let log_format = init_logging(args.log_format);
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
        Command::Top {
            common,
            pins,
            once,
            interval,
            frames,
        } => cli::top::top(&common, &pins, once, interval, frames),
        Command::Ha { common, json } => cli::ha::ha(&common, json),
        Command::Reload { common } => cli::reload::reload(&common),
        Command::Detach { common, pins } => cli::detach::detach(&common, &pins),
        Command::ImportHaproxy {
            file,
            output,
            vip,
            interface,
        } => cli::import_haproxy::import_haproxy(&file, output.as_deref(), vip, interface),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A JSON log stays JSON to its last line.
        Err(err) if log_format == LogFormat::Json => {
            tracing::error!("kube-xdp: {err:#}");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("kube-xdp: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
