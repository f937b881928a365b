//! The counters each measurement reads before and after: the client's and
//! the backends' kernel counters, kube-xdp's own, the LB's conntrack
//! statistics; and which of them are worth reporting when they moved.

use super::procs::net_counters;
use kube_xdp_tests::{daemon::cli, netns::Netns, topology::Cluster};
use std::collections::BTreeMap;

/// Client-side counters worth reporting when they moved.
pub(super) const CLIENT_COUNTERS: &[&str] = &[
    "TcpExt:TCPSynRetrans",
    "Tcp:RetransSegs",
    "Tcp:AttemptFails",
    "Tcp:EstabResets",
    "Tcp:InErrs",
    "Tcp:InCsumErrors",
    // Segments that arrived out of order (reordering on the way).
    "TcpExt:TCPOFOQueue",
];
/// Backend-side counters (summed over the backends) worth reporting.
pub(super) const BACKEND_COUNTERS: &[&str] = &[
    "TcpExt:ListenOverflows",
    "TcpExt:ListenDrops",
    "TcpExt:PAWSEstab",
    "TcpExt:PAWSActive",
    "TcpExt:TCPTimeWaitOverflow",
    "TcpExt:TCPChallengeACK",
    "TcpExt:TCPSYNChallenge",
    "TcpExt:TCPReqQFullDrop",
    "TcpExt:TCPBacklogDrop",
    // Fast retransmits, mostly spurious here (reordering; undone by DSACK).
    "TcpExt:TCPFastRetrans",
    "Tcp:InErrs",
    "Tcp:InCsumErrors",
];
/// kube-xdp's counters that count trouble.
pub(super) const KUBE_XDP_COUNTERS: &[&str] = &[
    "verdict_aborted",
    "verdict_drop",
    "malformed",
    "no_backend",
    "no_flow",
    "snat_exhausted",
    "neighbour_miss",
    "flow_table_full",
];

/// Sums the backends' counters.
pub(crate) fn backend_counters(c: &Cluster) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut sum = BTreeMap::new();
    for ns in &c.backends {
        for (k, v) in net_counters(ns)? {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    Ok(sum)
}

/// kube-xdp's global counters (`kube-xdp stats --json`).
pub(crate) fn kube_xdp_counters(c: &Cluster) -> BTreeMap<String, i64> {
    let config = c.config.to_str().unwrap();
    cli(&c.lb, &["stats", "--json", "--config", config])
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|j| {
            j["counters"].as_object().map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The LB namespace's conntrack statistics (`/proc/net/stat/nf_conntrack`,
/// hexadecimal, one line per CPU), summed over CPUs; `entries` is a gauge.
pub(crate) fn conntrack_stats(ns: &Netns) -> BTreeMap<String, i64> {
    let Ok(out) = ns.exec("cat", &["/proc/net/stat/nf_conntrack"]) else {
        return BTreeMap::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return BTreeMap::new();
    };
    let names: Vec<&str> = header.split_whitespace().collect();
    let mut sum = BTreeMap::new();
    for line in lines {
        for (n, v) in names.iter().zip(line.split_whitespace()) {
            let v = i64::from_str_radix(v, 16).unwrap_or(0);
            if *n == "entries" {
                // The same global count on every line.
                sum.insert(n.to_string(), v);
            } else {
                *sum.entry(n.to_string()).or_insert(0) += v;
            }
        }
    }
    sum
}

/// `name +N` for each listed counter that moved.
pub(crate) fn moved(prefix: &str, d: &BTreeMap<String, i64>, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| {
            let v = *d.get(*k)?;
            (v != 0).then(|| format!("{prefix}{k} {v:+}"))
        })
        .collect()
}
