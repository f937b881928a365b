//! `kube-xdp run`: build the plan, load (or adopt) the datapath, apply the
//! plan, attach, run the health checks, and serve until SIGINT or SIGTERM.
//! Stopping leaves the program attached and the maps pinned: forwarding
//! and established flows continue, and the next `run` adopts them.

use anyhow::{Context, bail};
use aya::{maps::RingBuf, programs::Xdp};
use kube_xdp_common::{
    map_name,
    maps::{LAYOUT_VERSION, Meta},
    program_name,
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{info, warn};

use crate::{
    bpffs,
    daemon::{
        attach::{self, Attached},
        background::Background,
        control,
        control_loop::{Daemon, Sync},
        state::{PinnedBackend, State},
        syn_flood,
    },
    datapath::Datapath,
    ebpf,
    host::RealHost,
    metrics::{self, Metrics},
    plan::Plan,
    stats_page::{self, StatsPage},
    sync::{
        directory::Directory,
        task::{self as sync_task, SyncSetup},
    },
    view::Names,
};

/// How often next hops are re-read and drained backends expire.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often hostname backends are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// How often the event log gets a summary line.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

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

/// Reads the file and builds its plan on this host: errors stop it,
/// warnings are logged. The same judge as `kube-xdp check-config`.
pub(super) fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    load_plan_after(path, None)
}

/// [`load_plan`] for a reload: hostname backends keep their addresses in
/// `previous` while DNS still gives them (or gives nothing usable).
pub(super) fn load_plan_after(path: &Path, previous: Option<&Plan>) -> anyhow::Result<Plan> {
    let plan = Plan::load_after(path, &RealHost, previous)?;
    for w in &plan.warnings {
        warn!("{w}");
    }
    Ok(plan)
}

/// `kube-xdp run --config FILE`.
///
/// # Errors
///
/// A bad configuration, or a datapath that cannot be loaded or attached.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // First of all: from here on a SIGHUP (`systemctl reload` while the
        // daemon starts) or a SIGTERM waits for the loop instead of
        // killing the process half-way through its start.
        let signals = Signals::install()?;
        let plan = load_plan(config_path)?;
        serve(config_path.to_owned(), plan, signals).await
    })
}

/// The signals the daemon answers, installed before anything else.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGHUP, SIGTERM and SIGINT blocked for the current thread while it
/// lives.
struct BlockedSignals(libc::sigset_t);

impl BlockedSignals {
    fn new() -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise
        // it, pthread_sigmask only reads and writes the sets given.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut set, s);
            }
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            BlockedSignals(old)
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Tells systemd (`Type=notify`) how the daemon is: `READY=1` once it
/// serves, `RELOADING=1`, `STOPPING=1`. Nothing without `NOTIFY_SOCKET`.
pub(super) fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        warn!("telling systemd {state:?}: {e}");
    }
}

