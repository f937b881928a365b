//! Applying desired services as a difference: only what changed is
//! written, in an order that never lets the datapath pick a backend that
//! is not UP.

use std::{collections::BTreeMap, time::Instant};

use super::{
    BackendRt, Changes, NextHopPair, Programmer, ServiceRt, State, StateError, backend_spec,
    rebuild, service_spec_of,
};
use crate::{
    config::InitState,
    datapath::{BackendSpec, BackendState},
    plan::{DesiredBackend, DesiredService},
};

impl State {
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
        let spec = service_spec_of(d);
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
                        // A name whose address flaps back may still have a
                        // draining entry at this address: never overwrite
                        // it (its id would be lost and handed to a new
                        // backend while its flows still point at it).
                        let mut key = format!("{} (old {})", db.name, old.addr);
                        if svc.backends.contains_key(&key) {
                            key = format!("{} (old {} #{})", db.name, old.addr, old.id);
                        }
                        svc.backends.insert(key, old);
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
}
