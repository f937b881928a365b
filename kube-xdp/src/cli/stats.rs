//! `kube-xdp stats`: the global counters and per-service totals, read from
//! the pinned maps.

use crate::{Common, PinArgs, cli::human};
use kube_xdp::view::Snapshot;

pub fn stats(common: &Common, pins: &PinArgs, json: bool) -> anyhow::Result<()> {
    let (maps, names) = pins.open(common)?;
    let Snapshot {
        counters, services, ..
    } = maps.snapshot(names.as_ref())?;
    if json {
        let counters: serde_json::Map<String, serde_json::Value> = counters
            .iter()
            .map(|(c, v)| (c.name().to_owned(), (*v).into()))
            .collect();
        let per_service: Vec<serde_json::Value> = services
            .iter()
            .map(|s| {
                serde_json::json!({
                    "service": s.name, "packets": s.packets, "bytes": s.bytes, "new_flows": s.new_flows,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "counters": counters, "services": per_service })
        );
        return Ok(());
    }
    let width = counters
        .iter()
        .map(|(c, _)| c.name().len())
        .max()
        .unwrap_or(0)
        .max(24);
    println!("{:<width$} {:>16}", "COUNTER", "PACKETS");
    for (counter, value) in &counters {
        println!("{:<width$} {:>16}", counter.name(), value);
    }
    println!();
    println!(
        "{:<24} {:>12} {:>12} {:>12}",
        "SERVICE", "PACKETS", "BYTES", "NEW FLOWS"
    );
    for s in services {
        println!(
            "{:<24} {:>12} {:>12} {:>12}",
            s.name,
            human(s.packets),
            human(s.bytes),
            human(s.new_flows)
        );
    }
    Ok(())
}
