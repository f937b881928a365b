//! Checks that need the host: interfaces, local addresses, the kernel's
//! local port range, DNS, files. Run by `check-config` and `run` after the
//! file itself is valid.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::Path;

use super::schema::{BackendAddress, CheckKind, Config, PortRange};
use super::{ConfigError, ConfigIssue, Severity};

/// What [`Config::check_environment`] found: errors (the daemon must not
/// start) and warnings (worth telling the operator), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentReport {
    pub issues: Vec<ConfigIssue>,
}

impl EnvironmentReport {
    /// The issues the daemon must not start with.
    pub fn errors(&self) -> impl Iterator<Item = &ConfigIssue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// The issues to tell the operator about.
    pub fn warnings(&self) -> impl Iterator<Item = &ConfigIssue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
    }

    /// No errors (there may be warnings).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The warnings when there is no error.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] holding the errors (warnings are dropped:
    /// log them first if they matter).
    pub fn into_result(self) -> Result<Vec<ConfigIssue>, ConfigError> {
        let (errors, warnings): (Vec<_>, Vec<_>) =
            self.issues.into_iter().partition(ConfigIssue::is_error);
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigError::Invalid { issues: errors })
        }
    }
}

/// What the checks ask of the host (a fake one in tests).
pub(super) trait Host {
    fn interface_exists(&self, name: &str) -> bool;
    /// (interface, address) for every IPv4 address of the host, in the
    /// kernel's order.
    fn ipv4_addresses(&self) -> io::Result<Vec<(String, Ipv4Addr)>>;
    /// `net.ipv4.ip_local_port_range`, if readable.
    fn local_port_range(&self) -> Option<PortRange>;
    fn resolve(&self, name: &str) -> io::Result<Vec<Ipv4Addr>>;
    fn readable(&self, path: &Path) -> io::Result<()>;
}

pub(super) struct RealHost;

impl Host for RealHost {
    fn interface_exists(&self, name: &str) -> bool {
        let Ok(name) = CString::new(name) else {
            return false;
        };
        // SAFETY: `name` is a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    }

    fn ipv4_addresses(&self) -> io::Result<Vec<(String, Ipv4Addr)>> {
        local_ipv4_addresses()
    }

    fn local_port_range(&self) -> Option<PortRange> {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        parse_local_port_range(&text)
    }

    fn resolve(&self, name: &str) -> io::Result<Vec<Ipv4Addr>> {
        resolve_ipv4(name)
    }

    fn readable(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path).map(drop)
    }
}

/// "32768\t60999\n" → 32768-60999.
pub(super) fn parse_local_port_range(text: &str) -> Option<PortRange> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let first = numbers.next()?.ok()?;
    let last = numbers.next()?.ok()?;
    PortRange::new(first, last).ok()
}

/// The IPv4 addresses `name` resolves to with the system resolver.
pub(super) fn resolve_ipv4(name: &str) -> io::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for addr in (name, 0).to_socket_addrs()? {
        if let std::net::IpAddr::V4(ip) = addr.ip()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no IPv4 address (IPv6 backends are not supported yet)",
        ));
    }
    Ok(out)
}

/// Every IPv4 address of this host (this network namespace) with its
/// interface, in the kernel's order (an interface's primary address
/// first), from `getifaddrs(3)`.
///
/// # Errors
///
/// When `getifaddrs` fails.
pub fn local_ipv4_addresses() -> io::Result<Vec<(String, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head that we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not
        // freed yet; its pointers are NULL or valid for the list's life.
        let ifa = unsafe { &*cursor };
        if !ifa.ifa_addr.is_null()
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            // SAFETY: ifa_name is a NUL-terminated string.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            out.push((name.to_string_lossy().into_owned(), addr));
        }
        cursor = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

struct Report<'a> {
    config: &'a Config,
    report: EnvironmentReport,
}

impl Report<'_> {
    fn push(&mut self, severity: Severity, line: usize, context: &str, key: &str, message: String) {
        let issue = ConfigIssue {
            severity,
            path: self.config.path.clone(),
            line: (line > 0).then_some(line),
            context: context.to_owned(),
            key: key.to_owned(),
            message,
        };
        self.report.issues.push(issue);
    }
}

