//! All or nothing: an apply that fails half-way (a map write refused, ids
//! run out) puts the maps back as they were before it, and the state with
//! them, so a failed reload leaves the old plan fully in force.

use std::{collections::BTreeSet, time::Instant};

use super::{Changes, Programmer, State, StateError, backend_spec};
use crate::{
    datapath::{BackendSpec, BackendState, DatapathError, ServiceSpec},
    plan::DesiredService,
};

/// What an apply wrote, so that it can be undone.
#[derive(Debug, Default)]
struct Touched {
    services: Vec<ServiceSpec>,
    pools: BTreeSet<u32>,
    backends: BTreeSet<u32>,
}

/// A [`Programmer`] that notes every key it writes before writing it.
struct Recording<'a, P> {
    inner: &'a mut P,
    touched: Touched,
}

impl<P: Programmer> Programmer for Recording<'_, P> {
    fn set_service(&mut self, id: u32, spec: &ServiceSpec) -> Result<(), DatapathError> {
        self.touched.services.push(spec.clone());
        self.inner.set_service(id, spec)
    }
    fn remove_service(&mut self, spec: &ServiceSpec) -> Result<(), DatapathError> {
        self.touched.services.push(spec.clone());
        self.inner.remove_service(spec)
    }
    fn set_backend(&mut self, id: u32, spec: &BackendSpec) -> Result<(), DatapathError> {
        self.touched.backends.insert(id);
        self.inner.set_backend(id, spec)
    }
    fn remove_backend(&mut self, id: u32) -> Result<(), DatapathError> {
        self.touched.backends.insert(id);
        self.inner.remove_backend(id)
    }
    fn set_pool_table(&mut self, service_id: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.touched.pools.insert(service_id);
        self.inner.set_pool_table(service_id, table)
    }
}

impl State {
    /// [`State::apply`], all or nothing: when it fails, every entry it
    /// wrote is written back as it was, and the state is the one before.
    ///
    /// # Errors
    ///
    /// The apply's error (the maps and the state are as before), or
    /// [`StateError::RollbackFailed`] when putting them back failed too.
    pub fn apply_all_or_nothing(
        &mut self,
        p: &mut impl Programmer,
        desired: &[DesiredService],
        now: Instant,
    ) -> Result<Changes, StateError> {
        let before = self.clone();
        let mut recording = Recording {
            inner: p,
            touched: Touched::default(),
        };
        let error = match self.apply(&mut recording, desired, now) {
            Ok(changes) => return Ok(changes),
            Err(e) => e,
        };
        let touched = recording.touched;
        *self = before;
        match self.restore(p, &touched) {
            Ok(()) => Err(error),
            Err(rollback) => Err(StateError::RollbackFailed {
                apply: Box::new(error),
                rollback,
            }),
        }
    }

    /// Writes back what `touched` changed, from this (the earlier) state.
    /// The same order as an apply keeps the datapath from ever picking a
    /// backend that is not UP: backends joining a table before it, leaving
    /// after it.
    fn restore(&self, p: &mut impl Programmer, touched: &Touched) -> Result<(), DatapathError> {
        let backends = || {
            self.services.values().flat_map(|s| {
                s.backends
                    .values()
                    .map(move |b| (b.id, backend_spec(s.id, b)))
            })
        };
        let up = |spec: &BackendSpec| spec.state == BackendState::Up;
        for (id, spec) in backends().filter(|(_, s)| up(s)) {
            p.set_backend(id, &spec)?;
        }
        for svc in self.services.values() {
            p.set_pool_table(svc.id, &svc.table)?;
        }
        let ours = |id: u32| self.services.values().any(|s| s.id == id);
        for id in touched.pools.iter().filter(|id| !ours(**id)) {
            p.set_pool_table(*id, &[])?;
        }
        for (id, spec) in backends().filter(|(_, s)| !up(s)) {
            p.set_backend(id, &spec)?;
        }
        for pinned in self
            .pinned
            .iter()
            .filter(|b| touched.backends.contains(&b.id))
        {
            p.set_backend(pinned.id, &pinned.spec)?;
        }
        let held =
            |id: u32| backends().any(|(b, _)| b == id) || self.pinned.iter().any(|b| b.id == id);
        for id in touched.backends.iter().filter(|id| !held(**id)) {
            p.remove_backend(*id)?;
        }
        let specs: Vec<(u32, &ServiceSpec)> = self
            .services
            .values()
            .map(|s| (s.id, &s.spec))
            .chain(self.pinned_services.iter().map(|(id, s)| (*id, s)))
            .collect();
        for spec in &touched.services {
            if !specs.iter().any(|(_, s)| *s == spec) {
                p.remove_service(spec)?;
            }
        }
        for (id, spec) in specs {
            p.set_service(id, spec)?;
        }
        Ok(())
    }
}
