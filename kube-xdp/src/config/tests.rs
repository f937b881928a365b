use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
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

/// The kubeadm HAProxy setup: the apiserver on 6443 and the NodePort range
/// to the workers.
pub(crate) const TWO_SERVICES: &str = r#"[daemon]
interfaces = ["eth0", "eth1"]
xdp_mode = "native"
snat_addresses = ["10.4.0.9", "10.4.0.8"]

[[service]]
name = "kube-apiserver"
vip = "10.4.0.10"
port = 6443
on_backend_down = "reset"

[service.health_check]
kind = "https"
ca_file = "/etc/kubernetes/pki/ca.crt"
server_name = "kubernetes"

[[service.backend]]
name = "bettley"
address = "10.4.0.11"

[[service.backend]]
name = "chenoweth"
address = "cp2.example.internal"
port = 16443
weight = 0

[[service]]
name = "nodeports"
vip = "10.4.0.10"
ports = "30000-32767"
protocol = "tcp"

[service.health_check]
kind = "http"
path = "/healthz"
port = 10256

[[service.backend]]
name = "worker-1"
address = "10.4.0.21"
weight = 2

[[service.backend]]
name = "worker-2"
address = "10.4.0.22"
"#;

pub(crate) const DAEMON: &str = "[daemon]\ninterfaces = [\"eth0\"]\n";

pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

/// Every issue of a file that must not parse.
pub(crate) fn issues(text: &str) -> Vec<ConfigIssue> {
    match parse(text) {
        Ok(_) => panic!("parsed, but should not have:\n{text}"),
        Err(e) => e.issues().to_vec(),
    }
}

/// The one issue of a file that must not parse.
pub(crate) fn issue(text: &str) -> ConfigIssue {
    let mut all = issues(text);
    assert_eq!(all.len(), 1, "expected one issue, got:\n{}", list(&all));
    all.remove(0)
}

pub(crate) fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 1-based line of the first occurrence of `needle`.
pub(crate) fn line(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// `issue` is at `needle`'s line, names `key` (in its key and in its
/// message line), and says `says`.
#[track_caller]
pub(crate) fn assert_issue(issue: &ConfigIssue, text: &str, needle: &str, key: &str, says: &str) {
    let shown = issue.to_string();
    let want_line = line(text, needle);
    assert_eq!(issue.line, Some(want_line), "wrong line: {shown}");
    assert_eq!(issue.key, key, "wrong key: {shown}");
    assert!(
        shown.starts_with(&format!("test.toml:{want_line}: ")),
        "no file:line: {shown}"
    );
    assert!(
        shown.contains(&format!("{key}: ")),
        "key not shown: {shown}"
    );
    assert!(shown.contains(says), "{says:?} not in: {shown}");
    assert!(issue.is_error(), "not an error: {shown}");
}

/// DAEMON plus one service "api" on 10.4.0.10:6443 with `extra` lines in
/// the service table, and `rest` after it.
pub(crate) fn service(extra: &str, rest: &str) -> String {
    format!(
        "{DAEMON}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = 6443\n{extra}\n{rest}"
    )
}

pub(crate) fn backend(fields: &str) -> String {
    format!("[[service.backend]]\n{fields}\n")
}

pub(crate) fn check(fields: &str) -> String {
    service("", &format!("[service.health_check]\n{fields}\n"))
}

// ---------------------------------------------------------------- parsing

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
    assert_eq!(config.timeouts, Timeouts::default());
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
    assert_eq!(t.tcp_syn, Duration::from_secs(60));
    assert_eq!(t.udp, Duration::from_secs(120));
    assert_eq!(t.tcp_time_wait, Duration::from_secs(60));
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
        "{DAEMON}[timeouts]\ntcp_established = \"1day 2h\"\nudp = \"1m 30s\"\ntcp_time_wait = \"0s\"\n"
    );
    let t = parse(&text).unwrap().timeouts;
    assert_eq!(t.tcp_established, Duration::from_secs(26 * 3600));
    assert_eq!(t.udp, Duration::from_secs(90));
    assert_eq!(t.tcp_time_wait, Duration::ZERO, "0 = reuse a port at once");
    assert_eq!(
        t.tcp_syn,
        Duration::from_secs(60),
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

// ------------------------------------------ syntax, unknown keys, types

#[test]
fn unknown_key_is_named_with_its_line_and_a_suggestion() {
    let text = "[daemon]\ninterfaces = [\"eth0\"]\nxdp_mdoe = \"native\"\n";
    let i = issue(text);
    assert_issue(
        &i,
        text,
        "xdp_mdoe",
        "xdp_mdoe",
        "did you mean \"xdp_mode\"",
    );
    assert_eq!(i.context, "daemon");
    assert!(
        i.message.contains("snat_ports"),
        "lists the known keys: {i}"
    );
}

#[test]
fn unknown_key_in_a_backend_names_the_service_and_backend() {
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nwieght = 2"),
    );
    let i = issue(&text);
    assert_issue(&i, &text, "wieght", "wieght", "did you mean \"weight\"");
    assert_eq!(i.context, "service \"api\" backend \"bettley\"");
}

