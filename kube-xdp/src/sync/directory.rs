//! What a peer's flow means on this box: the ids of its service and
//! backend here, and the ifindex of its interface. The two boxes number
//! their services and backends independently (ids follow each box's
//! history of reloads), so records carry addresses, and this directory,
//! rebuilt by the control loop after each apply, turns them into ids.

use std::{collections::HashMap, net::Ipv4Addr, ops::RangeInclusive};

use crate::daemon::state::State;

use super::wire::{INTERFACE_UNKNOWN, SyncRecord};

/// A service as flows find it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u16,
    ports: RangeInclusive<u16>,
    /// (address, port; `None`: the client's destination port) → id.
    backends: HashMap<(Ipv4Addr, Option<u16>), u16>,
}

/// The services, backends and interfaces of this box, as of the last
/// apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// (VIP, protocol) → its services (one per port or port range).
    services: HashMap<(Ipv4Addr, u8), Vec<Entry>>,
    /// `[daemon] interfaces`' ifindexes, in the file's order.
    interfaces: Vec<u32>,
    /// Where a flow whose interface is unknown goes: the pair's.
    default_ifindex: u32,
}

/// Why a record is not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("no service here for the flow's VIP and port")]
    Service,
    #[error("the flow's backend is not one of its service's here")]
    Backend,
}

impl Unknown {
    /// Its metric label.
    pub fn label(self) -> &'static str {
        match self {
            Unknown::Service => "unknown_service",
            Unknown::Backend => "unknown_backend",
        }
    }
}

impl Directory {
    /// The directory of `state` (the backends removed from the
    /// configuration still drain their flows, so they are in it), with
    /// the interfaces' ifindexes in `[daemon] interfaces` order and the
    /// pair's interface's.
    pub fn new(state: &State, interfaces: Vec<u32>, default_ifindex: u32) -> Directory {
        let mut services: HashMap<(Ipv4Addr, u8), Vec<Entry>> = HashMap::new();
        for svc in state.services.values() {
            let Ok(id) = u16::try_from(svc.id) else {
                continue;
            };
            let backends = svc
                .backends
                .values()
                .filter_map(|b| Some(((b.addr, b.port), u16::try_from(b.id).ok()?)))
                .collect();
            services
                .entry((svc.spec.vip, svc.spec.protocol))
                .or_default()
                .push(Entry {
                    id,
                    ports: svc.spec.ports.clone(),
                    backends,
                });
        }
        Directory {
            services,
            interfaces,
            default_ifindex,
        }
    }

    /// The position of `ifindex` in `[daemon] interfaces`
    /// ([`INTERFACE_UNKNOWN`] when it is not one of them).
    pub fn position(&self, ifindex: u32) -> u8 {
        self.interfaces
            .iter()
            .position(|&i| i == ifindex)
            .and_then(|p| u8::try_from(p).ok())
            .filter(|&p| p != INTERFACE_UNKNOWN)
            .unwrap_or(INTERFACE_UNKNOWN)
    }

