//! The control loop: applies a plan to the datapath as a diff, all or
//! nothing, and only then makes it current; reacts to health checks,
//! reloads, next hops and DNS.

use aya::Ebpf;
use std::{collections::HashMap, net::Ipv4Addr, path::PathBuf, sync::Arc, time::Instant};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use kube_xdp_common::stats::Counter;

use crate::{
    config::SynCookies,
    daemon::{
        control::{self, Status},
        state::{Changes, State, StateError},
        syn_flood::{self, Defence, Sample},
    },
    datapath::{Datapath, DatapathError},
    ha::pair::PairHandle,
    health::{self, CheckEvent, Health},
    host::{neighbour, realtime_offset_ns},
    metrics::Metrics,
    plan::{BackendKey, Checker, Plan},
    stats_page::StatsPage,
    sync::{
        directory::Directory,
        task::{SyncHandle, SyncNote},
    },
    view::Names,
};

pub(super) struct Running {
    checker: Checker,
    task: JoinHandle<()>,
}

/// Why a plan was not applied (the previous one is still fully in force).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("writing the datapath settings: {0}")]
    Settings(#[from] DatapathError),
    #[error(transparent)]
    State(#[from] StateError),
}

pub(super) struct Daemon {
    pub config_path: PathBuf,
    /// Where the maps are pinned (from the start: a reload does not move
    /// them).
    pub pin_path: PathBuf,
    /// The plan in force: `None` only before the first commit.
    pub plan: Option<Plan>,
    pub dp: Datapath,
    pub state: State,
    pub checkers: HashMap<BackendKey, Running>,
    pub events: mpsc::Sender<CheckEvent<BackendKey>>,
    pub generation: u64,
    pub metrics: Arc<Metrics>,
    /// The pair's task, when this box is one of a pair.
    pub pair: Option<PairHandle>,
    /// What the stats page shows beyond the maps (served only with
    /// `stats_listen`, recorded always: it is small).
    pub stats_page: Arc<StatsPage>,
    /// Lookups and reloads under way off the loop.
    pub background: super::background::Background,
    /// The loaded object: keeps the program and maps open while we run.
    pub _bpf: Ebpf,
    /// How far the rewritten TCP timestamps' clock runs ahead of
    /// `CLOCK_MONOTONIC` (the pair's flow sync moves it up to the peer's).
    pub ts_clock_offset_ns: u64,
    /// The SYN cookies' SipHash key: chosen at start, kept across reloads
    /// (see [`syn_flood::cookie_key`]).
    pub cookie_key: [u64; 2],
    /// How far the cookies' clock (the realtime clock) runs ahead of
    /// `CLOCK_MONOTONIC`, as last written to the settings.
    pub cookie_clock_offset_ns: u64,
    /// Whether SYNs over the half-open limit are being answered with
    /// cookies or dropped (from the datapath's counters).
    pub defence: Defence,
    /// The flow sync with the peer, when on.
    pub sync: Option<Sync>,
    /// The Kubernetes controller, with `[kubernetes]`.
    pub cluster: Option<super::cluster::Cluster>,
}

/// The daemon's side of the flow sync.
pub(super) struct Sync {
    pub _task: SyncHandle,
    /// What the task resolves the peer's flows with, after each apply.
    pub directory: watch::Sender<Arc<Directory>>,
    /// The peer's table is in, or it did not come in time: the pair may
    /// claim mastership.
    pub ready: bool,
}

impl Daemon {
    /// The plan in force.
    pub fn plan(&self) -> &Plan {
        self.plan.as_ref().expect("a plan is committed at start")
    }

    /// Applies `plan` (settings, services, backends, pools) as a diff of
    /// the one in force. When any write fails, the maps and the state are
    /// put back as they were and the old plan stays in force; otherwise
    /// `plan` becomes current, the checkers follow it, and its names are
    /// published (file and metrics). Returns what changed.
    ///
    /// # Errors
    ///
    /// Why the plan was not applied.
    pub fn commit(&mut self, plan: Plan) -> Result<Changes, CommitError> {
        self.cookie_clock_offset_ns = realtime_offset_ns();
        let old_settings = self.plan.as_ref().map(|p| self.settings_of(p));
        let old_mode = self.plan.as_ref().map(|p| p.config.syn_flood.syn_cookies);
        self.dp.set_settings(&self.settings_of(&plan))?;
        let changes = match self.state.apply_all_or_nothing(
            &mut self.dp,
            &plan.desired_services(),
            Instant::now(),
        ) {
            Ok(changes) => changes,
            Err(e) => {
                if let Some(old) = old_settings
                    && let Err(re) = self.dp.set_settings(&old)
                {
                    error!("restoring the datapath settings: {re}");
                }
                return Err(e.into());
            }
        };
        if !changes.is_empty() {
            info!("datapath updated: {changes}");
        }
        self.stats_page
            .set_settings(plan.config.daemon.stats.clone());
        let mode = plan.config.syn_flood.syn_cookies;
        if old_mode != Some(mode) {
            if mode == SynCookies::Always {
                info!("{}", syn_flood::ALWAYS_MESSAGE);
            }
            // Cookies sent under another mode are no flood under this one.
            self.defence = Defence::default();
            self.metrics
                .set_syn_flood_defence(mode == SynCookies::Always);
        }
        self.plan = Some(plan);
        self.sync_checkers();
        self.publish_names();
        self.publish_directory();
        self.publish_cluster_inputs();
        self.update_ready();
        Ok(changes)
    }

    /// The datapath settings of `plan`, with the clocks' offsets and the
    /// cookie key.
    fn settings_of(&self, plan: &Plan) -> kube_xdp_common::maps::Settings {
        let mut settings = plan.settings();
        settings.ts_clock_offset_ns = self.ts_clock_offset_ns;
        settings.cookie_key = self.cookie_key;
        settings.cookie_clock_offset_ns = self.cookie_clock_offset_ns;
        settings
    }

    /// Reads the defence's counters, logs when it switches on or off, and
    /// keeps its metric; about once a second.
    fn watch_syn_flood(&mut self) {
        let read = |c| self.dp.counter(c);
        let sample = match (read(Counter::CookieSent), read(Counter::HalfOpenLimited)) {
            (Ok(cookies_sent), Ok(half_open_limited)) => Sample {
                at: Instant::now(),
                cookies_sent,
                half_open_limited,
            },
            (Err(e), _) | (_, Err(e)) => {
                debug!("reading the SYN-flood counters: {e}");
                return;
            }
        };
        let change = self.defence.observe(sample);
        let s = &self.plan().config.syn_flood;
        // With "always", cookies are the rule, not a defence switching.
        let always = s.syn_cookies == SynCookies::Always;
        if let Some(change) = change
            && !always
        {
            let message = syn_flood::message(change, s.syn_cookies, s.half_open_limit);
            match change {
                syn_flood::Change::On { .. } => {
                    warn!(half_open_limit = s.half_open_limit, "{message}")
                }
                syn_flood::Change::Off => info!(half_open_limit = s.half_open_limit, "{message}"),
            }
        }
        self.metrics
            .set_syn_flood_defence(always || self.defence.is_on());
    }

    /// Writes the settings again when the realtime clock moved away from
    /// the cookies' clock (NTP stepped or slewed it), so the pair's boxes
    /// keep counting the same cookie periods.
    fn follow_realtime_clock(&mut self) {
        let now = realtime_offset_ns();
        if !syn_flood::clock_moved(self.cookie_clock_offset_ns, now) {
            return;
        }
        self.cookie_clock_offset_ns = now;
        let settings = self.settings_of(self.plan());
        if let Err(e) = self.dp.set_settings(&settings) {
            error!("moving the SYN cookies' clock to the realtime clock: {e}");
        }
    }

    /// What the sync task says.
    pub fn on_sync(&mut self, note: SyncNote) {
        match note {
            SyncNote::Ready(ready, _) => {
                if let Some(sync) = self.sync.as_mut() {
                    sync.ready = ready;
                }
                self.update_ready();
            }
            SyncNote::ClockOffset(offset) if offset > self.ts_clock_offset_ns => {
                self.ts_clock_offset_ns = offset;
                let settings = self.settings_of(self.plan());
                if let Err(e) = self.dp.set_settings(&settings) {
                    error!("moving the timestamp clock to the peer's: {e}");
                }
            }
            SyncNote::ClockOffset(_) => {}
        }
    }

    /// The sync task's directory, from the state just applied.
    pub fn publish_directory(&mut self) {
        let Some(sync) = self.sync.as_ref() else {
            return;
        };
        let plan = self.plan();
        let interfaces = plan.interfaces.iter().map(|i| i.index).collect();
        let default = plan.ha.as_ref().map_or(0, |ha| ha.interface.index);
        let directory = Directory::new(&self.state, interfaces, default);
        sync.directory.send_replace(Arc::new(directory));
    }

    /// Starts, restarts and stops checkers to match the plan.
    fn sync_checkers(&mut self) {
        let wanted = self.plan().checkers();
        self.checkers.retain(|key, running| {
            let keep = wanted.contains(&running.checker);
            if !keep {
                running.task.abort();
                info!(backend = %format!("{}/{}", key.0, key.1), "health check stopped");
            }
            keep
        });
        for c in wanted {
            if self.checkers.contains_key(&c.key) {
                continue;
            }
            let up = self
                .state
                .services
                .get(&c.key.0)
                .and_then(|s| s.backends.get(&c.key.1))
                .is_some_and(|b| b.up);
            let tls = match c.spec.kind {
                health::CheckKind::Https => match health::tls_config(&c.spec.tls) {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        error!(backend = %format!("{}/{}", c.key.0, c.key.1), "TLS settings: {e}");
                        None
                    }
                },
                _ => None,
            };
            let initial = if up { Health::Up } else { Health::Down };
            let task = health::spawn_checker(
                c.key.clone(),
                Arc::clone(&c.spec),
                tls,
                c.addr,
                initial,
                self.events.clone(),
            );
            self.checkers
                .insert(c.key.clone(), Running { checker: c, task });
        }
    }

    /// Tells the pair whether this box can serve: every tracked service
    /// has a usable backend (the program is attached before the pair
    /// starts, and stays attached).
    pub fn update_ready(&mut self) {
        let Some(pair) = self.pair.as_mut() else {
            return;
        };
        let Some(ha) = self.plan.as_ref().and_then(|p| p.ha.as_ref()) else {
            return;
        };
        let unusable: Vec<&str> = ha
            .track_services
            .iter()
            .filter(|name| {
                !self
                    .state
                    .services
                    .get(name.as_str())
                    .is_some_and(|s| s.backends.values().any(|b| b.usable()))
            })
            .map(String::as_str)
            .collect();
        if self.sync.as_ref().is_some_and(|s| !s.ready) {
            pair.set_ready(false, "waiting for the peer's flow table".into());
        } else if unusable.is_empty() {
            pair.set_ready(
                true,
                "ready: program attached, every tracked service has a usable backend".into(),
            );
        } else {
            pair.set_ready(
                false,
                format!("no usable backend for {}", unusable.join(", ")),
            );
        }
    }

    pub fn stop_checkers(&mut self) {
        for (_, r) in self.checkers.drain() {
            r.task.abort();
        }
    }

    pub fn on_check(&mut self, event: CheckEvent<BackendKey>) {
        let (service, backend) = &event.key;
        self.metrics.record_check(service, backend, &event);
        self.stats_page.record_check(service, backend, &event);
        if event.transition.is_none() {
            return;
        }
        let label = format!("{service}/{backend}");
        if let Some(message) = event.message(&label) {
            match event.health {
                Health::Up => info!(%service, %backend, state = "UP", "{message}"),
                Health::Down => warn!(%service, %backend, state = "DOWN", "{message}"),
            }
        }
        let up = event.health == Health::Up;
        if let Err(e) = self.state.set_health(&mut self.dp, service, backend, up) {
            error!(backend = %label, "updating the datapath: {e}");
        }
        self.update_ready();
        if up {
            self.refresh_next_hops();
        }
    }

    pub fn refresh_next_hops(&mut self) {
        let tables = match neighbour::Tables::read() {
            Ok(t) => t,
            Err(e) => {
                warn!("reading the neighbour table: {e}");
                return;
            }
        };
        let targets: Vec<(String, String, Ipv4Addr)> = self
            .state
            .services
            .iter()
            .flat_map(|(s, svc)| {
                svc.backends
                    .iter()
                    .map(move |(b, rt)| (s.clone(), b.clone(), rt.addr))
            })
            .collect();
        for (service, backend, addr) in targets {
            let hop = tables.next_hop(addr);
            let (mac, ifindex) = hop.map_or((None, 0), |h| (Some(h.mac), h.ifindex));
            match self
                .state
                .set_next_hop(&mut self.dp, &service, &backend, mac, ifindex)
            {
                Ok(true) => match mac {
                    Some(m) => info!(backend = %format!("{service}/{backend}"), %addr,
                        mac = %format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
                        "next hop resolved"),
                    None => {
                        warn!(backend = %format!("{service}/{backend}"), %addr, "next hop unknown: its packets are dropped (neighbour_miss) until the kernel resolves it")
                    }
                },
                Ok(false) => {}
                Err(e) => error!("updating the datapath: {e}"),
            }
        }
    }

    pub fn housekeeping(&mut self) {
        self.refresh_next_hops();
        self.watch_syn_flood();
        self.follow_realtime_clock();
        match self.state.expire_drained(&mut self.dp, Instant::now()) {
            Ok(gone) => {
                for b in &gone {
                    info!(backend = %b, "drain timeout passed: backend removed");
                }
                if !gone.is_empty() {
                    self.publish_names();
                }
            }
            Err(e) => error!("expiring drained backends: {e}"),
        }
    }

    /// Writes the names of what is programmed (for the inspection
    /// commands) and hands them to the metrics.
    fn publish_names(&mut self) {
        let names: Names = self.state.names(&self.pin_path);
        if let Err(e) = control::write_names(&self.plan().config.daemon.run_dir, &names) {
            warn!("writing the names for kube-xdp backends/stats: {e}");
        }
        self.stats_page.retain(&names.backend_pairs());
        self.metrics.set_names(names);
    }

    pub(super) fn fail_reload(&mut self, message: String) {
        super::run::sd_notify("READY=1");
        error!("reload failed, still running the previous configuration:\n{message}");
        self.metrics.reload_failed();
        self.report(false, message);
    }

    pub fn report(&mut self, ok: bool, message: String) {
        self.generation += 1;
        let status = Status {
            generation: self.generation,
            ok,
            message,
        };
        if let Err(e) = control::write_status(&self.plan().config.daemon.run_dir, &status) {
            warn!("writing the reload status: {e}");
        }
    }
}
