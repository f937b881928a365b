//! The load balancers compared, each started in the LB namespace of a
//! fresh [`Cluster`]: kube-xdp, HAProxy (kubeadm-style TCP mode), nftables
//! NAT (kube-proxy's nftables datapath), IPVS NAT; and no load balancer.

use super::procs::{Proc, wait_until};
use anyhow::bail;
use kube_xdp_tests::{
    daemon::{Daemon, cli},
    topology::{CLIENT_ADDR, Cluster, LB_ADDR, VIP, backend_addr},
};
use std::{net::SocketAddr, path::Path, time::Duration};

/// Backends behind every load balancer (nginx on :80, iperf3 on :5201 in
/// backend 0 only).
pub const BACKENDS: usize = 3;
pub const HTTP_PORT: u16 = 80;
pub const IPERF_PORT: u16 = 5201;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lb {
    Direct,
    /// Direct, but every packet routed through the LB namespace's kernel
    /// (IP forwarding, no NAT): what any extra hop costs here.
    Router,
    KubeXdp,
    Haproxy,
    Nftables,
    Ipvs,
}

impl Lb {
    pub fn name(self) -> &'static str {
        match self {
            Lb::Direct => "direct to one backend (no LB)",
            Lb::Router => "one backend through a kernel router hop (no LB)",
            Lb::KubeXdp => "kube-xdp",
            Lb::Haproxy => "HAProxy (TCP mode)",
            Lb::Nftables => "nftables NAT (kube-proxy style)",
            Lb::Ipvs => "IPVS NAT",
        }
    }

    /// The row's key in `BENCH_E2E_ROWS`.
    pub fn key(self) -> String {
        match self {
            Lb::Direct => "direct",
            Lb::Router => "router",
            Lb::KubeXdp => "kube-xdp",
            Lb::Haproxy => "haproxy",
            Lb::Nftables => "nftables",
            Lb::Ipvs => "ipvs",
        }
        .into()
    }
}

/// A started load balancer. Dropping it stops it (the namespace, and with it
/// any nftables or IPVS state, goes with the [`Cluster`]).
pub struct Running {
    pub daemon: Option<Daemon>,
    pub procs: Vec<Proc>,
    /// The user-space process doing the balancing (HAProxy) or controlling
    /// it (kube-xdp's daemon), whose CPU time is reported.
    pub cpu_pid: Option<u32>,
    /// Where the client sends HTTP, and iperf3.
    pub http: SocketAddr,
    pub iperf: SocketAddr,
    /// How many backends answer through `http`.
    pub reach: usize,
}

impl Running {
    /// Fails when a user-space load balancer has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        Ok(())
    }

    /// Stops kube-xdp gracefully (SIGTERM, bounded); the rest stop on drop.
    pub fn stop(mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.stop();
        }
    }
}

fn at(addr: &str, port: u16) -> SocketAddr {
    format!("{addr}:{port}").parse().unwrap()
}

/// Why the IPVS row cannot run here, if it cannot.
pub fn ipvs_unavailable() -> Option<String> {
    if Path::new("/proc/net/ip_vs").exists() {
        if std::process::Command::new("ipvsadm")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return None;
        }
        return Some("ipvsadm is not installed".into());
    }
    let config = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if config.contains("# CONFIG_IP_VS is not set") {
        Some("kernel has no IPVS (CONFIG_IP_VS not set)".into())
    } else {
        Some("kernel has no IPVS (no /proc/net/ip_vs; the ip_vs module is not loaded)".into())
    }
}

