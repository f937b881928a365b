//! The two kinds of pair on [`PairCluster`]: two kube-xdp boxes (`[ha]`),
//! or two boxes each running HAProxy and keepalived (Debian's packages,
//! the kubeadm HA guide's way). Box `a` (priority 150) is the master that
//! every event hits; box `b` (priority 100) takes over.

use crate::bench_e2e::procs::Proc;
use anyhow::{Context, bail};
use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{Service, vip, wait_for},
    pair::{PairBox, PairCluster},
    servers::whoami,
    topology::VIP,
};
use std::time::Duration;

/// What runs on both boxes.
#[derive(Clone, Copy)]
pub enum Kind {
    /// kube-xdp with `advert_interval` as given, without flow sync.
    KubeXdp(&'static str),
    /// The same with flow sync (`[ha] sync_key_file`).
    KubeXdpSync(&'static str),
    /// keepalived (with `advert_int` as given) + HAProxy.
    Keepalived(&'static str),
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::KubeXdp(_) => "kube-xdp pair",
            Kind::KubeXdpSync(_) => "kube-xdp pair with flow sync",
            Kind::Keepalived(_) => "keepalived + HAProxy pair",
        }
    }

    /// Whether kube-xdp runs on the boxes.
    pub fn kube_xdp(self) -> bool {
        !matches!(self, Kind::Keepalived(_))
    }

    pub fn interval(self) -> String {
        match self {
            Kind::KubeXdp(i) | Kind::KubeXdpSync(i) => format!("`advert_interval = \"{i}\"`"),
            Kind::Keepalived(i) => format!("`advert_int {i}`"),
        }
    }
}

/// The master's event.
#[derive(Clone, Copy, PartialEq)]
pub enum Event {
    Kill,
    LinkDown,
    Stop,
    /// `Kill`, then `LinkDown`: the box is gone (the flow-sync tables).
    KillAndLinkDown,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Kill, Event::LinkDown, Event::Stop];

    pub fn name(self, kind: Kind) -> &'static str {
        let kube_xdp = kind.kube_xdp();
        match self {
            Event::Kill if kube_xdp => "SIGKILL of kube-xdp",
            Event::Kill => "SIGKILL of keepalived (both processes) and HAProxy",
            Event::LinkDown => "`ip link set eth0 down`",
            Event::Stop if kube_xdp => "SIGTERM to kube-xdp (`systemctl stop`)",
            Event::Stop => "SIGTERM to keepalived and HAProxy (`systemctl stop`)",
            Event::KillAndLinkDown if kube_xdp => {
                "SIGKILL of kube-xdp, then `ip link set eth0 down`"
            }
            Event::KillAndLinkDown => {
                "SIGKILL of keepalived (both processes) and HAProxy, then `ip link set eth0 down`"
            }
        }
    }
}

/// What runs on one box.
enum Running {
    KubeXdp(Daemon),
    /// keepalived's parent process, HAProxy.
    Keepalived(Proc, Proc),
    Nothing,
}

/// A pair of boxes of one kind.
pub struct Pair {
    pub kind: Kind,
    /// Dropped before the topology: the processes end first.
    a: Running,
    b: Running,
    pub p: PairCluster,
}

impl Pair {
    /// Configures both boxes and starts them, b first, then a; returns once
    /// a is master and serves.
    pub fn start(kind: Kind, p: PairCluster, backends: usize) -> anyhow::Result<Self> {
        Self::start_with(kind, p, backends, &Service::apiserver(backends).toml())
    }

