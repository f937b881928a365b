//! The plan's checks against a fake host, and its summary.

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use super::checks::assess;
use super::*;
use crate::config::tests::{DAEMON, TWO_SERVICES, backend, check, line, parse, service};
use crate::config::{ConfigIssue, PortRange, Severity};
use crate::host::Interface;

// ---------------------------------------------------------- environment

#[derive(Default)]
struct FakeHost {
    interfaces: Vec<(&'static str, Vec<Ipv4Addr>)>,
    port_range: Option<PortRange>,
    names: Vec<(&'static str, Ipv4Addr)>,
    files: Vec<&'static str>,
    /// Small files by path (see [`FakeFile`]).
    small_files: Vec<(&'static str, FakeFile)>,
    /// Interfaces' MTUs by name (the others' is unknown).
    mtus: Vec<(&'static str, u32)>,
    /// `None`: the possible CPUs cannot be read.
    cpus: Option<u32>,
}

/// A small file's mode and contents, or what it is instead of a regular
/// file ("a FIFO").
type FakeFile = Result<(u32, Vec<u8>), &'static str>;

impl FakeHost {
    /// eth0 with 10.4.0.9 and the VIP 10.4.0.10, Linux's default port
    /// range, cp2.example.internal in DNS, the kubeadm CA.
    fn lb() -> FakeHost {
        FakeHost {
            interfaces: vec![
                ("lo", vec![Ipv4Addr::LOCALHOST]),
                (
                    "eth0",
                    vec![Ipv4Addr::new(10, 4, 0, 9), Ipv4Addr::new(10, 4, 0, 10)],
                ),
                ("eth1", vec![Ipv4Addr::new(10, 4, 0, 8)]),
            ],
            port_range: Some(PortRange {
                first: 32768,
                last: 60999,
            }),
            names: vec![("cp2.example.internal", Ipv4Addr::new(10, 4, 0, 12))],
            files: vec!["/etc/kubernetes/pki/ca.crt"],
            small_files: Vec::new(),
            mtus: vec![("lo", 65536), ("eth0", 9000), ("eth1", 1500)],
            cpus: Some(4),
        }
    }
}

impl Host for FakeHost {
    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        Ok(self
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, (name, addrs))| Interface {
                name: name.to_string(),
                index: i as u32 + 1,
                ipv4: addrs.clone(),
                // None of the fake's addresses is a /32.
                host_routes: Vec::new(),
                mac: Some([2, 0, 0, 0, 0, i as u8]),
                mtu: self.mtus.iter().find(|(n, _)| n == name).map(|(_, m)| *m),
            })
            .collect())
    }

    fn possible_cpus(&self) -> io::Result<u32> {
        self.cpus
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn local_port_range(&self) -> Option<PortRange> {
        self.port_range
    }

    /// Every address listed for `name`, in order (a name listed twice
    /// has two A records).
    fn resolve(&self, name: &str) -> io::Result<Vec<Ipv4Addr>> {
        let all: Vec<Ipv4Addr> = self
            .names
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .collect();
        if all.is_empty() {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
        } else {
            Ok(all)
        }
    }

    /// The fake's files hold a CA; any other path is read from this
    /// machine (the tests of `ca_file` use real files).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        if self.files.iter().any(|f| Path::new(f) == path) {
            Ok(test_ca_pem().into_bytes())
        } else {
            crate::host::RealHost.read_file(path)
        }
    }

    fn read_small_file(
        &self,
        path: &Path,
        max_len: usize,
    ) -> Result<crate::host::SmallFile, crate::host::ReadFileError> {
        use crate::host::{ReadFileError, SmallFile};
        match self.small_files.iter().find(|(p, _)| Path::new(p) == path) {
            None => Err(ReadFileError::Open(io::ErrorKind::NotFound.into())),
            Some((_, Err(kind))) => Err(ReadFileError::NotRegular(kind)),
            Some((_, Ok((_, bytes)))) if bytes.len() > max_len => {
                Err(ReadFileError::TooLarge { max: max_len })
            }
            Some((_, Ok((mode, bytes)))) => Ok(SmallFile {
                mode: *mode,
                bytes: bytes.clone(),
            }),
        }
    }
}

/// A self-signed CA certificate, the same for the whole test run.
pub(crate) fn test_ca_pem() -> String {
    static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        rcgen::generate_simple_self_signed(vec!["kubernetes".to_owned()])
            .unwrap()
            .cert
            .pem()
    })
    .clone()
}

fn env(text: &str, host: &FakeHost) -> PlanReport {
    assess(&parse(text).unwrap(), host, None).1
}

