//! The controller's task: watches Services and Nodes (kube-rs watchers
//! into reflector stores), decides on every change (`reconcile`, the whole
//! state at once: an address depends on every other Service's), hands
//! the kube-xdp services to the daemon and waits until they are applied,
//! then writes what the cluster should see: finalizers, status, Events.
//! Only the writer writes (a single box always; in a pair, the master):
//! both boxes of a pair decide the same from the same state.
//!
//! kube-runtime's `finalizer` helper runs a reconcile per object; here an
//! object's address depends on the others', so finalizers are added and
//! removed by this task, after the daemon applied the change (`writes`).

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        WatchStreamExt as _,
        events::{Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use super::reconcile::{self, ClusterService, FileService, Key, Outcome, Room};
use crate::{config::KubernetesConfig, metrics::Metrics};

/// How long a burst of changes is gathered before deciding.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Decide again this often even without a change, so that failed writes
/// are tried again.
const RESYNC: Duration = Duration::from_secs(30);
/// How long the daemon may take to apply an update.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What the controller asks the daemon to apply.
#[derive(Debug)]
pub struct ClusterUpdate {
    /// Every kube-xdp service of the cluster's Services, replacing the last.
    pub services: Vec<ClusterService>,
    /// The addresses handed out (to hold on the interface).
    pub addresses: Vec<std::net::Ipv4Addr>,
    /// Answered once applied, or with why not.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What the daemon keeps of the controller.
pub struct ControllerHandle {
    task: JoinHandle<()>,
    /// The file's services and the `[kubernetes]` settings, after each
    /// reload.
    pub inputs: watch::Sender<Inputs>,
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the controller decides with besides the cluster's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub config: Arc<KubernetesConfig>,
    pub file: Arc<Vec<FileService>>,
    /// What the datapath has room for beside the file's services.
    pub room: Room,
}

/// Starts the controller. It never blocks the daemon: connecting, listing
/// and watching happen in its task, retried with backoff. It writes to the
/// API while `writer` says so (a single box always; in a pair, the
/// master).
pub fn spawn(
    inputs: Inputs,
    writer: watch::Receiver<bool>,
    updates: mpsc::Sender<ClusterUpdate>,
    metrics: Arc<Metrics>,
) -> ControllerHandle {
    let (inputs_tx, inputs_rx) = watch::channel(inputs);
    let task = tokio::spawn(async move {
        run(inputs_rx, writer, updates, metrics).await;
    });
    ControllerHandle {
        task,
        inputs: inputs_tx,
    }
}

/// The client for `kubeconfig`, else the in-cluster config, else
/// `$KUBECONFIG`, else `~/.kube/config`.
async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let options = KubeConfigOptions::default();
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(incluster) => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                format!("no in-cluster config ({incluster}) and no kubeconfig ({e}): set [kubernetes] kubeconfig")
            })?,
        },
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

pub(super) struct Controller {
    pub(super) inputs: watch::Receiver<Inputs>,
    pub(super) writer: watch::Receiver<bool>,
    pub(super) updates: mpsc::Sender<ClusterUpdate>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) client: Client,
    pub(super) recorder: Recorder,
    pub(super) services: Store<Service>,
    pub(super) nodes: Store<Node>,
    /// What the daemon last applied.
    pub(super) applied: Option<Vec<ClusterService>>,
    /// The problem last reported per Service, to report each once.
    pub(super) reported: HashMap<Key, String>,
    /// The address last announced per Service (a Normal Event).
    pub(super) announced: HashMap<Key, std::net::Ipv4Addr>,
    /// The problems last logged.
    pub(super) logged: BTreeMap<Key, String>,
}

async fn run(
    inputs: watch::Receiver<Inputs>,
    writer: watch::Receiver<bool>,
    updates: mpsc::Sender<ClusterUpdate>,
    metrics: Arc<Metrics>,
) {
    let kubeconfig = inputs.borrow().config.kubeconfig.clone();
    let mut wait = Duration::from_secs(1);
    let client = loop {
        match client(kubeconfig.as_deref()).await {
            Ok(c) => break c,
            Err(e) => {
                error!("kubernetes: cannot make an API client, trying again in {wait:?}: {e}");
                metrics.kubernetes.api_error("client");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    };
    let reporter = Reporter {
        controller: "kube-xdp".into(),
        instance: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let (services, services_writer) = reflector::store::<Service>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let config = watcher::Config::default();
    let mut service_events = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), config.clone()),
    )
    .default_backoff()
    .boxed();
    let mut node_events = reflector::reflector(
        nodes_writer,
        watcher(Api::<Node>::all(client.clone()), config),
    )
    .default_backoff()
    .boxed();
    let mut c = Controller {
        inputs,
        writer,
        updates,
        metrics,
        client,
        recorder,
        services,
        nodes,
        applied: None,
        reported: HashMap::new(),
        announced: HashMap::new(),
        logged: BTreeMap::new(),
    };
    // Listed at least once each: before that, an empty store would say
    // every Service is gone.
    let (mut services_listed, mut nodes_listed) = (false, false);
    let mut connected: Option<bool> = None;
    let mut dirty = Debounce::default();
    let mut writing = *c.writer.borrow_and_update();
    log_writer(writing);
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let ready = services_listed && nodes_listed;
        tokio::select! {
            event = service_events.next() => match event {
                // `Init` comes before the list is asked for: it says nothing
                // of the API.
                Some(Ok(watcher::Event::Init)) => {}
                Some(Ok(e)) => {
                    services_listed |= matches!(e, watcher::Event::InitDone);
                    c.connected(&mut connected, true, "");
                    dirty.mark(tokio::time::Instant::now());
                }
                Some(Err(e)) => c.connected(&mut connected, false, &format!("watching Services: {e}")),
                None => return,
            },
            event = node_events.next() => match event {
                Some(Ok(watcher::Event::Init)) => {}
                Some(Ok(e)) => {
                    nodes_listed |= matches!(e, watcher::Event::InitDone);
                    c.connected(&mut connected, true, "");
                    dirty.mark(tokio::time::Instant::now());
                }
                Some(Err(e)) => c.connected(&mut connected, false, &format!("watching Nodes: {e}")),
                None => return,
            },
            changed = c.inputs.changed() => {
                if changed.is_err() { return; }
                dirty.mark(tokio::time::Instant::now());
            }
            changed = c.writer.changed() => {
                if changed.is_err() { return; }
                let now = *c.writer.borrow_and_update();
                if now != writing {
                    writing = now;
                    log_writer(now);
                }
                dirty.mark(tokio::time::Instant::now());
            }
            _ = resync.tick() => dirty.mark(tokio::time::Instant::now()),
            _ = tokio::time::sleep_until(dirty.due().unwrap_or_else(tokio::time::Instant::now)),
                if dirty.due().is_some() && ready => {
                dirty.clear();
                c.decide().await;
            }
        }
    }
}

