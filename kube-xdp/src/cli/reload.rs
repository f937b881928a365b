//! `kube-xdp reload`: SIGHUP to the daemon found through `run_dir`, then
//! its verdict; non-zero exit when it rejected the file.

use crate::Common;
use kube_xdp::daemon::control;
use std::time::Duration;

pub fn reload(common: &Common) -> anyhow::Result<()> {
    let status = control::request_reload(&common.run_dir(), Duration::from_secs(30))?;
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
