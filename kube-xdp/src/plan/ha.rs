//! The pair's plan: which interface, which address advertisements come
//! from, which addresses float, which services are tracked — and what of
//! that the host refuses.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::PlannedInterface;
use crate::config::{Config, ConfigIssue, HaConfig, Severity};
use crate::host::Interface;

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
}

/// Builds the pair's plan, or says (in `issues`) why the host refuses it.
pub(super) fn plan(
    config: &Config,
    ha: &HaConfig,
    host_interfaces: &[Interface],
    issues: &mut Vec<ConfigIssue>,
) -> Option<HaPlan> {
    let mut error = |key: &str, message: String| {
        issues.push(ConfigIssue {
            severity: Severity::Error,
            path: config.path.clone(),
            line: Some(ha.lines.of(key)).filter(|l| *l > 0),
            context: "ha".into(),
            key: key.into(),
            message,
        });
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
        },
        local,
        virtual_router_id: ha.virtual_router_id,
        priority: ha.priority,
        advert_interval: ha.advert_interval,
        preempt: ha.preempt,
        unicast_peers: ha.unicast_peers.clone(),
        virtual_addresses,
        track_services,
    })
}