async fn serve(config_path: PathBuf, plan: Plan, signals: Signals) -> anyhow::Result<()> {
    let daemon_config = plan.config.daemon.clone();
    if let Some(pid) = control::running_daemon(&daemon_config.run_dir) {
        bail!(
            "another kube-xdp daemon (pid {pid}) runs with run_dir {}: two would fight over the \
             same maps; stop it first (systemctl stop kube-xdp)",
            daemon_config.run_dir.display()
        );
    }
    let pin_path = daemon_config.pin_path.clone();
    let metrics = Metrics::new(
        pin_path.clone(),
        Names::default(),
        metrics::hash_file(&config_path),
    );
    if let Some(addr) = daemon_config.metrics_listen {
        metrics::serve(addr, Arc::clone(&metrics)).await?;
    }
    let stats_page = Arc::new(StatsPage::new(daemon_config.stats.clone()));
    if let Some(addr) = daemon_config.stats.listen {
        stats_page::serve(addr, Arc::clone(&stats_page), Arc::clone(&metrics)).await?;
    }
    bpffs::prepare_pin_dir(&pin_path)?;
    // Every pin's shape before the metadata map is read; the flow tables'
    // capacity after it, which says better what to do when only
    // flow_table_size changed.
    ebpf::check_pinned_maps(&pin_path, None)?;
    let adopted = check_meta(&pin_path, daemon_config.flow_table_size)?;
    ebpf::check_pinned_maps(&pin_path, Some(daemon_config.flow_table_size))?;
    let mut bpf = ebpf::load_pinned(&pin_path, daemon_config.flow_table_size)?;
    // The verifier gives up (EAGAIN) when a signal is pending for the
    // loading thread: keep the daemon's signals for its other threads
    // meanwhile, so a `systemctl reload` during the start cannot fail it.
    {
        let _blocked = BlockedSignals::new();
        ebpf::load_programs(&mut bpf)?;
    }
    // The flow reports, for the pair's sync (the map stays with the
    // program; this handle reads it).
    let sync_ring = match plan.ha.as_ref().and_then(|ha| ha.sync.as_ref()) {
        Some(_) => {
            let map = bpf
                .take_map(map_name::SYNC_EVENTS)
                .context("the eBPF object has no flow-report ring buffer")?;
            Some(RingBuf::try_from(map)?)
        }
        None => None,
    };
    let mut dp = Datapath::from_ebpf(&mut bpf)?;
    // A restart keeps the timestamp clock where the last run left it (it
    // never goes back), and the cookie key, so the cookies in flight
    // still open flows.
    let pinned = if adopted { dp.settings().ok() } else { None };
    let ts_clock_offset_ns = pinned.map_or(0, |s| s.ts_clock_offset_ns);
    let cookie_key = syn_flood::cookie_key(
        plan.ha
            .as_ref()
            .and_then(|ha| ha.sync.as_ref())
            .map(|sync| &sync.key),
        pinned.map_or([0; 2], |s| s.cookie_key),
        syn_flood::random_key,
    );
    dp.set_meta(&Meta {
        layout_version: LAYOUT_VERSION,
        flow_table_size: daemon_config.flow_table_size,
    })?;
    for iface in &plan.interfaces {
        dp.set_interface(iface.index, iface.mac)?;
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
    let (background, mut done_rx) = Background::new();
    let (sync_notes, mut sync_rx) = mpsc::channel(64);
    // Continue the numbering of an earlier run, so `kube-xdp reload` always
    // sees the generation move on.
    let generation = control::read_status(&daemon_config.run_dir).map_or(0, |s| s.generation);
    let mut d = Daemon {
        config_path,
        pin_path: pin_path.clone(),
        plan: None,
        dp,
        state,
        checkers: HashMap::new(),
        events,
        generation,
        metrics,
        pair: None,
        stats_page,
        background,
        _bpf: bpf,
        ts_clock_offset_ns,
        cookie_key,
        cookie_clock_offset_ns: 0,
        defence: Default::default(),
        sync: None,
        cluster: None,
    };
    // The last run's cluster services forward until the cluster answers;
    // should they not fit beside the file's (a file that grew), the
    // file's alone: they never wait for the cluster.
    let file_only = plan;
    let mut plan = file_only.clone();
    plan.cluster = super::cluster::last_applied(&plan);
    if plan.cluster.is_empty() {
        d.commit(file_only).context("programming the datapath")?;
    } else if let Err(e) = d.commit(plan) {
        warn!(
            "kubernetes: the last run's cluster services cannot be applied with the file's ({e}): \
             starting with the file's alone, the cluster's come with the controller's first decision"
        );
        d.commit(file_only).context("programming the datapath")?;
    }
    // Attach only once the maps hold the plan (and, on a restart, the
    // adopted state), so the new program never sees an empty table.
    let program: &mut Xdp = d
        ._bpf
        .program_mut(program_name::LB)
        .context("the eBPF object has no load-balancer program")?
        .try_into()?;
    for name in &daemon_config.interfaces {
        match attach::attach(program, name, daemon_config.xdp_mode, &pin_path)? {
            Attached::New(mode) => info!(interface = %name, mode, "attached"),
            Attached::Adopted => {
                info!(interface = %name, "took over the pinned link: forwarding never stopped")
            }
        }
    }
    d.refresh_next_hops();
    let run_dir = daemon_config.run_dir.clone();
    if let Some(ha) = d.plan().ha.clone() {
        let pair = crate::ha::pair::spawn(ha.clone(), run_dir.clone(), Arc::clone(&d.metrics))
            .await
            .context("starting the VRRP instance of the pair")?;
        if let (Some(sync), Some(ring)) = (ha.sync.clone(), sync_ring) {
            let (directory, directory_rx) = watch::channel(Arc::new(Directory::default()));
            let setup = SyncSetup {
                plan: sync,
                local: ha.local,
                unicast_peers: ha.unicast_peers.clone(),
                pin_path: pin_path.clone(),
                run_dir: run_dir.clone(),
                ring,
                directory: directory_rx,
                heard_peer: pair.heard_peer(),
                clock_offset_ns: d.ts_clock_offset_ns,
                metrics: Arc::clone(&d.metrics),
            };
            let task = sync_task::spawn(setup, sync_notes.clone())
                .await
                .context("starting the flow sync with the peer")?;
            d.sync = Some(Sync {
                _task: task,
                directory,
                ready: false,
            });
            d.publish_directory();
        }
        d.pair = Some(pair);
        d.update_ready();
    }
    // The cluster's Services: the controller runs beside the loop, so the
    // file's services never wait for the cluster.
    let (cluster_updates, mut cluster_rx) = mpsc::channel(4);
    d.start_cluster(cluster_updates, &run_dir)
        .await
        .context("starting the Kubernetes controller")?;
    control::write_pid(&run_dir)?;
    d.report(true, "started".into());
    info!(pin_path = %pin_path.display(), services = d.plan().services.len(), "kube-xdp running");
    sd_notify("READY=1");
    metrics::spawn_summary(Arc::clone(&d.metrics), SUMMARY_EVERY);

    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut resolve = tokio::time::interval(RESOLVE_EVERY);
    resolve.reset();
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: exiting; the program stays attached and the maps pinned"); break; }
            _ = int.recv() => { info!("SIGINT: exiting; the program stays attached and the maps pinned"); break; }
            _ = hup.recv() => d.reload(),
            Some(event) = event_rx.recv() => d.on_check(event),
            Some(note) = sync_rx.recv() => d.on_sync(note),
            _ = housekeeping.tick() => d.housekeeping(),
            _ = resolve.tick() => d.re_resolve(),
            Some(done) = done_rx.recv() => d.on_done(done),
            Some(update) = cluster_rx.recv() => d.on_cluster(update),
        }
    }
    sd_notify("STOPPING=1");
    if let Some(pair) = d.pair.take() {
        // A master hands over at once (priority 0) and gives the VIPs up.
        pair.shutdown(Duration::from_secs(2)).await;
    }
    d.stop_checkers();
    control::remove_pid(&run_dir);
    Ok(())
}
