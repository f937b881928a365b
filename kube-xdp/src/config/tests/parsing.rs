//! Valid files: the design example, defaults, the keyword and duration forms,
//! line tracking, port ranges, backend addresses, loading.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::*;

/// The example of DESIGN.md, verbatim.
const DESIGN_EXAMPLE: &str = r#"[daemon]
interfaces = ["eth0"]              # required
xdp_mode = "auto"                  # auto | native | generic
pin_path = "/sys/fs/bpf/kube-xdp"
metrics_listen = "127.0.0.1:9437"  # Prometheus /metrics; omit to disable
run_dir = "/run/kube-xdp"          # pid file
flow_table_size = 1048576
# snat_addresses = ["10.4.0.9"]    # default: first IPv4 address of the interface
snat_ports = "10000-32767"         # must not overlap net.ipv4.ip_local_port_range

[timeouts]
tcp_established = "24h"
tcp_closing = "10s"
tcp_syn = "60s"
udp = "120s"
tcp_time_wait = "60s"              # hold of a closed flow's SNAT port (see Datapath 5)

[[service]]
name = "kube-apiserver"
vip = "10.4.0.10"
port = 6443                        # or: ports = "30000-32767"
protocol = "tcp"                   # tcp | udp
mode = "nat"
maglev_table_size = 65537
on_backend_down = "keep"           # keep | reset
drain_timeout = "1h"               # how long flows of a removed backend may live

[service.health_check]
kind = "https"                     # tcp | http | https
path = "/readyz"
expect_status = 200
tls_verify = false                 # or: ca_file = "/etc/kubernetes/pki/ca.crt"
# server_name = "kubernetes"       # TLS SNI; default: the backend's address
interval = "2s"
timeout = "1s"
fall = 3
rise = 2
init_state = "down"                # down | up: state before the first checks on a fresh start
# port = 10256                     # check a different port (kube-proxy healthz for NodePort pools)

[[service.backend]]
name = "bettley"
address = "10.4.0.11"              # IPv4 or hostname
port = 6443                        # default: the service port; for a range, the client's port
weight = 1                         # 0 = drain: no new flows, existing ones finish
"#;

#[test]
fn design_example_parses_verbatim() {
    let config = parse(DESIGN_EXAMPLE).unwrap();
    let d = &config.daemon;
    assert_eq!(d.interfaces, ["eth0"]);
    assert_eq!(d.xdp_mode, XdpMode::Auto);
    assert_eq!(d.pin_path, Path::new("/sys/fs/bpf/kube-xdp"));
    assert_eq!(d.metrics_listen, Some("127.0.0.1:9437".parse().unwrap()));
    assert_eq!(d.run_dir, Path::new("/run/kube-xdp"));
    assert_eq!(d.flow_table_size, 1_048_576);
    assert!(d.snat_addresses.is_empty());
    assert_eq!(
        d.snat_ports,
        PortRange {
            first: 10000,
            last: 32767
        }
    );
    // The design example predates the 5 s default of tcp_syn.
    assert_eq!(
        config.timeouts,
        Timeouts {
            tcp_syn: Duration::from_secs(60),
            ..Timeouts::default()
        }
    );
    assert_eq!(config.syn_flood, SynFlood::default());
    assert_eq!(config.services.len(), 1);
    let s = &config.services[0];
    assert_eq!(s.name, "kube-apiserver");
    assert_eq!(s.vip, Ipv4Addr::new(10, 4, 0, 10));
    assert_eq!(s.port, ServicePort::Single(6443));
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.mode, ForwardingMode::Nat);
    assert_eq!(s.maglev_table_size, 65537);
    assert_eq!(s.on_backend_down, OnBackendDown::Keep);
    assert_eq!(s.drain_timeout, Duration::from_secs(3600));
    let hc = &s.health_check;
    assert_eq!(hc.kind, CheckKind::Https);
    assert_eq!(hc.path, "/readyz");
    assert_eq!(hc.expect_status, 200);
    assert!(!hc.tls_verify);
    assert_eq!(hc.ca_file, None);
    assert_eq!(hc.server_name, None);
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert_eq!(hc.timeout, Duration::from_secs(1));
    assert_eq!((hc.fall, hc.rise), (3, 2));
    assert_eq!(hc.init_state, InitState::Down);
    assert_eq!(hc.port, None);
    assert_eq!(s.backends.len(), 1);
    let b = &s.backends[0];
    assert_eq!(b.name, "bettley");
    assert_eq!(b.address, BackendAddress::Ip(Ipv4Addr::new(10, 4, 0, 11)));
    assert_eq!(b.port, Some(6443));
    assert_eq!(b.weight, 1);
    assert_eq!(s.check_port(b), 6443);
}

