//! `kube-xdp ha`: the pair's VRRP state as the daemon last published it
//! (`ha.json` in `run_dir`): state and since when, priorities, the peers
//! heard, the last transitions with their reasons.

use crate::Common;
use kube_xdp::{ha::pair::HaStatus, sync::task::SyncStatus};
use std::time::{SystemTime, UNIX_EPOCH};

fn ago(unix: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    format!("{:.1}s ago", (now - unix).max(0.0))
}

fn clock(unix: f64) -> String {
    let secs = unix as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ((unix.fract()) * 1000.0) as u64
    )
}

pub fn ha(common: &Common, json: bool) -> anyhow::Result<()> {
    let run_dir = common.run_dir();
    let Some(s) = HaStatus::load(&run_dir) else {
        anyhow::bail!(
            "no pair status in {}: this box is not one of a pair ([ha] in the configuration), \
             or its daemon has not started",
            run_dir.display()
        );
    };
    let sync = SyncStatus::load(&run_dir);
    if json {
        let mut value = serde_json::to_value(&s)?;
        value["sync"] = serde_json::to_value(&sync)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "VRRP_Instance(VI_{}) on {} from {}: {} since {} ({})",
        s.virtual_router_id,
        s.interface,
        s.local_address,
        s.state,
        clock(s.since),
        ago(s.since)
    );
    println!(
        "priority {} (effective {}), advert_interval {}ms, master's {}ms, Master_Down {}ms",
        s.priority,
        s.effective_priority,
        s.advert_interval_ms,
        s.master_advert_interval_ms,
        s.master_down_interval_ms
    );
    let addrs: Vec<String> = s
        .virtual_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("virtual addresses: {}", addrs.join(", "));
    if s.peers.is_empty() {
        println!("peers: none heard");
    } else {
        println!("peers:");
        for p in &s.peers {
            println!(
                "  {:<15}  priority {:>3}  interval {}ms  heard {}",
                p.address,
                p.priority,
                p.advert_interval_ms,
                ago(p.last_heard)
            );
        }
    }
    println!("transitions:");
    for t in &s.transitions {
        println!("  {}  {} -> {}  {}", clock(t.at), t.from, t.to, t.reason);
    }
    if !s.rejected.is_empty() {
        let r: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("ignored VRRP packets: {}", r.join(", "));
    }
    match sync {
        None => println!("flow sync: off"),
        Some(y) => {
            let peer = y.peer.map_or("not known yet".into(), |p| p.to_string());
            let table = if y.table_received {
                format!("received ({} flows)", y.table_flows)
            } else {
                "not received".into()
            };
            println!(
                "flow sync: udp port {}, peer {peer}; the peer's table {table}",
                y.port
            );
            println!(
                "  sent {} records in {} datagrams; received {} datagrams, installed {} records",
                y.sent_records, y.sent_datagrams, y.received_datagrams, y.installed_records
            );
            let list = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !y.rejected.is_empty() {
                println!("  refused datagrams: {}", list(&y.rejected));
            }
            if !y.skipped_records.is_empty() {
                println!("  records not installed: {}", list(&y.skipped_records));
            }
        }
    }
    Ok(())
}
