//! `kube-xdp detach`: remove the pins (and with them the program, once no
//! daemon holds it).

use crate::{Common, PinArgs};

pub fn detach(common: &Common, pins: &PinArgs) -> anyhow::Result<()> {
    let pin_path = pins.resolve(common)?;
    if !pin_path.exists() {
        println!("nothing pinned at {}", pin_path.display());
        return Ok(());
    }
    std::fs::remove_dir_all(&pin_path)
        .map_err(|e| anyhow::anyhow!("removing {}: {e}", pin_path.display()))?;
    println!("removed {}", pin_path.display());
    Ok(())
}
