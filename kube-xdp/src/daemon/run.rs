//! `kube-xdp run`: load (or adopt) the datapath, attach, program it from
//! the configuration, run the health checks, and serve until SIGINT or
//! SIGTERM. Stopping leaves the program attached and the maps pinned:
//! forwarding and established flows continue, and the next `run` adopts
//! them.

use anyhow::{Context, bail};
use aya::{Ebpf, programs::Xdp};
use kube_xdp_common::{
    map_name,
    maps::{LAYOUT_VERSION, MAX_SNAT_ADDRESSES, Meta, Settings},
    program_name,
};
use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    bpffs,
    config::Config,
    daemon::{
        attach::{self, Attached},
        control::{self, Status},
        desired::{self, BackendKey, Checker, Resolved},
        host, neighbour,
        state::{PinnedBackend, State},
    },
    datapath::Datapath,
    ebpf,
    health::{self, CheckEvent, Health},
    metrics::{self, Metrics},
};

/// How often next hops are re-read and drained backends expire.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often hostname backends are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// How often the event log gets a summary line.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

struct Running {
    checker: Checker,
    task: JoinHandle<()>,
}

struct Daemon {
    config_path: PathBuf,
    config: Config,
    dp: Datapath,
    state: State,
    resolved: Resolved,
    checkers: HashMap<BackendKey, Running>,
    events: mpsc::Sender<CheckEvent<BackendKey>>,
    generation: u64,
    metrics: Arc<Metrics>,
    // The loaded object: keeps the program and maps open while we run.
    _bpf: Ebpf,
}

/// Refuses pins written by another layout or flow-table size.
fn check_meta(pin_path: &Path, flow_table_size: u32) -> anyhow::Result<bool> {
    let meta_pin = pin_path.join(map_name::META);
    if !meta_pin.exists() {
        return Ok(false);
    }
    let dp = Datapath::open_pinned(pin_path)
        .with_context(|| format!("reading the pins under {}", pin_path.display()))?;
    let meta = dp.meta()?;
    if meta.layout_version != LAYOUT_VERSION || meta.flow_table_size != flow_table_size {
        bail!(
            "the maps pinned under {} have layout version {} and flow_table_size {}, this binary wants layout {} and flow_table_size {}: \
             re-using them would misread them. Run `kube-xdp detach` (established flows are lost) and start again, \
             or set flow_table_size back to {}",
            pin_path.display(),
            meta.layout_version,
            meta.flow_table_size,
            LAYOUT_VERSION,
            flow_table_size,
            meta.flow_table_size
        );
    }
    Ok(true)
}

/// SNAT addresses: the configured ones, else the first IPv4 address of the
/// first interface that is not a VIP.
fn snat_addresses(config: &Config) -> anyhow::Result<Vec<Ipv4Addr>> {
    if !config.daemon.snat_addresses.is_empty() {
        return Ok(config.daemon.snat_addresses.clone());
    }
    let vips: Vec<Ipv4Addr> = config.services.iter().map(|s| s.vip).collect();
    let name = &config.daemon.interfaces[0];
    let iface = host::interface(name)?.with_context(|| format!("interface {name} is gone"))?;
    iface
        .ipv4
        .into_iter()
        .find(|a| !vips.contains(a))
        .map(|a| vec![a])
        .with_context(|| {
            format!("interface {name} has no IPv4 address other than a VIP to SNAT from: set [daemon] snat_addresses")
        })
}

fn settings(config: &Config) -> anyhow::Result<Settings> {
    let addrs = snat_addresses(config)?;
    let mut snat_addrs = [0u32; MAX_SNAT_ADDRESSES];
    for (slot, a) in snat_addrs.iter_mut().zip(&addrs) {
        *slot = crate::datapath::be_addr(*a);
    }
    let t = &config.timeouts;
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    Ok(Settings {
        snat_addrs,
        snat_count: addrs.len().min(MAX_SNAT_ADDRESSES) as u32,
        snat_port_min: config.daemon.snat_ports.first,
        snat_port_max: config.daemon.snat_ports.last,
        tcp_established_ns: ns(t.tcp_established),
        tcp_closing_ns: ns(t.tcp_closing),
        tcp_syn_ns: ns(t.tcp_syn),
        udp_ns: ns(t.udp),
        tcp_time_wait_ns: ns(t.tcp_time_wait),
    })
}