#[test]
fn unknown_key_in_a_health_check_names_its_service() {
    let text = check("kind = \"http\"\nexpect = 200");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "expect = ",
        "expect",
        "did you mean \"expect_status\"",
    );
    assert_eq!(i.context, "service \"api\" health_check");
}

#[test]
fn unknown_table_is_rejected_with_its_line() {
    let text = format!("{DAEMON}\n[timeout]\nudp = \"1s\"\n");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[timeout]",
        "timeout",
        "did you mean \"timeouts\"",
    );

    let text = check("kind = \"tcp\"").replace("[service.health_check]", "[service.healthcheck]");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[service.healthcheck]",
        "healthcheck",
        "did you mean \"health_check\"",
    );
    assert_eq!(i.context, "service \"api\"");
}

#[test]
fn value_of_the_wrong_type_is_rejected_with_its_line() {
    let text =
        format!("{DAEMON}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = \"6443\"\n");
    let i = issue(&text);
    assert_issue(&i, &text, "port = \"6443\"", "port", "expected an integer");
    assert_eq!(i.context, "service \"api\"");

    let text = check("tls_verify = \"no\"");
    assert_issue(
        &issue(&text),
        &text,
        "tls_verify",
        "tls_verify",
        "expected a boolean",
    );

    let text = format!("{DAEMON}[timeouts]\nudp = 120\n");
    assert_issue(
        &issue(&text),
        &text,
        "udp = 120",
        "udp",
        "expected a string",
    );

    let text = service("health_check = 3", "");
    assert_issue(
        &issue(&text),
        &text,
        "health_check = 3",
        "health_check",
        "expected a table",
    );
}

#[test]
fn syntax_error_is_reported_with_its_line() {
    let text = "[daemon]\ninterfaces = [\"eth0\"\nxdp_mode = \"auto\"\n";
    let i = issue(text);
    assert_eq!(i.line, Some(3), "{i}");
    assert_eq!(i.key, "", "not blamed on xdp_mode: {i}");
    assert!(
        i.to_string()
            .starts_with("test.toml:3: daemon: TOML syntax error at column 1: "),
        "{i}"
    );

    let text = "[daemon]\ninterfaces = [\"eth0\"]\n[daemon]\n";
    let i = issue(text);
    assert_eq!(i.line, Some(3), "{i}");
    assert!(i.message.contains("duplicate key `daemon`"), "{i}");
}

