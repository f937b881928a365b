//! The pair at run time: a tokio task that runs the VRRP state machine
//! on the socket, holds or gives up the virtual addresses, announces them,
//! and publishes its status (`ha.json` in `run_dir`, for `kube-xdp ha`;
//! the metrics).

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use super::{
    machine::{Action, Machine, Params, State},
    net::{Addresses, VrrpSocket, announce},
    vrrp::{Advert, Rejected},
};
use crate::{metrics::Metrics, plan::HaPlan};

/// The file `kube-xdp ha` reads in `run_dir`.
pub const HA_FILE: &str = "ha.json";
/// Gratuitous ARPs sent at once on taking over (keepalived's
/// `garp_master_repeat`).
const GARP_REPEAT: usize = 5;

/// A peer as `kube-xdp ha` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: Ipv4Addr,
    pub priority: u8,
    pub advert_interval_ms: u64,
    /// Unix time, seconds.
    pub last_heard: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionStatus {
    pub from: String,
    pub to: String,
    pub reason: String,
    /// Unix time, seconds.
    pub at: f64,
}

/// What `kube-xdp ha` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    pub state: String,
    /// Unix time, seconds.
    pub since: f64,
    pub interface: String,
    pub local_address: Ipv4Addr,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub effective_priority: u8,
    pub advert_interval_ms: u64,
    pub master_advert_interval_ms: u64,
    pub master_down_interval_ms: u64,
    pub virtual_addresses: Vec<Ipv4Addr>,
    pub peers: Vec<PeerStatus>,
    pub transitions: Vec<TransitionStatus>,
    /// VRRP packets ignored, by reason.
    pub rejected: BTreeMap<String, u64>,
}