#[test]
fn apiserver_and_nodeport_range_services_parse() {
    let config = parse(TWO_SERVICES).unwrap();
    assert_eq!(config.daemon.interfaces, ["eth0", "eth1"]);
    assert_eq!(config.daemon.xdp_mode, XdpMode::Native);
    assert_eq!(
        config.daemon.snat_addresses,
        [Ipv4Addr::new(10, 4, 0, 9), Ipv4Addr::new(10, 4, 0, 8)]
    );
    let api = &config.services[0];
    assert_eq!(api.on_backend_down, OnBackendDown::Reset);
    assert_eq!(api.health_check.kind, CheckKind::Https);
    assert!(api.health_check.tls_verify);
    assert_eq!(
        api.health_check.ca_file.as_deref(),
        Some(Path::new("/etc/kubernetes/pki/ca.crt"))
    );
    assert_eq!(api.health_check.server_name.as_deref(), Some("kubernetes"));
    assert_eq!(
        api.backends[0].port,
        Some(6443),
        "the service port by default"
    );
    assert_eq!(
        api.backends[1].address,
        BackendAddress::Hostname("cp2.example.internal".into())
    );
    assert_eq!(api.backends[1].port, Some(16443));
    assert_eq!(api.backends[1].weight, 0);

    let np = &config.services[1];
    assert_eq!(np.name, "nodeports");
    assert_eq!(
        np.port,
        ServicePort::Range(PortRange {
            first: 30000,
            last: 32767
        })
    );
    assert!(np.port.is_range());
    assert_eq!(np.port.range().len(), 2768);
    assert_eq!(np.health_check.kind, CheckKind::Http);
    assert_eq!(np.health_check.path, "/healthz");
    assert_eq!(np.health_check.port, Some(10256));
    assert_eq!(np.backends[0].port, None, "a range keeps the client's port");
    assert_eq!(np.backends[0].weight, 2);
    assert_eq!(np.check_port(&np.backends[1]), 10256);
}

#[test]
fn defaults_apply_when_only_interfaces_are_given() {
    let config = parse(DAEMON).unwrap();
    let d = &config.daemon;
    assert_eq!(d.interfaces, ["eth0"]);
    assert_eq!(d.xdp_mode, XdpMode::Auto);
    assert_eq!(d.pin_path, Path::new(DEFAULT_PIN_PATH));
    assert_eq!(d.metrics_listen, None, "no metrics_listen = no metrics");
    assert_eq!(d.run_dir, Path::new("/run/kube-xdp"));
    assert_eq!(d.flow_table_size, 1_048_576);
    assert!(d.snat_addresses.is_empty());
    assert_eq!(
        d.snat_ports,
        PortRange {
            first: 10000,
            last: 32767
        }
    );
    let t = &config.timeouts;
    assert_eq!(t.tcp_established, Duration::from_secs(24 * 3600));
    assert_eq!(t.tcp_closing, Duration::from_secs(10));
    assert_eq!(t.tcp_syn, Duration::from_secs(5));
    assert_eq!(t.udp, Duration::from_secs(120));
    assert_eq!(t.tcp_time_wait, Duration::from_secs(60));
    let f = &config.syn_flood;
    assert_eq!(f.syn_cookies, SynCookies::Auto);
    assert_eq!(f.half_open_limit, 8192);
    assert!(config.services.is_empty());
}

