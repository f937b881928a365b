//! `kube-xdp run`: load, attach, and serve until SIGINT or SIGTERM.

use crate::Common;
use anyhow::Context;
use aya::programs::{Xdp, XdpMode as AyaMode};
use kube_xdp::{
    bpffs,
    config::{Config, XdpMode},
    ebpf,
};
use kube_xdp_common::{maps::DEFAULT_FLOW_TABLE_SIZE, program_name};
use tracing::{info, warn};

pub fn run(common: &Common) -> anyhow::Result<()> {
    let config = Config::load(&common.config)?;
    for name in &config.daemon.interfaces {
        if nix_if_nametoindex(name).is_none() {
            anyhow::bail!(
                "{}: [daemon] interfaces: interface {name:?} does not exist",
                common.config.display()
            );
        }
    }
    let pin_path = &config.daemon.pin_path;
    bpffs::prepare_pin_dir(pin_path)?;
    let mut bpf = ebpf::load_pinned(pin_path, DEFAULT_FLOW_TABLE_SIZE)?;
    // The logger owns the log map: it must live as long as the program.
    // A release object has no log statements, which aya-log reports as an
    // error that only means "no logs".
    let _logger = match aya_log::EbpfLogger::init(&mut bpf) {
        Ok(logger) => {
            warn!("this eBPF object carries log statements; release builds should not");
            Some(logger)
        }
        Err(aya_log::Error::MapNotFound) => None,
        Err(e) => {
            warn!("eBPF logger: {e}");
            None
        }
    };
    let program: &mut Xdp = bpf
        .program_mut(program_name::LB)
        .context("the eBPF object has no load-balancer program")?
        .try_into()?;
    program.load().context("loading the XDP program")?;
    let mut links = Vec::new();
    for name in &config.daemon.interfaces {
        let mode = attach(program, name, config.daemon.xdp_mode)?;
        links.push(name.clone());
        info!(interface = %name, mode, "attached");
    }
    info!(pin_path = %pin_path.display(), "kube-xdp running");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(wait_for_shutdown())?;
    info!("shutting down: detaching from {}", links.join(", "));
    Ok(())
}

fn nix_if_nametoindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Attaches in the configured mode; `auto` tries native first and falls
/// back to generic (with a log line) where the driver has no XDP.
fn attach(program: &mut Xdp, interface: &str, mode: XdpMode) -> anyhow::Result<&'static str> {
    let try_mode = |program: &mut Xdp, m| program.attach(interface, m).map(|_| ());
    match mode {
        XdpMode::Native => try_mode(program, AyaMode::Driver)
            .with_context(|| format!("attaching in native mode to {interface}"))
            .map(|()| "native"),
        XdpMode::Generic => try_mode(program, AyaMode::Skb)
            .with_context(|| format!("attaching in generic mode to {interface}"))
            .map(|()| "generic"),
        XdpMode::Auto => match try_mode(program, AyaMode::Driver) {
            Ok(()) => Ok("native"),
            Err(e) => {
                warn!(interface, error = %e, "native XDP failed; falling back to generic mode");
                try_mode(program, AyaMode::Skb)
                    .with_context(|| format!("attaching in generic mode to {interface}"))
                    .map(|()| "generic")
            }
        },
    }
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