/// Loads and validates the file, environment included: errors stop it,
/// warnings are logged.
fn load_config(path: &Path) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    let report = config.check_environment();
    for w in report.warnings() {
        warn!("{w}");
    }
    let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(config)
}

/// `kube-xdp run --config FILE`.
///
/// # Errors
///
/// A bad configuration, or a datapath that cannot be loaded or attached.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config_path.to_owned(), config))
}

async fn serve(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new(&config, metrics::hash_file(&config_path));
    if let Some(addr) = config.daemon.metrics_listen {
        metrics::serve(addr, Arc::clone(&metrics)).await?;
    }
    let pin_path = config.daemon.pin_path.clone();
    bpffs::prepare_pin_dir(&pin_path)?;
    let adopted = check_meta(&pin_path, config.daemon.flow_table_size)?;
    let mut bpf = ebpf::load_pinned(&pin_path, config.daemon.flow_table_size)?;
    let program: &mut Xdp = bpf
        .program_mut(program_name::LB)
        .context("the eBPF object has no load-balancer program")?
        .try_into()?;
    program.load().context("loading the XDP program")?;
    let mut dp = Datapath::from_ebpf(&mut bpf)?;
    dp.set_meta(&Meta {
        layout_version: LAYOUT_VERSION,
        flow_table_size: config.daemon.flow_table_size,
    })?;
    dp.set_settings(&settings(&config)?)?;
    for name in &config.daemon.interfaces {
        let iface = host::interface(name)?.with_context(|| format!("interface {name} is gone"))?;
        let index = host::ifindex(name).with_context(|| format!("interface {name} is gone"))?;
        dp.set_interface(index, iface.mac.unwrap_or([0; 6]))?;
    }
    let state = if adopted {
        let backends = dp
            .backends()?
            .into_iter()
            .map(|(id, spec)| PinnedBackend { id, spec })
            .collect();
        info!(pin_path = %pin_path.display(), "adopting the pinned maps: flows and backend states carry over");
        State::adopt(dp.services()?, backends)
    } else {
        State::default()
    };
    let (events, mut event_rx) = mpsc::channel(1024);
    let (resolved, failed) = desired::resolve_all(&config);
    for f in failed {
        warn!("{f}");
    }
    // Continue the numbering of an earlier run, so `kube-xdp reload` always
    // sees the generation move on.
    let generation = control::read_status(&config.daemon.run_dir).map_or(0, |s| s.generation);
    let mut d = Daemon {
        config_path,
        config,
        dp,
        state,
        resolved,
        checkers: HashMap::new(),
        events,
        generation,
        metrics,
        _bpf: bpf,
    };
    d.apply().context("programming the datapath")?;
    // Attach only once the maps hold the configuration (and, on a restart,
    // the adopted state), so the new program never sees an empty table.
    let program: &mut Xdp = d
        ._bpf
        .program_mut(program_name::LB)
        .context("the eBPF object has no load-balancer program")?
        .try_into()?;
    for name in &d.config.daemon.interfaces {
        match attach::attach(program, name, d.config.daemon.xdp_mode, &pin_path)? {
            Attached::New(mode) => info!(interface = %name, mode, "attached"),
            Attached::Adopted => {
                info!(interface = %name, "took over the pinned link: forwarding never stopped")
            }
        }
    }
    d.refresh_next_hops();
    let run_dir = d.config.daemon.run_dir.clone();
    control::write_pid(&run_dir)?;
    d.report(true, "started".into());
    info!(pin_path = %pin_path.display(), services = d.config.services.len(), "kube-xdp running");
    metrics::spawn_summary(Arc::clone(&d.metrics), SUMMARY_EVERY);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut resolve = tokio::time::interval(RESOLVE_EVERY);
    resolve.reset();
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: exiting; the program stays attached and the maps pinned"); break; }
            _ = int.recv() => { info!("SIGINT: exiting; the program stays attached and the maps pinned"); break; }
            _ = hup.recv() => d.reload(),
            Some(event) = event_rx.recv() => d.on_check(event),
            _ = housekeeping.tick() => d.housekeeping(),
            _ = resolve.tick() => d.re_resolve(),
        }
    }
    for (_, r) in d.checkers.drain() {
        r.task.abort();
    }
    control::remove_pid(&run_dir);
    Ok(())
}