#[test]
fn service_and_backend_defaults_apply() {
    let config = parse(&service(
        "",
        &backend("name = \"a\"\naddress = \"10.4.0.11\""),
    ))
    .unwrap();
    let s = &config.services[0];
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.mode, ForwardingMode::Nat);
    assert_eq!(s.maglev_table_size, 65537);
    assert_eq!(s.on_backend_down, OnBackendDown::Keep);
    assert_eq!(s.drain_timeout, Duration::from_secs(3600));
    assert_eq!(
        s.health_check,
        HealthCheck::default(),
        "no table: a TCP check"
    );
    let hc = &s.health_check;
    assert_eq!(hc.kind, CheckKind::Tcp);
    assert_eq!(hc.path, "/readyz");
    assert_eq!(hc.expect_status, 200);
    assert!(hc.tls_verify);
    assert_eq!((hc.ca_file.as_ref(), hc.server_name.as_ref()), (None, None));
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert_eq!(hc.timeout, Duration::from_secs(1));
    assert_eq!((hc.fall, hc.rise), (3, 2));
    assert_eq!(hc.init_state, InitState::Down);
    assert_eq!(hc.port, None);
    assert_eq!(s.backends[0].port, Some(6443));
    assert_eq!(s.backends[0].weight, 1);
}

#[test]
fn health_check_table_with_only_a_kind_takes_the_defaults() {
    let config = parse(&check("kind = \"http\"")).unwrap();
    let hc = &config.services[0].health_check;
    assert_eq!(hc.kind, CheckKind::Http);
    assert_eq!(
        *hc,
        HealthCheck {
            kind: CheckKind::Http,
            ..HealthCheck::default()
        }
    );
}

#[test]
fn other_values_of_keyword_keys_parse() {
    let text = "[daemon]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\n\n[[service]]\nname = \"dns\"\n\
         vip = \"10.4.0.10\"\nport = 53\nprotocol = \"udp\"\n\n[service.health_check]\n\
         init_state = \"up\"\ninterval = \"500ms\"\ntimeout = \"250ms\"\nport = 53\n";
    let config = parse(text).unwrap();
    assert_eq!(config.daemon.xdp_mode, XdpMode::Generic);
    let s = &config.services[0];
    assert_eq!(s.protocol, Protocol::Udp);
    assert_eq!(s.protocol.number(), 17);
    assert_eq!(s.health_check.init_state, InitState::Up);
    assert_eq!(s.health_check.interval, Duration::from_millis(500));
    assert_eq!(s.health_check.timeout, Duration::from_millis(250));
}

#[test]
fn durations_accept_humantime_forms() {
    let text = format!(
        "{DAEMON}[timeouts]\ntcp_established = \"1day 2h\"\nudp = \"1m 30s\"\nudp_unanswered = \"5s\"\ntcp_time_wait = \"0s\"\n"
    );
    let t = parse(&text).unwrap().timeouts;
    assert_eq!(t.tcp_established, Duration::from_secs(26 * 3600));
    assert_eq!(t.udp, Duration::from_secs(90));
    assert_eq!(t.udp_unanswered, Duration::from_secs(5));
    assert_eq!(t.tcp_time_wait, Duration::ZERO, "0 = reuse a port at once");
    assert_eq!(
        t.tcp_syn,
        Duration::from_secs(5),
        "unset keys keep defaults"
    );
}

#[test]
fn service_without_backends_is_accepted() {
    let config = parse(&service("", "")).unwrap();
    assert!(config.services[0].backends.is_empty());
}

