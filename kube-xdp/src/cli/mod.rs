//! One module per subcommand.

pub mod backends;
pub mod check_config;
pub mod detach;
pub mod flows;
pub mod ha;
pub mod import_haproxy;
pub mod reload;
pub mod stats;
pub mod top;

use crate::{Common, PinArgs};
use kube_xdp::{
    config::{Config, DEFAULT_PIN_PATH, DEFAULT_RUN_DIR},
    view::{Names, Pins},
};
use std::path::PathBuf;

impl Common {
    /// One `[daemon]` path from the file: the validated configuration's
    /// when it validates, else the key read straight from the file (the
    /// running daemon, not this command, judges the file), else `None`.
    pub fn daemon_path(&self, key: &str) -> Option<PathBuf> {
        if let Ok(config) = Config::load(&self.config) {
            return match key {
                "pin_path" => Some(config.daemon.pin_path),
                "run_dir" => Some(config.daemon.run_dir),
                _ => None,
            };
        }
        std::fs::read_to_string(&self.config)
            .ok()?
            .parse::<toml::Table>()
            .ok()?
            .get("daemon")?
            .get(key)?
            .as_str()
            .map(PathBuf::from)
    }

    /// The daemon's `run_dir`.
    pub fn run_dir(&self) -> PathBuf {
        self.daemon_path("run_dir")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
    }
}

impl PinArgs {
    /// `--pin-path`, else the config file's `pin_path`, else the default.
    pub fn resolve(&self, common: &Common) -> PathBuf {
        if let Some(path) = &self.pin_path {
            return path.clone();
        }
        common
            .daemon_path("pin_path")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_PATH))
    }

    /// Opens the pinned maps, with the names the daemon wrote for them
    /// after its last apply (`None`: shown by id).
    pub fn open(&self, common: &Common) -> anyhow::Result<(Pins, Option<Names>)> {
        let pin_path = self.resolve(common);
        let pins = Pins::open(&pin_path)?;
        Ok((pins, Names::load(&common.run_dir(), &pin_path)))
    }
}

/// `12345` → `12.3K`: compact counts for aligned tables.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        n.to_string()
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}