#[test]
fn bad_keyword_values_are_rejected_naming_the_choices() {
    let cases = [
        (
            format!("{DAEMON}xdp_mode = \"fast\"\n"),
            "xdp_mode",
            "\"auto\", \"native\", \"generic\"",
        ),
        (
            service("protocol = \"sctp\"", ""),
            "protocol",
            "\"tcp\", \"udp\"",
        ),
        (service("mode = \"tunnel\"", ""), "mode", "\"nat\""),
        (
            service("on_backend_down = \"drop\"", ""),
            "on_backend_down",
            "\"keep\", \"reset\"",
        ),
        (
            check("kind = \"grpc\""),
            "kind",
            "\"tcp\", \"http\", \"https\"",
        ),
        (
            check("init_state = \"maybe\""),
            "init_state",
            "\"down\", \"up\"",
        ),
    ];
    for (text, key, choices) in cases {
        let i = issue(&text);
        assert_issue(&i, &text, &format!("{key} = "), key, choices);
    }
}

#[test]
fn dsr_mode_is_rejected_as_not_supported_yet() {
    let text = service("mode = \"dsr\"", "");
    let i = issue(&text);
    assert_issue(&i, &text, "mode = ", "mode", "not supported yet");
    assert!(i.message.contains("\"nat\""), "{i}");
}

#[test]
fn bad_duration_is_rejected_with_an_example() {
    let text = check("interval = \"2 seconds please\"");
    assert_issue(
        &issue(&text),
        &text,
        "interval",
        "interval",
        "is not a duration",
    );
    let text = service("drain_timeout = \"soon\"", "");
    assert_issue(
        &issue(&text),
        &text,
        "drain_timeout",
        "drain_timeout",
        "\"24h\"",
    );
    let text = format!("{DAEMON}[timeouts]\ntcp_syn = \"0s\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "tcp_syn",
        "tcp_syn",
        "must be longer than 0",
    );
}

// ------------------------------------------------------------- [daemon]

#[test]
fn missing_daemon_table_is_rejected() {
    let i = issue("[timeouts]\nudp = \"1s\"\n");
    assert_eq!(i.line, None);
    assert_eq!(i.context, "daemon");
    assert!(i.to_string().starts_with("test.toml: daemon: "), "{i}");
    assert!(i.message.contains("interfaces = [\"eth0\"]"), "{i}");
}

#[test]
fn missing_interfaces_are_rejected_at_the_daemon_table() {
    let text = "# kube-xdp\n[daemon]\nxdp_mode = \"auto\"\n";
    assert_issue(&issue(text), text, "[daemon]", "interfaces", "is required");
}

#[test]
fn empty_interface_list_is_rejected() {
    let text = "[daemon]\ninterfaces = []\n";
    assert_issue(
        &issue(text),
        text,
        "interfaces",
        "interfaces",
        "name at least one interface",
    );
}

#[test]
fn bad_or_repeated_interface_names_are_rejected_each_on_its_line() {
    let text = "[daemon]\ninterfaces = [\n  \"eth0\",\n  \"a-very-long-interface-name\",\n  \"eth0\",\n  \"br/0\",\n]\n";
    let all = issues(text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        text,
        "a-very-long",
        "interfaces",
        "longer than 15 characters",
    );
    assert_issue(
        &all[1],
        text,
        "\"eth0\",\n  \"br",
        "interfaces",
        "listed twice",
    );
    assert_issue(&all[2], text, "br/0", "interfaces", "may not hold '/'");
}

#[test]
fn relative_paths_are_rejected() {
    let text = format!("{DAEMON}pin_path = \"bpf/kube-xdp\"\nrun_dir = \"run\"\n");
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "pin_path",
        "pin_path",
        "must be an absolute path",
    );
    assert_issue(
        &all[1],
        &text,
        "run_dir",
        "run_dir",
        "must be an absolute path",
    );
}

#[test]
fn metrics_listen_must_be_an_address_and_port() {
    let text = format!("{DAEMON}metrics_listen = \"localhost\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "metrics_listen",
        "metrics_listen",
        "remove the key to turn metrics off",
    );
    let config = parse(&format!("{DAEMON}metrics_listen = \"0.0.0.0:9100\"\n")).unwrap();
    assert_eq!(
        config.daemon.metrics_listen,
        Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
    );
}

