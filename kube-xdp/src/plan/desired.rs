//! From the plan to what the datapath state and the checkers take.

use std::{
    net::{Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    sync::Arc,
    time::Duration,
};

use super::Plan;
use crate::{
    config::{InitState, OnBackendDown},
    health::CheckSpec,
};

/// A service as the plan wants it: what the datapath state applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub name: String,
    /// The Kubernetes Service (`namespace/name`) it was made for; `None`
    /// for a service of the file.
    pub origin: Option<String>,
    pub vip: Ipv4Addr,
    pub ports: RangeInclusive<u16>,
    pub protocol: u8,
    pub reset_on_down: bool,
    pub table_size: u32,
    pub drain_timeout: Duration,
    /// Health of a backend first seen on a fresh start.
    pub init_state: InitState,
    pub backends: Vec<DesiredBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub name: String,
    pub addr: Ipv4Addr,
    /// `None`: the service port (or the client's, for a port range).
    pub port: Option<u16>,
    pub weight: u32,
}

/// A backend is known by (service name, backend name).
pub type BackendKey = (String, String);

/// One health checker to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    pub key: BackendKey,
    pub addr: SocketAddr,
    pub spec: Arc<CheckSpec>,
}

impl Plan {
    /// The services as the datapath state wants them.
    pub fn desired_services(&self) -> Vec<DesiredService> {
        self.services
            .iter()
            .chain(&self.cluster)
            .map(|s| {
                let c = &s.config;
                let range = c.port.range();
                DesiredService {
                    name: c.name.clone(),
                    origin: s.origin.clone(),
                    vip: c.vip,
                    ports: range.first..=range.last,
                    protocol: c.protocol.number(),
                    reset_on_down: c.on_backend_down == OnBackendDown::Reset,
                    table_size: c.maglev_table_size,
                    drain_timeout: c.drain_timeout,
                    init_state: c.health_check.init_state,
                    backends: s
                        .backends
                        .iter()
                        .map(|b| DesiredBackend {
                            name: b.name.clone(),
                            addr: b.addr,
                            port: b.port,
                            weight: b.weight,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The checkers the plan asks for, one per backend.
    pub fn checkers(&self) -> Vec<Checker> {
        self.services
            .iter()
            .chain(&self.cluster)
            .flat_map(|s| {
                s.backends.iter().map(|b| Checker {
                    key: (s.config.name.clone(), b.name.clone()),
                    addr: b.check_addr,
                    spec: Arc::clone(&s.check),
                })
            })
            .collect()
    }
}
