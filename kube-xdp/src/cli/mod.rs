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
    /// The configuration, if the file exists (inspection works without
    /// one, with less to say).
    pub fn config_if_present(&self) -> anyhow::Result<Option<Config>> {
        if self.config.exists() {
            Ok(Some(Config::load(&self.config)?))
        } else {
            Ok(None)
        }
    }
}

impl PinArgs {
    /// `--pin-path`, else the config file's `pin_path` (if the file
    /// exists), else the default.
    pub fn resolve(&self, config: Option<&Config>) -> PathBuf {
        if let Some(path) = &self.pin_path {
            return path.clone();
        }
        config.map_or_else(
            || PathBuf::from(DEFAULT_PIN_PATH),
            |c| c.daemon.pin_path.clone(),
        )
    }

    /// Opens the pinned maps.
    pub fn open(&self, config: Option<&Config>) -> anyhow::Result<Datapath> {
        Ok(Datapath::open_pinned(&self.resolve(config))?)
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
