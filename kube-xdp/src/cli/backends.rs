//! `kube-xdp backends`: per service, its backends with state, weight,
//! Maglev share, active flows and traffic — aligned like `ipvsadm -Ln`.

use crate::{Common, PinArgs, cli::human};

pub fn backends(common: &Common, pins: &PinArgs, json: bool) -> anyhow::Result<()> {
    let (maps, names) = pins.open(common)?;
    let services = maps.snapshot(names.as_ref())?.services;
    if json {
        println!("{}", serde_json::to_string_pretty(&services)?);
        return Ok(());
    }
    if let Some(ha) = kube_xdp::ha::pair::HaStatus::load(&common.run_dir()) {
        println!(
            "pair: {} (VRID {}, priority {}, virtual addresses {})",
            ha.state,
            ha.virtual_router_id,
            ha.effective_priority,
            ha.virtual_addresses.len()
        );
    }
    if services.is_empty() {
        println!("no services are programmed");
    }
    for s in services {
        let ports = if s.first_port == s.last_port {
            s.first_port.to_string()
        } else {
            format!("{}-{}", s.first_port, s.last_port)
        };
        println!(
            "{} {}:{} {}  {}  on_backend_down={}  ({} packets, {} new flows)",
            s.protocol.to_uppercase(),
            s.vip,
            ports,
            s.name,
            s.mode,
            s.on_backend_down,
            human(s.packets),
            human(s.new_flows)
        );
        if let Some(origin) = &s.origin {
            println!("  from the cluster: Service {origin} (type LoadBalancer)");
        }
        println!(
            "  {:<16} {:<22} {:<6} {:>6} {:>7} {:>8} {:>9} {:>9}",
            "BACKEND", "ADDRESS", "STATE", "WEIGHT", "SHARE", "FLOWS", "PACKETS", "BYTES"
        );
        for b in s.backends {
            let address = match b.port {
                Some(p) => format!("{}:{p}", b.address),
                None => format!("{}:(client port)", b.address),
            };
            println!(
                "  {:<16} {:<22} {:<6} {:>6} {:>6.1}% {:>8} {:>9} {:>9}",
                b.name,
                address,
                b.state.name(),
                b.weight.map_or_else(|| "-".into(), |w| w.to_string()),
                b.share * 100.0,
                b.active_flows,
                human(b.packets),
                human(b.bytes)
            );
        }
    }
    Ok(())
}
