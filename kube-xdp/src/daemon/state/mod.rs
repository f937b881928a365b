//! What the daemon keeps of the datapath: which service and backend ids are
//! in use, each backend's health, weight and next hop, and how a desired
//! configuration is applied as a difference — only what changed is
//! written, so unchanged services' flows are never disturbed.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, time::Instant};

use kube_xdp_common::maps::{MAX_BACKENDS, MAX_SERVICES};

use crate::{
    datapath::{BackendSpec, BackendState, Datapath, DatapathError, ServiceSpec},
    maglev::{MaglevBackend, build_table},
    plan::DesiredService,
    view::{BackendName, Names, ServiceName},
};

/// The map writes the state needs; [`Datapath`] implements it, and the unit
/// tests use a recording fake.
pub trait Programmer {
    fn set_service(&mut self, id: u32, spec: &ServiceSpec) -> Result<(), DatapathError>;
    fn remove_service(&mut self, spec: &ServiceSpec) -> Result<(), DatapathError>;
    fn set_backend(&mut self, id: u32, spec: &BackendSpec) -> Result<(), DatapathError>;
    fn remove_backend(&mut self, id: u32) -> Result<(), DatapathError>;
    fn set_pool_table(&mut self, service_id: u32, table: &[u32]) -> Result<(), DatapathError>;
}

impl Programmer for Datapath {
    fn set_service(&mut self, id: u32, spec: &ServiceSpec) -> Result<(), DatapathError> {
        Datapath::set_service(self, id, spec)
    }
    fn remove_service(&mut self, spec: &ServiceSpec) -> Result<(), DatapathError> {
        Datapath::remove_service(self, spec)
    }
    fn set_backend(&mut self, id: u32, spec: &BackendSpec) -> Result<(), DatapathError> {
        Datapath::set_backend(self, id, spec)
    }
    fn remove_backend(&mut self, id: u32) -> Result<(), DatapathError> {
        Datapath::remove_backend(self, id)
    }
    fn set_pool_table(&mut self, service_id: u32, table: &[u32]) -> Result<(), DatapathError> {
        Datapath::set_pool_table(self, service_id, table)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// An apply failed, and so did putting the maps back as they were: the
    /// datapath holds a mix of the two.
    #[error("{apply}; restoring the previous state failed too: {rollback}")]
    RollbackFailed {
        apply: Box<StateError>,
        rollback: DatapathError,
    },
    #[error("more than {MAX_SERVICES} services")]
    TooManyServices,
    #[error("more than {MAX_BACKENDS} backends")]
    TooManyBackends,
}

/// A backend as the daemon knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRt {
    pub id: u32,
    pub addr: Ipv4Addr,
    pub port: Option<u16>,
    pub weight: u32,
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    pub ifindex: u32,
    /// Removed from the configuration at this instant: no new flows, its
    /// flows finish until the service's drain timeout.
    pub removed_at: Option<Instant>,
}

impl BackendRt {
    /// Takes new flows.
    pub fn usable(&self) -> bool {
        self.up && self.weight > 0 && self.removed_at.is_none()
    }

