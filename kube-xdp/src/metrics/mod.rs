//! Observability: the Prometheus metrics the daemon serves on
//! `metrics_listen`, the periodic summary line of its event log, and the
//! sampling, rates and rendering behind `kube-xdp top`.
//!
//! Two kinds of metrics:
//!
//! - **read at scrape time** from the pinned maps (a [`Snapshot`] of the
//!   read view, through [`Pins`], a handle of its own, so the HTTP task
//!   shares nothing mutable with the daemon): traffic per
//!   service and backend (per-CPU counters summed), backend state, weight,
//!   Maglev share and active flows, flow-table occupancy and capacity, the
//!   datapath's verdict and reason counters;
//! - **recorded by the daemon** as things happen ([`Metrics`]): every
//!   health check's latency or failure, state transitions, reloads, the
//!   configuration's hash, build info.
//!
//! Names follow the Prometheus conventions: `kube_xdp_` prefix, counters
//! end in `_total`, base units (seconds, bytes), labels `service` and
//! `backend` named as the daemon last applied them ([`Names`]). The list is in
//! `docs/observability.md`.

mod collector;
mod ha;
mod kubernetes;
pub use kubernetes::KubernetesMetrics;
mod server;
pub mod summary;
pub mod top;

pub use server::serve;
pub use summary::spawn_summary;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock, atomic::AtomicU64},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::{Registry, Unit},
};

#[cfg(doc)]
use crate::view::{Pins, Snapshot};
use crate::{
    health::{CheckEvent, Health},
    view::Names,
};

