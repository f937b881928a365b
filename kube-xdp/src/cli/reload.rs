//! `kube-xdp reload`: SIGHUP to the daemon found through `run_dir`, then
//! its verdict; non-zero exit when it rejected the file.

use crate::Common;
use kube_xdp::{config::Config, daemon::control};
use std::time::Duration;

pub fn reload(common: &Common) -> anyhow::Result<()> {
    // The run_dir comes from the file; an invalid file still names it most
    // of the time, but the daemon is the judge: fall back to the default.
    let run_dir = Config::load(&common.config)
        .map(|c| c.daemon.run_dir)
        .unwrap_or_else(|_| std::path::PathBuf::from(kube_xdp::config::DEFAULT_RUN_DIR));
    let status = control::request_reload(&run_dir, Duration::from_secs(30))?;
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
