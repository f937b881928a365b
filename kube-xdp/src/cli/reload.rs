//! `kube-xdp reload`: SIGHUP to the daemon found through `run_dir`, then
//! its verdict; non-zero exit when it rejected the file.

use crate::Common;
use kube_xdp::{
    config::{Config, DEFAULT_RUN_DIR},
    daemon::control,
};
use std::{path::PathBuf, time::Duration};

/// The daemon's `run_dir`. The file may be the invalid one being reloaded:
/// the daemon is the judge of that, so read just this key when the whole
/// file does not validate.
fn run_dir(common: &Common) -> PathBuf {
    if let Ok(config) = Config::load(&common.config) {
        return config.daemon.run_dir;
    }
    common
        .raw_daemon_key("run_dir")
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

pub fn reload(common: &Common) -> anyhow::Result<()> {
    let status = control::request_reload(&run_dir(common), Duration::from_secs(30))?;
    if status.ok {
        println!("reloaded: {}", status.message);
        Ok(())
    } else {
        anyhow::bail!(
            "the daemon rejected the configuration and keeps running the previous one:\n{}",
            status.message
        )
    }
}
