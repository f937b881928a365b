//! A service's `[[service.backend]]` tables.

use std::net::Ipv4Addr;

use toml::Spanned;

use super::fields::usable_unicast;
use super::{At, Validator};
use crate::config::BackendAddress;
use crate::config::raw::RawBackend;
use crate::config::schema::{Backend, Lines, MAX_WEIGHT, ServicePort};

impl Validator<'_> {
    pub(super) fn backends(
        &mut self,
        service_ctx: &str,
        raw: Vec<Spanned<RawBackend>>,
        port: Option<ServicePort>,
    ) -> Vec<Backend> {
        let mut out: Vec<Backend> = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let mut lines = Lines {
                table: self.line(raw.span()),
                ..Lines::default()
            };
            let raw = raw.into_inner();
            let mut at = At {
                context: format!("{service_ctx} backend #{}", i + 1),
                lines: &mut lines,
            };
            let name = self.name(&mut at, raw.name, "backend", "bettley");
            if let Some(name) = &name {
                at.context = format!("{service_ctx} backend {name:?}");
            }
            let ctx = at.context.clone();
            let table = at.lines.table;
            if let Some(name) = &name
                && let Some(other) = out.iter().find(|b| &b.name == name)
            {
                self.error(
                    at.lines.get("name"),
                    &ctx,
                    "name",
                    format!(
                        "{name:?} is already the name of the backend at line {}: backend names must be unique within a service",
                        other.lines.table
                    ),
                );
            }
            let address = match self.take(&mut at, "address", raw.address) {
                None => {
                    self.error(Some(table), &ctx, "address", "is required: the backend's IPv4 address or hostname, e.g. address = \"10.4.0.11\"");
                    None
                }
                Some((text, line)) => match text.parse::<BackendAddress>() {
                    Ok(BackendAddress::Ip(ip)) if !usable_unicast(ip) => {
                        self.error(
                            Some(line),
                            &ctx,
                            "address",
                            format!("{ip} cannot be a backend address"),
                        );
                        None
                    }
                    Ok(address) => Some(address),
                    Err(e) => {
                        self.error(Some(line), &ctx, "address", e);
                        None
                    }
                },
            };
            let backend_port = match port {
                Some(ServicePort::Range(range)) => {
                    if let Some((_, line)) = self.take(&mut at, "port", raw.port) {
                        self.error(
                            Some(line),
                            &ctx,
                            "port",
                            format!(
                                "must not be set for a port-range service (ports = \"{}-{}\"): \
                                 its backends keep the client's destination port; remove port",
                                range.first, range.last
                            ),
                        );
                    }
                    None
                }
                Some(ServicePort::Single(service_port)) => Some(
                    self.int(&mut at, "port", raw.port, (1, 65535), "")
                        .unwrap_or(service_port),
                ),
                None => self.int(&mut at, "port", raw.port, (1, 65535), ""),
            };
            let weight = self
                .int(
                    &mut at,
                    "weight",
                    raw.weight,
                    (0, i64::from(MAX_WEIGHT)),
                    "; 0 drains the backend",
                )
                .unwrap_or(1);
            if let Some(address) = &address
                && let Some(other) = out
                    .iter()
                    .find(|b| &b.address == address && b.port == backend_port)
            {
                let target = match backend_port {
                    Some(p) => format!("{address}:{p}"),
                    None => address.to_string(),
                };
                self.error(
                    at.lines.get("address"),
                    &ctx,
                    "address",
                    format!(
                        "{target} is already backend {:?} (line {}): list each backend once and use weight for a larger share",
                        other.name, other.lines.table
                    ),
                );
            }
            out.push(Backend {
                name: name.unwrap_or_default(),
                address: address.unwrap_or(BackendAddress::Ip(Ipv4Addr::UNSPECIFIED)),
                port: backend_port,
                weight,
                lines,
            });
        }
        out
    }
}
