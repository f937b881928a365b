//! Attaching the program to interfaces through pinned XDP links, so the
//! program stays attached while the daemon is stopped, killed or upgraded.

use aya::programs::{
    Xdp, XdpMode as AyaMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

use crate::config::XdpMode;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("interface {interface}: attaching in {mode} mode: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("interface {interface}: pinned link {path}: {message}")]
    Link {
        interface: String,
        path: PathBuf,
        message: String,
    },
}

/// Where an interface's XDP link is pinned.
pub fn link_pin(pin_path: &Path, interface: &str) -> PathBuf {
    pin_path.join(format!("link_{interface}"))
}

/// How an interface came to run the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// A new link, in this mode.
    New(&'static str),
    /// The link pinned by an earlier run now runs this program: forwarding
    /// never stopped.
    Adopted,
}

/// Makes `interface` run `program`: replaces the program of the link an
/// earlier run pinned (atomically, `BPF_LINK_UPDATE`), or attaches anew
/// and pins the link.
///
/// # Errors
///
/// When attaching, pinning or updating fails.
pub fn attach(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
    pin_path: &Path,
) -> Result<Attached, AttachError> {
    let pin = link_pin(pin_path, interface);
    let link_err = |message: String| AttachError::Link {
        interface: interface.to_owned(),
        path: pin.clone(),
        message,
    };
    if pin.exists() {
        let pinned = PinnedLink::from_pin(&pin).map_err(|e| link_err(e.to_string()))?;
        let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| link_err(e.to_string()))?;
        program
            .attach_to_link(link)
            .map_err(|e| link_err(format!("replacing its program: {e}")))?;
        return Ok(Attached::Adopted);
    }
    let (id, mode) = attach_new(program, interface, mode)?;
    let link = program.take_link(id).map_err(|e| link_err(e.to_string()))?;
    let fd = FdLink::try_from(link).map_err(|e| link_err(e.to_string()))?;
    fd.pin(&pin)
        .map_err(|e| link_err(format!("pinning: {e}")))?;
    Ok(Attached::New(mode))
}

/// Attaches in the configured mode; `auto` tries native first and falls
/// back to generic (with a log line) where the driver has no XDP.
fn attach_new(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
) -> Result<(aya::programs::xdp::XdpLinkId, &'static str), AttachError> {
    let try_mode = |program: &mut Xdp, aya_mode, name: &'static str| {
        program
            .attach(interface, aya_mode)
            .map(|id| (id, name))
            .map_err(|source| AttachError::Attach {
                interface: interface.to_owned(),
                mode: name,
                source,
            })
    };
    match mode {
        XdpMode::Native => try_mode(program, AyaMode::Driver, "native"),
        XdpMode::Generic => try_mode(program, AyaMode::Skb, "generic"),
        XdpMode::Auto => try_mode(program, AyaMode::Driver, "native").or_else(|e| {
            warn!(interface, error = %e, "native XDP failed; falling back to generic mode");
            try_mode(program, AyaMode::Skb, "generic")
        }),
    }
}

/// Detaches from `interface` by removing its link pin (the kernel detaches
/// a link once nothing holds it). Returns whether there was one.
///
/// # Errors
///
/// When the pin exists but cannot be removed.
pub fn detach(pin_path: &Path, interface: &str) -> std::io::Result<bool> {
    let pin = link_pin(pin_path, interface);
    match std::fs::remove_file(&pin) {
        Ok(()) => {
            info!(interface, "detached");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
