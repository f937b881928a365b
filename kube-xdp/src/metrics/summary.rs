//! The periodic summary line of the event log: flows in the table, what
//! was forwarded since the last summary, backends up.

use std::{sync::Arc, time::Duration};

use kube_xdp_common::stats::Counter as DpCounter;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Metrics;
use crate::view::Pins;
use crate::view::Snapshot;

/// Flow-table occupancy (live flows / capacity) above which the summary
/// is a warning: live flows are never evicted only while the table has
/// room.
pub const OCCUPANCY_WARNING: f64 = 0.8;

/// One summary, between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub live_flows: u64,
    pub capacity: u32,
    /// Packets sent out by the datapath (forwarded both ways, RSTs).
    pub forwarded: u64,
    /// Packets left to the kernel.
    pub passed: u64,
    /// Packets dropped.
    pub dropped: u64,
    pub new_flows: u64,
    pub seconds: f64,
    pub backends_up: usize,
    pub backends_total: usize,
    /// Services with no backend able to take new flows.
    pub no_usable_backend: Vec<String>,
}

impl Summary {
    /// What happened between `prev` and `cur`.
    pub fn between(prev: &Snapshot, cur: &Snapshot) -> Self {
        let delta = |c: DpCounter| cur.counter(c).saturating_sub(prev.counter(c));
        let (backends_up, backends_total) = cur.backends_up();
        Summary {
            live_flows: cur.live_flows,
            capacity: cur.capacity,
            forwarded: cur.forwarded().saturating_sub(prev.forwarded()),
            passed: delta(DpCounter::VerdictPass),
            dropped: delta(DpCounter::VerdictDrop) + delta(DpCounter::VerdictAborted),
            new_flows: delta(DpCounter::NewFlow),
            seconds: cur.taken.duration_since(prev.taken).as_secs_f64(),
            backends_up,
            backends_total,
            no_usable_backend: cur
                .services
                .iter()
                .filter(|s| s.usable_backends() == 0)
                .map(|s| s.name.clone())
                .collect(),
        }
    }

    /// Live flows as a fraction of the table.
    pub fn occupancy(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.live_flows as f64 / f64::from(self.capacity)
        }
    }

    /// Whether the line should be a warning.
    pub fn is_warning(&self) -> bool {
        self.occupancy() > OCCUPANCY_WARNING || !self.no_usable_backend.is_empty()
    }

    /// What needs attention, in words: an almost full flow table, services
    /// that refuse new connections.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.occupancy() > OCCUPANCY_WARNING {
            out.push(format!(
                "the flow table is {:.0}% full (over {:.0}%): raise flow_table_size",
                self.occupancy() * 100.0,
                OCCUPANCY_WARNING * 100.0
            ));
        }
        if !self.no_usable_backend.is_empty() {
            out.push(format!(
                "no usable backend: {}",
                self.no_usable_backend.join(", ")
            ));
        }
        out
    }

    /// The log line's message: `summary`, then the warnings if any (the
    /// numbers are the event's fields).
    pub fn message(&self) -> String {
        let warnings = self.warnings();
        if warnings.is_empty() {
            "summary".to_owned()
        } else {
            format!("summary: {}", warnings.join("; "))
        }
    }
}

fn read(metrics: &Metrics) -> Option<Snapshot> {
    let names = metrics.names();
    match Pins::open(metrics.pin_path()).and_then(|pins| pins.snapshot(Some(&names))) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("summary: reading the pinned maps: {e}");
            None
        }
    }
}

fn log(s: &Summary) {
    let no_usable = s.no_usable_backend.join(",");
    let occupancy = format!("{:.1}%", s.occupancy() * 100.0);
    let message = s.message();
    macro_rules! emit {
        ($level:ident) => {
            $level!(
                event = "summary",
                live_flows = s.live_flows,
                flow_capacity = s.capacity,
                occupancy = %occupancy,
                forwarded_packets = s.forwarded,
                new_flows = s.new_flows,
                passed_packets = s.passed,
                dropped_packets = s.dropped,
                interval_seconds = s.seconds.round() as u64,
                backends_up = s.backends_up,
                backends_total = s.backends_total,
                no_usable_backend = %no_usable,
                "{message}"
            )
        };
    }
    if s.is_warning() {
        emit!(warn);
    } else {
        emit!(info);
    }
}

/// Logs a [`Summary`] every `every` (the first one `every` after the
/// start), reading the maps pinned where `metrics` says.
pub fn spawn_summary(metrics: Arc<Metrics>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prev: Option<Snapshot> = None;
        loop {
            ticker.tick().await;
            let m = Arc::clone(&metrics);
            let Ok(cur) = tokio::task::spawn_blocking(move || read(&m)).await else {
                continue;
            };
            let Some(cur) = cur else { continue };
            if let Some(p) = &prev {
                log(&Summary::between(p, &cur));
            }
            prev = Some(cur);
        }
    })
}
