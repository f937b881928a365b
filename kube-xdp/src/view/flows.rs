//! The flow table as read from the pins: one walk of the forward map and
//! one of the reverse map, joined in memory by the datapath's own rule (a
//! flow is live within its idle timeout while its reverse entry points
//! back at it).

use serde::Serialize;
use std::{collections::HashMap, time::Duration};

use kube_xdp_common::{
    flow,
    maps::{
        FLOW_CLOSING, FLOW_COOKIE, FLOW_COOKIE_WAIT, FLOW_ESTABLISHED, FLOW_FIN_BACKEND,
        FLOW_FIN_CLIENT, FLOW_REPLIED, FLOW_RST, FLOW_SYN_ACK_AGAIN, FLOW_SYN_SENT,
        FLOW_TS_REWRITE, FLOW_UDP, Flow, FlowKey, ReverseFlow, Settings,
    },
};

use crate::{
    config::Protocol,
    datapath::{Datapath, DatapathError, addr_from_be},
    host::monotonic_ns,
};

/// Both flow maps at one moment.
pub(super) struct Table {
    pub forward: Vec<(FlowKey, Flow)>,
    reverse: HashMap<FlowKey, ReverseFlow>,
    settings: Settings,
    /// `CLOCK_MONOTONIC` when the walk started.
    pub now: u64,
}

impl Table {
    pub fn read(dp: &Datapath) -> Result<Self, DatapathError> {
        let settings = dp.settings()?;
        let now = monotonic_ns();
        let forward = dp.flows()?;
        let reverse = dp.reverse_flows()?.into_iter().collect();
        Ok(Table {
            forward,
            reverse,
            settings,
            now,
        })
    }

    /// Whether the forward entry `flow` of `key` is live.
    /// Whether the forward entry `flow` of `key` is live: the datapath's
    /// own rule ([`flow::live`]), its reverse entry found in the walk.
    pub fn is_live(&self, key: &FlowKey, flow: &Flow) -> bool {
        let reverse = self.reverse.get(&flow::reverse_key(key, flow));
        flow::live(&self.settings, key, flow, reverse, self.now)
    }

    /// The live flows.
    pub fn live(&self) -> impl Iterator<Item = &(FlowKey, Flow)> {
        self.forward.iter().filter(|(k, f)| self.is_live(k, f))
    }
}

/// What a scrape needs of the flow table, counted in one walk of the
/// forward map with a lookup of each unexpired entry's reverse entry:
/// nothing of the table is copied (at the largest `flow_table_size` a
/// copy would take a gigabyte).
pub(super) struct Counts {
    /// Forward entries, live or expired.
    pub entries: u64,
    /// Live flows by backend id.
    pub live_by_backend: HashMap<u16, u64>,
    /// Live flows by state, in [`FLOW_STATES`] order.
    pub live_by_state: [u64; FLOW_STATES.len()],
}

/// The flow states, each with its label in the metrics
/// (`kube_xdp_flow_table_live_flows_by_state{state}`).
pub const FLOW_STATES: [(u8, &str); 4] = [
    (FLOW_SYN_SENT, "syn_sent"),
    (FLOW_ESTABLISHED, "established"),
    (FLOW_CLOSING, "closing"),
    (FLOW_UDP, "udp"),
];
// `Snapshot::half_open_flows` reads the first.
const _: () = assert!(FLOW_STATES[0].0 == FLOW_SYN_SENT);

