//! Ready-made topologies.

use crate::{
    daemon::{Daemon, PinDir},
    netns::{Netns, veth_pair},
    unique_prefix,
};
use std::path::PathBuf;

/// Two namespaces joined by one veth pair: a client (198.18.0.1) and the
/// load-balancer host (198.18.0.2), with kube-xdp's config and pin
/// directory ready. Everything is removed on drop, in reverse order.
pub struct TwoHosts {
    pub prefix: String,
    pub lb_if: String,
    pub config: PathBuf,
    // Field order is drop order: pins and files go first, then the
    // namespaces (which take their veth ends with them).
    pub pins: PinDir,
    pub dir: tempfile::TempDir,
    pub client: Netns,
    pub lb: Netns,
}

pub const CLIENT_ADDR: &str = "198.18.0.1";
pub const LB_ADDR: &str = "198.18.0.2";

impl TwoHosts {
    /// Builds the topology and writes a config attaching to the LB's end.
    ///
    /// # Errors
    ///
    /// When a namespace, link or file cannot be made.
    pub fn new() -> anyhow::Result<Self> {
        let prefix = unique_prefix();
        let client = Netns::new(&format!("{prefix}-client"))?;
        let lb = Netns::new(&format!("{prefix}-lb"))?;
        let client_if = format!("{prefix}c");
        let lb_if = format!("{prefix}l");
        veth_pair(
            (&client, &client_if, &format!("{CLIENT_ADDR}/24")),
            (&lb, &lb_if, &format!("{LB_ADDR}/24")),
        )?;
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir()?;
        let pins = PinDir::new(&prefix);
        let config = dir.path().join("kube-xdp.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\ninterfaces = [\"{lb_if}\"]\npin_path = \"{}\"\n",
                pins.path().display()
            ),
        )?;
        Ok(TwoHosts {
            prefix,
            lb_if,
            config,
            pins,
            dir,
            client,
            lb,
        })
    }

    /// Starts the real daemon on the LB host.
    ///
    /// # Errors
    ///
    /// When it does not come up.
    pub fn start_daemon(&self) -> anyhow::Result<Daemon> {
        Daemon::start(&self.lb, &self.config)
    }
}