#[test]
fn flow_table_size_out_of_bounds_is_rejected() {
    let text = format!("{DAEMON}flow_table_size = 1000\n");
    assert_issue(
        &issue(&text),
        &text,
        "flow_table_size",
        "flow_table_size",
        "must be at least 1024 (got 1000)",
    );
    let text = format!("{DAEMON}flow_table_size = 16777217\n");
    assert_issue(
        &issue(&text),
        &text,
        "flow_table_size",
        "flow_table_size",
        "must be at most 16777216 (got 16777217)",
    );
    for ok in [1024, 16_777_216] {
        let config = parse(&format!("{DAEMON}flow_table_size = {ok}\n")).unwrap();
        assert_eq!(config.daemon.flow_table_size, ok);
    }
}

#[test]
fn snat_addresses_must_be_few_distinct_unicast_addresses() {
    let text = format!(
        "{DAEMON}snat_addresses = [\n\"10.4.0.1\",\n\"10.4.0.2\",\n\"10.4.0.3\",\n\"10.4.0.4\",\n\"10.4.0.5\",\n]\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "snat_addresses",
        "snat_addresses",
        "at most 4 addresses (got 5)",
    );

    let text = format!(
        "{DAEMON}snat_addresses = [\n\"10.4.0.1\",\n\"lb-1\",\n\"0.0.0.0\",\n\"10.4.0.1\",\n]\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "\"lb-1\"",
        "snat_addresses",
        "\"lb-1\" is not an IPv4 address",
    );
    assert_issue(
        &all[1],
        &text,
        "\"0.0.0.0\"",
        "snat_addresses",
        "cannot be a source address",
    );
    assert_issue(
        &all[2],
        &text,
        "\"10.4.0.1\",\n]",
        "snat_addresses",
        "listed twice",
    );
}

#[test]
fn snat_address_equal_to_a_vip_is_rejected() {
    let text = service("", "").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nsnat_addresses = [\"10.4.0.9\", \"10.4.0.10\"]\n",
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "snat_addresses",
        "snat_addresses",
        "10.4.0.10 is the VIP of service \"api\"",
    );
    assert!(i.message.contains("never a VIP"), "{i}");
}

#[test]
fn empty_or_backwards_snat_ports_are_rejected() {
    let text = format!("{DAEMON}snat_ports = \"\"\n");
    assert_issue(&issue(&text), &text, "snat_ports", "snat_ports", "is empty");
    let text = format!("{DAEMON}snat_ports = \"32767-10000\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "snat_ports",
        "snat_ports",
        "backwards",
    );
    let text = format!("{DAEMON}snat_ports = \"0-1000\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "snat_ports",
        "snat_ports",
        "ports are 1-65535",
    );
}

// ------------------------------------------------------------ [timeouts]

#[test]
fn zero_timeouts_are_rejected_except_time_wait() {
    let text = format!(
        "{DAEMON}[timeouts]\ntcp_established = \"0s\"\ntcp_closing = \"0s\"\nudp = \"0ms\"\ntcp_time_wait = \"0s\"\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "tcp_established",
        "tcp_established",
        "longer than 0",
    );
    assert_issue(
        &all[1],
        &text,
        "tcp_closing",
        "tcp_closing",
        "longer than 0",
    );
    assert_issue(&all[2], &text, "udp", "udp", "longer than 0");
    assert_eq!(all[0].context, "timeouts");
}

// ------------------------------------------------------------- [[service]]

#[test]
fn backwards_port_range_is_rejected_with_its_line() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"32767-30000\"\n[service.health_check]\nport = 10256\n"
    );
    let i = issue(&text);
    assert_issue(&i, &text, "ports = ", "ports", "backwards");
    assert!(
        i.message.contains("\"30000-32767\""),
        "suggests the fix: {i}"
    );
    assert_eq!(i.context, "service \"np\"");
}