/// `{service, backend}`.
type BackendLabels = [(&'static str, String); 2];
/// `{service, backend, reason}`.
type FailureLabels = [(&'static str, String); 3];
/// `{service, backend, to}`.
type TransitionLabels = [(&'static str, String); 3];
/// `{result}`.
type ResultLabels = [(&'static str, &'static str); 1];

/// Every `Failure::label()`, so a removed backend's series can all go.
const FAILURE_REASONS: [&str; 7] = [
    "refused",
    "timeout",
    "unreachable",
    "tls",
    "http",
    "status",
    "local",
];

/// Bucket bounds of the health-check latency histogram, in seconds: from a
/// LAN TCP connect (well under a millisecond) to the longest sensible check
/// timeout.
const CHECK_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn check_histogram() -> Histogram {
    Histogram::new(CHECK_BUCKETS)
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable fingerprint of the
/// configuration file (the same bytes give the same hash on every host and
/// every version), for `kube_xdp_config_info{hash}`.
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The hash of the file at `path` ([`fnv1a64`] of its bytes), or
/// `"unreadable"`.
pub fn hash_file(path: &Path) -> String {
    std::fs::read(path).map_or_else(|_| "unreadable".to_owned(), |b| fnv1a64(&b))
}

/// What the scrape-time collector needs from the daemon: where the maps
/// are pinned, and the names of what it programmed.
#[derive(Debug)]
struct Shared {
    pin_path: PathBuf,
    names: RwLock<Arc<Names>>,
    config_hash: RwLock<String>,
    /// The pair's flow sync as its task last published it.
    sync: RwLock<Option<crate::sync::task::SyncStatus>>,
}

impl Shared {
    fn names(&self) -> Arc<Names> {
        Arc::clone(&self.names.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn config_hash(&self) -> String {
        self.config_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The daemon's metrics registry. Create it once with [`Metrics::new`],
/// share it (`Arc`) with [`serve`] and [`spawn_summary`], and call the
/// `record_*`/`reload_*` methods from the daemon loop.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    shared: Arc<Shared>,
    check_duration: Family<BackendLabels, Histogram, fn() -> Histogram>,
    check_failures: Family<FailureLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    last_reload_success: Gauge<f64, AtomicU64>,
    /// The (service, backend) pairs with recorded series, to drop those
    /// of backends a reload removed.
    recorded: Mutex<HashSet<(String, String)>>,
    /// The (service, backend) pairs programmed now (from the names).
    programmed: RwLock<HashSet<(String, String)>>,
    /// One scrape at a time: each walks the flow table.
    scraping: Mutex<()>,
    ha: ha::HaMetrics,
    syn_flood_defence: Gauge,
    /// The Kubernetes controller's (`[kubernetes]`).
    pub kubernetes: KubernetesMetrics,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Metrics {
    /// A registry for a daemon that programmed the maps pinned at
    /// `pin_path` with what `names` names (its file's hash `config_hash`,
    /// see [`hash_file`]).
    pub fn new(pin_path: PathBuf, names: Names, config_hash: String) -> Arc<Self> {
        let programmed = names.backend_pairs();
        let shared = Arc::new(Shared {
            pin_path,
            names: RwLock::new(Arc::new(names)),
            config_hash: RwLock::new(config_hash),
            sync: RwLock::new(None),
        });
        let mut registry = Registry::default();
        registry.register(
            "kube_xdp_build",
            "kube-xdp build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let check_duration =
            Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                check_histogram,
            );
        registry.register_with_unit(
            "kube_xdp_health_check_duration",
            "Latency of passed health checks (connect, TLS, request and response head)",
            Unit::Seconds,
            check_duration.clone(),
        );
        let check_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "kube_xdp_health_check_failures",
            "Failed health checks by reason (refused, timeout, unreachable, tls, http, status)",
            check_failures.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "kube_xdp_backend_transitions",
            "Health state changes of a backend (to = up | down)",
            transitions.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        // Both series exist from the start, so `increase()` sees the first
        // failure.
        for result in ["ok", "failed"] {
            let _ = reloads.get_or_create(&[("result", result)]);
        }
        registry.register(
            "kube_xdp_reloads",
            "Configuration reloads (SIGHUP or kube-xdp reload) by result (ok | failed)",
            reloads.clone(),
        );
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        registry.register(
            "kube_xdp_config_last_reload_successful",
            "Whether the last configuration (re)load was applied (1) or rejected (0)",
            last_reload_ok.clone(),
        );
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        last_reload_success.set(unix_now());
        registry.register_with_unit(
            "kube_xdp_config_last_reload_success_timestamp",
            "When the running configuration was applied (start or last successful reload)",
            Unit::Seconds,
            last_reload_success.clone(),
        );
        let syn_flood_defence = Gauge::default();
        registry.register(
            "kube_xdp_syn_flood_defence",
            "Whether the SYN flood defence is on (1): SYNs over the half-open limit were answered with cookies or dropped in the last 10 s (always 1 with syn_cookies = \"always\")",
            syn_flood_defence.clone(),
        );
        let ha = ha::HaMetrics::register(&mut registry);
        let kubernetes = KubernetesMetrics::register(&mut registry);
        registry.register_collector(Box::new(collector::DatapathCollector {
            shared: Arc::clone(&shared),
        }));
        Arc::new(Metrics {
            registry,
            shared,
            check_duration,
            check_failures,
            transitions,
            reloads,
            last_reload_ok,
            last_reload_success,
            recorded: Mutex::new(HashSet::new()),
            programmed: RwLock::new(programmed),
            scraping: Mutex::new(()),
            ha,
            syn_flood_defence,
            kubernetes,
        })
    }

    /// Where the daemon's maps are pinned.
    pub fn pin_path(&self) -> &Path {
        &self.shared.pin_path
    }

    /// The hash of the configuration file in force (see [`hash_file`]).
    pub fn config_hash(&self) -> String {
        self.shared.config_hash()
    }

    /// The names of what the daemon programmed.
    pub fn names(&self) -> Arc<Names> {
        self.shared.names()
    }

    /// Records one health check of `service`/`backend`: its latency when
    /// it passed, its reason when it failed, and a transition when it made
    /// one. Events of backends no longer programmed (a checker stopped by
    /// a reload, its last event still queued) are ignored.
    pub fn record_check<K>(&self, service: &str, backend: &str, event: &CheckEvent<K>) {
        let key = (service.to_owned(), backend.to_owned());
        let programmed = self
            .programmed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key);
        if !programmed {
            return;
        }
        self.recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        if let Some(latency) = event.latency() {
            self.check_duration
                .get_or_create(&backend_labels(service, backend))
                .observe(latency.as_secs_f64());
        }
        if let Some(failure) = event.failure() {
            self.check_failures
                .get_or_create(&failure_labels(service, backend, failure.label()))
                .inc();
        }
        if let Some(t) = event.transition {
            let to = match t.to {
                Health::Up => "up",
                Health::Down => "down",
            };
            self.transitions
                .get_or_create(&[
                    ("service", service.to_owned()),
                    ("backend", backend.to_owned()),
                    ("to", to.to_owned()),
                ])
                .inc();
        }
    }

    /// A reload was applied: counts it, and from now on
    /// `kube_xdp_config_info` shows `config_hash`.
    pub fn reload_ok(&self, config_hash: String) {
        self.reloads.get_or_create(&[("result", "ok")]).inc();
        self.last_reload_ok.set(1);
        self.last_reload_success.set(unix_now());
        *self
            .shared
            .config_hash
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config_hash;
    }

    /// From now on series are named from `names` (what the daemon just
    /// programmed); series of backends it no longer names are removed.
    pub fn set_names(&self, names: Names) {
        let wanted = names.backend_pairs();
        *self.shared.names.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(names);
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        for (service, backend) in recorded.difference(&wanted) {
            self.check_duration
                .remove(&backend_labels(service, backend));
            for reason in FAILURE_REASONS {
                self.check_failures
                    .remove(&failure_labels(service, backend, reason));
            }
            for to in ["up", "down"] {
                self.transitions.remove(&[
                    ("service", service.clone()),
                    ("backend", backend.clone()),
                    ("to", to.to_owned()),
                ]);
            }
        }
        recorded.retain(|k| wanted.contains(k));
        *self.programmed.write().unwrap_or_else(|e| e.into_inner()) = wanted;
    }

    /// Whether the SYN flood defence is on (see
    /// `daemon::syn_flood::Defence`).
    pub fn set_syn_flood_defence(&self, on: bool) {
        self.syn_flood_defence.set(i64::from(on));
    }

    /// A reload was rejected (the daemon keeps the running configuration).
    pub fn reload_failed(&self) {
        self.reloads.get_or_create(&[("result", "failed")]).inc();
        self.last_reload_ok.set(0);
    }

    /// The OpenMetrics text exposition: what `GET /metrics` returns. Reads
    /// the pinned maps (walking the flow table), so call it off the async
    /// executor.
    ///
    /// # Errors
    ///
    /// Only when formatting fails (it does not, writing to a `String`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let _one = self.scraping.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn backend_labels(service: &str, backend: &str) -> BackendLabels {
    [
        ("service", service.to_owned()),
        ("backend", backend.to_owned()),
    ]
}

fn failure_labels(service: &str, backend: &str, reason: &str) -> FailureLabels {
    [
        ("service", service.to_owned()),
        ("backend", backend.to_owned()),
        ("reason", reason.to_owned()),
    ]
}

#[cfg(test)]
pub(crate) mod tests;