    /// [`Pair::start`] with `services` (TOML) for a kube-xdp pair.
    pub fn start_with(
        kind: Kind,
        p: PairCluster,
        backends: usize,
        services: &str,
    ) -> anyhow::Result<Self> {
        let mut pair = Pair {
            kind,
            p,
            a: Running::Nothing,
            b: Running::Nothing,
        };
        // A real NIC drops unicast frames for other MACs before XDP sees
        // them; a veth hands them to its XDP program. When box a's link
        // goes down the bridge forgets its MAC and floods the frames still
        // sent to it, and box b's program (backup, VIP not held) would
        // forward them: no unknown-unicast flooding to the boxes' ports,
        // as with their NICs' MAC filters.
        for port in ["plb", "plb2"] {
            pair.p
                .c
                .bridge
                .exec("bridge", &["link", "set", "dev", port, "flood", "off"])?;
        }
        if let Kind::KubeXdp(interval) | Kind::KubeXdpSync(interval) = kind {
            let sync = if let Kind::KubeXdpSync(_) = kind {
                format!("\nsync_key_file = \"{}\"", sync_key(&pair.p)?)
            } else {
                String::new()
            };
            for (which, priority) in [(&pair.p.a, 150), (&pair.p.b, 100)] {
                which.write_config(
                    &format!(
                        "virtual_router_id = 51\npriority = {priority}\nadvert_interval = \"{interval}\"{sync}"
                    ),
                    services,
                );
            }
        } else {
            for which in [&pair.p.a, &pair.p.b] {
                pair.p.ns(which).sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
            }
        }
        pair.b = pair.run(false, backends)?;
        pair.a = pair.run(true, backends)?;
        pair.wait_a_master()?;
        Ok(pair)
    }

    fn boxed(&self, a: bool) -> &PairBox {
        if a { &self.p.a } else { &self.p.b }
    }

    /// Starts the box's processes.
    fn run(&self, a: bool, backends: usize) -> anyhow::Result<Running> {
        let which = self.boxed(a);
        let ns = self.p.ns(which);
        let dir = which.config.parent().unwrap();
        Ok(match self.kind {
            Kind::KubeXdp(_) | Kind::KubeXdpSync(_) => Running::KubeXdp(self.p.start(which)?),
            Kind::Keepalived(interval) => {
                let hap = dir.join("haproxy.cfg");
                std::fs::write(
                    &hap,
                    crate::bench_e2e::lbs::haproxy_apiserver(6443, backends),
                )?;
                let haproxy = Proc::spawn(
                    ns,
                    "haproxy",
                    "haproxy",
                    &["-f", hap.to_str().unwrap(), "-db"],
                    &dir.join("haproxy.log"),
                )?;
                let conf = dir.join("keepalived.conf");
                let priority = if a { 150 } else { 100 };
                std::fs::write(&conf, keepalived_config(priority, interval))?;
                let s = |f: &str| dir.join(f).to_str().unwrap().to_owned();
                let keepalived = Proc::spawn(
                    ns,
                    "keepalived",
                    "keepalived",
                    &[
                        "-n",
                        "-l",
                        "-D",
                        "-P",
                        "-f",
                        &s("keepalived.conf"),
                        "-p",
                        &s("keepalived.pid"),
                        "-r",
                        &s("keepalived-vrrp.pid"),
                    ],
                    &dir.join("keepalived.log"),
                )?;
                Running::Keepalived(keepalived, haproxy)
            }
        })
    }