fn plan(text: &str, host: &FakeHost) -> Plan {
    Plan::build(&parse(text).unwrap(), host).unwrap()
}

/// The kubeadm file's plan on a sound host (for other modules' tests).
pub(crate) fn sample_plan() -> Plan {
    plan(TWO_SERVICES, &FakeHost::lb())
}

#[track_caller]
fn assert_env(issue: &ConfigIssue, text: &str, needle: &str, key: &str, says: &str) {
    let shown = issue.to_string();
    let n = line(text, needle);
    assert_eq!(issue.line, Some(n), "{shown}");
    assert_eq!(issue.key, key, "{shown}");
    assert!(shown.starts_with(&format!("test.toml:{n}: ")), "{shown}");
    assert!(shown.contains(says), "{says:?} not in: {shown}");
}

#[test]
fn a_sound_host_passes_the_environment_checks() {
    let report = env(TWO_SERVICES, &FakeHost::lb());
    assert!(report.is_ok(), "{:?}", report);
    assert_eq!(report.warnings().count(), 0, "{report:?}");
    assert_eq!(report.into_result().unwrap(), []);
}

#[test]
fn missing_interface_is_an_environment_error_with_its_line() {
    let text = "[daemon]\ninterfaces = [\n  \"eth0\",\n  \"eth9\",\n]\n";
    let report = env(text, &FakeHost::lb());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        text,
        "eth9",
        "interfaces",
        "there is no interface \"eth9\"",
    );
    let err = report.into_result().unwrap_err();
    assert!(
        err.to_string().contains("test.toml:4: daemon: interfaces:"),
        "{err}"
    );
}

#[test]
fn snat_ports_overlapping_the_local_port_range_is_an_error_naming_both() {
    let text = format!("{DAEMON}snat_ports = \"30000-40000\"\n");
    let report = env(&text, &FakeHost::lb());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        &text,
        "snat_ports",
        "snat_ports",
        "snat_ports: 30000-40000 overlaps net.ipv4.ip_local_port_range 32768-60999",
    );
    assert!(
        errors[0].message.contains("\"10000-32767\""),
        "suggests a range: {}",
        errors[0]
    );
    assert!(errors[0].message.contains("or the sysctl"), "{}", errors[0]);

    // The default, against a host with a wider local range: the daemon
    // table's line.
    let host = FakeHost {
        port_range: Some(PortRange {
            first: 1024,
            last: 65535,
        }),
        ..FakeHost::lb()
    };
    let report = env(DAEMON, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        DAEMON,
        "[daemon]",
        "snat_ports",
        "10000-32767 overlaps",
    );
}

#[test]
fn default_snat_ports_clear_the_linux_default_local_range() {
    assert!(env(DAEMON, &FakeHost::lb()).is_ok());
}

#[test]
fn a_name_that_does_not_resolve_at_start_waits_for_dns_with_a_warning() {
    let text = service(
        "",
        &backend("name = \"cp3\"\naddress = \"cp3.example.internal\""),
    );
    let mut host = FakeHost::lb();
    let report = env(&text, &host);
    assert!(report.is_ok(), "{report:?}");
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 1, "{report:?}");
    assert_env(
        warnings[0],
        &text,
        "address",
        "address",
        "\"cp3.example.internal\" does not resolve (no such host): it gets no traffic and no \
         health check until it does",
    );
    assert_eq!(warnings[0].context, "service \"api\" backend \"cp3\"");
    // The daemon starts without it, and keeps asking DNS.
    let p = plan(&text, &host);
    assert!(p.backend("api", "cp3").is_none());
    assert!(p.checkers().is_empty());
    assert_eq!(p.hostnames(), ["cp3.example.internal"]);
    assert!(
        p.summary()
            .contains("cp3.example.internal:6443 (not resolved yet)"),
        "{}",
        p.summary()
    );
    // Once it resolves, it joins (DOWN until its checks pass).
    host.names
        .push(("cp3.example.internal", Ipv4Addr::new(10, 4, 0, 13)));
    let (next, failed) = p.reresolve(&host);
    assert!(failed.is_empty(), "{failed:?}");
    let b = next.backend("api", "cp3").expect("cp3 joined");
    assert_eq!(b.addr, Ipv4Addr::new(10, 4, 0, 13));
    assert_eq!(next.checkers().len(), 1);
    assert!(next.services[0].unresolved.is_empty());
}

