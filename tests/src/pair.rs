//! A load-balancer pair on the [`Cluster`] segment: the cluster's LB
//! host (198.18.0.2) and a second one (198.18.0.3), each with its own
//! configuration, pins and run directory, the XDP_PASS program on each
//! bridge port, and the VIP held by neither until one is master.

use crate::{
    daemon::{Daemon, PinDir, cli},
    netns::Netns,
    topology::{Cluster, LB_ADDR, VIP, pass_program},
};
use std::path::{Path, PathBuf};

/// The second LB host's address.
pub const LB2_ADDR: &str = "198.18.0.3";
/// The pair's floating SNAT address.
pub const SNAT_ADDR: &str = "198.18.0.9";

/// One box of the pair.
pub struct PairBox {
    pub addr: &'static str,
    pub config: PathBuf,
    pub run_dir: PathBuf,
    pub pins: PinDir,
}

impl PairBox {
    /// Writes this box's configuration: the topology's `[daemon]`, then
    /// `[ha]` with `ha` lines and `services`.
    pub fn write_config(&self, ha: &str, services: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n\
                 snat_ports = \"20000-29999\"\n\n[ha]\nsnat_address = \"{SNAT_ADDR}\"\n{ha}\n\n{services}",
                self.pins.path().display(),
                self.run_dir.display()
            ),
        )
        .unwrap();
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().unwrap()
    }
}

/// The pair and the cluster it fronts. Drop order: the second host's
/// XDP program, pins and namespace, then the cluster.
pub struct PairCluster {
    _peer_xdp: aya::Ebpf,
    pub b: PairBox,
    pub lb2: Netns,
    pub a: PairBox,
    pub c: Cluster,
}

impl PairCluster {
    /// # Errors
    ///
    /// When a namespace, link or program cannot be set up.
    pub fn new(backends: usize) -> anyhow::Result<Self> {
        let c = Cluster::new(backends)?;
        // The VIP floats: the master adds it.
        c.lb.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])?;
        let lb2 = Netns::new(&format!("{}-lb2", c.prefix))?;
        crate::netns::cmd(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "netns",
                lb2.name(),
                "type",
                "veth",
                "peer",
                "name",
                "plb2",
                "netns",
                c.bridge.name(),
            ],
        )?;
        lb2.ip(&["addr", "add", &format!("{LB2_ADDR}/24"), "dev", "eth0"])?;
        lb2.ip(&["link", "set", "eth0", "up"])?;
        c.bridge.ip(&["link", "set", "plb2", "master", "br0"])?;
        c.bridge.ip(&["link", "set", "plb2", "up"])?;
        for key in [
            "net.ipv4.conf.all.send_redirects",
            "net.ipv4.conf.eth0.send_redirects",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.eth0.rp_filter",
        ] {
            lb2.sysctl(key, "0")?;
        }
        let peer_xdp = pass_program(&c.bridge, "plb2")?;
        let boxed = |name: &str, addr: &'static str| -> anyhow::Result<PairBox> {
            let dir = c.dir.path().join(name);
            std::fs::create_dir_all(&dir)?;
            Ok(PairBox {
                addr,
                config: dir.join("kube-xdp.toml"),
                run_dir: dir.join("run"),
                pins: PinDir::new(&format!("{}{name}", c.prefix)),
            })
        };
        let a = boxed("a", LB_ADDR)?;
        let b = boxed("b", LB2_ADDR)?;
        Ok(PairCluster {
            _peer_xdp: peer_xdp,
            b,
            lb2,
            a,
            c,
        })
    }

    /// The namespace of box `a` or `b`.
    pub fn ns(&self, which: &PairBox) -> &Netns {
        if std::ptr::eq(which, &self.a) {
            &self.c.lb
        } else {
            &self.lb2
        }
    }

    /// Starts the daemon of a box.
    pub fn start(&self, which: &PairBox) -> anyhow::Result<Daemon> {
        Daemon::start(self.ns(which), &which.config)
    }

    /// `kube-xdp ha --json` of a box, if it answers.
    pub fn ha(&self, which: &PairBox) -> Option<serde_json::Value> {
        let out = cli(
            self.ns(which),
            &["ha", "--json", "--config", which.config_str()],
        )
        .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The state `kube-xdp ha` shows for a box (`?` when none).
    pub fn state(&self, which: &PairBox) -> String {
        self.ha(which)
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    }

    /// Waits (at most `limit`) until the box shows `state`; panics with
    /// what it shows and `log()` if it does not.
    pub fn wait_state(
        &self,
        which: &PairBox,
        state: &str,
        limit: std::time::Duration,
        log: &dyn Fn() -> String,
    ) {
        let reached = crate::e2e_util::wait_for(limit, || self.state(which) == state);
        assert!(
            reached.is_some(),
            "{} did not become {state} within {limit:?}: it is {}\n{}",
            which.addr,
            self.state(which),
            log()
        );
    }

    /// Whether `addr` is on the box's interface.
    pub fn holds(&self, which: &PairBox, addr: &str) -> bool {
        let out = self
            .ns(which)
            .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/32"))
    }
}

/// `path` as a string, for command lines.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
