//! `kube-xdp detach`: remove the program from the interfaces (by removing
//! the pinned links), then kube-xdp's own pins, then the directory if that
//! left it empty. Nothing else: a pin path given by mistake (`/etc`, or
//! the bpffs root that other programs pin in) loses nothing that is not
//! kube-xdp's.

use crate::{Common, PinArgs};
use kube_xdp_common::map_name;

pub fn detach(common: &Common, pins: &PinArgs) -> anyhow::Result<()> {
    let pin_path = pins.resolve(common);
    if !pin_path.exists() {
        println!("nothing pinned at {}", pin_path.display());
        return Ok(());
    }
    if !kube_xdp::bpffs::is_bpffs(&pin_path)? {
        anyhow::bail!(
            "{} is not on a BPF filesystem, so kube-xdp never pinned anything there: \
             refusing to remove anything (check --pin-path or the config's pin_path)",
            pin_path.display()
        );
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(&pin_path)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(interface) = name.strip_prefix("link_") {
            kube_xdp::daemon::attach::detach(&pin_path, interface)?;
            println!("detached from {interface}");
            removed += 1;
        }
    }
    for name in map_name::PINNED {
        let pin = pin_path.join(name);
        if pin.exists() {
            std::fs::remove_file(&pin)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", pin.display()))?;
            removed += 1;
        }
    }
    let others: Vec<String> = std::fs::read_dir(&pin_path)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if others.is_empty() {
        std::fs::remove_dir(&pin_path)
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", pin_path.display()))?;
        println!("removed {}", pin_path.display());
    } else {
        println!(
            "removed kube-xdp's {removed} pins; left {} in place: it also holds {} that kube-xdp did not pin",
            pin_path.display(),
            others.join(", ")
        );
    }
    Ok(())
}
