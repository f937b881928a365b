//! The XDP programs' cost in live traffic, from the kernel's own
//! accounting (`BPF_ENABLE_STATS`, what `sysctl kernel.bpf_stats_enabled`
//! turns on: each run's time added to the program's `run_time_ns`), and
//! the flow table's occupancy at the end of a run.

use std::{collections::BTreeMap, os::fd::OwnedFd, path::Path};

use aya::{
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use kube_xdp::view::Pins;

/// The programs of ours that run on the data path, by their kernel names
/// (at most 15 characters).
const PROGRAMS: &[&str] = &["kube_xdp", "kube_xdp_cookie", "kube_xdp_pass"];

/// One program's runs during a measurement, summed over its instances
/// (the XDP_PASS program runs on several ports).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgramRuns {
    pub runs: u64,
    pub ns: u64,
}

impl ProgramRuns {
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.ns as f64 / self.runs as f64)
    }
}

/// Statistics on while this lives; the counts when it started.
pub struct Accounting {
    _on: OwnedFd,
    before: BTreeMap<u32, (String, u64, u64)>,
}

/// Every loaded program of ours: id → (name, runs, ns).
fn programs() -> BTreeMap<u32, (String, u64, u64)> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let name = p.name_as_str()?.to_owned();
            PROGRAMS.contains(&name.as_str()).then(|| {
                (
                    p.id(),
                    (name, p.run_count(), p.run_time().as_nanos() as u64),
                )
            })
        })
        .collect()
}

/// Turns the accounting on (it costs each run two clock reads, for every
/// row alike) and notes where the counts start.
pub fn start() -> Option<Accounting> {
    let on = enable_stats(Stats::RunTime)
        .map_err(|e| eprintln!("bench e2e: BPF_ENABLE_STATS: {e}"))
        .ok()?;
    Some(Accounting {
        _on: on,
        before: programs(),
    })
}

impl Accounting {
    /// The runs since `start`, by program name.
    pub fn finish(self) -> BTreeMap<String, ProgramRuns> {
        let mut out: BTreeMap<String, ProgramRuns> = BTreeMap::new();
        for (id, (name, runs, ns)) in programs() {
            let (r0, n0) = self.before.get(&id).map_or((0, 0), |(_, r, n)| (*r, *n));
            let e = out.entry(name).or_default();
            e.runs += runs.saturating_sub(r0);
            e.ns += ns.saturating_sub(n0);
        }
        out.retain(|_, r| r.runs > 0);
        out
    }
}

/// The flow table when a run ends: entries (live or expired), live flows,
/// and the live ones by state.
#[derive(Debug, Clone, Default)]
pub struct Occupancy {
    pub entries: u64,
    pub live: u64,
    pub by_state: Vec<(&'static str, u64)>,
    pub capacity: u32,
}

pub fn occupancy(pin_path: &Path) -> Option<Occupancy> {
    let snap = Pins::open(pin_path)
        .and_then(|p| p.snapshot(None))
        .map_err(|e| eprintln!("bench e2e: flow table: {e}"))
        .ok()?;
    Some(Occupancy {
        entries: snap.flow_entries,
        live: snap.live_flows,
        by_state: kube_xdp::view::FLOW_STATES
            .iter()
            .zip(snap.live_by_state)
            .map(|((_, name), n)| (*name, n))
            .collect(),
        capacity: snap.capacity,
    })
}

/// The LB interface's received packets and bytes (`eth0` in its namespace,
/// from `/proc/net/dev`): what its receive path handled, one skb (a GRO
/// segment) or frame each.
pub fn lb_rx(ns: &kube_xdp_tests::netns::Netns) -> Option<(u64, u64)> {
    let out = ns.exec("cat", &["/proc/net/dev"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("eth0:"))?;
    let mut fields = line.split_whitespace().map(|v| v.parse::<u64>().ok());
    // Receive: bytes, then packets.
    let bytes = fields.next()??;
    let packets = fields.next()??;
    Some((packets, bytes))
}
