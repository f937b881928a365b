//! The one read view of the datapath: a [`Snapshot`] of the pinned maps
//! taken with one walk of each flow map, named from what the daemon wrote
//! after its last apply ([`Names`]) — never from the configuration file
//! or DNS, so what `kube-xdp backends`, `stats`, `top` and the metrics show
//! is what the daemon programmed, and reading it costs no lookup. The
//! inspection commands and the metrics read the datapath only through
//! here.

mod flows;
mod names;

pub use crate::datapath::{BackendState, DatapathError};
pub use flows::{FLAG_NAMES, FLOW_STATES, FlowView, flag_names, live_flows, state_name};
pub use names::{BackendName, NAMES_FILE, Names, ServiceName};

use serde::Serialize;
use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use kube_xdp_common::stats::Counter;

use crate::{
    config::{ForwardingMode, OnBackendDown, Protocol},
    datapath::Datapath,
};

/// The pinned maps, opened to be read (a handle of its own: readers share
/// nothing mutable with the daemon).
pub struct Pins(Datapath);

impl Pins {
    /// # Errors
    ///
    /// When nothing (or not all) is pinned at `pin_path`: the error says
    /// so and what to do.
    pub fn open(pin_path: &Path) -> Result<Self, DatapathError> {
        Datapath::open_pinned(pin_path).map(Pins)
    }

    /// The maps now, named from `names` (`#id` without).
    ///
    /// # Errors
    ///
    /// When a map cannot be read.
    pub fn snapshot(&self, names: Option<&Names>) -> Result<Snapshot, DatapathError> {
        Snapshot::read(&self.0, names)
    }

    /// The flow table, oldest first; only live flows unless `all`.
    ///
    /// # Errors
    ///
    /// When a map cannot be read.
    pub fn flows(&self, all: bool) -> Result<Vec<FlowView>, DatapathError> {
        flows::flows(&self.0, all)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    pub name: String,
    pub address: Ipv4Addr,
    /// `None`: the client's port (port ranges).
    pub port: Option<u16>,
    pub state: BackendState,
    pub weight: Option<u32>,
    /// Share of the pool's Maglev slots, 0..=1.
    pub share: f64,
    pub active_flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    /// The Kubernetes Service (`namespace/name`) it came from; `None`: the
    /// file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub vip: Ipv4Addr,
    pub first_port: u16,
    pub last_port: u16,
    pub protocol: &'static str,
    pub mode: &'static str,
    pub on_backend_down: &'static str,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub backends: Vec<BackendView>,
}

impl ServiceView {
    /// Backends that can take new flows: those holding slots in the live
    /// Maglev table (UP, weight above 0).
    pub fn usable_backends(&self) -> usize {
        self.backends.iter().filter(|b| b.share > 0.0).count()
    }
}

/// The maps at one moment, named.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the traffic counters were read.
    pub taken: Instant,
    /// The global verdict and reason counters, summed over CPUs.
    pub counters: Vec<(Counter, u64)>,
    pub services: Vec<ServiceView>,
    /// Entries in the forward flow table, live or expired (an LRU map:
    /// expired entries are reclaimed as new flows need room).
    pub flow_entries: u64,
    /// Live flows: within their idle timeout with both entries in place
    /// (the datapath's own rule).
    pub live_flows: u64,
    /// Live flows by state, in [`FLOW_STATES`] order (`syn_sent`: the
    /// half-open ones).
    pub live_by_state: [u64; FLOW_STATES.len()],
    /// `flow_table_size`, from the pinned metadata.
    pub capacity: u32,
    /// How long reading the maps took.
    pub read_duration: Duration,
}