pub fn start(lb: Lb, c: &Cluster, dir: &Path) -> anyhow::Result<Running> {
    let vip_http = at(VIP, HTTP_PORT);
    let vip_iperf = at(VIP, IPERF_PORT);
    let mut r = Running {
        daemon: None,
        procs: Vec::new(),
        cpu_pid: None,
        http: vip_http,
        iperf: vip_iperf,
        reach: BACKENDS,
    };
    match lb {
        Lb::Direct => {
            r.http = at(&backend_addr(0), HTTP_PORT);
            r.iperf = at(&backend_addr(0), IPERF_PORT);
            r.reach = 1;
        }
        Lb::Router => {
            // The LB host forwards (its redirects are off: see Cluster),
            // and the client and backend 0 route to each other through it.
            c.lb.sysctl("net.ipv4.ip_forward", "1")?;
            c.client.ip(&[
                "route",
                "add",
                &format!("{}/32", backend_addr(0)),
                "via",
                LB_ADDR,
            ])?;
            c.backends[0].ip(&["route", "add", &format!("{CLIENT_ADDR}/32"), "via", LB_ADDR])?;
            r.http = at(&backend_addr(0), HTTP_PORT);
            r.iperf = at(&backend_addr(0), IPERF_PORT);
            r.reach = 1;
        }
        Lb::KubeXdp => {
            // The daemon's default SNAT ports (10000-32767), as deployed:
            // the test topology's narrower range would cap the backends at
            // about 5,000 new connections a second each (README, SNAT
            // capacity), below what this run asks.
            c.write_config_with(None, &kube_xdp_config())?;
            let daemon = c.start_daemon()?;
            wait_kube_xdp_up(c).map_err(|e| anyhow::anyhow!("{e:#}\n{}", daemon.log()))?;
            r.cpu_pid = std::fs::read_to_string(c.run_dir.join("kube-xdp.pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok());
            r.daemon = Some(daemon);
        }
        Lb::Haproxy => {
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_config())?;
            let p = Proc::spawn(
                &c.lb,
                "haproxy",
                "haproxy",
                &["-f", cfg.to_str().unwrap(), "-db"],
                &dir.join("haproxy.log"),
            )?;
            r.cpu_pid = Some(p.pid());
            r.procs.push(p);
        }
        Lb::Nftables => {
            c.lb.sysctl("net.ipv4.ip_forward", "1")?;
            let file = dir.join("nat.nft");
            std::fs::write(&file, nftables_ruleset())?;
            c.lb.exec("nft", &["-f", file.to_str().unwrap()])?;
        }
        Lb::Ipvs => {
            c.lb.sysctl("net.ipv4.ip_forward", "1")?;
            // IPVS NAT needs conntrack for the SNAT that a one-armed LB
            // (backends reply to the LB, not to the client) needs, as
            // kube-proxy's IPVS mode does.
            c.lb.sysctl("net.ipv4.vs.conntrack", "1")?;
            let ipvsadm = |args: &[&str]| c.lb.exec("ipvsadm", args).map(drop);
            let http = vip_http.to_string();
            let iperf = vip_iperf.to_string();
            ipvsadm(&["-A", "-t", &http, "-s", "rr"])?;
            for i in 0..BACKENDS {
                let real = at(&backend_addr(i), HTTP_PORT).to_string();
                ipvsadm(&["-a", "-t", &http, "-r", &real, "-m"])?;
            }
            ipvsadm(&["-A", "-t", &iperf, "-s", "rr"])?;
            let real = at(&backend_addr(0), IPERF_PORT).to_string();
            ipvsadm(&["-a", "-t", &iperf, "-r", &real, "-m"])?;
            let file = dir.join("snat.nft");
            std::fs::write(&file, snat_only_ruleset())?;
            c.lb.exec("nft", &["-f", file.to_str().unwrap()])?;
        }
    }
    Ok(r)
}

/// kube-xdp: VIP:80 over the backends, VIP:5201 to backend 0; TCP checks
/// (the iperf3 service's against nginx on :80, so that the checks do not
/// open control connections to the iperf3 server).
fn kube_xdp_config() -> String {
    let check = |port: Option<u16>| {
        let mut s = String::from(
            "\n[service.health_check]\nkind = \"tcp\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nfall = 3\nrise = 2\n",
        );
        if let Some(p) = port {
            s.push_str(&format!("port = {p}\n"));
        }
        s
    };
    let mut s = format!("[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = {HTTP_PORT}\n");
    s.push_str(&check(None));
    for i in 0..BACKENDS {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"b{i}\"\naddress = \"{}\"\n",
            backend_addr(i)
        ));
    }
    s.push_str(&format!(
        "\n[[service]]\nname = \"iperf\"\nvip = \"{VIP}\"\nport = {IPERF_PORT}\n"
    ));
    s.push_str(&check(Some(HTTP_PORT)));
    s.push_str(&format!(
        "\n[[service.backend]]\nname = \"b0\"\naddress = \"{}\"\n",
        backend_addr(0)
    ));
    s
}

