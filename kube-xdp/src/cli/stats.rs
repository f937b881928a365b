//! `kube-xdp stats`: the global counters, read from the pinned maps.

use crate::{Common, PinArgs};
use kube_xdp::datapath;

pub fn stats(common: &Common, pins: &PinArgs, json: bool) -> anyhow::Result<()> {
    let pin_path = pins.resolve(common)?;
    let stats = datapath::Datapath::open_pinned(&pin_path)?.global_stats()?;
    if json {
        let counters: serde_json::Map<String, serde_json::Value> = stats
            .counters
            .iter()
            .map(|(c, v)| (c.name().to_owned(), (*v).into()))
            .collect();
        println!("{}", serde_json::json!({ "counters": counters }));
    } else {
        println!("{:<24} {:>16}", "COUNTER", "PACKETS");
        for (counter, value) in &stats.counters {
            println!("{:<24} {:>16}", counter.name(), value);
        }
    }
    Ok(())
}
