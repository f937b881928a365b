//! The plan `kube-xdp check-config` prints, laid out like `ipvsadm -Ln`.

use std::fmt::Write;

use super::{Plan, PlannedBackend, SnatSource};
use crate::config::{BackendAddress, CheckKind, HealthCheck, Service, StatsConfig, SynCookies};
use crate::human;

/// `off`, or where the stats page is and how it is served.
fn stats_page(s: &StatsConfig) -> String {
    let Some(addr) = s.listen else {
        return "off".to_owned();
    };
    let auth = s.auth.as_ref().map_or_else(
        || "no auth".to_owned(),
        |a| format!("basic auth as {}", a.user),
    );
    let version = if s.hide_version {
        ", version hidden"
    } else {
        ""
    };
    format!(
        "http://{addr}{} (JSON {}), refresh {}, {auth}{version}",
        s.uri,
        s.json_uri(),
        human::duration(s.refresh)
    )
}

pub(super) fn summary(plan: &Plan) -> String {
    let mut out = String::new();
    let config = &plan.config;
    let d = &config.daemon;
    let _ = writeln!(out, "kube-xdp plan from {}", config.path.display());
    let _ = writeln!(out);
    let _ = writeln!(out, "Daemon");
    let rows: [(&str, String); 8] = [
        (
            "interfaces",
            format!("{} (xdp_mode {})", d.interfaces.join(", "), d.xdp_mode),
        ),
        ("pin_path", d.pin_path.display().to_string()),
        ("run_dir", d.run_dir.display().to_string()),
        (
            "metrics_listen",
            d.metrics_listen
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
        ),
        ("stats_listen", stats_page(&d.stats)),
        ("flow_table_size", format!("{} flows", d.flow_table_size)),
        ("snat_addresses", {
            let addrs: Vec<String> = plan
                .snat_addresses
                .iter()
                .map(ToString::to_string)
                .collect();
            match &plan.snat_source {
                SnatSource::Configured => addrs.join(", "),
                SnatSource::Interface(name) => format!(
                    "{} (the first IPv4 address of {name} that is not a VIP)",
                    addrs.join(", ")
                ),
                SnatSource::Floating => format!(
                    "{} (floats with the VIPs: [ha] snat_address)",
                    addrs.join(", ")
                ),
            }
        }),
        (
            "snat_ports",
            format!(
                "{}-{} ({} ports)",
                d.snat_ports.first,
                d.snat_ports.last,
                d.snat_ports.len()
            ),
        ),
    ];
    for (key, value) in rows {
        let _ = writeln!(out, "  {key:<16} {value}");
    }
    let t = &config.timeouts;
    if let Some(ha) = &plan.ha {
        let _ = writeln!(out, "Pair (VRRPv3)");
        let peers = if ha.unicast_peers.is_empty() {
            "multicast 224.0.0.18".to_owned()
        } else {
            let p: Vec<String> = ha.unicast_peers.iter().map(ToString::to_string).collect();
            format!("unicast to {}", p.join(", "))
        };
        let addrs: Vec<String> = ha
            .virtual_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        let sync = match &ha.sync {
            Some(sync) => {
                let file = config.ha.as_ref().and_then(|h| h.sync_key_file.as_ref());
                let file = file.map_or_else(String::new, |f| format!(" (key {})", f.display()));
                format!("on, udp port {}{file}", sync.port)
            }
            None => "off (no sync_key_file)".to_owned(),
        };
        let rows: [(&str, String); 6] = [
            (
                "router",
                format!(
                    "virtual_router_id {} priority {} advert_interval {} preempt {}",
                    ha.virtual_router_id,
                    ha.priority,
                    human::duration(ha.advert_interval),
                    ha.preempt
                ),
            ),
            (
                "interface",
                format!("{} from {}", ha.interface.name, ha.local),
            ),
            ("peers", peers),
            ("floating", addrs.join(", ")),
            ("tracking", ha.track_services.join(", ")),
            ("flow sync", sync),
        ];
        for (key, value) in rows {
            let _ = writeln!(out, "  {key:<16} {value}");
        }
    }
    if let Some(k) = &config.kubernetes {
        let _ = writeln!(out, "Kubernetes (Services of type LoadBalancer)");
        let class = if k.handle_classless {
            format!("{} (and Services without a class)", k.load_balancer_class)
        } else {
            k.load_balancer_class.clone()
        };
        let api = k.kubeconfig.as_ref().map_or_else(
            || "in-cluster config, else $KUBECONFIG, else ~/.kube/config".to_owned(),
            |p| p.display().to_string(),
        );
        let nodes = match &k.node_selector {
            Some(s) => format!("Ready, not excluded, matching {}", s.text),
            None => "Ready, not excluded".to_owned(),
        };
        let rows = [
            ("api", api),
            ("class", class),
            ("nodes", nodes),
            ("node check", check_line(&k.health_check)),
        ];
        for (key, value) in rows {
            let _ = writeln!(out, "  {key:<16} {value}");
        }
        for pool in &k.address_pools {
            let ranges: Vec<String> = pool.ranges.iter().map(ToString::to_string).collect();
            let mut line = format!(
                "{} ({} addresses)",
                ranges.join(", "),
                pool.addresses().count()
            );
            if !pool.namespaces.is_empty() {
                line.push_str(&format!(", namespaces {}", pool.namespaces.join(", ")));
            }
            if !pool.auto_assign {
                line.push_str(", only when asked for");
            }
            let _ = writeln!(out, "  pool {:<11} {line}", pool.name);
        }
    }
    let _ = writeln!(out, "Timeouts");
    let _ = writeln!(
        out,
        "  tcp_established {}  tcp_closing {}  tcp_syn {}  udp {} (unanswered {})  tcp_time_wait {}",
        human::duration(t.tcp_established),
        human::duration(t.tcp_closing),
        human::duration(t.tcp_syn),
        human::duration(t.udp),
        human::duration(t.udp_unanswered.min(t.udp)),
        human::duration(t.tcp_time_wait)
    );
    let _ = writeln!(out, "SYN flood");
    for line in syn_flood(plan) {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out);
    if config.services.is_empty() {
        let _ = writeln!(out, "No services.");
        return out;
    }

    let service_addr = |s: &Service| format!("{}:{}", s.vip, s.port);
    let backend_addr = |b: &PlannedBackend| {
        let port = b.port.map_or_else(|| "*".to_owned(), |p| p.to_string());
        match &b.address {
            BackendAddress::Ip(_) => format!("{}:{port}", b.address),
            BackendAddress::Hostname(_) => format!("{}:{port} ({})", b.address, b.addr),
        }
    };
    let addr_w = plan
        .services
        .iter()
        .flat_map(|s| {
            std::iter::once(service_addr(&s.config).len())
                .chain(s.backends.iter().map(|b| backend_addr(b).len()))
        })
        .chain(["VIP:Port".len(), "Backend:Port".len()])
        .max()
        .unwrap_or(0);
    let name_w = plan
        .services
        .iter()
        .flat_map(|s| {
            std::iter::once(s.name().len()).chain(s.backends.iter().map(|b| b.name.len()))
        })
        .chain(["Service".len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "Prot {:<addr_w$}  {:<name_w$}  Mode  Maglev  OnDown  Drain",
        "VIP:Port", "Service"
    );
    let _ = writeln!(
        out,
        "  -> {:<addr_w$}  {:<name_w$}  Weight",
        "Backend:Port", "Name"
    );
    for planned in &plan.services {
        let s = &planned.config;
        let _ = writeln!(
            out,
            "{:<4} {:<addr_w$}  {:<name_w$}  {:<4}  {:<6}  {:<6}  {}",
            s.protocol.as_str().to_uppercase(),
            service_addr(s),
            s.name,
            s.mode,
            s.maglev_table_size,
            s.on_backend_down,
            human::duration(s.drain_timeout)
        );
        let _ = writeln!(out, "     check {}", check_line(&s.health_check));
        if s.port.is_range() {
            let _ = writeln!(out, "     backends keep the client's destination port");
        }
        if planned.backends.is_empty() && planned.unresolved.is_empty() {
            let _ = writeln!(
                out,
                "  -> (no backends: connections are refused with a RST)"
            );
        }
        for b in &planned.backends {
            let drain = if b.weight == 0 { " (drain)" } else { "" };
            let _ = writeln!(
                out,
                "  -> {:<addr_w$}  {:<name_w$}  {}{drain}",
                backend_addr(b),
                b.name,
                b.weight
            );
        }
        for b in s
            .backends
            .iter()
            .filter(|b| planned.unresolved.contains(&b.name))
        {
            let port = b.port.map_or_else(|| "*".to_owned(), |p| p.to_string());
            let _ = writeln!(
                out,
                "  -> {:<addr_w$}  {:<name_w$}  {}",
                format!("{}:{port} (not resolved yet)", b.address),
                b.name,
                b.weight
            );
        }
    }
    out
}

/// The `[syn_flood]` lines: the mode and limit, what a SYN over it gets,
/// and where the cookie key comes from.
fn syn_flood(plan: &Plan) -> [String; 2] {
    let s = &plan.config.syn_flood;
    let cookie = format!(
        "a cookie (MSS {}, window scale {})",
        plan.cookie_mss(),
        super::COOKIE_WSCALE
    );
    let what = match s.syn_cookies {
        SynCookies::Auto => format!("a SYN over the limit gets {cookie}"),
        SynCookies::Always => format!("every SYN gets {cookie}: no half-open flow is kept"),
        SynCookies::Never => "a SYN over the limit is dropped (half_open_limited)".to_owned(),
    };
    let key = if s.syn_cookies == SynCookies::Never {
        String::new()
    } else if plan.ha.as_ref().is_some_and(|ha| ha.sync.is_some()) {
        "; cookie key derived from sync_key_file (the pair checks each other's cookies)".to_owned()
    } else {
        "; cookie key random, this box's own".to_owned()
    };
    [
        format!(
            "syn_cookies {}  half_open_limit {} (one budget, shared by the CPUs)",
            s.syn_cookies, s.half_open_limit
        ),
        format!("{what}{key}"),
    ]
}

fn check_line(c: &HealthCheck) -> String {
    let mut line = match c.kind {
        CheckKind::Tcp => "tcp connect".to_owned(),
        CheckKind::Http | CheckKind::Https => {
            format!("{} GET {} expect {}", c.kind, c.path, c.expect_status)
        }
    };
    if let Some(port) = c.port {
        let _ = write!(line, " on port {port}");
    }
    if c.kind == CheckKind::Https {
        match (&c.ca_file, c.tls_verify) {
            (_, false) => line.push_str(", tls_verify off"),
            (Some(ca), true) => {
                let _ = write!(line, ", ca_file {}", ca.display());
            }
            (None, true) => line.push_str(", system CAs"),
        }
        if let Some(name) = &c.server_name {
            let _ = write!(line, ", server_name {name}");
        }
    }
    let _ = write!(
        line,
        "; interval {}, timeout {}, fall {}, rise {}, init {}",
        human::duration(c.interval),
        human::duration(c.timeout),
        c.fall,
        c.rise,
        c.init_state
    );
    line
}