#[test]
fn out_of_range_ports_are_rejected() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-70000\"\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "ports = ",
        "ports",
        "port 70000 is out of range",
    );
    let text = service("", "").replace("port = 6443", "port = 0");
    assert_issue(
        &issue(&text),
        &text,
        "port = 0",
        "port",
        "must be at least 1 (got 0)",
    );
    let text = service("", "").replace("port = 6443", "port = 65536");
    assert_issue(
        &issue(&text),
        &text,
        "port = 65536",
        "port",
        "must be at most 65535 (got 65536)",
    );
}

#[test]
fn vip_that_is_not_an_address_is_rejected() {
    for (vip, says) in [
        ("kube-api", "\"kube-api\" is not an IPv4 address"),
        ("10.4.0.256", "is not an IPv4 address"),
        ("224.0.0.1", "cannot be a VIP"),
        ("0.0.0.0", "cannot be a VIP"),
    ] {
        let text = service("", "").replace("10.4.0.10", vip);
        assert_issue(&issue(&text), &text, "vip = ", "vip", says);
    }
}

#[test]
fn missing_name_vip_and_port_are_rejected_at_the_service_table() {
    let text = format!("{DAEMON}\n[[service]]\nprotocol = \"tcp\"\n");
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    for (i, key) in all.iter().zip(["name", "vip", "port"]) {
        assert_issue(i, &text, "[[service]]", key, "is required");
        assert_eq!(i.context, "service #1");
    }
}

#[test]
fn service_name_must_be_a_plain_word() {
    let text = service("", "").replace("name = \"api\"", "name = \"kube apiserver\"");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "name = ",
        "name",
        "may only hold letters, digits",
    );
    assert_eq!(i.context, "service #1");
    let text = service("", "").replace("name = \"api\"", "name = \"\"");
    assert_issue(&issue(&text), &text, "name = ", "name", "is empty");
}

#[test]
fn port_and_ports_together_are_rejected() {
    let text = service("ports = \"30000-32767\"", "");
    assert_issue(
        &issue(&text),
        &text,
        "ports = ",
        "ports",
        "either port (one port) or ports (a range), not both",
    );
}

#[test]
fn neither_port_nor_ports_is_rejected() {
    let text = service("", "").replace("port = 6443\n", "");
    assert_issue(
        &issue(&text),
        &text,
        "[[service]]",
        "port",
        "set port = 6443, or ports = \"30000-32767\"",
    );
}

#[test]
fn duplicate_vip_port_protocol_is_rejected_at_the_second_service() {
    let text = format!(
        "{}\n[[service]]\nname = \"api2\"\nvip = \"10.4.0.10\"\nport = 6443\n",
        service("", "")
    );
    let i = issue(&text);
    let n = text.lines().count();
    assert_eq!(i.line, Some(n), "{i}");
    assert_eq!(i.key, "port");
    assert_eq!(i.context, "service \"api2\"");
    assert!(
        i.to_string().starts_with(&format!(
            "test.toml:{n}: service \"api2\": port: 10.4.0.10:6443/tcp is already service \"api\" (line 4)"
        )),
        "{i}"
    );
}

#[test]
fn same_port_on_another_vip_or_protocol_is_accepted() {
    let text = format!(
        "{}\n[[service]]\nname = \"api-udp\"\nvip = \"10.4.0.10\"\nport = 6443\nprotocol = \"udp\"\n\
         \n[[service]]\nname = \"api-b\"\nvip = \"10.4.0.20\"\nport = 6443\n",
        service("", "")
    );
    assert_eq!(parse(&text).unwrap().services.len(), 3);
}

