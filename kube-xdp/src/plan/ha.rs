//! The pair's plan: which interface, which address advertisements come
//! from, which addresses float, which services are tracked, the flow-sync
//! port and key — and what of that the host refuses.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::PlannedInterface;
use crate::config::{Config, ConfigIssue, HaConfig, Severity};
use crate::host::{Host, Interface, ReadFileError};
use crate::sync::SyncKey;
use crate::sync::key::MAX_KEY_FILE_LEN;

/// What the pair runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaPlan {
    pub interface: PlannedInterface,
    /// The box's own address on it: advertisements come from here.
    pub local: Ipv4Addr,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    /// Empty: multicast.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Every VIP (once) and the floating SNAT address: what the master
    /// holds.
    pub virtual_addresses: Vec<Ipv4Addr>,
    /// The services whose lack of a usable backend makes the box resign.
    pub track_services: Vec<String>,
    /// Flow sync with the peer; `None`: off (no `sync_key_file`).
    pub sync: Option<SyncPlan>,
}

/// Flow sync: where the datagrams go and the key that signs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// `[ha] sync_port`: the UDP port both boxes send to and listen on.
    pub port: u16,
    /// The pair's key, from `sync_key_file` (its `Debug` hides it).
    pub key: SyncKey,
}

/// Builds the pair's plan, or says (in `issues`) why the host refuses it.
pub(super) fn plan(
    config: &Config,
    ha: &HaConfig,
    host: &dyn Host,
    host_interfaces: &[Interface],
    issues: &mut Vec<ConfigIssue>,
) -> Option<HaPlan> {
    let mut error = |key: &str, message: String| issues.push(issue(config, ha, key, message));
    let sync = match &ha.sync_key_file {
        Some(path) => match sync_key(host, path) {
            Ok(key) => Some(SyncPlan {
                port: ha.sync_port,
                key,
            }),
            Err(message) => {
                error("sync_key_file", message);
                None
            }
        },
        None => None,
    };
    let mut virtual_addresses: Vec<Ipv4Addr> = Vec::new();
    for vip in config
        .services
        .iter()
        .map(|s| s.vip)
        .chain([ha.snat_address])
    {
        if !virtual_addresses.contains(&vip) {
            virtual_addresses.push(vip);
        }
    }
    // A floating address must not be one the box holds for good: the
    // backup would keep answering for it.
    for addr in &virtual_addresses {
        if let Some(iface) = host_interfaces
            .iter()
            .find(|i| i.ipv4.contains(addr) && !i.host_routes.contains(addr))
        {
            let key = if *addr == ha.snat_address {
                "snat_address"
            } else {
                "interface"
            };
            error(
                key,
                format!(
                    "{addr} is a fixed address of {} (not a /32): in a pair the VIPs and snat_address \
                     float, and the master adds them as /32; remove it (ip addr del {addr}/PREFIX dev {})",
                    iface.name, iface.name
                ),
            );
        }
    }
    let iface = host_interfaces.iter().find(|i| i.name == ha.interface)?;
    let local = iface
        .ipv4
        .iter()
        .find(|a| !virtual_addresses.contains(a) && !iface.host_routes.contains(a))
        .copied();
    let Some(local) = local else {
        error(
            "interface",
            format!(
                "{:?} has no address of its own to send VRRP advertisements from (the VIPs and \
                 snat_address float): give it one",
                ha.interface
            ),
        );
        return None;
    };
    if ha.unicast_peers.contains(&local) {
        error(
            "unicast_peers",
            format!("{local} is this box's own address: list the other box"),
        );
    }
    let track_services = ha
        .track_services
        .clone()
        .unwrap_or_else(|| config.services.iter().map(|s| s.name.clone()).collect());
    Some(HaPlan {
        interface: PlannedInterface {
            name: iface.name.clone(),
            index: iface.index,
            mac: iface.mac.unwrap_or([0; 6]),
            mtu: iface.mtu,
        },
        local,
        virtual_router_id: ha.virtual_router_id,
        priority: ha.priority,
        advert_interval: ha.advert_interval,
        preempt: ha.preempt,
        unicast_peers: ha.unicast_peers.clone(),
        virtual_addresses,
        track_services,
        sync,
    })
}

/// An error about `[ha] key`, at its line.
fn issue(config: &Config, ha: &HaConfig, key: &str, message: String) -> ConfigIssue {
    ConfigIssue {
        severity: Severity::Error,
        path: config.path.clone(),
        line: Some(ha.lines.of(key)).filter(|l| *l > 0),
        context: "ha".into(),
        key: key.into(),
        message,
    }
}

/// The key in `sync_key_file`, or what is wrong with the file. Whoever
/// can read the key can install NAT state on the pair (and whoever can
/// write it can stop the sync), so only its owner may do either.
fn sync_key(host: &dyn Host, path: &Path) -> Result<SyncKey, String> {
    let shown = path.display();
    let make = format!(
        "make one with `head -c 32 /dev/urandom | base64 > {shown} && chmod 600 {shown}` and copy \
         it to the other box"
    );
    let file = host
        .read_small_file(path, MAX_KEY_FILE_LEN)
        .map_err(|e| match e {
            ReadFileError::Open(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{shown} does not exist: {make}")
            }
            e => format!("{shown} {e}"),
        })?;
    if file.mode & 0o077 != 0 {
        return Err(format!(
            "{shown} can be read or written by group or others (mode {:04o}): whoever knows the \
             key can install NAT state on the pair; chmod 600 {shown}",
            file.mode
        ));
    }
    SyncKey::from_file_bytes(&file.bytes).map_err(|e| format!("{shown} {e}"))
}
