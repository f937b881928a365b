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
                "[daemon]\ninterfaces = [\"{lb_if}\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n",
                pins.path().display(),
                dir.path().join("run").display()
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

/// The seeds' one-armed HAProxy box, in namespaces: a bridge in its own
/// namespace joins a client, the load balancer and `n` backends, each by a
/// veth pair (`eth0` inside each host). Addresses from 198.18.0.0/24: the
/// client .1, the LB .2 with the VIP .10 as a secondary /32, backends .11
/// and up. Everything is removed on drop.
pub struct Cluster {
    pub prefix: String,
    pub config: PathBuf,
    pub run_dir: PathBuf,
    // Drop order: the XDP_PASS program, pins and files first, then the
    // namespaces (which take their veth ends with them).
    _peer_xdp: aya::Ebpf,
    pub pins: PinDir,
    pub dir: tempfile::TempDir,
    pub client: Netns,
    pub lb: Netns,
    pub backends: Vec<Netns>,
    pub bridge: Netns,
}

pub const VIP: &str = "198.18.0.10";

/// The address of backend `i` (0-based).
pub fn backend_addr(i: usize) -> String {
    format!("198.18.0.{}", 11 + i)
}

impl Cluster {
    /// # Errors
    ///
    /// When a namespace, link or program cannot be set up.
    pub fn new(backends: usize) -> anyhow::Result<Self> {
        let prefix = unique_prefix();
        let bridge = Netns::new(&format!("{prefix}-br"))?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        let client = Netns::new(&format!("{prefix}-client"))?;
        let lb = Netns::new(&format!("{prefix}-lb"))?;
        let mut hosts = Vec::new();
        for i in 0..backends {
            hosts.push(Netns::new(&format!("{prefix}-b{i}"))?);
        }
        let join = |ns: &Netns, port: &str, addr: &str| -> anyhow::Result<()> {
            crate::netns::cmd(
                "ip",
                &[
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    ns.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    bridge.name(),
                ],
            )?;
            ns.ip(&["addr", "add", addr, "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            bridge.ip(&["link", "set", port, "master", "br0"])?;
            bridge.ip(&["link", "set", port, "up"])?;
            Ok(())
        };
        join(&client, "pclient", &format!("{CLIENT_ADDR}/24"))?;
        join(&lb, "plb", &format!("{LB_ADDR}/24"))?;
        for (i, ns) in hosts.iter().enumerate() {
            join(ns, &format!("pb{i}"), &format!("{}/24", backend_addr(i)))?;
        }
        // The VIP, as the operator (or keepalived) puts it on the LB.
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        // TX checksum offload off on the senders: an XDP program that
        // rewrites a CHECKSUM_PARTIAL packet and sends it with XDP_TX
        // produces a checksum the receiver rejects (TOOLCHAIN.md). Real
        // NICs deliver full checksums.
        for ns in std::iter::once(&client).chain(&hosts) {
            ns.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        }
        // A one-armed forwarder makes the kernel send ICMP redirects; the
        // LB must not, and the client must not follow them.
        lb.sysctl("net.ipv4.conf.all.send_redirects", "0")?;
        lb.sysctl("net.ipv4.conf.eth0.send_redirects", "0")?;
        for ns in std::iter::once(&lb)
            .chain(std::iter::once(&client))
            .chain(&hosts)
        {
            ns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
            ns.sysctl("net.ipv4.conf.eth0.rp_filter", "0")?;
            ns.sysctl("net.ipv4.conf.all.accept_redirects", "0")?;
        }
        // The bridge's own namespace must not run bridged frames through
        // iptables (br_netfilter is built in).
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-arptables"] {
            let _ = bridge.sysctl(&format!("net.bridge.{key}"), "0");
        }
        // XDP_TX on a veth reaches its peer only if the peer runs an XDP
        // program (TOOLCHAIN.md): an XDP_PASS one on the LB's bridge port.
        let peer_xdp = pass_program(&bridge, "plb")?;
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir()?;
        let pins = PinDir::new(&prefix);
        let config = dir.path().join("kube-xdp.toml");
        let run_dir = dir.path().join("run");
        Ok(Cluster {
            prefix,
            config,
            run_dir,
            _peer_xdp: peer_xdp,
            pins,
            dir,
            client,
            lb,
            backends: hosts,
            bridge,
        })
    }

    /// Writes the configuration: a `[daemon]` section for this topology
    /// followed by `services` (TOML for `[[service]]` tables).
    pub fn write_config(&self, services: &str) -> anyhow::Result<()> {
        self.write_config_with(Some("20000-29999"), services)
    }

    /// [`Cluster::write_config`] with `snat_ports` as given (`None`: the
    /// daemon's default).
    pub fn write_config_with(
        &self,
        snat_ports: Option<&str>,
        services: &str,
    ) -> anyhow::Result<()> {
        let snat = snat_ports
            .map(|p| format!("snat_ports = \"{p}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &self.config,
            format!(
                "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n{snat}\n{services}",
                self.pins.path().display(),
                self.run_dir.display()
            ),
        )?;
        Ok(())
    }

    /// Starts the real daemon on the LB host.
    pub fn start_daemon(&self) -> anyhow::Result<Daemon> {
        Daemon::start(&self.lb, &self.config)
    }

    /// One more host on the segment: a namespace `PREFIX-SUFFIX` joined to
    /// the bridge by a veth pair (`eth0` inside it, `port` on the bridge),
    /// with `addr` (a.b.c.d/len in 198.18.0.0/24). The caller owns it:
    /// dropping it deletes the namespace and both veth ends.
    ///
    /// # Errors
    ///
    /// When the namespace or link cannot be made.
    pub fn add_host(&self, suffix: &str, port: &str, addr: &str) -> anyhow::Result<Netns> {
        let ns = Netns::new(&format!("{}-{suffix}", self.prefix))?;
        crate::netns::cmd(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "netns",
                ns.name(),
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                self.bridge.name(),
            ],
        )?;
        ns.ip(&["addr", "add", addr, "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        self.bridge.ip(&["link", "set", port, "master", "br0"])?;
        self.bridge.ip(&["link", "set", port, "up"])?;
        Ok(ns)
    }
}

/// The XDP_PASS program on `port` of the bridge namespace: XDP_TX on a
/// veth reaches its peer only if the peer runs an XDP program
/// (TOOLCHAIN.md). Detached when the returned object is dropped.
///
/// # Errors
///
/// When the program cannot be loaded or attached.
pub fn pass_program(bridge: &Netns, port: &'static str) -> anyhow::Result<aya::Ebpf> {
    bridge.run(move || {
        let mut bpf = kube_xdp::ebpf::load_private(1024)?;
        let program: &mut aya::programs::Xdp = bpf
            .program_mut(kube_xdp_common::program_name::PASS)
            .ok_or_else(|| anyhow::anyhow!("no XDP_PASS program"))?
            .try_into()?;
        program.load()?;
        program.attach(port, aya::programs::XdpMode::Driver)?;
        Ok(bpf)
    })
}
