//! The page as data: what the HTML shows and what `<stats_uri>.json`
//! returns (its serde form), built from a [`Snapshot`] of the maps, the
//! rates since an earlier one, and the daemon's health-check records.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use super::BackendHealth;
use crate::{
    metrics::top::{self, Rates},
    view::Snapshot,
};

/// The whole page.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The daemon's version; absent with `stats_hide_version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub uptime_seconds: u64,
    /// FNV-1a of the configuration file in force (as
    /// `kube_xdp_config_info{hash}`).
    pub config_hash: String,
    pub ha: HaInfo,
    /// When the maps were read, RFC 3339 UTC.
    pub time: String,
    /// How often the HTML page reloads itself.
    pub refresh_seconds: f64,
    /// The window the rates are taken over; absent (and every rate too)
    /// when there was no earlier sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates_over_seconds: Option<f64>,
    pub totals: Totals,
    pub services: Vec<ServicePage>,
}

/// The high-availability state: the pair's VRRP state (`MASTER`,
/// `BACKUP`, `FAULT`, `INIT`), or `standalone` on a single box.
#[derive(Debug, Clone, Serialize)]
pub struct HaInfo {
    pub state: String,
}

/// What the daemon tells about itself.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub version: Option<String>,
    pub uptime: Duration,
    pub config_hash: String,
    pub refresh: Duration,
    /// The pair's state; `None` on a single box.
    pub ha: Option<String>,
}

/// Per-second rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatesPage {
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
    pub new_flows_per_second: f64,
}

impl From<Rates> for RatesPage {
    fn from(r: Rates) -> Self {
        RatesPage {
            packets_per_second: r.packets,
            bytes_per_second: r.bytes,
            new_flows_per_second: r.new_flows,
        }
    }
}

/// Sums over every service, and the datapath as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub services: usize,
    pub backends_usable: usize,
    pub backends_up: usize,
    pub backends_total: usize,
    pub active_flows: u64,
    pub flow_capacity: u32,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<RatesPage>,
    /// Packets per second the datapath sent out, left to the kernel, and
    /// dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_per_second: Option<f64>,
}

/// One service and its backends.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePage {
    pub name: String,
    pub vip: String,
    /// `6443`, or `30000-32767` for a range.
    pub ports: String,
    pub protocol: String,
    pub mode: String,
    pub on_backend_down: String,
    pub usable_backends: usize,
    pub backends_total: usize,
    pub active_flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<RatesPage>,
    pub backends: Vec<BackendPage>,
}

/// One backend.
#[derive(Debug, Clone, Serialize)]
pub struct BackendPage {
    pub name: String,
    pub address: String,
    /// `None`: the client's port (port ranges).
    pub port: Option<u16>,
    /// `UP`, `DOWN` or `DRAIN`, as the datapath holds it.
    pub state: String,
    /// How long its health has been what it is.
    pub state_seconds: u64,
    /// True when the health has not changed since the daemon started:
    /// `state_seconds` is then a lower bound.
    pub state_at_least: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<LastCheck>,
    pub weight: Option<u32>,
    /// Share of the pool's Maglev slots, 0..=1.
    pub share: f64,
    pub active_flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rates: Option<RatesPage>,
}

/// The last health check of a backend.
#[derive(Debug, Clone, Serialize)]
pub struct LastCheck {
    pub passed: bool,
    /// HAProxy's short status (`L4OK`, `L7OK`, `L4CON`, `L4TOUT`, …).
    pub status: String,
    pub duration_ms: f64,
    pub seconds_ago: u64,
    /// In HAProxy's words.
    pub reason: String,
}