#[test]
fn vip_that_is_not_local_is_a_warning_naming_the_service() {
    let text = service("", &backend("name = \"a\"\naddress = \"10.4.0.11\""))
        .replace("10.4.0.10", "10.4.0.50");
    let report = env(&text, &FakeHost::lb());
    assert!(report.is_ok(), "a warning only: {report:?}");
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 1, "{report:?}");
    let w = warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.line, Some(line(&text, "vip = ")));
    assert_eq!(w.context, "service \"api\"");
    assert!(
        w.to_string().starts_with(&format!(
            "test.toml:{}: warning: service \"api\": vip: 10.4.0.50 is not an address of this host",
            line(&text, "vip = ")
        )),
        "{w}"
    );
    assert!(
        w.message.contains("ip addr add 10.4.0.50/32 dev eth0"),
        "{w}"
    );
    assert_eq!(report.into_result().unwrap().len(), 1);
}

#[test]
fn vip_shared_by_services_is_warned_about_once() {
    let text = parse_two_on(Ipv4Addr::new(10, 4, 0, 50));
    let report = env(&text, &FakeHost::lb());
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 1, "{report:?}");
    assert_eq!(warnings[0].context, "service \"kube-apiserver\"");
    assert!(
        warnings[0]
            .message
            .contains("10.4.0.50 (also the VIP of \"nodeports\")"),
        "{}",
        warnings[0]
    );
}

fn parse_two_on(vip: Ipv4Addr) -> String {
    TWO_SERVICES.replace("10.4.0.10", &vip.to_string())
}

#[test]
fn snat_address_that_is_not_local_is_an_error() {
    let text = "[daemon]\ninterfaces = [\"eth0\"]\nsnat_addresses = [\"10.4.0.7\"]\n";
    let report = env(text, &FakeHost::lb());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        text,
        "snat_addresses",
        "snat_addresses",
        "10.4.0.7 is not an address of this host",
    );
}

#[test]
fn first_interface_without_ipv4_needs_snat_addresses() {
    let mut host = FakeHost::lb();
    host.interfaces.push(("eth2", vec![]));
    // Flows are translated to the first interface's address: eth2 first
    // has none to give.
    let text = "[daemon]\ninterfaces = [\n  \"eth2\",\n  \"eth0\",\n]\n";
    let report = env(text, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        text,
        "\"eth2\"",
        "interfaces",
        "\"eth2\" has no IPv4 address to translate flows to",
    );
    let with_snat =
        "[daemon]\ninterfaces = [\"eth2\", \"eth0\"]\nsnat_addresses = [\"10.4.0.9\"]\n";
    assert!(env(with_snat, &host).is_ok());
    // eth0 first: its address, whatever eth2 has.
    let p = plan("[daemon]\ninterfaces = [\"eth0\", \"eth2\"]\n", &host);
    assert_eq!(p.snat_addresses, [Ipv4Addr::new(10, 4, 0, 9)]);
    assert_eq!(p.snat_source, SnatSource::Interface("eth0".into()));
}

