//! Building a plan: the file checked against the host (interfaces, local
//! addresses, the kernel's local port range, DNS, files) and the facts it
//! needs read once. Every problem is collected, located in the file.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::addresses::{Unusable, address_problem, pick_address};
use super::daemon_checks;
use super::{Plan, PlannedBackend, PlannedInterface, PlannedService, SnatSource};
use crate::config::{BackendAddress, CheckKind, Config, ConfigError, ConfigIssue, Severity};
use crate::health::{self, CheckSpec, TlsSettings};
use crate::host::{Host, Interface};

/// What building a plan found: errors (the daemon must not start) and
/// warnings (worth telling the operator), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanReport {
    pub issues: Vec<ConfigIssue>,
}

impl PlanReport {
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
    /// [`ConfigError::Invalid`] holding the errors.
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

pub(super) struct Report<'a> {
    pub(super) config: &'a Config,
    pub(super) report: PlanReport,
}

impl Report<'_> {
    pub(super) fn push(
        &mut self,
        severity: Severity,
        line: usize,
        context: &str,
        key: &str,
        message: String,
    ) {
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

/// The first interface's name, for the `ip addr add … dev IF` hints.
fn first_interface(config: &Config) -> &str {
    config
        .daemon
        .interfaces
        .first()
        .map_or("eth0", String::as_str)
}

/// Checks `config` against `host` and, when nothing is wrong, builds the
/// plan (without its warnings: they are in the report). With `previous`
/// (a reload), a hostname backend keeps the address it has there while
/// DNS still gives it.
pub(super) fn assess(
    config: &Config,
    host: &dyn Host,
    previous: Option<&Plan>,
) -> (Option<Plan>, PlanReport) {
    let mut r = Report {
        config,
        report: PlanReport::default(),
    };
    let daemon = &config.daemon;
    let dlines = &daemon.lines;

    let host_interfaces = match host.interfaces() {
        Ok(all) => all,
        Err(e) => {
            r.push(
                Severity::Error,
                dlines.table,
                "daemon",
                "interfaces",
                format!("cannot list the host's interfaces: {e}"),
            );
            Vec::new()
        }
    };
    let find = |name: &str| host_interfaces.iter().find(|i| i.name == name);
    let mut interfaces = Vec::new();
    for (i, name) in daemon.interfaces.iter().enumerate() {
        match find(name) {
            Some(iface) => interfaces.push(PlannedInterface {
                name: name.clone(),
                index: iface.index,
                mac: iface.mac.unwrap_or([0; 6]),
                mtu: iface.mtu,
            }),
            None if host_interfaces.is_empty() => {}
            None => r.push(
                Severity::Error,
                dlines.of(&format!("interfaces[{i}]")),
                "daemon",
                "interfaces",
                format!("there is no interface {name:?} on this host (`ip -br link` lists them)"),
            ),
        }
    }
    let local: Vec<Ipv4Addr> = host_interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter().copied())
        .collect();
    let is_local = |addr: Ipv4Addr| local.contains(&addr);
    let mut ha = None;
    let snat = match &config.ha {
        // In a pair the VIPs and the SNAT address float: the master holds
        // them, so neither need be local now.
        Some(ha_config) => {
            ha = super::ha::plan(
                config,
                ha_config,
                host,
                &host_interfaces,
                &mut r.report.issues,
            );
            Some((vec![ha_config.snat_address], SnatSource::Floating))
        }
        None => {
            let snat = snat_addresses(&mut r, config, &host_interfaces, &is_local);
            warn_non_local_vips(&mut r, config, &is_local);
            snat
        }
    };
    daemon_checks::check_local_port_range(&mut r, config, host);
    let cpus = daemon_checks::possible_cpus(&mut r, host);
    daemon_checks::warn_half_open_limit(&mut r, config);
    if host.file_writable_by_others(&config.path) {
        r.push(
            Severity::Error,
            0,
            "",
            "",
            format!(
                "can be written by others than root: whoever can edit it decides where the load \
                 balancer sends traffic and which files the daemon reads as root; make it root's \
                 and writable by root only (chown root:root {path} && chmod 0644 {path})",
                path = config.path.display()
            ),
        );
    }
    daemon_checks::warn_open_listeners(&mut r, config);
    if host.writable_by_others(&daemon.run_dir) {
        r.push(
            Severity::Error,
            dlines.of("run_dir"),
            "daemon",
            "run_dir",
            format!(
                "{} can be written by others than root: whoever can write there can replace the \
                 pid file and aim `kube-xdp reload` at another process; use a directory of its \
                 own, e.g. /run/kube-xdp",
                daemon.run_dir.display()
            ),
        );
    }

    let mut services = Vec::new();
    for service in &config.services {
        let ctx = format!("service {:?}", service.name);
        let check = &service.health_check;
        // Read and judged now, so `check-config` says what `run` would
        // meet, and so a reload with a rotated CA is a changed check.
        let ca_file = match &check.ca_file {
            Some(file) if check.kind == CheckKind::Https && check.tls_verify => {
                let ca = host
                    .read_file(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))
                    .and_then(|pem| {
                        health::CaFile::parse(file, &pem).map_err(|e| {
                            format!("{e}: name a PEM file of the CA that signed the backends' certificates")
                        })
                    });
                match ca {
                    Ok(ca) => Some(ca),
                    Err(message) => {
                        r.push(
                            Severity::Error,
                            check.lines.of("ca_file"),
                            &format!("{ctx} health_check"),
                            "ca_file",
                            message,
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let spec = Arc::new(check_spec(service, ca_file));
        let mut backends = Vec::new();
        let mut unresolved = Vec::new();
        for backend in &service.backends {
            // What a name resolves to meets the rules of a written
            // address, and never points the load balancer at itself; a
            // reload keeps the address in force while DNS still gives it.
            let addr = match &backend.address {
                BackendAddress::Ip(ip) => match address_problem(config, &local, *ip) {
                    None => Ok(*ip),
                    Some(why) => Err(format!("{ip} {why}")),
                },
                BackendAddress::Hostname(name) => {
                    let current = previous
                        .and_then(|p| p.backend(&service.name, &backend.name))
                        .filter(|b| b.address == backend.address)
                        .map(|b| b.addr);
                    let picked = pick_address(config, &local, name, &host.resolve(name), current);
                    match (picked, current) {
                        (Ok(addr), _) => Ok(addr),
                        // A reload while DNS fails (or answers only what a
                        // backend may not be) keeps the address in force,
                        // as the periodic lookups do.
                        (Err(why), Some(current)) => {
                            r.push(
                                Severity::Warning,
                                backend.lines.of("address"),
                                &format!("{ctx} backend {:?}", backend.name),
                                "address",
                                format!("{}; keeping its address {current}", why.message()),
                            );
                            Ok(current)
                        }
                        // No answer at all: start without it (HAProxy's
                        // `init-addr none`) rather than not at all; the
                        // periodic lookups add it when DNS answers.
                        (Err(Unusable::NoAnswer(why)), None) => {
                            r.push(
                                Severity::Warning,
                                backend.lines.of("address"),
                                &format!("{ctx} backend {:?}", backend.name),
                                "address",
                                format!(
                                    "{why}: it gets no traffic and no health check until it does \
                                     (looked up every 30 s and at each reload); fix the name or \
                                     DNS, or write the IPv4 address"
                                ),
                            );
                            unresolved.push(backend.name.clone());
                            continue;
                        }
                        (Err(Unusable::Forbidden(why)), None) => Err(why),
                    }
                }
            };
            let addr = match addr {
                Ok(addr) => Some(addr),
                Err(message) => {
                    r.push(
                        Severity::Error,
                        backend.lines.of("address"),
                        &format!("{ctx} backend {:?}", backend.name),
                        "address",
                        message,
                    );
                    None
                }
            };
            if let Some(addr) = addr {
                backends.push(PlannedBackend::new(service, backend, addr));
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
                "every backend has weight 0 (drain): new connections are refused with a RST".into(),
            );
        }
        services.push(PlannedService {
            config: service.clone(),
            check: spec,
            backends,
            unresolved,
            origin: None,
        });
    }
    // The cluster never keeps the file's services from running: a
    // kubeconfig that cannot be read is a warning (the controller keeps
    // trying), not an error.
    if let Some(path) = config
        .kubernetes
        .as_ref()
        .and_then(|k| k.kubeconfig.as_ref())
        && let Err(e) = host.read_file(path)
    {
        r.push(
            Severity::Warning,
            config.kubernetes.as_ref().map_or(0, |k| k.lines.of("kubeconfig")),
            "kubernetes",
            "kubeconfig",
            format!(
                "{}: {e}: the cluster's Services of type LoadBalancer are not served until it can be read \
                 (the file's services are)",
                path.display()
            ),
        );
    }
    r.report.issues.sort_by_key(|issue| issue.line);
    let plan = match (r.report.is_ok(), snat) {
        (true, Some((snat_addresses, snat_source))) => Some(Plan {
            config: Arc::new(config.clone()),
            interfaces,
            snat_addresses,
            snat_source,
            services,
            cluster: Vec::new(),
            ha,
            warnings: Vec::new(),
            cpus,
        }),
        _ => None,
    };
    (plan, r.report)
}

/// The SNAT addresses: the configured ones (each must be local), else the
/// first IPv4 address of the first interface that is not a VIP — a VIP
/// moves with keepalived and is never a source address of ours.
fn snat_addresses(
    r: &mut Report<'_>,
    config: &Config,
    host_interfaces: &[Interface],
    is_local: &dyn Fn(Ipv4Addr) -> bool,
) -> Option<(Vec<Ipv4Addr>, SnatSource)> {
    let daemon = &config.daemon;
    if host_interfaces.is_empty() {
        return None;
    }
    if !daemon.snat_addresses.is_empty() {
        let mut ok = true;
        for (i, addr) in daemon.snat_addresses.iter().enumerate() {
            if !is_local(*addr) {
                ok = false;
                r.push(
                    Severity::Error,
                    daemon.lines.of(&format!("snat_addresses[{i}]")),
                    "daemon",
                    "snat_addresses",
                    format!(
                        "{addr} is not an address of this host, so backends' replies to it would not \
                         come back here: add it (ip addr add {addr}/32 dev {}) or remove it",
                        first_interface(config)
                    ),
                );
            }
        }
        return ok.then(|| (daemon.snat_addresses.clone(), SnatSource::Configured));
    }
    let name = daemon.interfaces.first()?;
    let iface = host_interfaces.iter().find(|i| &i.name == name)?;
    let vips: Vec<Ipv4Addr> = config.services.iter().map(|s| s.vip).collect();
    match iface.ipv4.iter().find(|a| !vips.contains(a)) {
        Some(addr) => Some((vec![*addr], SnatSource::Interface(name.clone()))),
        None => {
            let held = if iface.ipv4.is_empty() {
                "has no IPv4 address"
            } else {
                "has no IPv4 address other than a VIP"
            };
            r.push(
                Severity::Error,
                daemon.lines.of("interfaces[0]"),
                "daemon",
                "interfaces",
                format!(
                    "{name:?} {held} to translate flows to (snat_addresses is not set, so flows \
                     are translated to the first address of the first interface): give it one, or \
                     set snat_addresses"
                ),
            );
            None
        }
    }
}

/// One warning per VIP that is not an address of the host, at its first
/// service.
fn warn_non_local_vips(r: &mut Report<'_>, config: &Config, is_local: &dyn Fn(Ipv4Addr) -> bool) {
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
                first_interface(config),
                vip = service.vip,
            ),
        );
    }
}

/// A service's health check as the checkers run it, with the CAs read
/// from its `ca_file`.
pub(crate) fn check_spec(
    service: &crate::config::Service,
    ca_file: Option<health::CaFile>,
) -> CheckSpec {
    let hc = &service.health_check;
    CheckSpec {
        kind: match hc.kind {
            CheckKind::Tcp => health::CheckKind::Tcp,
            CheckKind::Http => health::CheckKind::Http,
            CheckKind::Https => health::CheckKind::Https,
        },
        path: hc.path.clone(),
        expect_status: hc.expect_status,
        tls: TlsSettings {
            verify: hc.tls_verify,
            ca_file,
            server_name: hc.server_name.clone(),
        },
        interval: hc.interval,
        timeout: hc.timeout,
        fall: hc.fall,
        rise: hc.rise,
    }
}
