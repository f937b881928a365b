//! The pair's metrics: its VRRP state, transitions, and the packets it
//! ignored. Empty on a single box.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{ha::machine::State, sync::task::SyncStatus};

type Label = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub(super) struct HaMetrics {
    state: Family<Label, Gauge>,
    transitions: Family<Label, Counter>,
    rejected: Family<Label, Counter>,
    /// The state now; `None` on a single box.
    current: std::sync::Mutex<Option<State>>,
}

impl HaMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = HaMetrics {
            state: Family::default(),
            transitions: Family::default(),
            rejected: Family::default(),
            current: std::sync::Mutex::new(None),
        };
        registry.register(
            "kube_xdp_ha_state",
            "The pair's VRRP state: 1 for the current one of init, backup, master, fault",
            m.state.clone(),
        );
        registry.register(
            "kube_xdp_ha_transitions",
            "VRRP state changes, by the state entered",
            m.transitions.clone(),
        );
        registry.register(
            "kube_xdp_ha_rejected_packets",
            "VRRP packets ignored, by reason (version, type, ttl, checksum, length, interval, vrid, peer, truncated)",
            m.rejected.clone(),
        );
        m
    }
}

impl super::Metrics {
    /// The pair is in `now`.
    pub fn ha_state(&self, now: State) {
        *self.ha.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        for s in State::ALL {
            self.ha
                .state
                .get_or_create(&[("state", s.label())])
                .set(i64::from(s == now));
        }
    }

    /// The pair's state, `None` on a single box.
    pub fn ha_current(&self) -> Option<State> {
        *self.ha.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pair went from `_from` to `to`.
    pub fn ha_transition(&self, _from: State, to: State) {
        self.ha
            .transitions
            .get_or_create(&[("to", to.label())])
            .inc();
        self.ha_state(to);
    }

    /// A VRRP packet was ignored for `reason`.
    pub fn ha_rejected(&self, reason: &'static str) {
        self.ha.rejected.get_or_create(&[("reason", reason)]).inc();
    }

    /// The flow sync's counters now (`kube_xdp_sync_*`, encoded at each
    /// scrape).
    pub fn set_sync(&self, now: &SyncStatus) {
        *self.shared.sync.write().unwrap_or_else(|e| e.into_inner()) = Some(now.clone());
    }
}
