//! The addresses of the cluster's Services, held on the interface of a
//! single box: each added as a /32 and announced with gratuitous ARPs (as
//! the pair's master does with its virtual addresses), removed when it is
//! released. In a pair the master holds them instead (`ha::pair`).
//!
//! Only what kube-xdp added is ever removed: an address that was on the
//! interface before (the box's own, one the operator put there for a
//! service of the file) is used as it is and left there when released.
//! What kube-xdp added is written to `run_dir`: a restarted daemon holds
//! it again at once (the last run's services forward for it until the
//! cluster answers) and gives up what the cluster's first answer
//! released; a daemon started without `[kubernetes]` gives it all up
//! ([`give_up_recorded`]).

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path, path::PathBuf};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ha::net::{Addresses, announce};

/// The file in `run_dir` listing the addresses kube-xdp added and holds.
pub const CLAIMED_FILE: &str = "kubernetes-addresses.json";
/// Gratuitous ARPs sent for a new address (the pair sends as many).
const GARP_REPEAT: usize = 3;

/// The addresses recorded in `run_dir` (none when there is no file or it
/// does not read).
pub fn recorded(run_dir: &Path) -> BTreeSet<Ipv4Addr> {
    std::fs::read_to_string(run_dir.join(CLAIMED_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// What the claim task holds: the addresses wanted, and those of them
/// kube-xdp added (the only ones it removes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Held {
    wanted: BTreeSet<Ipv4Addr>,
    added: BTreeSet<Ipv4Addr>,
}

impl Held {
    /// What a new wanted set `now` asks for: the addresses to add, and
    /// those to remove (released, and added by kube-xdp).
    fn changes(&self, now: &BTreeSet<Ipv4Addr>) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
        let new = now.difference(&self.wanted).copied().collect();
        let gone = self
            .wanted
            .difference(now)
            .filter(|a| self.added.contains(a))
            .copied()
            .collect();
        (new, gone)
    }
}

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
        // What an earlier run added: held until the controller's first
        // decision (`None` until then), which may release some.
        let added = recorded(&run_dir);
        let mut held = Held {
            wanted: added.clone(),
            added,
        };
        // Held again at once (after a reboot they are gone): the services
        // of the last run forward for them until the cluster answers.
        for addr in &held.wanted {
            if let Err(e) = addresses.add(*addr).await {
                error!(%addr, "kubernetes: adding the Service address of the last run: {e}");
            }
        }
        if !held.wanted.is_empty() {
            let again: Vec<Ipv4Addr> = held.wanted.iter().copied().collect();
            if let Err(e) = announce(ifindex, mac, &again) {
                warn!("kubernetes: sending gratuitous ARPs: {e}");
            }
        }
        while wanted.changed().await.is_ok() {
            let Some(now) = wanted.borrow_and_update().clone() else {
                continue;
            };
            let now: BTreeSet<Ipv4Addr> = now.into_iter().collect();
            let (new, gone) = held.changes(&now);
            for addr in &new {
                match addresses.add(*addr).await {
                    Ok(true) => {
                        held.added.insert(*addr);
                        info!(%addr, "kubernetes: holding the Service address");
                    }
                    Ok(false) => info!(
                        %addr,
                        "kubernetes: the Service address was already on the interface: used, and left there when released"
                    ),
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
            for addr in &gone {
                match addresses.remove(*addr).await {
                    Ok(()) => {
                        held.added.remove(addr);
                        info!(%addr, "kubernetes: released the Service address");
                    }
                    Err(e) => error!(%addr, "kubernetes: removing the Service address: {e}"),
                }
            }
            // One whose removal failed stays listed: the next start holds
            // it until the first decision, which releases it again.
            held.wanted = now;
            if let Err(e) = crate::daemon::control::write_json(&run_dir, CLAIMED_FILE, &held.added)
            {
                warn!("kubernetes: recording the held addresses: {e}");
            }
        }
    }))
}

/// A box started without `[kubernetes]` gives up the Service addresses an
/// earlier run added (listed in `run_dir`), and forgets them.
pub async fn give_up_recorded(ifindex: u32, run_dir: &Path) {
    let left = recorded(run_dir);
    if left.is_empty() {
        let _ = std::fs::remove_file(run_dir.join(CLAIMED_FILE));
        return;
    }
    let addresses = match Addresses::new(ifindex) {
        Ok(a) => a,
        Err(e) => {
            error!("kubernetes: giving up the Service addresses of an earlier run: {e}");
            return;
        }
    };
    let mut kept = BTreeSet::new();
    for addr in left {
        match addresses.remove(addr).await {
            Ok(()) => info!(
                %addr,
                "kubernetes: [kubernetes] is no longer in the file: released the Service address of an earlier run"
            ),
            Err(e) => {
                error!(%addr, "kubernetes: removing the Service address of an earlier run: {e}");
                kept.insert(addr);
            }
        }
    }
    // What could not be removed stays listed, for the next start.
    let done = if kept.is_empty() {
        std::fs::remove_file(run_dir.join(CLAIMED_FILE)).map_err(|e| e.to_string())
    } else {
        crate::daemon::control::write_json(run_dir, CLAIMED_FILE, &kept).map_err(|e| e.to_string())
    };
    if let Err(e) = done {
        warn!("kubernetes: forgetting the Service addresses of an earlier run: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(last: &[u8]) -> BTreeSet<Ipv4Addr> {
        last.iter().map(|l| Ipv4Addr::new(198, 18, 0, *l)).collect()
    }

    #[test]
    fn only_the_addresses_kube_xdp_added_are_removed_when_released() {
        // .100 added by kube-xdp; .2 (the box's own) and .10 (a file
        // service's VIP, other ports) were on the interface already.
        let held = Held {
            wanted: set(&[2, 10, 100]),
            added: set(&[100]),
        };
        let (new, gone) = held.changes(&set(&[101]));
        assert_eq!(new, vec![Ipv4Addr::new(198, 18, 0, 101)]);
        assert_eq!(gone, vec![Ipv4Addr::new(198, 18, 0, 100)]);
        // Nothing changes: nothing to do.
        assert_eq!(held.changes(&held.wanted.clone()), (vec![], vec![]));
    }

    #[test]
    fn the_recorded_addresses_read_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recorded(dir.path()).is_empty());
        crate::daemon::control::write_json(dir.path(), CLAIMED_FILE, &set(&[100, 101])).unwrap();
        assert_eq!(recorded(dir.path()), set(&[100, 101]));
        std::fs::write(dir.path().join(CLAIMED_FILE), "not json").unwrap();
        assert!(recorded(dir.path()).is_empty());
    }
}
