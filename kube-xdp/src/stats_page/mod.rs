//! The stats page (`stats_listen`, `stats_uri`): what HAProxy's `stats uri`
//! page gives operators, one self-contained HTML page that refreshes
//! itself, and the same data as JSON at `<stats_uri>.json`.
//!
//! - [`StatsPage`] is what the daemon records for it as things happen:
//!   each backend's last health check and when its health last changed
//!   (from `Daemon::on_check`), and the page settings in force (a reload
//!   applies `stats_uri`, `stats_refresh`, `stats_auth` and
//!   `stats_hide_version`; `stats_listen` takes a restart);
//! - `model` builds the [`Page`] from a [`Snapshot`] of the pinned maps
//!   (read through [`crate::view::Pins`] only), the rates between two
//!   snapshots (`metrics::top`), and those records;
//! - `html` renders it; the JSON is its serde form;
//! - `server` serves both with hyper, behind basic auth when `stats_auth`
//!   is set.

mod html;
mod model;
mod server;

pub use html::escape;
pub use html::render;
pub use model::{
    BackendPage, DaemonInfo, HaInfo, LastCheck, Page, RatesPage, ServicePage, Totals, build,
};
pub use server::serve;

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, RwLock},
    time::{Duration, Instant},
};

use crate::{
    config::StatsConfig,
    health::{CheckEvent, Failure},
    view::Snapshot,
};

/// What the page knows of one backend's health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendHealth {
    /// When its health last changed; the daemon's start when it has not
    /// changed since (then `since_known` is false: "at least this long").
    pub since: Instant,
    pub since_known: bool,
    /// The last check, when one has run.
    pub last: Option<CheckRecord>,
}

/// One health check as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRecord {
    pub at: Instant,
    pub passed: bool,
    /// HAProxy's short status: `L4OK`, `L7OK`, `L4CON`, `L4TOUT`, `L6RSP`,
    /// `L7RSP`, `L7STS`.
    pub status: &'static str,
    pub duration: Duration,
    /// The whole reason, in HAProxy's words.
    pub reason: String,
}

/// HAProxy's short check status of `event`.
fn check_status<K>(event: &CheckEvent<K>) -> &'static str {
    match event.failure() {
        None if event.reason.starts_with("Layer7") => "L7OK",
        None => "L4OK",
        Some(Failure::Refused | Failure::Unreachable(_)) => "L4CON",
        Some(Failure::Timeout(_)) => "L4TOUT",
        Some(Failure::Tls(_)) => "L6RSP",
        Some(Failure::Http(_)) => "L7RSP",
        Some(Failure::Status { .. }) => "L7STS",
        // Never recorded (the checker skips it); HAProxy's "resource error".
        Some(Failure::Local(_)) => "L4RES",
    }
}

/// Shared between the daemon (which records) and the page server (which
/// reads): create it with [`StatsPage::new`], hold it in an `Arc`.
#[derive(Debug)]
pub struct StatsPage {
    started: Instant,
    settings: RwLock<StatsConfig>,
    health: Mutex<HashMap<(String, String), BackendHealth>>,
    /// The last two samples of the maps, for rates (see [`StatsPage::sample`]).
    samples: Mutex<Option<(Snapshot, Snapshot)>>,
}

/// Rates are taken over at least this long.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

impl StatsPage {
    pub fn new(settings: StatsConfig) -> Self {
        StatsPage {
            started: Instant::now(),
            settings: RwLock::new(settings),
            health: Mutex::new(HashMap::new()),
            samples: Mutex::new(None),
        }
    }

    /// How long the daemon has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The settings in force.
    pub fn settings(&self) -> StatsConfig {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reload's settings.
    pub fn set_settings(&self, settings: StatsConfig) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// Records a health check of `service`/`backend`.
    pub fn record_check<K>(&self, service: &str, backend: &str, event: &CheckEvent<K>) {
        let now = Instant::now();
        let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let entry = all
            .entry((service.to_owned(), backend.to_owned()))
            .or_insert(BackendHealth {
                since: self.started,
                since_known: false,
                last: None,
            });
        if event.transition.is_some() {
            entry.since = now;
            entry.since_known = true;
        }
        entry.last = Some(CheckRecord {
            at: now,
            passed: event.failure().is_none(),
            status: check_status(event),
            duration: event.duration,
            reason: event.reason.clone(),
        });
    }

    /// Forgets the backends not in `keep` (removed by a reload).
    pub fn retain(&self, keep: &HashSet<(String, String)>) {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep.contains(k));
    }

    /// What is known of each backend's checks.
    pub fn health(&self) -> HashMap<(String, String), BackendHealth> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The daemon's start (for backends never checked).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Takes `cur` as the newest sample and returns the one to take rates
    /// against: the previous sample when it is at least a second older,
    /// else the one before it (so that two requests in a row — the page and
    /// its JSON, two tabs — still get rates over a second or more). `None`
    /// on the first sample.
    pub fn rate_base(&self, cur: &Snapshot) -> Option<Snapshot> {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let base = match samples.take() {
            None => {
                *samples = Some((cur.clone(), cur.clone()));
                return None;
            }
            Some((older, newer)) => {
                if cur.taken.saturating_duration_since(newer.taken) >= MIN_RATE_WINDOW {
                    *samples = Some((newer.clone(), cur.clone()));
                    newer
                } else {
                    let base = older.clone();
                    *samples = Some((older, newer));
                    base
                }
            }
        };
        Some(base)
    }
}

#[cfg(test)]
mod tests;
