//! What the end-to-end tests read off the machine: the datapath's counters
//! (`kube-xdp stats --json`), the kernel's (SNMP counters, TIME_WAIT
//! sockets, link and backlog drops), and link addresses.

use crate::{daemon::cli, netns::Netns, topology::Cluster};
use std::collections::{BTreeMap, HashMap};

/// `kube-xdp stats --json` from the LB namespace.
pub fn stats(c: &Cluster) -> serde_json::Value {
    let out = cli(
        &c.lb,
        &["stats", "--json", "--config", c.config.to_str().unwrap()],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "kube-xdp stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-xdp stats --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The global counters of a `stats --json` answer.
pub fn counters(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The counters that moved between two readings, as "name +delta".
pub fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| format!("{k} +{d}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Absolute values of kernel SNMP counters in a namespace (`nstat -a -z
/// -s`: absolute, zeros too, history file left alone). Names the kernel
/// does not have are absent from the answer.
pub fn nstat(ns: &Netns, names: &[&str]) -> HashMap<String, u64> {
    let mut args = vec!["-a", "-z", "-s"];
    args.extend_from_slice(names);
    let out = ns.exec("nstat", &args).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

pub fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after
        .get(name)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(name).copied().unwrap_or(0))
}

/// A link's MAC address in a namespace (`ip -j link show`).
pub fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v[0]["address"].as_str().unwrap().to_owned();
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("not a MAC: {text}"))
}

/// Counts a namespace's TIME_WAIT sockets (`/proc/net/sockstat`'s `tw`).
pub fn time_wait(ns: &Netns) -> u64 {
    let out = ns.exec("cat", &["/proc/net/sockstat"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "tw")?;
            words.get(i + 1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Drop and error counters of every link on the path: the LB's eth0 and
/// the bridge's ports (`ethtool -S`: veth queues, XDP), as "NS/DEV name".
pub fn link_drops(c: &Cluster) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut read = |ns: &Netns, dev: &str| {
        let Ok(o) = ns.exec("ethtool", &["-S", dev]) else {
            return;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let Some((k, v)) = line.trim().split_once(':') else {
                continue;
            };
            if (k.contains("drop") || k.contains("error"))
                && let Ok(v) = v.trim().parse::<u64>()
            {
                out.insert(format!("{dev} {k}"), v);
            }
        }
    };
    read(&c.lb, "eth0");
    read(&c.client, "eth0");
    for (i, b) in c.backends.iter().enumerate() {
        read(b, "eth0");
        read(&c.bridge, &format!("pb{i}"));
    }
    read(&c.bridge, "plb");
    read(&c.bridge, "pclient");
    out
}

/// Packets the host dropped because a CPU's input backlog was full
/// (`/proc/net/softnet_stat`, second column, summed over CPUs). Veth
/// peers without XDP deliver through that backlog, so this is where the
/// namespace topology loses packets under load; it counts for every
/// namespace of the host.
pub fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

/// `ss -Htan state time-wait` in a namespace: the number of lines.
pub fn ss_time_wait(ns: &Netns) -> usize {
    let out = ns
        .exec("ss", &["-H", "-t", "-a", "-n", "state", "time-wait"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}