pub(super) fn check(config: &Config, host: &dyn Host) -> EnvironmentReport {
    let mut r = Report {
        config,
        report: EnvironmentReport::default(),
    };
    let daemon = &config.daemon;
    let dlines = &daemon.lines;

    let mut present = Vec::new();
    for (i, name) in daemon.interfaces.iter().enumerate() {
        if host.interface_exists(name) {
            present.push(name);
        } else {
            r.push(
                Severity::Error,
                dlines.of(&format!("interfaces[{i}]")),
                "daemon",
                "interfaces",
                format!("there is no interface {name:?} on this host (`ip -br link` lists them)"),
            );
        }
    }

    match host.ipv4_addresses() {
        Err(e) => r.push(
            Severity::Warning,
            dlines.table,
            "daemon",
            "",
            format!("cannot list the host's addresses ({e}): VIPs and SNAT addresses not checked"),
        ),
        Ok(local) => {
            let is_local = |addr: Ipv4Addr| local.iter().any(|(_, a)| *a == addr);
            for (i, addr) in daemon.snat_addresses.iter().enumerate() {
                if !is_local(*addr) {
                    r.push(
                        Severity::Error,
                        dlines.of(&format!("snat_addresses[{i}]")),
                        "daemon",
                        "snat_addresses",
                        format!(
                            "{addr} is not an address of this host, so backends' replies to it would not \
                             come back here: add it (ip addr add {addr}/32 dev {}) or remove it",
                            daemon.interfaces.first().map_or("eth0", String::as_str)
                        ),
                    );
                }
            }
            if daemon.snat_addresses.is_empty() {
                for (i, name) in daemon.interfaces.iter().enumerate() {
                    if present.contains(&name) && !local.iter().any(|(n, _)| n == name) {
                        r.push(
                            Severity::Error,
                            dlines.of(&format!("interfaces[{i}]")),
                            "daemon",
                            "interfaces",
                            format!(
                                "{name:?} has no IPv4 address to translate flows to (snat_addresses is \
                                 not set): give it one, or set snat_addresses"
                            ),
                        );
                    }
                }
            }
            // One warning per VIP, at its first service.
            let mut warned: Vec<Ipv4Addr> = Vec::new();
            for service in &config.services {
                if is_local(service.vip) || warned.contains(&service.vip) {
                    continue;
                }
                warned.push(service.vip);
                let others: Vec<String> = config
                    .services
                    .iter()
                    .filter(|s| s.vip == service.vip && s.name != service.name)
                    .map(|s| format!("{:?}", s.name))
                    .collect();
                let also = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also the VIP of {})", others.join(", "))
                };
                r.push(
                    Severity::Warning,
                    service.lines.of("vip"),
                    &format!("service {:?}", service.name),
                    "vip",
                    format!(
                        "{vip}{also} is not an address of this host, so nothing here answers ARP for it: \
                         assign it (ip addr add {vip}/32 dev {}), or let keepalived do so",
                        daemon.interfaces.first().map_or("eth0", String::as_str),
                        vip = service.vip,
                    ),
                );
            }
        }
    }

    if let Some(local) = host.local_port_range()
        && local.overlaps(&daemon.snat_ports)
    {
        let snat = daemon.snat_ports;
        // The larger free side, from 10000 (as the default) where it fits.
        let below = u32::from(local.first).saturating_sub(1024);
        let above = u32::from(u16::MAX - local.last);
        let suggestion = if below > 0 && below >= above {
            let start = if local.first > 11000 { 10000 } else { 1024 };
            format!("\"{start}-{}\"", local.first - 1)
        } else if above > 0 {
            format!("\"{}-65535\"", local.last + 1)
        } else {
            "a range outside it".to_owned()
        };
        r.push(
            Severity::Error,
            dlines.of("snat_ports"),
            "daemon",
            "snat_ports",
            format!(
                "{}-{} overlaps net.ipv4.ip_local_port_range {}-{}: the host's own connections (the \
                 health checks among them) would collide with translated flows; change snat_ports \
                 (e.g. {suggestion}) or the sysctl",
                snat.first, snat.last, local.first, local.last
            ),
        );
    }

    for service in &config.services {
        let ctx = format!("service {:?}", service.name);
        let check = &service.health_check;
        if check.kind == CheckKind::Https
            && let Some(file) = &check.ca_file
            && let Err(e) = host.readable(file)
        {
            r.push(
                Severity::Error,
                check.lines.of("ca_file"),
                &format!("{ctx} health_check"),
                "ca_file",
                format!("cannot read {}: {e}", file.display()),
            );
        }
        for backend in &service.backends {
            if let BackendAddress::Hostname(name) = &backend.address
                && let Err(e) = host.resolve(name)
            {
                r.push(
                    Severity::Error,
                    backend.lines.of("address"),
                    &format!("{ctx} backend {:?}", backend.name),
                    "address",
                    format!("{name:?} does not resolve ({e}): fix the name or DNS, or write the IPv4 address"),
                );
            }
        }
        if service.backends.is_empty() {
            r.push(
                Severity::Warning,
                service.lines.table,
                &ctx,
                "",
                "has no backend: every connection to it is refused with a RST".into(),
            );
        } else if service.backends.iter().all(|b| b.weight == 0) {
            r.push(
                Severity::Warning,
                service.lines.table,
                &ctx,
                "",
                "every backend has weight 0 (draining): new connections are refused with a RST"
                    .into(),
            );
        }
    }
    r.report.issues.sort_by_key(|issue| issue.line);
    r.report
}