#[test]
fn overlapping_port_ranges_on_one_vip_and_protocol_are_rejected() {
    let np = |name: &str, ports: &str| {
        format!(
            "\n[[service]]\nname = \"{name}\"\nvip = \"10.4.0.10\"\nports = \"{ports}\"\n[service.health_check]\nport = 10256\n"
        )
    };
    let text = format!(
        "{DAEMON}{}{}",
        np("a", "30000-31000"),
        np("b", "30500-32767")
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "ports = \"30500",
        "ports",
        "30500-32767/tcp overlaps 10.4.0.10:30000-31000/tcp of service \"a\"",
    );

    // A single port inside a range.
    let text = format!(
        "{DAEMON}{}\n[[service]]\nname = \"one\"\nvip = \"10.4.0.10\"\nport = 30080\n",
        np("a", "30000-32767")
    );
    assert_issue(&issue(&text), &text, "port = 30080", "port", "overlaps");

    // Adjacent ranges do not overlap.
    let text = format!(
        "{DAEMON}{}{}",
        np("a", "30000-31000"),
        np("b", "31001-32767")
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn duplicate_service_names_are_rejected() {
    let text = format!(
        "{}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = 443\n",
        service("", "")
    );
    let i = issue(&text);
    assert_eq!(i.line, Some(text.lines().count() - 2), "{i}");
    assert_eq!(i.key, "name");
    assert!(
        i.message
            .contains("already the name of the service at line 4"),
        "{i}"
    );
}

#[test]
fn maglev_table_size_must_be_a_prime_no_larger_than_65537() {
    let text = service("maglev_table_size = 65536", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be a prime number (got 65536); 65521 is the nearest prime below",
    );
    let text = service("maglev_table_size = 131071", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be at most 65537 (got 131071)",
    );
    let text = service("maglev_table_size = 0", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be a prime number",
    );
    let config = parse(&service("maglev_table_size = 251", "")).unwrap();
    assert_eq!(config.services[0].maglev_table_size, 251);
}

#[test]
fn maglev_table_smaller_than_the_pool_is_rejected() {
    let backends: String = (1..=4)
        .map(|i| backend(&format!("name = \"b{i}\"\naddress = \"10.4.0.{i}\"")))
        .collect();
    let text = service("maglev_table_size = 3", &backends);
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "at least the number of backends, 4 (got 3)",
    );
}

#[test]
fn datapath_capacities_are_enforced() {
    let mut text = DAEMON.to_owned();
    for i in 1..=65 {
        text.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\nvip = \"10.4.0.10\"\nport = {i}\n"
        ));
    }
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[[service]]\nname = \"s65\"",
        "",
        "too many services: the datapath holds at most 64",
    );
    assert_eq!(i.context, "service \"s65\"");

    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"a\"\nvip = \"10.4.0.10\"\nports = \"1-10000\"\n\
         [service.health_check]\nport = 22\n\n[[service]]\nname = \"b\"\nvip = \"10.4.0.20\"\n\
         ports = \"1-10000\"\n[service.health_check]\nport = 22\n"
    );
    let i = issue(&text);
    assert_eq!(i.line, Some(line(&text, "vip = \"10.4.0.20\"") + 1), "{i}");
    assert!(i.message.contains("20000 (vip, port) entries"), "{i}");
    assert!(i.message.contains("at most 16384"), "{i}");
}

// ------------------------------------------------ [service.health_check]

#[test]
fn fall_rise_and_interval_of_zero_are_rejected() {
    let text = check("interval = \"0s\"\nfall = 0\nrise = 0");
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "interval",
        "interval",
        "must be longer than 0",
    );
    assert_issue(&all[1], &text, "fall", "fall", "must be at least 1 (got 0)");
    assert!(all[1].message.contains("mark a backend DOWN"), "{}", all[1]);
    assert_issue(&all[2], &text, "rise", "rise", "must be at least 1 (got 0)");
    assert_eq!(all[1].context, "service \"api\" health_check");
}

