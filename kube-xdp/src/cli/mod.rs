//! One module per subcommand.

pub mod detach;
pub mod run;
pub mod stats;

use crate::{Common, PinArgs};
use kube_xdp::config::{Config, DEFAULT_PIN_PATH};
use std::path::PathBuf;

impl PinArgs {
    /// `--pin-path`, else the config file's `pin_path` (if the file
    /// exists), else the default.
    pub fn resolve(&self, common: &Common) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.pin_path {
            return Ok(path.clone());
        }
        if common.config.exists() {
            return Ok(Config::load(&common.config)?.daemon.pin_path);
        }
        Ok(PathBuf::from(DEFAULT_PIN_PATH))
    }
}