/// The page for `cur` (read at `now`), with rates since `base` when there
/// is one; `health` as the daemon recorded it, keyed by (service,
/// backend); backends never checked count their state from `started`.
pub fn build(
    cur: &Snapshot,
    base: Option<&Snapshot>,
    health: &HashMap<(String, String), BackendHealth>,
    started: Instant,
    info: DaemonInfo,
    now: SystemTime,
) -> Page {
    let frame = base.map(|b| top::frame(b, cur, now));
    let at = Instant::now();
    let services: Vec<ServicePage> = cur
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // `top::frame` keeps the snapshot's order.
            let row = frame.as_ref().and_then(|f| f.services.get(i));
            let backends = s
                .backends
                .iter()
                .enumerate()
                .map(|(j, b)| {
                    let h = health.get(&(s.name.clone(), b.name.clone()));
                    let (since, known) = h.map_or((started, false), |h| (h.since, h.since_known));
                    BackendPage {
                        name: b.name.clone(),
                        address: b.address.to_string(),
                        port: b.port,
                        state: b.state.name().to_owned(),
                        state_seconds: at.saturating_duration_since(since).as_secs(),
                        state_at_least: !known,
                        last_check: h.and_then(|h| h.last.as_ref()).map(|c| LastCheck {
                            passed: c.passed,
                            status: c.status.to_owned(),
                            duration_ms: c.duration.as_secs_f64() * 1000.0,
                            seconds_ago: at.saturating_duration_since(c.at).as_secs(),
                            reason: c.reason.clone(),
                        }),
                        weight: b.weight,
                        share: b.share,
                        active_flows: b.active_flows,
                        packets: b.packets,
                        bytes: b.bytes,
                        new_flows: b.new_flows,
                        rates: row
                            .and_then(|r| r.backends.get(j))
                            .and_then(|r| r.rates)
                            .map(RatesPage::from),
                    }
                })
                .collect();
            ServicePage {
                name: s.name.clone(),
                vip: s.vip.to_string(),
                ports: if s.first_port == s.last_port {
                    s.first_port.to_string()
                } else {
                    format!("{}-{}", s.first_port, s.last_port)
                },
                protocol: s.protocol.to_owned(),
                mode: s.mode.to_owned(),
                on_backend_down: s.on_backend_down.to_owned(),
                usable_backends: s.usable_backends(),
                backends_total: s.backends.len(),
                active_flows: s.backends.iter().map(|b| b.active_flows).sum(),
                packets: s.packets,
                bytes: s.bytes,
                new_flows: s.new_flows,
                rates: row.and_then(|r| r.rates).map(RatesPage::from),
                backends,
            }
        })
        .collect();
    let (backends_up, backends_total) = cur.backends_up();
    let rates = frame.as_ref().map(|_| {
        let sum = |f: fn(&RatesPage) -> f64| {
            services
                .iter()
                .filter_map(|s| s.rates.as_ref())
                .map(f)
                .sum()
        };
        RatesPage {
            packets_per_second: sum(|r| r.packets_per_second),
            bytes_per_second: sum(|r| r.bytes_per_second),
            new_flows_per_second: sum(|r| r.new_flows_per_second),
        }
    });
    let totals = Totals {
        services: services.len(),
        backends_usable: services.iter().map(|s| s.usable_backends).sum(),
        backends_up,
        backends_total,
        active_flows: cur.live_flows,
        flow_capacity: cur.capacity,
        packets: services.iter().map(|s| s.packets).sum(),
        bytes: services.iter().map(|s| s.bytes).sum(),
        new_flows: services.iter().map(|s| s.new_flows).sum(),
        rates,
        forwarded_per_second: frame.as_ref().map(|f| f.forwarded),
        passed_per_second: frame.as_ref().map(|f| f.passed),
        dropped_per_second: frame.as_ref().map(|f| f.dropped),
    };
    Page {
        version: info.version,
        uptime_seconds: info.uptime.as_secs(),
        config_hash: info.config_hash,
        ha: HaInfo {
            state: info.ha.unwrap_or_else(|| "standalone".to_owned()),
        },
        time: humantime::format_rfc3339_seconds(now).to_string(),
        refresh_seconds: info.refresh.as_secs_f64(),
        rates_over_seconds: frame.as_ref().map(|f| f.seconds),
        totals,
        services,
    }
}
