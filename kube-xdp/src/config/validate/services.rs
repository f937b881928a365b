//! Each `[[service]]`, then the checks across services: unique names, one
//! service per (vip, port, protocol), the datapath's capacities, and SNAT
//! addresses that are no VIP.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use kube_xdp_common::maps::{MAX_BACKENDS, MAX_MAGLEV_TABLE, MAX_SERVICE_PORTS, MAX_SERVICES};
use toml::Spanned;

use super::fields::usable_unicast;
use super::{At, Validator};
use crate::config::raw::RawService;
use crate::config::schema::{DEFAULT_MAGLEV_TABLE_SIZE, DaemonConfig, Lines, Service, ServicePort};
use crate::config::{ForwardingMode, PortRange};

/// What the checks across services need of each one: only the parts that
/// parsed.
pub(super) struct ServiceFacts {
    vip: Option<Ipv4Addr>,
    port: Option<ServicePort>,
    /// `port` or `ports`.
    port_key: &'static str,
    name_ok: bool,
}

impl Validator<'_> {
    pub(super) fn service(
        &mut self,
        index: usize,
        raw: Spanned<RawService>,
    ) -> (Service, ServiceFacts) {
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let mut at = At {
            context: format!("service #{}", index + 1),
            lines: &mut lines,
        };
        let name = self.name(&mut at, raw.name, "service", "kube-apiserver");
        if let Some(name) = &name {
            at.context = format!("service {name:?}");
        }
        let ctx = at.context.clone();
        let table = at.lines.table;

        let vip = match self.take(&mut at, "vip", raw.vip) {
            None => {
                self.error(Some(table), &ctx, "vip", "is required: the virtual IPv4 address clients connect to, e.g. vip = \"10.4.0.10\"");
                None
            }
            Some((text, line)) => match text.parse::<Ipv4Addr>() {
                Ok(vip) if usable_unicast(vip) => Some(vip),
                Ok(vip) => {
                    self.error(Some(line), &ctx, "vip", format!("{vip} cannot be a VIP: use a unicast address on the interface's segment"));
                    None
                }
                Err(_) if text == crate::config::IMPORT_VIP_PLACEHOLDER => {
                    self.error(
                        Some(line),
                        &ctx,
                        "vip",
                        "is still the placeholder that `kube-xdp import-haproxy` wrote: haproxy.cfg \
                         bound every address (`bind *:PORT`), so the VIP is not known; write the \
                         IPv4 address clients connect to, e.g. vip = \"10.4.0.10\" (or import again \
                         with --vip)",
                    );
                    None
                }
                Err(_) => {
                    self.error(
                        Some(line),
                        &ctx,
                        "vip",
                        format!("{text:?} is not an IPv4 address"),
                    );
                    None
                }
            },
        };

        let single = self.int::<u16>(&mut at, "port", raw.port, (1, 65535), "");
        let ports_line = raw.ports.as_ref().map(|p| self.line(p.span()));
        let had_port = at.lines.get("port").is_some();
        let (port, port_key) = match (had_port, self.take(&mut at, "ports", raw.ports)) {
            (true, Some(_)) => {
                self.error(
                    ports_line,
                    &ctx,
                    "ports",
                    "set either port (one port) or ports (a range), not both",
                );
                (None, "ports")
            }
            (false, None) => {
                self.error(
                    Some(table),
                    &ctx,
                    "port",
                    "is required: set port = 6443, or ports = \"30000-32767\" for a range",
                );
                (None, "port")
            }
            (true, None) => (single.map(ServicePort::Single), "port"),
            (false, Some((text, line))) => match text.parse::<PortRange>() {
                Ok(range) => (Some(ServicePort::Range(range)), "ports"),
                Err(e) => {
                    self.error(Some(line), &ctx, "ports", e.to_string());
                    (None, "ports")
                }
            },
        };

        let protocol = self.keyword(&mut at, "protocol", raw.protocol, Default::default());
        let mode = match raw.mode.as_ref().map(|m| m.get_ref().as_str()) {
            Some("dsr") => {
                let (_, line) = self.take(&mut at, "mode", raw.mode).expect("mode is set");
                self.error(
                    Some(line),
                    &ctx,
                    "mode",
                    "\"dsr\" is not supported yet: only \"nat\" is implemented; remove mode or set mode = \"nat\"",
                );
                ForwardingMode::Nat
            }
            _ => self.keyword(&mut at, "mode", raw.mode, ForwardingMode::Nat),
        };
        let on_backend_down = self.keyword(
            &mut at,
            "on_backend_down",
            raw.on_backend_down,
            Default::default(),
        );
        let drain_timeout = self.duration(
            &mut at,
            "drain_timeout",
            raw.drain_timeout,
            Duration::from_secs(3600),
            true,
        );
        let health_check = self.health_check(&ctx, table, raw.health_check, port);
        let backends = self.backends(&ctx, raw.backends, port);

        let maglev_table_size = match self.take(&mut at, "maglev_table_size", raw.maglev_table_size)
        {
            None => DEFAULT_MAGLEV_TABLE_SIZE,
            Some((size, line)) => {
                let max = i64::from(MAX_MAGLEV_TABLE);
                let problem = if size > max {
                    Some(format!("must be at most {max} (got {size})"))
                } else if size < 2 || !crate::maglev::is_prime(size as u32) {
                    let hint = match prime_at_most(size.clamp(2, max) as u32) {
                        Some(p) if size > 2 => format!("; {p} is the nearest prime below"),
                        _ => String::new(),
                    };
                    Some(format!(
                        "must be a prime number (got {size}){hint}; the default is {DEFAULT_MAGLEV_TABLE_SIZE}"
                    ))
                } else if (size as usize) < backends.len() {
                    Some(format!(
                        "must be at least the number of backends, {} (got {size}); the default {DEFAULT_MAGLEV_TABLE_SIZE} fits any pool",
                        backends.len()
                    ))
                } else {
                    None
                };
                match problem {
                    Some(problem) => {
                        self.error(Some(line), &ctx, "maglev_table_size", problem);
                        DEFAULT_MAGLEV_TABLE_SIZE
                    }
                    None => size as u32,
                }
            }
        };

        let service = Service {
            name: name.clone().unwrap_or_default(),
            vip: vip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: port.unwrap_or(ServicePort::Single(0)),
            protocol,
            mode,
            maglev_table_size,
            on_backend_down,
            drain_timeout,
            health_check,
            backends,
            lines,
        };
        let facts = ServiceFacts {
            vip,
            port,
            port_key,
            name_ok: name.is_some(),
        };
        (service, facts)
    }

    /// Unique names; no two services on one (vip, port, protocol); the
    /// datapath's capacities.
    pub(super) fn across_services(&mut self, services: &[Service], facts: &[ServiceFacts]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut total_ports: u32 = 0;
        let mut total_backends: usize = 0;
        for (j, (service, fact)) in services.iter().zip(facts).enumerate() {
            let ctx = format!("service {:?}", service.name);
            if fact.name_ok {
                if let Some(line) = names.get(service.name.as_str()) {
                    self.error(
                        service.lines.get("name"),
                        &ctx,
                        "name",
                        format!("{:?} is already the name of the service at line {line}: service names must be unique", service.name),
                    );
                } else {
                    names.insert(&service.name, service.lines.table);
                }
            }
            if j == MAX_SERVICES as usize {
                self.error(
                    Some(service.lines.table),
                    &ctx,
                    "",
                    format!("too many services: the datapath holds at most {MAX_SERVICES}"),
                );
            }
            if let Some(port) = fact.port {
                let before = total_ports;
                total_ports += port.range().len();
                if before <= MAX_SERVICE_PORTS && total_ports > MAX_SERVICE_PORTS {
                    self.error(
                        service.lines.get(fact.port_key),
                        &ctx,
                        fact.port_key,
                        format!(
                            "too many ports: with this service the file has {total_ports} (vip, port) entries; \
                             the datapath holds at most {MAX_SERVICE_PORTS}"
                        ),
                    );
                }
            }
            let before = total_backends;
            total_backends += service.backends.len();
            if before <= MAX_BACKENDS as usize && total_backends > MAX_BACKENDS as usize {
                self.error(
                    Some(service.lines.table),
                    &ctx,
                    "backend",
                    format!("too many backends: the datapath holds at most {MAX_BACKENDS} over all services"),
                );
            }
            let (Some(vip), Some(port)) = (fact.vip, fact.port) else {
                continue;
            };
            for (other, other_fact) in services[..j].iter().zip(&facts[..j]) {
                let (Some(other_vip), Some(other_port)) = (other_fact.vip, other_fact.port) else {
                    continue;
                };
                if other_vip != vip
                    || other.protocol != service.protocol
                    || !other_port.range().overlaps(&port.range())
                {
                    continue;
                }
                let what = if port == other_port {
                    format!(
                        "{vip}:{port}/{} is already service {:?}",
                        service.protocol, other.name
                    )
                } else {
                    format!(
                        "{vip}:{port}/{} overlaps {vip}:{other_port}/{} of service {:?}",
                        service.protocol, other.protocol, other.name
                    )
                };
                self.error(
                    service
                        .lines
                        .get(fact.port_key)
                        .or(Some(service.lines.table)),
                    &ctx,
                    fact.port_key,
                    format!(
                        "{what} (line {}): a (vip, port, protocol) belongs to one service only",
                        other.lines.table
                    ),
                );
            }
        }
    }

    /// SNAT must use the load balancer's own address, never a VIP.
    pub(super) fn snat_against_vips(
        &mut self,
        daemon: &DaemonConfig,
        services: &[Service],
        facts: &[ServiceFacts],
    ) {
        for (i, addr) in daemon.snat_addresses.iter().enumerate() {
            let owner = services
                .iter()
                .zip(facts)
                .find(|(_, fact)| fact.vip == Some(*addr));
            if let Some((service, _)) = owner {
                self.error(
                    Some(daemon.lines.of(&format!("snat_addresses[{i}]"))),
                    "daemon",
                    "snat_addresses",
                    format!(
                        "{addr} is the VIP of service {:?} (line {}): SNAT must use an address of the \
                         load balancer itself, never a VIP",
                        service.name, service.lines.table
                    ),
                );
            }
        }
    }
}

/// The largest prime ≤ n.
fn prime_at_most(n: u32) -> Option<u32> {
    (2..=n).rev().find(|p| crate::maglev::is_prime(*p))
}