/// Waits (bounded, 20 s) until every backend of every service is UP, as
/// `kube-xdp backends --json` shows it.
fn wait_kube_xdp_up(c: &Cluster) -> anyhow::Result<()> {
    let config = c.config.to_str().unwrap().to_owned();
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let Ok(out) = cli(&c.lb, &["backends", "--json", "--config", &config]) else {
            return false;
        };
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return false;
        };
        let Some(services) = json.as_array() else {
            return false;
        };
        let states: Vec<&str> = services
            .iter()
            .flat_map(|s| s["backends"].as_array().into_iter().flatten())
            .filter_map(|b| b["state"].as_str())
            .collect();
        services.len() == 2 && states.len() == BACKENDS + 1 && states.iter().all(|s| *s == "UP")
    });
    if !ok {
        bail!("kube-xdp's backends not all UP within 20 s: {last}");
    }
    Ok(())
}

/// The kubeadm HA guide's HAProxy service, TCP mode (its HTTPS check
/// replaced by a TCP one, as the backends here speak plain TCP or HTTP):
/// `defaults`, then a frontend on VIP:`port` to `backends` servers on the
/// same port. The pair's bench runs it too.
pub fn haproxy_apiserver(port: u16, backends: usize) -> String {
    let mut s = format!(
        "defaults
    mode tcp
    option redispatch
    retries 1
    timeout queue 20s
    timeout connect 5s
    timeout client 35s
    timeout server 35s
    timeout check 10s

frontend apiserver
    bind {VIP}:{port}
    mode tcp
    default_backend apiserverbackend

backend apiserverbackend
    mode tcp
    option tcp-check
    balance roundrobin
    default-server check fall 3 rise 2 inter 2s
"
    );
    for i in 0..backends {
        s.push_str(&format!("    server cp{i} {}:{port}\n", backend_addr(i)));
    }
    s
}

/// [`haproxy_apiserver`] on the HTTP port, and a second service for
/// iperf3, without logging.
fn haproxy_config() -> String {
    let mut s = format!(
        "global
    # maxconn: HAProxy's default, from the file-descriptor limit.

{}",
        haproxy_apiserver(HTTP_PORT, BACKENDS)
    );
    s.push_str(&format!(
        "
frontend iperf
    bind {VIP}:{IPERF_PORT}
    mode tcp
    default_backend iperfbackend

backend iperfbackend
    mode tcp
    option tcp-check
    default-server check fall 3 rise 2 inter 2s port {HTTP_PORT}
    server b0 {}:{IPERF_PORT}
",
        backend_addr(0)
    ));
    s
}

/// kube-proxy's nftables datapath, reduced to these two services: DNAT in
/// prerouting (round robin through `numgen inc`), SNAT to the LB's own
/// address in postrouting for what was DNATed; the backends are unmodified.
fn nftables_ruleset() -> String {
    let map: Vec<String> = (0..BACKENDS)
        .map(|i| format!("{i} : {}", backend_addr(i)))
        .collect();
    format!(
        "table ip kxbench {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {VIP} tcp dport {HTTP_PORT} dnat to numgen inc mod {BACKENDS} map {{ {} }}
        ip daddr {VIP} tcp dport {IPERF_PORT} dnat to {}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat ip daddr 198.18.0.0/24 snat to {LB_ADDR}
    }}
}}
",
        map.join(", "),
        backend_addr(0)
    )
}

/// For IPVS NAT: SNAT what IPVS forwards to the backends, to the LB's
/// address (kube-proxy's IPVS mode masquerades the same way).
fn snat_only_ruleset() -> String {
    format!(
        "table ip kxbench {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr != {LB_ADDR} ip daddr 198.18.0.0/24 snat to {LB_ADDR}
    }}
}}
"
    )
}

/// The context of an error, for the report.
pub fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
