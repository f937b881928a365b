//! What the daemon keeps of the datapath: which service and backend ids are
//! in use, each backend's health, weight and next hop, and how a desired
//! configuration is applied as a difference — only what changed is
//! written, so unchanged services' flows are never disturbed.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, time::Instant};

use kube_xdp_common::maps::{MAX_BACKENDS, MAX_SERVICES};

use crate::{
    config::InitState,
    datapath::{BackendSpec, BackendState, Datapath, DatapathError, ServiceSpec},
    maglev::{MaglevBackend, build_table},
    plan::{DesiredBackend, DesiredService},
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

fn service_spec(d: &DesiredService) -> ServiceSpec {
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

    fn free_service_id(&self, wanted: &ServiceSpec) -> Result<u32, StateError> {
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
    fn free_backend_id(&self, also: &ServiceRt) -> Result<u32, StateError> {
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

    /// Applies the desired services: adds, updates and removes only what
    /// differs. A removed backend drains (no new flows) rather than
    /// vanishing; a removed service stops at once (its VIP:port is no
    /// longer ours).
    ///
    /// # Errors
    ///
    /// When a map write fails or ids run out.
    pub fn apply(
        &mut self,
        p: &mut impl Programmer,
        desired: &[DesiredService],
        now: Instant,
    ) -> Result<Changes, StateError> {
        let mut changes = Changes::default();
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|name| !desired.iter().any(|d| &d.name == *name))
            .cloned()
            .collect();
        for name in gone {
            let svc = self.services.remove(&name).unwrap();
            p.remove_service(&svc.spec)?;
            p.set_pool_table(svc.id, &[])?;
            for b in svc.backends.values() {
                p.remove_backend(b.id)?;
            }
            changes.services_removed.push(name);
        }
        for d in desired {
            self.apply_service(p, d, now, &mut changes)?;
        }
        // Pinned leftovers that no configured service claimed: their
        // service is gone, so are they.
        for stale in std::mem::take(&mut self.pinned) {
            p.remove_backend(stale.id)?;
        }
        for (id, spec) in std::mem::take(&mut self.pinned_services) {
            if !self.services.values().any(|s| s.id == id) {
                p.remove_service(&spec)?;
                p.set_pool_table(id, &[])?;
            }
        }
        Ok(changes)
    }

    fn apply_service(
        &mut self,
        p: &mut impl Programmer,
        d: &DesiredService,
        now: Instant,
        changes: &mut Changes,
    ) -> Result<(), StateError> {
        let spec = service_spec(d);
        let existing = self.services.remove(&d.name);
        let mut svc = match existing {
            Some(mut svc) => {
                if svc.spec != spec {
                    // Address, ports or flags changed: rewrite the entries.
                    p.remove_service(&svc.spec)?;
                    p.set_service(svc.id, &spec)?;
                    svc.spec = spec;
                    changes.services_changed.push(d.name.clone());
                }
                svc
            }
            None => {
                let id = self.free_service_id(&spec)?;
                p.set_service(id, &spec)?;
                changes.services_added.push(d.name.clone());
                ServiceRt {
                    id,
                    spec,
                    desired: d.clone(),
                    backends: BTreeMap::new(),
                    table: Vec::new(),
                }
            }
        };
        let service_id = svc.id;
        let mut writes: Vec<(u32, BackendSpec)> = Vec::new();
        let label = |b: &str| format!("{}/{b}", d.name);
        // Backends gone from the configuration start draining.
        for (name, b) in svc.backends.iter_mut() {
            if b.removed_at.is_none() && !d.backends.iter().any(|db| &db.name == name) {
                b.removed_at = Some(now);
                writes.push((b.id, backend_spec(service_id, b)));
                changes.backends_drained.push(label(name));
            }
        }
        for db in &d.backends {
            match svc.backends.get_mut(&db.name) {
                Some(b) if b.addr == db.addr && b.port == db.port => {
                    if b.weight != db.weight || b.removed_at.is_some() {
                        b.weight = db.weight;
                        b.removed_at = None;
                        writes.push((b.id, backend_spec(service_id, b)));
                        changes.backends_changed.push(label(&db.name));
                    }
                }
                existing => {
                    // New, or its address changed: a new backend (the old
                    // one's flows drain under another name).
                    if let Some(old) = existing {
                        old.removed_at = Some(now);
                        let old = old.clone();
                        writes.push((old.id, backend_spec(service_id, &old)));
                        svc.backends
                            .insert(format!("{} (old {})", db.name, old.addr), old);
                    }
                    let (id, up, hop) = self.adopt_backend(&svc, db, d.init_state)?;
                    let b = BackendRt {
                        id,
                        addr: db.addr,
                        port: db.port,
                        weight: db.weight,
                        up,
                        mac: hop.and_then(|h| h.0),
                        ifindex: hop.map_or(0, |h| h.1),
                        removed_at: None,
                    };
                    writes.push((id, backend_spec(service_id, &b)));
                    svc.backends.insert(db.name.clone(), b);
                    changes.backends_added.push(label(&db.name));
                }
            }
        }
        svc.desired = d.clone();
        // The datapath must never pick a backend that is not UP: backends
        // joining the pool are written before the table that names them,
        // backends leaving it after the table that no longer does.
        let (joining, leaving): (Vec<_>, Vec<_>) = writes
            .into_iter()
            .partition(|(_, spec)| spec.state == BackendState::Up);
        for (id, spec) in &joining {
            p.set_backend(*id, spec)?;
        }
        let rebuilt = rebuild(p, &mut svc)?;
        for (id, spec) in &leaving {
            p.set_backend(*id, spec)?;
        }
        if rebuilt {
            changes.pools_rebuilt.push(d.name.clone());
        }
        self.services.insert(d.name.clone(), svc);
        Ok(())
    }

    /// An id for a configured backend: the one an earlier run pinned for
    /// the same service, address and port (with its health and next hop,
    /// so forwarding does not pause while the new run re-reads the
    /// neighbour table), or a free one (with the configured initial
    /// health).
    fn adopt_backend(
        &mut self,
        svc: &ServiceRt,
        db: &DesiredBackend,
        init_state: InitState,
    ) -> Result<(u32, bool, Option<NextHopPair>), StateError> {
        if let Some(i) = self.pinned.iter().position(|p| {
            p.spec.service_id == svc.id && p.spec.addr == db.addr && p.spec.port == db.port
        }) {
            let pinned = self.pinned.remove(i);
            return Ok((
                pinned.id,
                pinned.spec.state == BackendState::Up,
                Some((pinned.spec.mac, pinned.spec.ifindex)),
            ));
        }
        Ok((
            self.free_backend_id(svc)?,
            init_state == InitState::Up,
            None,
        ))
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
                        backends,
                    };
                    (svc.id, named)
                })
                .collect(),
        }
    }
}

fn backend_spec(service_id: u32, b: &BackendRt) -> BackendSpec {
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
fn rebuild(p: &mut impl Programmer, svc: &mut ServiceRt) -> Result<bool, StateError> {
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

#[path = "state_rollback.rs"]
mod rollback;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
