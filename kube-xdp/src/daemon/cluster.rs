//! The daemon's side of the Kubernetes controller (`crate::k8s`): it
//! applies the controller's services with the file's (one plan, one
//! diff), holds their addresses (a single box; in a pair the master does),
//! and keeps the last applied set in `run_dir`, so that a restart forwards
//! them again before the cluster answers — or while it does not.

use std::{net::Ipv4Addr, path::Path, sync::Arc};

use kube_xdp_common::maps::{MAX_BACKENDS, MAX_SERVICES};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use super::control_loop::Daemon;
use crate::{
    daemon::control,
    k8s::{
        ClusterService, ClusterUpdate, ControllerHandle, claim,
        controller::{self, Inputs},
        planned,
        reconcile::Room,
    },
    plan::{Plan, PlannedService},
};

/// The file in `run_dir` with the cluster's services last applied.
pub const SERVICES_FILE: &str = "kubernetes-services.json";

/// What the daemon keeps of the controller.
pub(super) struct Cluster {
    pub controller: ControllerHandle,
    /// Where a single box's addresses are asked for; `None` in a pair.
    pub claim: Option<watch::Sender<Option<Vec<Ipv4Addr>>>>,
    pub _claim_task: Option<JoinHandle<()>>,
    /// A single box always writes to the API (the sender is kept alive).
    pub _writer: Option<watch::Sender<bool>>,
    /// What the controller asked for last and the daemon applied.
    pub applied: Vec<ClusterService>,
    /// In a pair: the interface's addresses before the pair held any
    /// (the box's own among them), never held nor given up as a
    /// Service's. A single box's claim leaves what it did not add.
    pub preexisting: Vec<Ipv4Addr>,
}

/// The Service addresses to hold on the interface: `addresses` less the
/// file's VIPs and `not_ours` (the pair's own and virtual addresses, what
/// the interface had before): those are not kube-xdp's to add or remove
/// for a Service, which is served on them all the same.
fn holdable(addresses: Vec<Ipv4Addr>, plan: &Plan, not_ours: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let pair = plan
        .ha
        .iter()
        .flat_map(|ha| std::iter::once(ha.local).chain(ha.virtual_addresses.iter().copied()));
    let skip: std::collections::BTreeSet<Ipv4Addr> = plan
        .services
        .iter()
        .map(|s| s.config.vip)
        .chain(pair)
        .chain(not_ours.iter().copied())
        .collect();
    addresses
        .into_iter()
        .filter(|a| !skip.contains(a))
        .collect()
}

