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
}

/// The cluster's services a previous run applied, planned with this
/// plan's `[kubernetes]` (none without it).
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
            services.iter().map(|cs| planned::planned(cs, k)).collect()
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
    /// come on `updates`.
    ///
    /// # Errors
    ///
    /// When the netlink socket for the addresses cannot be opened.
    pub(super) fn start_cluster(
        &mut self,
        updates: mpsc::Sender<ClusterUpdate>,
        run_dir: &Path,
    ) -> std::io::Result<()> {
        let Some(inputs) = inputs(self.plan()) else {
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
        // A pair's master holds the last run's Service addresses from its
        // takeover on, before the controller's first decision.
        if let Some(pair) = self.pair.as_mut() {
            let mut last: Vec<Ipv4Addr> = self.plan.as_ref().map_or_else(Vec::new, |p| {
                p.cluster.iter().map(|s| s.config.vip).collect()
            });
            last.sort();
            last.dedup();
            pair.set_extra_addresses(last);
        }
        let controller = controller::spawn(inputs, writer_rx, updates, Arc::clone(&self.metrics));
        info!("kubernetes: watching the cluster's Services of type LoadBalancer");
        self.cluster = Some(Cluster {
            controller,
            claim,
            _claim_task: claim_task,
            _writer: writer_tx,
            applied: Vec::new(),
        });
        Ok(())
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
        next.cluster = services.iter().map(|cs| planned::planned(cs, &k)).collect();
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
    /// controller last asked for, planned with the new `[kubernetes]`.
    pub(super) fn cluster_for(&self, plan: &Plan) -> Vec<PlannedService> {
        match (&self.cluster, &plan.config.kubernetes) {
            // Before the controller's first decision, what runs (the
            // last run's services) stays.
            (Some(c), Some(k)) if !c.applied.is_empty() => {
                c.applied.iter().map(|cs| planned::planned(cs, k)).collect()
            }
            _ => self.plan().cluster.clone(),
        }
    }

    /// The Service addresses to hold: the claim task's on a single box,
    /// the pair's (its master holds them) in a pair.
    fn hold(&mut self, addresses: Vec<Ipv4Addr>) {
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