#[test]
fn lines_are_kept_but_do_not_take_part_in_equality() {
    let a = parse(DESIGN_EXAMPLE).unwrap();
    let s = &a.services[0];
    assert_eq!(s.lines.table, line(DESIGN_EXAMPLE, "[[service]]"));
    assert_eq!(s.lines.of("vip"), line(DESIGN_EXAMPLE, "vip = "));
    assert_eq!(
        s.backends[0].lines.of("weight"),
        line(DESIGN_EXAMPLE, "weight = 1")
    );
    assert_eq!(
        a.daemon.lines.of("interfaces[0]"),
        line(DESIGN_EXAMPLE, "interfaces = ")
    );
    assert_eq!(
        a.daemon.lines.of("snat_addresses"),
        line(DESIGN_EXAMPLE, "[daemon]"),
        "an unset key points at its table"
    );
    let moved = format!("\n\n# moved down\n{DESIGN_EXAMPLE}");
    let b = parse(&moved).unwrap();
    assert_ne!(b.services[0].lines.table, s.lines.table);
    assert_eq!(a, b);
}

#[test]
fn port_ranges_parse_and_compare() {
    let r: PortRange = "30000-32767".parse().unwrap();
    assert_eq!(
        r,
        PortRange {
            first: 30000,
            last: 32767
        }
    );
    assert_eq!(r.len(), 2768);
    assert!(!r.is_empty());
    assert!(r.contains(30000) && r.contains(32767) && !r.contains(29999));
    assert_eq!(" 80 - 81 ".parse::<PortRange>().unwrap().len(), 2);
    let one: PortRange = "6443".parse().unwrap();
    assert_eq!((one.first, one.last, one.len()), (6443, 6443, 1));
    assert_eq!(one.to_string(), "6443");
    assert_eq!(r.to_string(), "30000-32767");
    assert!(r.overlaps(&"32767-40000".parse().unwrap()));
    assert!(r.overlaps(&one.max(r)));
    assert!(!r.overlaps(&"32768-40000".parse().unwrap()));
    assert!(!r.overlaps(&one));
    assert!(PortRange::new(1, 65535).is_ok());
    for bad in ["", "0-10", "10-0", "5-4", "1-65536", "a-b", "1-2-3", "-5"] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad:?} parsed");
    }
}

#[test]
fn backend_addresses_are_ipv4_or_rfc1123_hostnames() {
    let ok = |s: &str| s.parse::<BackendAddress>().unwrap();
    assert_eq!(
        ok("10.4.0.11"),
        BackendAddress::Ip(Ipv4Addr::new(10, 4, 0, 11))
    );
    for name in [
        "bettley",
        "cp-1.example.internal",
        "cp1.example.",
        "1node.lab",
    ] {
        assert_eq!(ok(name), BackendAddress::Hostname(name.into()));
    }
    for bad in [
        "",
        "10.4.0.300",
        "10.4.0",
        "a..b",
        "-cp1",
        "cp1-",
        "cp_1",
        "fd00::1",
        "a b",
    ] {
        assert!(bad.parse::<BackendAddress>().is_err(), "{bad:?} parsed");
    }
    assert!(
        format!("{}.x", "a".repeat(64))
            .parse::<BackendAddress>()
            .is_err()
    );
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("kube-xdp-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kube-xdp.toml");
    std::fs::write(&file, DESIGN_EXAMPLE).unwrap();
    let config = Config::load(&file).unwrap();
    assert_eq!(config.path, file);
    let err = Config::load(&dir.join("absent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("absent.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_pass_through_anyhow_with_every_line() {
    fn load() -> anyhow::Result<Config> {
        Ok(parse("[daemon]\ninterfaces = []\nflow_table_size = 1\n")?)
    }
    let shown = format!("{:#}", load().unwrap_err());
    assert!(
        shown.contains("test.toml:2: daemon: interfaces:"),
        "{shown}"
    );
    assert!(
        shown.contains("test.toml:3: daemon: flow_table_size:"),
        "{shown}"
    );
}