    fn state(&self) -> BackendState {
        if self.weight == 0 || self.removed_at.is_some() {
            BackendState::Drain
        } else if self.up {
            BackendState::Up
        } else {
            BackendState::Down
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceRt {
    pub id: u32,
    pub spec: ServiceSpec,
    pub desired: DesiredService,
    /// By name.
    pub backends: BTreeMap<String, BackendRt>,
    /// The pool's live table, as last written.
    pub table: Vec<u32>,
}

/// What an apply changed, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub services_changed: Vec<String>,
    pub backends_added: Vec<String>,
    pub backends_drained: Vec<String>,
    pub backends_changed: Vec<String>,
    pub pools_rebuilt: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            ("services added", &self.services_added),
            ("services removed", &self.services_removed),
            ("services changed", &self.services_changed),
            ("backends added", &self.backends_added),
            ("backends drained", &self.backends_drained),
            ("backends changed", &self.backends_changed),
            ("pools rebuilt", &self.pools_rebuilt),
        ];
        let mut first = true;
        for (what, names) in parts.iter().filter(|(_, n)| !n.is_empty()) {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{what}: {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// A next hop as pinned: MAC (if resolved) and interface.
type NextHopPair = (Option<[u8; 6]>, u32);

/// A backend found in the pins by an earlier run.
#[derive(Debug, Clone, Copy)]
pub struct PinnedBackend {
    pub id: u32,
    pub spec: BackendSpec,
}

/// The daemon's view of the datapath.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub services: BTreeMap<String, ServiceRt>,
    /// Backends an earlier run left in the pins, not yet matched to the
    /// configuration: their ids and health are adopted.
    pinned: Vec<PinnedBackend>,
    /// Service ids an earlier run used, by (VIP, first port, protocol).
    pinned_services: Vec<(u32, ServiceSpec)>,
}

pub(super) fn service_spec_of(d: &DesiredService) -> ServiceSpec {
    ServiceSpec {
        vip: d.vip,
        ports: d.ports.clone(),
        protocol: d.protocol,
        reset_on_down: d.reset_on_down,
    }
}

impl State {
    /// A state that adopts what an earlier run left pinned: the same ids
    /// keep serving their flows, and backends keep their health.
    pub fn adopt(services: Vec<(u32, ServiceSpec)>, backends: Vec<PinnedBackend>) -> Self {
        State {
            services: BTreeMap::new(),
            pinned: backends,
            pinned_services: services,
        }
    }

    fn used_service_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.services
            .values()
            .map(|s| s.id)
            .chain(self.pinned_services.iter().map(|(id, _)| *id))
    }

    pub(super) fn free_service_id(&self, wanted: &ServiceSpec) -> Result<u32, StateError> {
        if let Some((id, _)) = self.pinned_services.iter().find(|(_, s)| {
            s.vip == wanted.vip
                && s.ports.start() == wanted.ports.start()
                && s.protocol == wanted.protocol
        }) {
            return Ok(*id);
        }
        (0..MAX_SERVICES)
            .find(|id| !self.used_service_ids().any(|u| u == *id))
            .ok_or(StateError::TooManyServices)
    }

    /// A backend id no service (`also`: the one being edited, which is out
    /// of `self.services` meanwhile) and no pinned leftover uses.
    pub(super) fn free_backend_id(&self, also: &ServiceRt) -> Result<u32, StateError> {
        // One pass over the ids in use, not one per candidate: a reload of
        // thousands of backends stays linear per allocation.
        let used: std::collections::HashSet<u32> = self
            .services
            .values()
            .chain(std::iter::once(also))
            .flat_map(|s| s.backends.values().map(|b| b.id))
            .chain(self.pinned.iter().map(|p| p.id))
            .collect();
        (0..MAX_BACKENDS)
            .find(|id| !used.contains(id))
            .ok_or(StateError::TooManyBackends)
    }

    /// Records a health change; rewrites the backend and its pool only if
    /// something changed. Returns whether it did.
    pub fn set_health(
        &mut self,
        p: &mut impl Programmer,
        service: &str,
        backend: &str,
        up: bool,
    ) -> Result<bool, StateError> {
        let Some(svc) = self.services.get_mut(service) else {
            return Ok(false);
        };
        let Some(b) = svc.backends.get_mut(backend) else {
            return Ok(false);
        };
        if b.up == up {
            return Ok(false);
        }
        b.up = up;
        let (id, spec) = (b.id, backend_spec(svc.id, b));
        // UP: the backend, then the table that names it; DOWN: the table
        // without it first, so the datapath never picks a DOWN backend.
        if up {
            p.set_backend(id, &spec)?;
            rebuild(p, svc)?;
        } else {
            rebuild(p, svc)?;
            p.set_backend(id, &spec)?;
        }
        Ok(true)
    }

    /// Records a backend's next hop; rewrites it only if it changed.
    pub fn set_next_hop(
        &mut self,
        p: &mut impl Programmer,
        service: &str,
        backend: &str,
        mac: Option<[u8; 6]>,
        ifindex: u32,
    ) -> Result<bool, StateError> {
        let Some(svc) = self.services.get_mut(service) else {
            return Ok(false);
        };
        let Some(b) = svc.backends.get_mut(backend) else {
            return Ok(false);
        };
        if b.mac == mac && b.ifindex == ifindex {
            return Ok(false);
        }
        b.mac = mac;
        b.ifindex = ifindex;
        p.set_backend(b.id, &backend_spec(svc.id, b))?;
        Ok(true)
    }

    /// Frees backends whose drain timeout has passed. Returns their labels.
    pub fn expire_drained(
        &mut self,
        p: &mut impl Programmer,
        now: Instant,
    ) -> Result<Vec<String>, StateError> {
        let mut expired = Vec::new();
        for svc in self.services.values_mut() {
            let timeout = svc.desired.drain_timeout;
            let done: Vec<String> = svc
                .backends
                .iter()
                .filter(|(_, b)| {
                    b.removed_at
                        .is_some_and(|t| now.duration_since(t) >= timeout)
                })
                .map(|(n, _)| n.clone())
                .collect();
            for name in done {
                let b = svc.backends.remove(&name).unwrap();
                p.remove_backend(b.id)?;
                expired.push(format!("{}/{name}", svc.desired.name));
            }
        }
        Ok(expired)
    }
}

impl State {
    /// The names of what is programmed, by id, for the read view.
    pub fn names(&self, pin_path: &Path) -> Names {
        Names {
            pin_path: pin_path.to_owned(),
            services: self
                .services
                .iter()
                .map(|(name, svc)| {
                    let backends = svc
                        .backends
                        .iter()
                        .map(|(b, rt)| {
                            let named = BackendName {
                                name: b.clone(),
                                weight: rt.weight,
                            };
                            (rt.id, named)
                        })
                        .collect();
                    let named = ServiceName {
                        name: name.clone(),
                        origin: svc.desired.origin.clone(),
                        backends,
                    };
                    (svc.id, named)
                })
                .collect(),
        }
    }
}

pub(super) fn backend_spec(service_id: u32, b: &BackendRt) -> BackendSpec {
    BackendSpec {
        service_id,
        addr: b.addr,
        port: b.port,
        state: b.state(),
        mac: b.mac,
        ifindex: b.ifindex,
    }
}

/// Rebuilds the pool's Maglev table from its usable backends and writes it
/// if it differs from the live one. An empty pool is written empty, never
/// left holding its last table.
pub(super) fn rebuild(p: &mut impl Programmer, svc: &mut ServiceRt) -> Result<bool, StateError> {
    let usable: Vec<MaglevBackend> = svc
        .backends
        .values()
        .filter(|b| b.usable())
        .map(|b| MaglevBackend {
            id: b.id,
            addr: b.addr,
            port: b.port.unwrap_or(0),
            weight: b.weight,
        })
        .collect();
    let table = build_table(&usable, svc.desired.table_size);
    if table == svc.table {
        return Ok(false);
    }
    p.set_pool_table(svc.id, &table)?;
    svc.table = table;
    Ok(true)
}

mod apply;
mod rollback;

#[cfg(test)]
mod tests;