impl Snapshot {
    /// Reads the maps: counters, services and backends, and the flow table
    /// once (a walk of the forward map, counting as it goes).
    ///
    /// # Errors
    ///
    /// When a map cannot be read.
    pub fn read(dp: &Datapath, names: Option<&Names>) -> Result<Self, DatapathError> {
        let started = Instant::now();
        let counts = flows::Counts::read(dp)?;
        let live_flows = counts.live_by_backend.values().sum();
        let services = services(dp, names, &counts.live_by_backend)?;
        let taken = Instant::now();
        let counters = dp.global_stats()?.counters;
        let capacity = dp.meta()?.flow_table_size;
        Ok(Snapshot {
            taken,
            counters,
            services,
            flow_entries: counts.entries,
            live_flows,
            live_by_state: counts.live_by_state,
            capacity,
            read_duration: started.elapsed(),
        })
    }

    /// The value of one global counter.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, v)| *v)
    }

    /// Live half-open TCP flows (a SYN seen, no handshake yet).
    pub fn half_open_flows(&self) -> u64 {
        self.live_by_state[0]
    }

    /// Packets the datapath sent out itself (`XDP_TX` + `XDP_REDIRECT`):
    /// forwarded both ways, plus the RSTs it answers with.
    pub fn forwarded(&self) -> u64 {
        self.counter(Counter::VerdictTx) + self.counter(Counter::VerdictRedirect)
    }

    /// Backends in the UP state, and all backend slots in use.
    pub fn backends_up(&self) -> (usize, usize) {
        let all = self.services.iter().flat_map(|s| &s.backends);
        let total = all.clone().count();
        let up = all.filter(|b| b.state == BackendState::Up).count();
        (up, total)
    }
}

/// Services and backends as the maps hold them, named from `names`
/// (`#id` for what it does not name), with their live flows from
/// `flows_per_backend`.
fn services(
    dp: &Datapath,
    names: Option<&Names>,
    flows_per_backend: &HashMap<u16, u64>,
) -> Result<Vec<ServiceView>, DatapathError> {
    let backends = dp.backends()?;
    let mut out = Vec::new();
    for (id, spec) in dp.services()? {
        let named = names.and_then(|n| n.services.get(&id));
        let table = dp.pool_table(id)?;
        // One pass over the table, not one per backend.
        let mut slots_of: HashMap<u32, usize> = HashMap::new();
        for slot in &table {
            *slots_of.entry(*slot).or_default() += 1;
        }
        let traffic = dp.service_traffic(id)?;
        let mut views = Vec::new();
        for (bid, b) in backends.iter().filter(|(_, b)| b.service_id == id) {
            let bnamed = named.and_then(|s| s.backends.get(bid));
            let t = dp.backend_traffic(*bid)?;
            let slots = slots_of.get(bid).copied().unwrap_or(0);
            views.push(BackendView {
                name: bnamed.map_or_else(|| format!("#{bid}"), |n| n.name.clone()),
                address: b.addr,
                port: b.port,
                state: b.state,
                weight: bnamed.map(|n| n.weight),
                share: if table.is_empty() {
                    0.0
                } else {
                    slots as f64 / table.len() as f64
                },
                active_flows: flows_per_backend.get(&(*bid as u16)).copied().unwrap_or(0),
                packets: t.packets,
                bytes: t.bytes,
                new_flows: t.new_flows,
            });
        }
        out.push(ServiceView {
            name: named.map_or_else(|| format!("#{id}"), |s| s.name.clone()),
            origin: named.and_then(|s| s.origin.clone()),
            vip: spec.vip,
            first_port: *spec.ports.start(),
            last_port: *spec.ports.end(),
            protocol: Protocol::from_number(spec.protocol).map_or("?", Protocol::as_str),
            mode: ForwardingMode::Nat.as_str(),
            on_backend_down: if spec.reset_on_down {
                OnBackendDown::Reset
            } else {
                OnBackendDown::Keep
            }
            .as_str(),
            packets: traffic.packets,
            bytes: traffic.bytes,
            new_flows: traffic.new_flows,
            backends: views,
        });
    }
    Ok(out)
}
