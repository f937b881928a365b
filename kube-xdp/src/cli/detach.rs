//! `kube-xdp detach`: remove the program from the interfaces (by removing
//! the pinned links) and every pin.

use crate::{Common, PinArgs};

pub fn detach(common: &Common, pins: &PinArgs) -> anyhow::Result<()> {
    let pin_path = pins.resolve(common);
    if !pin_path.exists() {
        println!("nothing pinned at {}", pin_path.display());
        return Ok(());
    }
    for entry in std::fs::read_dir(&pin_path)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(interface) = name.strip_prefix("link_") {
            kube_xdp::daemon::attach::detach(&pin_path, interface)?;
            println!("detached from {interface}");
        }
    }
    std::fs::remove_dir_all(&pin_path)
        .map_err(|e| anyhow::anyhow!("removing {}: {e}", pin_path.display()))?;
    println!("removed {}", pin_path.display());
    Ok(())
}
