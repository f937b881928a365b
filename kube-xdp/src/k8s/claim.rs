//! The addresses of the cluster's Services, held on the interface of a
//! single box: each added as a /32 and announced with gratuitous ARPs (as
//! the pair's master does with its virtual addresses), removed when it is
//! released. In a pair the master holds them instead (`ha::pair`).
//!
//! What is held is written to `run_dir`: a restarted daemon holds it again
//! at once (the last run's services forward for it until the cluster
//! answers), and gives up what the cluster's first answer released.

use std::{collections::BTreeSet, net::Ipv4Addr, path::PathBuf};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ha::net::{Addresses, announce};

/// The file in `run_dir` listing the addresses held.
pub const CLAIMED_FILE: &str = "kubernetes-addresses.json";
/// Gratuitous ARPs sent for a new address (the pair sends as many).
const GARP_REPEAT: usize = 3;

/// Starts the task that makes the interface hold what `wanted` says.
///
/// # Errors
///
/// When the netlink socket cannot be opened.
pub fn spawn(
    ifindex: u32,
    mac: [u8; 6],
    run_dir: PathBuf,
    mut wanted: watch::Receiver<Option<Vec<Ipv4Addr>>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let addresses = Addresses::new(ifindex)?;
    Ok(tokio::spawn(async move {
        let file = run_dir.join(CLAIMED_FILE);
        // What an earlier run held: kept until the controller's first
        // decision (`None` until then), which may release some.
        let mut held: BTreeSet<Ipv4Addr> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        // Held again at once (after a reboot they are gone): the services
        // of the last run forward for them until the cluster answers.
        for addr in &held {
            if let Err(e) = addresses.add(*addr).await {
                error!(%addr, "kubernetes: adding the Service address of the last run: {e}");
            }
        }
        if !held.is_empty() {
            let again: Vec<Ipv4Addr> = held.iter().copied().collect();
            if let Err(e) = announce(ifindex, mac, &again) {
                warn!("kubernetes: sending gratuitous ARPs: {e}");
            }
        }
        while wanted.changed().await.is_ok() {
            let Some(now) = wanted.borrow_and_update().clone() else {
                continue;
            };
            let now: BTreeSet<Ipv4Addr> = now.into_iter().collect();
            let new: Vec<Ipv4Addr> = now.difference(&held).copied().collect();
            for addr in &new {
                match addresses.add(*addr).await {
                    Ok(()) => info!(%addr, "kubernetes: holding the Service address"),
                    Err(e) => error!(%addr, "kubernetes: adding the Service address: {e}"),
                }
            }
            if !new.is_empty() {
                for _ in 0..GARP_REPEAT {
                    if let Err(e) = announce(ifindex, mac, &new) {
                        warn!("kubernetes: sending gratuitous ARPs: {e}");
                        break;
                    }
                }
            }
            for addr in held.difference(&now) {
                match addresses.remove(*addr).await {
                    Ok(()) => info!(%addr, "kubernetes: released the Service address"),
                    Err(e) => error!(%addr, "kubernetes: removing the Service address: {e}"),
                }
            }
            held = now;
            if let Err(e) = crate::daemon::control::write_json(&run_dir, CLAIMED_FILE, &held) {
                warn!("kubernetes: recording the held addresses: {e}");
            }
        }
    }))
}