#[test]
fn timeout_not_shorter_than_interval_is_rejected() {
    let text = check("interval = \"2s\"\ntimeout = \"2s\"");
    assert_issue(
        &issue(&text),
        &text,
        "timeout",
        "timeout",
        "timeout: 2s must be shorter than interval (2s)",
    );
    // Only the interval set, below the default timeout: its line.
    let text = check("interval = \"500ms\"");
    assert_issue(
        &issue(&text),
        &text,
        "interval",
        "interval",
        "interval: 500ms must be longer than timeout (1s)",
    );
}

#[test]
fn https_settings_on_a_tcp_check_are_rejected() {
    let text = check(
        "kind = \"tcp\"\ntls_verify = false\nca_file = \"/etc/ca.crt\"\nserver_name = \"kubernetes\"\npath = \"/readyz\"\nexpect_status = 200",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 5, "{}", list(&all));
    for (i, key) in all.iter().zip([
        "tls_verify",
        "ca_file",
        "server_name",
        "path",
        "expect_status",
    ]) {
        assert_issue(
            i,
            &text,
            &format!("{key} = "),
            key,
            "this check is kind = \"tcp\"",
        );
    }
    assert!(all[0].message.contains("kind = \"https\""), "{}", all[0]);
    assert!(
        all[3]
            .message
            .contains("kind = \"http\" or kind = \"https\""),
        "{}",
        all[3]
    );
}

#[test]
fn tls_settings_on_an_http_check_are_rejected() {
    let text = check("kind = \"http\"\nserver_name = \"kubernetes\"");
    assert_issue(
        &issue(&text),
        &text,
        "server_name",
        "server_name",
        "only used by kind = \"https\"",
    );
}

#[test]
fn checks_default_to_tcp_so_tls_settings_alone_are_rejected() {
    let text = check("tls_verify = false");
    assert_issue(
        &issue(&text),
        &text,
        "tls_verify",
        "tls_verify",
        "set the kind or remove tls_verify",
    );
}

#[test]
fn ca_file_with_tls_verify_off_is_rejected() {
    let text =
        check("kind = \"https\"\ntls_verify = false\nca_file = \"/etc/kubernetes/pki/ca.crt\"");
    assert_issue(
        &issue(&text),
        &text,
        "ca_file",
        "ca_file",
        "remove one of the two",
    );
}

#[test]
fn bad_path_status_and_server_name_are_rejected() {
    let text = check(
        "kind = \"https\"\npath = \"readyz\"\nexpect_status = 999\nserver_name = \"kube rnetes\"",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(&all[0], &text, "path", "path", "is not a request path");
    assert_issue(
        &all[1],
        &text,
        "expect_status",
        "expect_status",
        "must be at most 599 (got 999)",
    );
    assert_issue(
        &all[2],
        &text,
        "server_name",
        "server_name",
        "is not a DNS name",
    );
}

#[test]
fn port_range_service_needs_a_health_check_port() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-32767\"\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "[[service]]",
        "health_check",
        "no single port to check",
    );
    let text = format!("{text}[service.health_check]\nkind = \"http\"\n");
    let i = issue(&text);
    assert_issue(&i, &text, "[service.health_check]", "port", "10256");
    assert_eq!(i.context, "service \"np\" health_check");
}

// ------------------------------------------------- [[service.backend]]

#[test]
fn weight_above_256_is_rejected_naming_service_and_backend() {
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nweight = 300"),
    );
    let i = issue(&text);
    let n = line(&text, "weight = 300");
    assert_eq!(
        i.to_string(),
        format!(
            "test.toml:{n}: service \"api\" backend \"bettley\": weight: must be at most 256 (got 300); 0 drains the backend"
        )
    );
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nweight = -1"),
    );
    assert_issue(
        &issue(&text),
        &text,
        "weight",
        "weight",
        "must be at least 0 (got -1)",
    );
}

#[test]
fn backend_address_neither_ipv4_nor_hostname_is_rejected() {
    for (address, says) in [
        ("10.4.0.300", "neither an IPv4 address nor a valid hostname"),
        ("cp_1.lab", "'_' is not allowed"),
        ("fd00::11", "IPv6 backends are not supported yet"),
        ("127.0.0.1", "cannot be a backend address"),
    ] {
        let text = service(
            "",
            &backend(&format!("name = \"b\"\naddress = \"{address}\"")),
        );
        assert_issue(&issue(&text), &text, "address", "address", says);
    }
}