/// When to decide: [`DEBOUNCE`] after the first change since the last
/// decision. Later changes do not move it, so a cluster that never stops
/// changing is still decided on, at least every [`DEBOUNCE`].
#[derive(Debug, Default)]
struct Debounce(Option<tokio::time::Instant>);

impl Debounce {
    /// A change at `now`.
    fn mark(&mut self, now: tokio::time::Instant) {
        self.0.get_or_insert(now + DEBOUNCE);
    }

    fn due(&self) -> Option<tokio::time::Instant> {
        self.0
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}

fn log_writer(writing: bool) {
    if writing {
        info!("kubernetes: this box writes the Services' status, finalizers and Events");
    } else {
        info!(
            "kubernetes: the pair's master writes to the cluster; this box decides the same and forwards"
        );
    }
}

impl Controller {
    fn connected(&self, state: &mut Option<bool>, now: bool, why: &str) {
        if *state == Some(now) {
            if !now {
                debug!("kubernetes: {why}");
            }
            return;
        }
        *state = Some(now);
        self.metrics.kubernetes.set_connected(now);
        if now {
            info!("kubernetes: the API answers; watching Services and Nodes");
        } else {
            self.metrics.kubernetes.api_error("watch");
            warn!(
                "kubernetes: the API does not answer ({why}): the cluster's services stay as last programmed \
                 and keep forwarding; the file's services are not affected"
            );
        }
    }

    /// One decision: apply it, then tell the cluster.
    async fn decide(&mut self) {
        let inputs = self.inputs.borrow().clone();
        let services: Vec<Service> = self
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let nodes: Vec<Node> = self.nodes.state().iter().map(|n| (**n).clone()).collect();
        let outcome = reconcile::reconcile_within(
            &inputs.config,
            &services,
            &nodes,
            &inputs.file,
            inputs.room,
        );
        self.log_problems(&outcome);
        let wanted = reconcile::cluster_services(&outcome);
        if self.applied.as_ref() != Some(&wanted) {
            let (done, answer) = oneshot::channel();
            let update = ClusterUpdate {
                services: wanted.clone(),
                addresses: outcome.addresses(),
                done,
            };
            if self.updates.send(update).await.is_err() {
                return;
            }
            match tokio::time::timeout(APPLY_WAIT, answer).await {
                Ok(Ok(Ok(()))) => self.applied = Some(wanted.clone()),
                Ok(Ok(Err(e))) => {
                    // Nothing is written to the cluster for a decision the
                    // datapath does not hold.
                    error!(
                        "kubernetes: the cluster's services could not be applied (the previous ones stay): {e}"
                    );
                    return;
                }
                _ => {
                    warn!(
                        "kubernetes: the daemon did not apply the cluster's services in {APPLY_WAIT:?}"
                    );
                    return;
                }
            }
        }
        let unserved = outcome
            .handled
            .iter()
            .filter(|h| h.address.is_err())
            .count();
        self.metrics
            .kubernetes
            .set_programmed(wanted.len(), outcome.addresses().len(), unserved);
        if *self.writer.borrow() {
            self.write(&services, &outcome).await;
        }
    }

    fn log_problems(&mut self, outcome: &Outcome) {
        let now: BTreeMap<Key, String> = outcome
            .handled
            .iter()
            .filter_map(|h| {
                h.address
                    .as_ref()
                    .err()
                    .map(|p| (h.key.clone(), p.to_string()))
            })
            .collect();
        for (key, problem) in &now {
            if self.logged.get(key) != Some(problem) {
                warn!(service = %key, "kubernetes: Service {key} gets no address: {problem}");
            }
        }
        for h in &outcome.handled {
            if let Ok(addr) = h.address
                && self.logged.contains_key(&h.key)
            {
                info!(service = %h.key, "kubernetes: Service {} now has address {addr}", h.key);
            }
        }
        self.logged = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_changes_do_not_postpone_the_decision() {
        let start = tokio::time::Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.due(), None);
        d.mark(start);
        assert_eq!(d.due(), Some(start + DEBOUNCE));
        // A change every 10 ms, for longer than the debounce.
        for i in 1..20 {
            d.mark(start + Duration::from_millis(10 * i));
            assert_eq!(d.due(), Some(start + DEBOUNCE));
        }
        d.clear();
        let later = start + Duration::from_millis(200);
        d.mark(later);
        assert_eq!(d.due(), Some(later + DEBOUNCE));
    }
}