impl Daemon {
    /// Applies the configuration to the maps and the checkers.
    fn apply(&mut self) -> Result<(), crate::daemon::state::StateError> {
        let desired = desired::services(&self.config, &self.resolved);
        let changes = self.state.apply(&mut self.dp, &desired, Instant::now())?;
        if !changes.is_empty() {
            info!("datapath updated: {changes}");
        }
        self.sync_checkers();
        Ok(())
    }

    /// Starts, restarts and stops checkers to match the configuration.
    fn sync_checkers(&mut self) {
        let wanted = desired::checkers(&self.config, &self.resolved);
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

    fn on_check(&mut self, event: CheckEvent<BackendKey>) {
        let (service, backend) = &event.key;
        self.metrics.record_check(service, backend, &event);
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
        if up {
            self.refresh_next_hops();
        }
    }

    fn refresh_next_hops(&mut self) {
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

    fn housekeeping(&mut self) {
        self.refresh_next_hops();
        match self.state.expire_drained(&mut self.dp, Instant::now()) {
            Ok(gone) => {
                for b in gone {
                    info!(backend = %b, "drain timeout passed: backend removed");
                }
            }
            Err(e) => error!("expiring drained backends: {e}"),
        }
    }

    fn re_resolve(&mut self) {
        let (resolved, failed) = desired::resolve_all(&self.config);
        for f in failed {
            warn!("{f} (keeping its last address)");
        }
        let mut merged = self.resolved.clone();
        merged.extend(resolved);
        if merged != self.resolved {
            info!("a backend hostname resolves to a new address: applying it like a reload");
            self.resolved = merged;
            if let Err(e) = self.apply() {
                error!("applying new addresses: {e}");
            }
        }
    }

    /// SIGHUP: re-read the file; an invalid one is logged and ignored.
    fn reload(&mut self) {
        info!(config = %self.config_path.display(), "reload requested");
        let config = match load_config(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload failed, still running the previous configuration:\n{e:#}");
                self.metrics.reload_failed();
                self.report(false, format!("{e:#}"));
                return;
            }
        };
        let restart_needed = config.daemon.interfaces != self.config.daemon.interfaces
            || config.daemon.pin_path != self.config.daemon.pin_path
            || config.daemon.flow_table_size != self.config.daemon.flow_table_size
            || config.daemon.xdp_mode != self.config.daemon.xdp_mode
            || config.daemon.metrics_listen != self.config.daemon.metrics_listen;
        if restart_needed {
            warn!(
                "interfaces, xdp_mode, pin_path, flow_table_size and metrics_listen take effect at the next restart"
            );
        }
        match settings(&config).map(|s| self.dp.set_settings(&s)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.fail_reload(e.to_string()),
            Err(e) => return self.fail_reload(format!("{e:#}")),
        }
        let (resolved, failed) = desired::resolve_all(&config);
        for f in failed {
            warn!("{f}");
        }
        self.config = config;
        self.resolved = resolved;
        match self.apply() {
            Ok(()) => {
                let hash = metrics::hash_file(&self.config_path);
                info!(config_hash = %hash, "reload applied");
                self.metrics.reload_ok(&self.config, hash);
                self.report(true, "reloaded".into());
            }
            Err(e) => self.fail_reload(e.to_string()),
        }
    }

    fn fail_reload(&mut self, message: String) {
        error!("reload failed: {message}");
        self.metrics.reload_failed();
        self.report(false, message);
    }

    fn report(&mut self, ok: bool, message: String) {
        self.generation += 1;
        let status = Status {
            generation: self.generation,
            ok,
            message,
        };
        if let Err(e) = control::write_status(&self.config.daemon.run_dir, &status) {
            warn!("writing the reload status: {e}");
        }
    }
}
