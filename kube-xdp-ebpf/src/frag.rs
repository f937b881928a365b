//! Later IPv4 fragments. The first fragment carries the transport header
//! and is translated like its flow; `forward` remembers its (source,
//! destination, id, protocol) for a few seconds, so the later ones, which
//! carry no ports, get the same address translation here.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns};
use kube_xdp_common::{
    maps::{FRAGMENT_TIMEOUT_NS, FRAGMENT_TO_BACKEND},
    stats::Counter,
};

use crate::{
    FLOWS, FRAGMENTS,
    conntrack::Direction,
    forward::{Owner, Route},
    nat::Translation,
    parse::Ip,
    service,
    verdict::Verdict,
};

/// Where a later fragment goes: like its first, whose flow it belongs to.
/// An orphan (its first not seen, or its flow gone) is dropped when it is
/// for a VIP, the kernel's otherwise.
#[inline(always)]
pub fn later(ip: &Ip) -> Result<(Route, Owner), Verdict> {
    let now = unsafe { bpf_ktime_get_ns() };
    let orphan = || {
        if service::is_vip(ip.dst) {
            (xdp_action::XDP_DROP, Counter::FragmentOrphan)
        } else {
            (xdp_action::XDP_PASS, Counter::PassNoService)
        }
    };
    // SAFETY: copied out at once.
    let first = unsafe { FRAGMENTS.get(ip.fragment_key()) }
        .copied()
        .filter(|f| now.saturating_sub(f.seen_ns) <= FRAGMENT_TIMEOUT_NS)
        .ok_or_else(orphan)?;
    // SAFETY: copied out at once.
    let f = unsafe { FLOWS.get(first.client) }
        .copied()
        .ok_or_else(orphan)?;
    let (direction, src, dst, mac, ifindex) = if first.direction == FRAGMENT_TO_BACKEND {
        let backend = service::backend(u32::from(f.backend_id)).ok_or_else(orphan)?;
        let hop = (backend.mac, backend.ifindex);
        (
            Direction::ToBackend,
            f.snat_addr,
            f.backend_addr,
            hop.0,
            hop.1,
        )
    } else {
        let (client, vip) = (first.client.src_addr, first.client.dst_addr);
        (Direction::ToClient, vip, client, f.client_mac, f.ifindex)
    };
    let route = Route {
        // No ports: a later fragment has no transport header.
        nat: Translation {
            src,
            dst,
            sport: 0,
            dport: 0,
        },
        ts: None,
        mac,
        ifindex,
    };
    let owner = Owner {
        client: first.client,
        direction,
        service_id: u32::from(f.service_id),
        backend_id: u32::from(f.backend_id),
    };
    Ok((route, owner))
}