/// The cluster's services a previous run applied, planned with this
/// plan's `[kubernetes]` (none without it), less those on a service of
/// this plan's file ([`planned::beside_file`]).
pub(super) fn last_applied(plan: &Plan) -> Vec<PlannedService> {
    let Some(k) = &plan.config.kubernetes else {
        return Vec::new();
    };
    let path = plan.config.daemon.run_dir.join(SERVICES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<ClusterService>>(&text) {
        Ok(services) => {
            if !services.is_empty() {
                info!(
                    services = services.len(),
                    "kubernetes: forwarding the cluster's services of the last run until the cluster answers"
                );
            }
            let cluster = services.iter().map(|cs| planned::planned(cs, k)).collect();
            planned::beside_file(cluster, &plan.services)
        }
        Err(e) => {
            warn!("kubernetes: ignoring {}: {e}", path.display());
            Vec::new()
        }
    }
}

fn inputs(plan: &Plan) -> Option<Inputs> {
    // The datapath's capacity less the file's services and backends (a
    // backend removed from the file holds its slot while it drains: the
    // controller may then find less room than this says, and the apply
    // fails and is tried again at the next change).
    let file_backends: usize = plan.services.iter().map(|s| s.backends.len()).sum();
    let room = Room {
        services: (MAX_SERVICES as usize).saturating_sub(plan.services.len()),
        backends: (MAX_BACKENDS as usize).saturating_sub(file_backends),
    };
    Some(Inputs {
        config: Arc::new(plan.config.kubernetes.clone()?),
        file: Arc::new(planned::file_services(&plan.config)),
        room,
    })
}

impl Daemon {
    /// Starts the controller when the plan has `[kubernetes]`; its updates
    /// come on `updates`. Without it, the Service addresses an earlier run
    /// added are given up and its records forgotten.
    ///
    /// # Errors
    ///
    /// When the netlink socket for the addresses cannot be opened.
    pub(super) async fn start_cluster(
        &mut self,
        updates: mpsc::Sender<ClusterUpdate>,
        run_dir: &Path,
    ) -> std::io::Result<()> {
        let Some(inputs) = inputs(self.plan()) else {
            self.forget_cluster(run_dir).await;
            return Ok(());
        };
        let (writer_rx, writer_tx) = match &self.pair {
            Some(pair) => (pair.master(), None),
            None => {
                let (tx, rx) = watch::channel(true);
                (rx, Some(tx))
            }
        };
        let (claim, claim_task) = match &self.pair {
            Some(_) => (None, None),
            None => {
                let plan = self.plan();
                let iface = &plan.interfaces[0];
                let (tx, rx) = watch::channel(None);
                let task = claim::spawn(iface.index, iface.mac, run_dir.to_owned(), rx)?;
                (Some(tx), Some(task))
            }
        };
        // In a pair: what the interface has before the pair holds any
        // Service address (the last run's were given up at the pair's
        // start, the virtual addresses are the pair's).
        let preexisting = match &self.pair {
            Some(_) => {
                use crate::host::Host as _;
                crate::host::RealHost.local_addresses()
            }
            None => Vec::new(),
        };
        // A pair's master holds the last run's Service addresses from its
        // takeover on, before the controller's first decision.
        if self.pair.is_some() {
            let mut last: Vec<Ipv4Addr> =
                self.plan().cluster.iter().map(|s| s.config.vip).collect();
            last.sort();
            last.dedup();
            let last = holdable(last, self.plan(), &preexisting);
            if let Some(pair) = self.pair.as_mut() {
                pair.set_extra_addresses(last);
            }
        }
        let controller = controller::spawn(inputs, writer_rx, updates, Arc::clone(&self.metrics));
        info!("kubernetes: watching the cluster's Services of type LoadBalancer");
        self.cluster = Some(Cluster {
            controller,
            claim,
            _claim_task: claim_task,
            _writer: writer_tx,
            applied: Vec::new(),
            preexisting,
        });
        Ok(())
    }

    /// `[kubernetes]` was removed from the file: a single box gives up the
    /// Service addresses an earlier run added (a pair's start gave them
    /// up already), and both forget the last run's Services, so that a
    /// `[kubernetes]` added back starts from the cluster's answer.
    async fn forget_cluster(&self, run_dir: &Path) {
        if self.pair.is_none() {
            claim::give_up_recorded(self.plan().interfaces[0].index, run_dir).await;
        } else if let Err(e) = std::fs::remove_file(run_dir.join(claim::CLAIMED_FILE))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("kubernetes: forgetting the Service addresses of an earlier run: {e}");
        }
        if let Err(e) = std::fs::remove_file(run_dir.join(SERVICES_FILE))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("kubernetes: forgetting the Services of an earlier run: {e}");
        }
    }

    /// The file's services and `[kubernetes]` to the controller, after a
    /// commit (it decides again when they changed).
    pub(super) fn publish_cluster_inputs(&self) {
        let (Some(cluster), Some(inputs)) = (&self.cluster, inputs(self.plan())) else {
            return;
        };
        cluster.controller.inputs.send_if_modified(|now| {
            let changed = *now != inputs;
            *now = inputs;
            changed
        });
    }

    /// Applies the controller's services with the file's; answers it.
    pub fn on_cluster(&mut self, update: ClusterUpdate) {
        let ClusterUpdate {
            services,
            addresses,
            done,
        } = update;
        let Some(k) = self.plan().config.kubernetes.clone() else {
            let _ = done.send(Err("[kubernetes] is no longer in the file".into()));
            return;
        };
        let mut next = self.plan().clone();
        // Decided against the file the controller had seen: a reload
        // since may have put a file service where a Service is.
        next.cluster = planned::beside_file(
            services.iter().map(|cs| planned::planned(cs, &k)).collect(),
            &next.services,
        );
        if next == *self.plan() {
            let _ = done.send(Ok(()));
            self.hold(addresses);
            return;
        }
        match self.commit(next) {
            Ok(_) => {
                if let Some(c) = self.cluster.as_mut() {
                    c.applied = services.clone();
                }
                let run_dir = self.plan().config.daemon.run_dir.clone();
                if let Err(e) = control::write_json(&run_dir, SERVICES_FILE, &services) {
                    warn!("kubernetes: recording the cluster's services: {e}");
                }
                // New node backends forward once their next hop is known:
                // look now rather than at the next housekeeping tick.
                self.refresh_next_hops();
                self.hold(addresses);
                let _ = done.send(Ok(()));
            }
            Err(e) => {
                error!("kubernetes: applying the cluster's services (the previous ones stay): {e}");
                let _ = done.send(Err(e.to_string()));
            }
        }
    }

    /// The cluster's services for a reloaded file's `plan`: what the
    /// controller last asked for, planned with the new `[kubernetes]`,
    /// less those on a service of the new file (the controller then
    /// decides again with it).
    pub(super) fn cluster_for(&self, plan: &Plan) -> Vec<PlannedService> {
        let cluster = match (&self.cluster, &plan.config.kubernetes) {
            // Before the controller's first decision, what runs (the
            // last run's services) stays.
            (Some(c), Some(k)) if !c.applied.is_empty() => {
                c.applied.iter().map(|cs| planned::planned(cs, k)).collect()
            }
            _ => self.plan().cluster.clone(),
        };
        planned::beside_file(cluster, &plan.services)
    }

    /// The Service addresses to hold: the claim task's on a single box,
    /// the pair's (its master holds them) in a pair.
    fn hold(&mut self, addresses: Vec<Ipv4Addr>) {
        let not_ours = self
            .cluster
            .as_ref()
            .map_or(&[][..], |c| c.preexisting.as_slice());
        let addresses = holdable(addresses, self.plan(), not_ours);
        if self.pair.is_some() {
            // What a master may hold, for the next start to give up
            // should this run die holding it.
            let run_dir = self.plan().config.daemon.run_dir.clone();
            if let Err(e) = control::write_json(&run_dir, claim::CLAIMED_FILE, &addresses) {
                warn!("kubernetes: recording the Service addresses: {e}");
            }
            if let Some(pair) = self.pair.as_mut() {
                pair.set_extra_addresses(addresses);
            }
        } else if let Some(claim) = self.cluster.as_ref().and_then(|c| c.claim.as_ref()) {
            claim.send_if_modified(|now| {
                let changed = now.as_ref() != Some(&addresses);
                *now = Some(addresses);
                changed
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_vip_and_the_interfaces_own_addresses_are_never_held_for_a_service() {
        // The file's services are on 10.4.0.10; 10.4.0.9 was on the
        // interface before.
        let plan = crate::plan::tests::sample_plan();
        let wanted = vec![
            Ipv4Addr::new(10, 4, 0, 10),
            Ipv4Addr::new(198, 18, 100, 0),
            Ipv4Addr::new(10, 4, 0, 9),
        ];
        assert_eq!(
            holdable(wanted, &plan, &[Ipv4Addr::new(10, 4, 0, 9)]),
            vec![Ipv4Addr::new(198, 18, 100, 0)]
        );
    }
}