    /// This box's (service id, backend id, ifindex) for the peer's
    /// `record`.
    ///
    /// # Errors
    ///
    /// When this box has no such service or backend (the two files
    /// differ, or a reload is under way on one of them).
    pub fn resolve(&self, record: &SyncRecord) -> Result<(u16, u16, u32), Unknown> {
        let vip = Ipv4Addr::from(u32::from_be(record.client.dst_addr));
        let port = u16::from_be(record.client.dst_port);
        let entry = self
            .services
            .get(&(vip, record.client.protocol))
            .and_then(|entries| entries.iter().find(|e| e.ports.contains(&port)))
            .ok_or(Unknown::Service)?;
        let backend = Ipv4Addr::from(u32::from_be(record.backend_addr));
        let backend_port = u16::from_be(record.backend_port);
        let id = entry
            .backends
            .get(&(backend, Some(backend_port)))
            .or_else(|| {
                // A port-range backend keeps the client's port.
                (backend_port == port)
                    .then(|| entry.backends.get(&(backend, None)))
                    .flatten()
            })
            .ok_or(Unknown::Backend)?;
        let ifindex = self
            .interfaces
            .get(usize::from(record.interface))
            .copied()
            .unwrap_or(self.default_ifindex);
        Ok((entry.id, *id, ifindex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_xdp_common::maps::{FLOW_ESTABLISHED, FlowKey, PROTO_TCP, PROTO_UDP};

    fn be(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    fn directory() -> Directory {
        let backends = |list: &[([u8; 4], Option<u16>, u16)]| {
            list.iter()
                .map(|(a, p, id)| ((Ipv4Addr::from(*a), *p), *id))
                .collect()
        };
        let mut services = HashMap::new();
        services.insert(
            (Ipv4Addr::new(198, 18, 0, 10), PROTO_TCP),
            vec![
                Entry {
                    id: 3,
                    ports: 6443..=6443,
                    backends: backends(&[
                        ([198, 18, 0, 11], Some(6443), 7),
                        ([198, 18, 0, 12], Some(6443), 9),
                    ]),
                },
                Entry {
                    id: 5,
                    ports: 30000..=32767,
                    backends: backends(&[([198, 18, 0, 21], None, 12)]),
                },
            ],
        );
        Directory {
            services,
            interfaces: vec![4, 6],
            default_ifindex: 4,
        }
    }

    fn record(dport: u16, backend: [u8; 4], bport: u16, interface: u8) -> SyncRecord {
        SyncRecord {
            client: FlowKey {
                src_addr: be([198, 18, 0, 1]),
                dst_addr: be([198, 18, 0, 10]),
                src_port: 40000u16.to_be(),
                dst_port: dport.to_be(),
                protocol: PROTO_TCP,
                _pad: [0; 3],
            },
            backend_addr: be(backend),
            backend_port: bport.to_be(),
            snat_addr: be([198, 18, 0, 9]),
            snat_port: 20000u16.to_be(),
            client_mac: [2, 0, 0, 0, 0, 1],
            state: FLOW_ESTABLISHED,
            flags: 0,
            ts_offset: 0,
            interface,
            created_age_ns: 0,
            idle_ns: 0,
            ..SyncRecord::default()
        }
    }

    #[test]
    fn a_peers_flow_gets_this_boxs_ids() {
        let d = directory();
        assert_eq!(
            d.resolve(&record(6443, [198, 18, 0, 12], 6443, 1)),
            Ok((3, 9, 6))
        );
        // A NodePort: the backend keeps the client's port.
        assert_eq!(
            d.resolve(&record(31000, [198, 18, 0, 21], 31000, 0)),
            Ok((5, 12, 4))
        );
        // An interface this box does not have: the pair's.
        assert_eq!(
            d.resolve(&record(6443, [198, 18, 0, 11], 6443, INTERFACE_UNKNOWN)),
            Ok((3, 7, 4))
        );
    }

    #[test]
    fn flows_of_services_or_backends_this_box_lacks_are_refused() {
        let d = directory();
        assert_eq!(
            d.resolve(&record(6444, [198, 18, 0, 11], 6443, 0)),
            Err(Unknown::Service)
        );
        assert_eq!(
            d.resolve(&record(6443, [198, 18, 0, 13], 6443, 0)),
            Err(Unknown::Backend)
        );
        assert_eq!(
            d.resolve(&record(6443, [198, 18, 0, 11], 8443, 0)),
            Err(Unknown::Backend)
        );
        let mut udp = record(6443, [198, 18, 0, 11], 6443, 0);
        udp.client.protocol = PROTO_UDP;
        assert_eq!(d.resolve(&udp), Err(Unknown::Service));
    }

    #[test]
    fn interfaces_are_numbered_by_their_place_in_the_file() {
        let d = directory();
        assert_eq!(d.position(6), 1);
        assert_eq!(d.position(99), INTERFACE_UNKNOWN);
    }
}
