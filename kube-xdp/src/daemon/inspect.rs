//! What the inspection commands show: the pinned maps joined with the
//! configuration's names, so `kube-xdp backends` speaks of
//! "kube-apiserver/bettley", not of slot 3.

use serde::Serialize;
use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use kube_xdp_common::maps::{
    FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_SYN_SENT, FLOW_UDP, Flow, FlowKey, Settings,
};

use crate::{
    config::Config,
    daemon::desired,
    datapath::{BackendState, Datapath, DatapathError, addr_from_be},
};

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a flow entry is live: within its idle timeout, and its reverse
/// entry points back at it (the datapath's own rule).
pub fn live(dp: &Datapath, settings: &Settings, key: &FlowKey, flow: &Flow, now: u64) -> bool {
    if now.saturating_sub(flow.last_seen_ns) > settings.idle_timeout_ns(flow.state) {
        return false;
    }
    let rkey = FlowKey {
        src_addr: flow.backend_addr,
        dst_addr: flow.snat_addr,
        src_port: flow.backend_port,
        dst_port: flow.snat_port,
        protocol: key.protocol,
        _pad: [0; 3],
    };
    matches!(dp.reverse(&rkey), Ok(Some(r)) if r.client == *key)
}

pub fn state_name(state: u8) -> &'static str {
    match state {
        FLOW_SYN_SENT => "SYN_SENT",
        FLOW_ESTABLISHED => "ESTABLISHED",
        FLOW_CLOSING => "CLOSING",
        FLOW_UDP => "UDP",
        _ => "?",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    pub name: String,
    pub address: Ipv4Addr,
    /// `None`: the client's port (port ranges).
    pub port: Option<u16>,
    pub state: &'static str,
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

/// Services and backends as the maps hold them, named from `config` where
/// it knows them.
///
/// # Errors
///
/// When a map cannot be read.
pub fn services(dp: &Datapath, config: Option<&Config>) -> Result<Vec<ServiceView>, DatapathError> {
    let settings = dp.settings()?;
    let now = monotonic_ns();
    let mut flows_per_backend: HashMap<u16, u64> = HashMap::new();
    for (key, flow) in dp.flows()? {
        if live(dp, &settings, &key, &flow, now) {
            *flows_per_backend.entry(flow.backend_id).or_default() += 1;
        }
    }
    let resolved = config
        .map(|c| desired::resolve_all(c).0)
        .unwrap_or_default();
    let backends = dp.backends()?;
    let mut out = Vec::new();
    for (id, spec) in dp.services()? {
        let named = config.and_then(|c| {
            c.services.iter().find(|s| {
                s.vip == spec.vip
                    && s.port.range().first == *spec.ports.start()
                    && s.protocol.number() == spec.protocol
            })
        });
        let table = dp.pool_table(id)?;
        let traffic = dp.service_traffic(id)?;
        let mut views = Vec::new();
        for (bid, b) in backends.iter().filter(|(_, b)| b.service_id == id) {
            let configured = named.and_then(|s| {
                s.backends.iter().find(|cb| {
                    desired::address(&s.name, cb, &resolved) == Some(b.addr) && cb.port == b.port
                })
            });
            let t = dp.backend_traffic(*bid)?;
            let slots = table.iter().filter(|x| **x == *bid).count();
            views.push(BackendView {
                name: configured.map_or_else(|| format!("#{bid}"), |c| c.name.clone()),
                address: b.addr,
                port: b.port,
                state: match b.state {
                    BackendState::Up => "UP",
                    BackendState::Down => "DOWN",
                    BackendState::Draining => "DRAIN",
                },
                weight: configured.map(|c| c.weight),
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
            vip: spec.vip,
            first_port: *spec.ports.start(),
            last_port: *spec.ports.end(),
            protocol: if spec.protocol == 17 { "udp" } else { "tcp" },
            mode: "nat",
            on_backend_down: if spec.reset_on_down { "reset" } else { "keep" },
            packets: traffic.packets,
            bytes: traffic.bytes,
            new_flows: traffic.new_flows,
            backends: views,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub protocol: &'static str,
    pub client: String,
    pub vip: String,
    pub backend: String,
    pub snat: String,
    pub state: &'static str,
    pub age_secs: f64,
    pub idle_secs: f64,
    pub live: bool,
}

/// The flow table; only live flows unless `all`.
///
/// # Errors
///
/// When a map cannot be read.
pub fn flows(dp: &Datapath, all: bool) -> Result<Vec<FlowView>, DatapathError> {
    let settings = dp.settings()?;
    let now = monotonic_ns();
    let secs = |ns: u64| Duration::from_nanos(now.saturating_sub(ns)).as_secs_f64();
    let ep = |a: u32, p: u16| format!("{}:{}", addr_from_be(a), u16::from_be(p));
    let mut out: Vec<FlowView> = dp
        .flows()?
        .into_iter()
        .map(|(k, f)| FlowView {
            protocol: if k.protocol == 17 { "udp" } else { "tcp" },
            client: ep(k.src_addr, k.src_port),
            vip: ep(k.dst_addr, k.dst_port),
            backend: ep(f.backend_addr, f.backend_port),
            snat: ep(f.snat_addr, f.snat_port),
            state: state_name(f.state),
            age_secs: secs(f.created_ns),
            idle_secs: secs(f.last_seen_ns),
            live: live(dp, &settings, &k, &f, now),
        })
        .filter(|f| all || f.live)
        .collect();
    out.sort_by(|a, b| a.age_secs.total_cmp(&b.age_secs).reverse());
    Ok(out)
}