impl HaStatus {
    /// The status in `run_dir`, if a pair runs there.
    pub fn load(run_dir: &std::path::Path) -> Option<HaStatus> {
        let text = std::fs::read_to_string(run_dir.join(HA_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// What the daemon tells the pair.
#[derive(Debug)]
enum Command {
    Ready(bool, String),
    /// The cluster's Service addresses, held with the virtual addresses.
    Extra(Vec<Ipv4Addr>),
    Shutdown(oneshot::Sender<()>),
}

/// The daemon's handle on the pair's task.
pub struct PairHandle {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    last_ready: Option<bool>,
    heard_peer: watch::Receiver<Option<Ipv4Addr>>,
    master: watch::Receiver<bool>,
    last_extra: Option<Vec<Ipv4Addr>>,
}

impl PairHandle {
    /// The address of the peer VRRP heard last (`None` until one is): where
    /// flow sync goes without `unicast_peers`.
    pub fn heard_peer(&self) -> watch::Receiver<Option<Ipv4Addr>> {
        self.heard_peer.clone()
    }

    /// Whether this box is the master now (it writes the cluster's status).
    pub fn master(&self) -> watch::Receiver<bool> {
        self.master.clone()
    }

    /// The cluster's Service addresses: the master holds and announces
    /// them with its virtual addresses (not advertised in VRRP, whose
    /// address list keepalived peers compare with their own).
    pub fn set_extra_addresses(&mut self, addresses: Vec<Ipv4Addr>) {
        if self.last_extra.as_ref() == Some(&addresses) {
            return;
        }
        if self
            .commands
            .try_send(Command::Extra(addresses.clone()))
            .is_ok()
        {
            self.last_extra = Some(addresses);
        }
    }

    /// Whether the box can serve, and why; sent only when it changes.
    pub fn set_ready(&mut self, ready: bool, why: String) {
        if self.last_ready == Some(ready) {
            return;
        }
        // Remembered only once sent: a full queue must not lose it.
        if self.commands.try_send(Command::Ready(ready, why)).is_ok() {
            self.last_ready = Some(ready);
        }
    }

    /// Resigns (priority 0) and gives the addresses up, then ends the
    /// task; waits at most `limit`.
    pub async fn shutdown(self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
        self.task.abort();
    }
}

struct Pair {
    plan: HaPlan,
    machine: Machine,
    socket: VrrpSocket,
    addresses: Addresses,
    run_dir: PathBuf,
    metrics: Arc<Metrics>,
    rejected: BTreeMap<String, u64>,
    /// Instant ↔ wall clock, for the status file.
    epoch: (Instant, SystemTime),
    /// When `ha.json` was last written.
    published: Instant,
    /// The peer heard last.
    heard_peer: watch::Sender<Option<Ipv4Addr>>,
    /// Whether the state is MASTER.
    master: watch::Sender<bool>,
    /// The cluster's Service addresses (held beside the virtual ones).
    extra: Vec<Ipv4Addr>,
}

/// Starts the pair on the current runtime. It gives up any virtual
/// address an earlier run left on the interface, and waits in INIT until
/// the daemon says it is ready.
///
/// # Errors
///
/// When the VRRP socket or the netlink connection cannot be opened.
pub async fn spawn(
    plan: HaPlan,
    run_dir: PathBuf,
    metrics: Arc<Metrics>,
) -> std::io::Result<PairHandle> {
    let socket = VrrpSocket::open(
        &plan.interface.name,
        plan.interface.index,
        plan.local,
        plan.unicast_peers.clone(),
    )?;
    let addresses = Addresses::new(plan.interface.index)?;
    // The cluster's Service addresses an earlier run may have held too
    // (recorded by the daemon, see `crate::k8s::claim`).
    let left: Vec<Ipv4Addr> =
        std::fs::read_to_string(run_dir.join(crate::k8s::claim::CLAIMED_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
    for addr in plan.virtual_addresses.iter().chain(&left) {
        if let Err(e) = addresses.remove(*addr).await {
            warn!(%addr, "removing a virtual address left by an earlier run: {e}");
        }
    }
    let now = Instant::now();
    let machine = Machine::new(
        Params {
            vrid: plan.virtual_router_id,
            priority: plan.priority,
            interval: plan.advert_interval,
            preempt: plan.preempt,
            local: plan.local,
        },
        now,
    );
    let (commands, rx) = mpsc::channel(16);
    let (heard_peer, heard_rx) = watch::channel(None);
    let (master, master_rx) = watch::channel(false);
    let mut pair = Pair {
        plan,
        machine,
        socket,
        addresses,
        run_dir,
        metrics,
        rejected: BTreeMap::new(),
        epoch: (now, SystemTime::now()),
        published: now,
        heard_peer,
        master,
        extra: Vec::new(),
    };
    pair.publish();
    let task = tokio::spawn(async move { pair.run(rx).await });
    Ok(PairHandle {
        commands,
        task,
        last_ready: None,
        heard_peer: heard_rx,
        master: master_rx,
        last_extra: None,
    })
}

impl Pair {
    fn instance(&self) -> String {
        format!("VI_{}", self.plan.virtual_router_id)
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let deadline = self
                .machine
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let before = self.machine.state();
            let heard: Vec<(Ipv4Addr, u8)> = self.peer_keys();
            let actions = tokio::select! {
                packet = self.socket.recv() => match packet {
                    Ok((src, Ok(advert))) if advert.vrid == self.plan.virtual_router_id => {
                        self.machine.advert(src, &advert, Instant::now())
                    }
                    Ok((_, Ok(advert))) => self.reject(Rejected::Vrid(advert.vrid)),
                    Ok((_, Err(why))) => self.reject(why),
                    Err(e) => {
                        error!("receiving VRRP: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        vec![]
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.machine.tick(Instant::now()),
                command = rx.recv() => match command {
                    Some(Command::Ready(ready, why)) => self.machine.set_ready(ready, &why, Instant::now()),
                    Some(Command::Extra(addresses)) => {
                        self.set_extra(addresses).await;
                        vec![]
                    }
                    Some(Command::Shutdown(done)) => {
                        let actions = self.machine.shutdown(Instant::now());
                        self.perform(&actions).await;
                        self.log_transition(before);
                        self.publish();
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            };
            self.perform(&actions).await;
            self.log_transition(before);
            let master = self.machine.state() == State::Master;
            self.master
                .send_if_modified(|m| std::mem::replace(m, master) != master);
            if let Some(peer) = self.machine.peers().first().map(|p| p.addr) {
                self.heard_peer.send_if_modified(|heard| {
                    let changed = *heard != Some(peer);
                    *heard = Some(peer);
                    changed
                });
            }
            // A new peer (or priority) at once; when they were heard,
            // fresh to within a second.
            if !actions.is_empty()
                || self.machine.state() != before
                || self.peer_keys() != heard
                || self.published.elapsed() >= Duration::from_secs(1)
            {
                self.publish();
            }
        }
    }

    fn peer_keys(&self) -> Vec<(Ipv4Addr, u8)> {
        let mut keys: Vec<_> = self
            .machine
            .peers()
            .iter()
            .map(|p| (p.addr, p.priority))
            .collect();
        keys.sort();
        keys
    }

    fn reject(&mut self, why: Rejected) -> Vec<Action> {
        *self.rejected.entry(why.label().to_owned()).or_default() += 1;
        self.metrics.ha_rejected(why.label());
        vec![]
    }

    fn log_transition(&self, before: State) {
        let now = self.machine.state();
        if now == before {
            return;
        }
        let reason = self
            .machine
            .history()
            .last()
            .map_or(String::new(), |t| t.reason.clone());
        let message = format!(
            "VRRP_Instance({}) Entering {} STATE ({reason})",
            self.instance(),
            now.name()
        );
        match now {
            State::Fault => warn!(state = now.name(), "{message}"),
            _ => info!(state = now.name(), "{message}"),
        }
        self.metrics.ha_transition(before, now);
    }

    async fn perform(&mut self, actions: &[Action]) {
        for action in actions {
            match *action {
                Action::Send(priority) => {
                    let advert = Advert {
                        vrid: self.plan.virtual_router_id,
                        priority,
                        interval: self.plan.advert_interval,
                        addresses: self.plan.virtual_addresses.clone(),
                    };
                    if let Err(e) = self.socket.send(&advert).await {
                        warn!("sending a VRRP advertisement: {e}");
                    }
                }
                Action::Claim => {
                    for addr in &self.held() {
                        if let Err(e) = self.addresses.add(*addr).await {
                            error!(%addr, "adding a virtual address: {e}");
                        }
                    }
                    self.announce(GARP_REPEAT);
                }
                Action::Announce => self.announce(1),
                Action::Release => {
                    for addr in &self.held() {
                        if let Err(e) = self.addresses.remove(*addr).await {
                            error!(%addr, "removing a virtual address: {e}");
                        }
                    }
                }
            }
        }
    }

    /// The virtual addresses and the cluster's Service addresses.
    fn held(&self) -> Vec<Ipv4Addr> {
        let mut all = self.plan.virtual_addresses.clone();
        all.extend(
            self.extra
                .iter()
                .filter(|a| !self.plan.virtual_addresses.contains(a)),
        );
        all
    }

    /// New cluster Service addresses: a master adds and announces those
    /// it lacks and gives up those released.
    async fn set_extra(&mut self, addresses: Vec<Ipv4Addr>) {
        let old = std::mem::replace(&mut self.extra, addresses);
        if self.machine.state() != State::Master {
            return;
        }
        let base = &self.plan.virtual_addresses;
        let new: Vec<Ipv4Addr> = self
            .extra
            .iter()
            .filter(|a| !old.contains(a) && !base.contains(a))
            .copied()
            .collect();
        for addr in &new {
            if let Err(e) = self.addresses.add(*addr).await {
                error!(%addr, "adding a Service address: {e}");
            }
        }
        if !new.is_empty() {
            let iface = &self.plan.interface;
            for _ in 0..GARP_REPEAT {
                if let Err(e) = announce(iface.index, iface.mac, &new) {
                    warn!(interface = %iface.name, "sending gratuitous ARPs: {e}");
                    break;
                }
            }
        }
        for addr in old
            .iter()
            .filter(|a| !self.extra.contains(a) && !base.contains(a))
        {
            if let Err(e) = self.addresses.remove(*addr).await {
                error!(%addr, "removing a Service address: {e}");
            }
        }
    }

    fn announce(&self, times: usize) {
        let iface = &self.plan.interface;
        for _ in 0..times {
            if let Err(e) = announce(iface.index, iface.mac, &self.held()) {
                warn!(interface = %iface.name, "sending gratuitous ARPs: {e}");
                return;
            }
        }
    }

    fn unix(&self, at: Instant) -> f64 {
        let wall = if at >= self.epoch.0 {
            self.epoch.1 + (at - self.epoch.0)
        } else {
            self.epoch.1 - (self.epoch.0 - at)
        };
        wall.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }

    /// Writes `ha.json` and sets the state gauge.
    fn publish(&mut self) {
        self.published = Instant::now();
        let m = &self.machine;
        let status = HaStatus {
            state: m.state().name().to_owned(),
            since: self.unix(m.since()),
            interface: self.plan.interface.name.clone(),
            local_address: self.plan.local,
            virtual_router_id: self.plan.virtual_router_id,
            priority: self.plan.priority,
            effective_priority: m.effective_priority(),
            advert_interval_ms: self.plan.advert_interval.as_millis() as u64,
            master_advert_interval_ms: m.master_interval().as_millis() as u64,
            master_down_interval_ms: m.master_down_interval().as_millis() as u64,
            virtual_addresses: self.plan.virtual_addresses.clone(),
            peers: m
                .peers()
                .iter()
                .map(|p| PeerStatus {
                    address: p.addr,
                    priority: p.priority,
                    advert_interval_ms: p.interval.as_millis() as u64,
                    last_heard: self.unix(p.heard),
                })
                .collect(),
            transitions: m
                .history()
                .map(|t| TransitionStatus {
                    from: t.from.name().to_owned(),
                    to: t.to.name().to_owned(),
                    reason: t.reason.clone(),
                    at: self.unix(t.at),
                })
                .collect(),
            rejected: self.rejected.clone(),
        };
        self.metrics.ha_state(m.state());
        if let Err(e) = crate::daemon::control::write_ha(&self.run_dir, &status) {
            warn!("writing {HA_FILE}: {e}");
        }
    }
}
