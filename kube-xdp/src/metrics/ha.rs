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
    sync_datagrams: Family<Label, Counter>,
    sync_records: Family<Label, Counter>,
    sync_rejected: Family<[(&'static str, String); 1], Counter>,
    sync_skipped: Family<[(&'static str, String); 1], Counter>,
    /// What the counters were last set from.
    sync_last: std::sync::Mutex<SyncStatus>,
}

impl HaMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = HaMetrics {
            state: Family::default(),
            transitions: Family::default(),
            rejected: Family::default(),
            current: std::sync::Mutex::new(None),
            sync_datagrams: Family::default(),
            sync_records: Family::default(),
            sync_rejected: Family::default(),
            sync_skipped: Family::default(),
            sync_last: std::sync::Mutex::new(SyncStatus::default()),
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
        registry.register(
            "kube_xdp_sync_datagrams",
            "Flow-sync datagrams, by direction (sent, received: refused ones included)",
            m.sync_datagrams.clone(),
        );
        registry.register(
            "kube_xdp_sync_records",
            "Flow-sync records, by what happened (sent to the peer, installed from it)",
            m.sync_records.clone(),
        );
        registry.register(
            "kube_xdp_sync_rejected_datagrams",
            "Flow-sync datagrams refused, by reason (bad_tag, replayed, old_epoch, unknown_peer, too_short, bad_magic, ...)",
            m.sync_rejected.clone(),
        );
        registry.register(
            "kube_xdp_sync_skipped_records",
            "Authentic flow-sync records not installed, by reason (unknown_service, unknown_backend, newer_here)",
            m.sync_skipped.clone(),
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

    /// The flow sync's counters now (they only grow).
    pub fn set_sync(&self, now: &SyncStatus) {
        let mut last = self.ha.sync_last.lock().unwrap_or_else(|e| e.into_inner());
        let add = |c: &Counter, now: u64, was: u64| {
            c.inc_by(now.saturating_sub(was));
        };
        let m = &self.ha;
        add(
            &m.sync_datagrams.get_or_create(&[("direction", "sent")]),
            now.sent_datagrams,
            last.sent_datagrams,
        );
        add(
            &m.sync_datagrams.get_or_create(&[("direction", "received")]),
            now.received_datagrams,
            last.received_datagrams,
        );
        add(
            &m.sync_records.get_or_create(&[("what", "sent")]),
            now.sent_records,
            last.sent_records,
        );
        add(
            &m.sync_records.get_or_create(&[("what", "installed")]),
            now.installed_records,
            last.installed_records,
        );
        for (reason, n) in &now.rejected {
            let was = last.rejected.get(reason).copied().unwrap_or(0);
            add(
                &m.sync_rejected.get_or_create(&[("reason", reason.clone())]),
                *n,
                was,
            );
        }
        for (reason, n) in &now.skipped_records {
            let was = last.skipped_records.get(reason).copied().unwrap_or(0);
            add(
                &m.sync_skipped.get_or_create(&[("reason", reason.clone())]),
                *n,
                was,
            );
        }
        *last = now.clone();
    }
}
