//! From the configuration to what the datapath and the checkers need.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use crate::{
    config::{self, BackendAddress, Config, InitState, OnBackendDown},
    daemon::state::{DesiredBackend, DesiredService},
    health::{CheckKind, CheckSpec, TlsSettings},
};

/// A backend is known by (service name, backend name).
pub type BackendKey = (String, String);

/// Hostname backends' current addresses.
pub type Resolved = HashMap<BackendKey, Ipv4Addr>;

/// The address a backend stands for now: its literal address, or what its
/// hostname last resolved to.
pub fn address(service: &str, b: &config::Backend, resolved: &Resolved) -> Option<Ipv4Addr> {
    match &b.address {
        BackendAddress::Ip(ip) => Some(*ip),
        BackendAddress::Hostname(_) => resolved.get(&(service.to_owned(), b.name.clone())).copied(),
    }
}

/// Resolves every hostname backend (first IPv4 address). Returns the
/// addresses and, for each name that failed, why.
pub fn resolve_all(config: &Config) -> (Resolved, Vec<String>) {
    let mut resolved = Resolved::new();
    let mut failed = Vec::new();
    for s in &config.services {
        for b in &s.backends {
            if let BackendAddress::Hostname(name) = &b.address {
                match b.address.resolve() {
                    Ok(addrs) if !addrs.is_empty() => {
                        resolved.insert((s.name.clone(), b.name.clone()), addrs[0]);
                    }
                    Ok(_) => {
                        failed.push(format!("{}/{}: {name} has no IPv4 address", s.name, b.name))
                    }
                    Err(e) => failed.push(format!("{}/{}: resolving {name}: {e}", s.name, b.name)),
                }
            }
        }
    }
    (resolved, failed)
}

/// The services as the datapath state wants them.
pub fn services(config: &Config, resolved: &Resolved) -> Vec<DesiredService> {
    config
        .services
        .iter()
        .map(|s| {
            let range = s.port.range();
            DesiredService {
                name: s.name.clone(),
                vip: s.vip,
                ports: range.first..=range.last,
                protocol: s.protocol.number(),
                reset_on_down: s.on_backend_down == OnBackendDown::Reset,
                table_size: s.maglev_table_size,
                drain_timeout: s.drain_timeout,
                initial_up: s.health_check.init_state == InitState::Up,
                backends: s
                    .backends
                    .iter()
                    .filter_map(|b| {
                        Some(DesiredBackend {
                            name: b.name.clone(),
                            addr: address(&s.name, b, resolved)?,
                            port: b.port,
                            weight: b.weight,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One health checker to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    pub key: BackendKey,
    pub addr: SocketAddr,
    pub spec: Arc<CheckSpec>,
}

/// The checkers the configuration asks for, one per backend.
pub fn checkers(config: &Config, resolved: &Resolved) -> Vec<Checker> {
    let mut out = Vec::new();
    for s in &config.services {
        let hc = &s.health_check;
        let spec = Arc::new(CheckSpec {
            kind: match hc.kind {
                config::CheckKind::Tcp => CheckKind::Tcp,
                config::CheckKind::Http => CheckKind::Http,
                config::CheckKind::Https => CheckKind::Https,
            },
            path: hc.path.clone(),
            expect_status: hc.expect_status,
            tls: TlsSettings {
                verify: hc.tls_verify,
                ca_file: hc.ca_file.clone(),
                server_name: hc.server_name.clone(),
            },
            interval: hc.interval,
            timeout: hc.timeout,
            fall: hc.fall,
            rise: hc.rise,
        });
        for b in &s.backends {
            if let Some(addr) = address(&s.name, b, resolved) {
                out.push(Checker {
                    key: (s.name.clone(), b.name.clone()),
                    addr: SocketAddr::from((addr, s.check_port(b))),
                    spec: spec.clone(),
                });
            }
        }
    }
    out
}