    /// The logs of both boxes, for errors.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, which) in [("a", &self.p.a), ("b", &self.p.b)] {
            let dir = which.config.parent().unwrap();
            for f in ["kube-xdp.log", "keepalived.log", "haproxy.log"] {
                if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    out.push_str(&format!("--- box {name} {f}:\n{}\n", tail.join("\n")));
                }
            }
        }
        out
    }

    /// Waits (bounded: 20 s) until a holds the VIP, b does not, and new
    /// connections through the VIP are answered.
    pub fn wait_a_master(&self) -> anyhow::Result<()> {
        let ready = wait_for(Duration::from_secs(20), || {
            let kube_xdp_ok = !self.kind.kube_xdp()
                || (self.p.state(&self.p.a) == "MASTER" && self.p.state(&self.p.b) == "BACKUP");
            kube_xdp_ok
                && self.p.holds(&self.p.a, VIP)
                && !self.p.holds(&self.p.b, VIP)
                && self.serves()
        });
        if ready.is_none() {
            bail!("box a did not become master within 20 s\n{}", self.logs());
        }
        Ok(())
    }

    /// Whether b holds the VIP.
    pub fn b_holds(&self) -> bool {
        self.p.holds(&self.p.b, VIP)
    }

    /// Five new connections through the VIP in a row are answered.
    fn serves(&self) -> bool {
        self.p
            .c
            .client
            .run(|| Ok((0..5).all(|_| whoami(vip(6443), Duration::from_millis(300)).is_ok())))
            .unwrap_or(false)
    }

    /// Hits box a with `event`. Returns once the signals are sent or the
    /// link is down (a graceful stop is not waited for).
    pub fn hit(&mut self, event: Event) -> anyhow::Result<()> {
        if event == Event::KillAndLinkDown {
            self.hit(Event::Kill)?;
            return self.hit(Event::LinkDown);
        }
        match event {
            Event::LinkDown => {
                self.p.c.lb.ip(&["link", "set", "eth0", "down"])?;
            }
            Event::Kill | Event::Stop | Event::KillAndLinkDown => {
                let signal = if event == Event::Kill {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                };
                match &mut self.a {
                    Running::KubeXdp(d) => d.signal(signal),
                    Running::Keepalived(keepalived, haproxy) => {
                        if event == Event::Kill {
                            // keepalived's parent is frozen, its VRRP child
                            // killed, then the parent: killed alone the
                            // child would be restarted by its parent, and
                            // the parent killed alone would stop the child
                            // gracefully.
                            keepalived.signal(libc::SIGSTOP);
                            let dir = self.p.a.config.parent().unwrap();
                            let child = std::fs::read_to_string(dir.join("keepalived-vrrp.pid"))
                                .context("keepalived's VRRP pid file")?;
                            let child: i32 = child.trim().parse()?;
                            // SAFETY: kill has no memory-safety
                            // preconditions; the pid is keepalived's live
                            // VRRP child (its parent, our child, is alive
                            // and has not reaped it).
                            unsafe { libc::kill(child, libc::SIGKILL) };
                        }
                        keepalived.signal(signal);
                        haproxy.signal(signal);
                    }
                    Running::Nothing => bail!("box a runs nothing"),
                }
            }
        }
        Ok(())
    }

    /// Undoes `event` on box a and waits until a is master again.
    pub fn restore(&mut self, event: Event, backends: usize) -> anyhow::Result<()> {
        match event {
            Event::LinkDown => {
                self.p.c.lb.ip(&["link", "set", "eth0", "up"])?;
            }
            Event::Kill | Event::Stop | Event::KillAndLinkDown => {
                // Reap (bounded) what the event ended.
                let old = std::mem::replace(&mut self.a, Running::Nothing);
                match old {
                    Running::KubeXdp(mut d) => {
                        // Waits (bounded) for the exit; the SIGTERM it
                        // sends reaches at most a process not yet reaped.
                        let _ = d.stop();
                    }
                    Running::Keepalived(mut k, mut h) => {
                        k.wait_exit(Duration::from_secs(10));
                        h.wait_exit(Duration::from_secs(10));
                        // A keepalived killed with -9 leaves its pid files
                        // (whose pids may be reused by now: it would refuse
                        // to start) and the VIP on the interface, as a
                        // crashed box would until it reboots.
                        let dir = self.p.a.config.parent().unwrap();
                        for f in ["keepalived.pid", "keepalived-vrrp.pid"] {
                            let _ = std::fs::remove_file(dir.join(f));
                        }
                        let _ =
                            self.p
                                .c
                                .lb
                                .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"]);
                    }
                    Running::Nothing => {}
                }
                // As a box that returns: its processes start (kube-xdp
                // giving up the addresses the dead one left), then its
                // link comes up.
                self.a = self.run(true, backends)?;
                if event == Event::KillAndLinkDown {
                    self.p.c.lb.ip(&["link", "set", "eth0", "up"])?;
                }
            }
        }
        self.wait_a_master()
    }
}

/// Writes the pair's flow-sync key (mode 0600) and returns its path.
fn sync_key(p: &PairCluster) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = p.c.dir.path().join("sync.key");
    std::fs::write(&path, "a-bench-pair-sync-key-0123456789abcdef\n")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path.to_str().context("a UTF-8 path")?.to_owned())
}

/// keepalived as the kubeadm HA guide configures it (`state MASTER` on the
/// box with the higher priority), in VRRP version 3
/// (which has no `authentication`) and without its `track_script` (a curl
/// of the API server every 3 s: it plays no part in these events).
fn keepalived_config(priority: u8, advert_int: &str) -> String {
    let state = if priority > 100 { "MASTER" } else { "BACKUP" };
    format!(
        "global_defs {{\n  router_id LVS_DEVEL\n  vrrp_version 3\n}}\n\
         vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int {advert_int}\n  virtual_ipaddress {{\n    {VIP}/32\n  }}\n}}\n"
    )
}
