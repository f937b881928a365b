//! One module per subcommand.

pub mod backends;
pub mod check_config;
pub mod detach;
pub mod flows;
pub mod reload;
pub mod stats;
pub mod top;

use crate::{Common, PinArgs};
use kube_xdp::{
    config::{Config, DEFAULT_PIN_PATH},
    datapath::Datapath,
};
use std::path::PathBuf;

impl Common {
    /// The configuration, if the file exists and validates: inspection
    /// works without one, with less to say. A file that does not validate
    /// is reported on stderr, not silently ignored.
    pub fn config_if_present(&self) -> Option<Config> {
        if !self.config.exists() {
            return None;
        }
        match Config::load(&self.config) {
            Ok(config) => Some(config),
            Err(e) => {
                let first = e.to_string();
                eprintln!(
                    "warning: {} does not validate, so backends are shown without their names:\n{}",
                    self.config.display(),
                    first.lines().next().unwrap_or_default()
                );
                None
            }
        }
    }

    /// One `[daemon]` key read straight from the file, for when the whole
    /// file does not validate (the daemon, not this command, judges it).
    pub fn raw_daemon_key(&self, key: &str) -> Option<PathBuf> {
        std::fs::read_to_string(&self.config)
            .ok()?
            .parse::<toml::Table>()
            .ok()?
            .get("daemon")?
            .get(key)?
            .as_str()
            .map(PathBuf::from)
    }
}

impl PinArgs {
    /// `--pin-path`, else the config file's `pin_path`, else the default.
    pub fn resolve(&self, common: &Common, config: Option<&Config>) -> PathBuf {
        if let Some(path) = &self.pin_path {
            return path.clone();
        }
        config
            .map(|c| c.daemon.pin_path.clone())
            .or_else(|| common.raw_daemon_key("pin_path"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_PATH))
    }

    /// Opens the pinned maps.
    pub fn open(&self, common: &Common, config: Option<&Config>) -> anyhow::Result<Datapath> {
        Ok(Datapath::open_pinned(&self.resolve(common, config))?)
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