/// The defect this rule fixes: `check-config` accepted any interface with
/// any IPv4 address, `run` took the first non-VIP address of the first
/// interface and refused to start without one. Both build this plan now.
#[test]
fn first_interface_holding_only_vips_is_refused_as_run_would() {
    let mut host = FakeHost::lb();
    host.interfaces[1].1 = vec![Ipv4Addr::new(10, 4, 0, 10)];
    let text = service("", &backend("name = \"a\"\naddress = \"10.4.0.11\""));
    let report = env(&text, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert!(
        errors[0]
            .message
            .contains("\"eth0\" has no IPv4 address other than a VIP to translate flows to"),
        "{}",
        errors[0]
    );
    assert!(Plan::build(&parse(&text).unwrap(), &host).is_err());
}

#[test]
fn the_plan_holds_what_run_applies() {
    let p = plan(TWO_SERVICES, &FakeHost::lb());
    // Interfaces with the host's index and MAC.
    assert_eq!(p.interfaces.len(), 2);
    assert_eq!(
        (p.interfaces[0].name.as_str(), p.interfaces[0].index),
        ("eth0", 2)
    );
    assert_eq!(p.interfaces[0].mac, [2, 0, 0, 0, 0, 1]);
    // Configured SNAT addresses, in the settings the datapath gets.
    let s = p.settings();
    assert_eq!(s.snat_count, 2);
    assert_eq!(
        s.snat_addrs[0],
        u32::from(Ipv4Addr::new(10, 4, 0, 9)).to_be()
    );
    assert_eq!((s.snat_port_min, s.snat_port_max), (10000, 32767));
    assert_eq!(s.tcp_closing_ns, 10_000_000_000);
    // Hostnames resolved once, here; checks aimed at the check port.
    let api = &p.services[0];
    let cp2 = api.backends.iter().find(|b| b.name == "chenoweth").unwrap();
    assert_eq!(cp2.addr, Ipv4Addr::new(10, 4, 0, 12));
    assert_eq!(cp2.check_addr.ip(), std::net::IpAddr::V4(cp2.addr));
    let desired = p.desired_services();
    assert_eq!(desired.len(), 2);
    assert!(desired[0].backends.iter().any(|b| b.addr == cp2.addr));
    assert_eq!(
        p.checkers().len(),
        desired.iter().map(|d| d.backends.len()).sum::<usize>()
    );
}

#[test]
fn reresolving_moves_a_hostname_and_keeps_the_last_address_on_failure() {
    let mut host = FakeHost::lb();
    let p = plan(TWO_SERVICES, &host);
    host.names = vec![("cp2.example.internal", Ipv4Addr::new(10, 4, 0, 99))];
    let (moved, failed) = p.reresolve(&host);
    assert!(failed.is_empty(), "{failed:?}");
    assert_ne!(moved, p);
    let addr = |p: &Plan| {
        p.services[0]
            .backends
            .iter()
            .find(|b| b.name == "chenoweth")
            .unwrap()
            .check_addr
    };
    assert_eq!(
        addr(&moved).ip(),
        std::net::IpAddr::V4(Ipv4Addr::new(10, 4, 0, 99))
    );
    host.names.clear();
    let (kept, failed) = moved.reresolve(&host);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(kept, moved);
}

#[test]
fn unreadable_ca_file_is_an_error() {
    let text = check("kind = \"https\"\nca_file = \"/etc/missing/ca.crt\"");
    let report = env(&text, &FakeHost::lb());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        &text,
        "ca_file",
        "ca_file",
        "cannot read /etc/missing/ca.crt",
    );
}

#[test]
fn services_that_cannot_take_flows_are_warnings() {
    let text = format!(
        "{}\n[[service]]\nname = \"drained\"\nvip = \"10.4.0.10\"\nport = 443\n{}",
        service("", ""),
        backend("name = \"a\"\naddress = \"10.4.0.11\"\nweight = 0")
    );
    let report = env(&text, &FakeHost::lb());
    assert!(report.is_ok());
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 2, "{report:?}");
    assert!(
        warnings[0].message.contains("has no backend"),
        "{}",
        warnings[0]
    );
    assert_eq!(warnings[0].line, Some(line(&text, "[[service]]")));
    assert!(warnings[1].message.contains("weight 0"), "{}", warnings[1]);
}

#[test]
fn environment_errors_and_warnings_come_out_in_file_order() {
    let text = format!(
        "[daemon]\ninterfaces = [\"eth9\"]\nsnat_ports = \"30000-40000\"\n\n[[service]]\nname = \"api\"\n\
         vip = \"10.4.0.50\"\nport = 6443\n{}",
        backend("name = \"x\"\naddress = \"nowhere.invalid\"")
    );
    let report = env(&text, &FakeHost::lb());
    let lines: Vec<_> = report.issues.iter().map(|i| i.line.unwrap()).collect();
    assert_eq!(lines, [2, 3, 7, 11], "{report:?}");
    // The name that does not resolve is a warning: the daemon would
    // start without that backend.
    assert_eq!(report.errors().count(), 2);
    assert_eq!(report.warnings().count(), 2);
}

mod ca_file;
mod dns;
mod exposure;
mod pair;
mod summary;
mod syn_flood;

#[test]
fn a_backend_that_is_the_load_balancer_itself_is_refused() {
    let mut host = FakeHost::lb();
    host.names
        .push(("self.example.internal", Ipv4Addr::new(10, 4, 0, 9)));
    host.names
        .push(("loop.example.internal", Ipv4Addr::new(127, 0, 1, 1)));
    for (address, says) in [
        ("10.4.0.10", "10.4.0.10 is the VIP of service \"api\""),
        ("10.4.0.8", "10.4.0.8 is an address of this host"),
        (
            "self.example.internal",
            "\"self.example.internal\" resolves to 10.4.0.9, which is an address of this host",
        ),
        (
            "loop.example.internal",
            "resolves to 127.0.1.1, which cannot be a backend address",
        ),
    ] {
        let text = service(
            "",
            &backend(&format!("name = \"a\"\naddress = \"{address}\"")),
        );
        let report = env(&text, &host);
        let errors: Vec<_> = report.errors().collect();
        assert_eq!(errors.len(), 1, "{address}: {report:?}");
        assert_env(errors[0], &text, "address = ", "address", says);
    }
}
