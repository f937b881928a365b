//! `kube-xdp flows`: the flow table with its translations and age.

use crate::{Common, PinArgs};

pub fn flows(common: &Common, pins: &PinArgs, json: bool, all: bool) -> anyhow::Result<()> {
    let (maps, _) = pins.open(common)?;
    let flows = maps.flows(all)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&flows)?);
        return Ok(());
    }
    println!(
        "{:<4} {:<22} {:<22} {:<22} {:<22} {:<12} {:>9} {:>9}  FLAGS",
        "PROTO", "CLIENT", "VIP", "BACKEND", "SNAT", "STATE", "AGE", "IDLE"
    );
    for f in &flows {
        println!(
            "{:<4} {:<22} {:<22} {:<22} {:<22} {:<12} {:>8.1}s {:>8.1}s  {}{}",
            f.protocol,
            f.client,
            f.vip,
            f.backend,
            f.snat,
            f.state,
            f.age_secs,
            f.idle_secs,
            if f.flags.is_empty() {
                "-".to_owned()
            } else {
                f.flags.join(",")
            },
            if f.live { "" } else { "  (expired)" }
        );
    }
    println!("{} flows", flows.len());
    Ok(())
}