#[test]
fn backend_without_name_or_address_is_rejected() {
    let text = service("", &backend("port = 6443"));
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(&all[0], &text, "[[service.backend]]", "name", "is required");
    assert_issue(
        &all[1],
        &text,
        "[[service.backend]]",
        "address",
        "is required",
    );
    assert_eq!(all[1].context, "service \"api\" backend #1");
}

#[test]
fn duplicate_backend_names_within_a_service_are_rejected() {
    let text = service(
        "",
        &format!(
            "{}{}",
            backend("name = \"bettley\"\naddress = \"10.4.0.11\""),
            backend("name = \"bettley\"\naddress = \"10.4.0.12\"")
        ),
    );
    let i = issue(&text);
    assert_eq!(i.key, "name");
    assert_eq!(i.line, Some(line(&text, "10.4.0.12") - 1), "{i}");
    assert!(i.message.contains("backend names must be unique"), "{i}");
}

#[test]
fn same_backend_in_two_services_is_accepted() {
    let text = format!(
        "{}\n[[service]]\nname = \"api2\"\nvip = \"10.4.0.20\"\nport = 6443\n{}",
        service("", &backend("name = \"bettley\"\naddress = \"10.4.0.11\"")),
        backend("name = \"bettley\"\naddress = \"10.4.0.11\"")
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn duplicate_backend_address_and_port_is_rejected() {
    let text = service(
        "",
        &format!(
            "{}{}{}",
            backend("name = \"a\"\naddress = \"10.4.0.11\""),
            backend("name = \"b\"\naddress = \"10.4.0.11\"\nport = 6443"),
            backend("name = \"c\"\naddress = \"10.4.0.11\"\nport = 16443"),
        ),
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "address = \"10.4.0.11\"\nport = 6443",
        "address",
        "10.4.0.11:6443 is already backend \"a\"",
    );
}

#[test]
fn backend_port_on_a_port_range_service_is_rejected() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-32767\"\n\
         [service.health_check]\nport = 10256\n{}",
        backend("name = \"w1\"\naddress = \"10.4.0.21\"\nport = 30080")
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "port = 30080",
        "port",
        "keep the client's destination port",
    );
    assert_eq!(i.context, "service \"np\" backend \"w1\"");
}

// ------------------------------------------------------ many at once

#[test]
fn all_errors_of_a_file_are_reported_together_in_file_order() {
    let text = r#"[daemon]
interfaces = []
flow_table_size = 10
snat_ports = "40000-30000"

[[service]]
name = "api"
vip = "10.4.0.999"
port = 6443

[service.health_check]
fall = 0
timeout = "5s"

[[service.backend]]
name = "bettley"
address = "10.4.0.11"
weight = 300

[[service]]
name = "api"
vip = "10.4.0.10"
ports = "32767-30000"
mode = "dsr"
"#;
    let err = parse(text).unwrap_err();
    let all = err.issues();
    let lines: Vec<Option<usize>> = all.iter().map(|i| i.line).collect();
    let want = [2, 3, 4, 8, 12, 13, 18, 21, 23, 24];
    assert_eq!(
        lines,
        want.iter().map(|n| Some(*n)).collect::<Vec<_>>(),
        "{err}"
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), want.len(), "{shown}");
    for n in want {
        assert!(
            shown.contains(&format!("test.toml:{n}: ")),
            "{n} missing:\n{shown}"
        );
    }
}

#[test]
fn config_path_is_recorded() {
    let config = Config::parse(Path::new("/etc/kube-xdp/kube-xdp.toml"), DAEMON).unwrap();
    assert_eq!(config.path, PathBuf::from("/etc/kube-xdp/kube-xdp.toml"));
}