impl Counts {
    pub fn read(dp: &Datapath) -> Result<Self, DatapathError> {
        let settings = dp.settings()?;
        let now = monotonic_ns();
        let mut counts = Counts {
            entries: 0,
            live_by_backend: HashMap::new(),
            live_by_state: [0; FLOW_STATES.len()],
        };
        let mut failed = None;
        dp.for_each_flow(|key, flow| {
            counts.entries += 1;
            if failed.is_some() || flow::expired(&settings, flow, now) {
                return;
            }
            match dp.reverse(&flow::reverse_key(key, flow)) {
                Ok(reverse) if flow::live(&settings, key, flow, reverse.as_ref(), now) => {
                    *counts.live_by_backend.entry(flow.backend_id).or_default() += 1;
                    if let Some(i) = FLOW_STATES.iter().position(|(s, _)| *s == flow.state) {
                        counts.live_by_state[i] += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    }
}

/// The live flows of `dp` and the `CLOCK_MONOTONIC` time of the walk
/// (what the pair's flow sync sends its peer).
///
/// # Errors
///
/// When a map cannot be read.
pub fn live_flows(dp: &Datapath) -> Result<(u64, Vec<(FlowKey, Flow)>), DatapathError> {
    let table = Table::read(dp)?;
    let live = table.live().copied().collect();
    Ok((table.now, live))
}

/// The name of a flow state, as `kube-xdp flows` shows it.
pub fn state_name(state: u8) -> &'static str {
    match state {
        FLOW_SYN_SENT => "SYN_SENT",
        FLOW_ESTABLISHED => "ESTABLISHED",
        FLOW_CLOSING => "CLOSING",
        FLOW_UDP => "UDP",
        _ => "?",
    }
}

/// Every `Flow::flags` bit with the name `kube-xdp flows` shows, in bit
/// order.
pub const FLAG_NAMES: [(u8, &str); 8] = [
    (FLOW_TS_REWRITE, "ts_rewrite"),
    (FLOW_FIN_CLIENT, "fin_client"),
    (FLOW_FIN_BACKEND, "fin_backend"),
    (FLOW_RST, "rst"),
    (FLOW_REPLIED, "replied"),
    // Opened by the client's ACK of a SYN cookie: its sequence numbers
    // are translated.
    (FLOW_COOKIE, "cookie"),
    // A cookie flow whose backend has not answered yet.
    (FLOW_COOKIE_WAIT, "cookie_wait"),
    // The backend sent its SYN-ACK again: it keeps the half-open
    // connection.
    (FLOW_SYN_ACK_AGAIN, "syn_ack_again"),
];

/// The names of the bits set in `flags` (unknown bits as `0x80`).
pub fn flag_names(flags: u8) -> Vec<String> {
    let mut out = Vec::new();
    let mut known = 0;
    for (bit, name) in FLAG_NAMES {
        known |= bit;
        if flags & bit != 0 {
            out.push(name.to_owned());
        }
    }
    for bit in (0..8).map(|i| 1u8 << i) {
        if flags & bit & !known != 0 {
            out.push(format!("{bit:#04x}"));
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub protocol: &'static str,
    pub client: String,
    pub vip: String,
    pub backend: String,
    pub snat: String,
    pub state: &'static str,
    /// [`flag_names`] of the flow's flags.
    pub flags: Vec<String>,
    pub age_secs: f64,
    pub idle_secs: f64,
    pub live: bool,
}

/// The flow table, oldest first; only live flows unless `all`.
///
/// # Errors
///
/// When a map cannot be read.
pub(super) fn flows(dp: &Datapath, all: bool) -> Result<Vec<FlowView>, DatapathError> {
    let table = Table::read(dp)?;
    let secs = |ns: u64| Duration::from_nanos(table.now.saturating_sub(ns)).as_secs_f64();
    let ep = |a: u32, p: u16| format!("{}:{}", addr_from_be(a), u16::from_be(p));
    let mut out: Vec<FlowView> = table
        .forward
        .iter()
        .map(|(k, f)| FlowView {
            protocol: Protocol::from_number(k.protocol).map_or("?", Protocol::as_str),
            client: ep(k.src_addr, k.src_port),
            vip: ep(k.dst_addr, k.dst_port),
            backend: ep(f.backend_addr, f.backend_port),
            snat: ep(f.snat_addr, f.snat_port),
            state: state_name(f.state),
            flags: flag_names(f.flags),
            age_secs: secs(f.created_ns),
            idle_secs: secs(f.last_seen_ns),
            live: table.is_live(k, f),
        })
        .filter(|f| all || f.live)
        .collect();
    out.sort_by(|a, b| a.age_secs.total_cmp(&b.age_secs).reverse());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_named_cookie_flows_included() {
        assert!(flag_names(0).is_empty());
        assert_eq!(flag_names(FLOW_COOKIE), ["cookie"]);
        assert_eq!(
            flag_names(FLOW_TS_REWRITE | FLOW_COOKIE | FLOW_COOKIE_WAIT),
            ["ts_rewrite", "cookie", "cookie_wait"]
        );
        assert_eq!(
            flag_names(FLOW_FIN_CLIENT | FLOW_SYN_ACK_AGAIN),
            ["fin_client", "syn_ack_again"]
        );
    }
}
