//! IPv4 fragments: the first carries the transport header and is
//! translated like its flow; its (source, destination, id, protocol) is
//! remembered for a few seconds so the later ones, which carry no ports,
//! get the same address translation.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use kube_xdp_common::{
    maps::{FRAGMENT_TIMEOUT_NS, FRAGMENT_TO_BACKEND, FlowKey, Fragment, FragmentKey},
    stats::Counter,
};

use crate::{
    FLOWS, FRAGMENTS,
    ingress::Verdict,
    nat,
    parse::{Ip, frame_len},
    service, stats,
};

#[inline(always)]
fn key(ip: &Ip) -> FragmentKey {
    FragmentKey {
        src_addr: ip.src,
        dst_addr: ip.dst,
        id: ip.id,
        protocol: ip.protocol,
        _pad: 0,
    }
}

/// Remembers a translated first fragment (`ip` as it arrived).
#[inline(always)]
pub fn remember(ip: &Ip, client: &FlowKey, direction: u32, now: u64) {
    let value = Fragment {
        client: *client,
        direction,
        _pad: 0,
        seen_ns: now,
    };
    let _ = FRAGMENTS.insert(key(ip), value, 0);
}

/// A later fragment: translated like its first, or dropped as an orphan
/// when it is for a VIP and its first was not seen.
#[inline(always)]
pub fn later(ctx: &XdpContext, ip: &Ip) -> Verdict {
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: copied out at once.
    let first = unsafe { FRAGMENTS.get(key(ip)) }
        .copied()
        .filter(|f| now.saturating_sub(f.seen_ns) <= FRAGMENT_TIMEOUT_NS);
    let orphan = || {
        if service::is_vip(ip.dst) {
            (xdp_action::XDP_DROP, Counter::FragmentOrphan)
        } else {
            (xdp_action::XDP_PASS, Counter::PassNoService)
        }
    };
    let Some(first) = first else {
        return orphan();
    };
    // SAFETY: copied out at once.
    let Some(f) = (unsafe { FLOWS.get(first.client) }).copied() else {
        return orphan();
    };
    let (src, dst, mac, ifindex) = if first.direction == FRAGMENT_TO_BACKEND {
        let Some(backend) = service::backend(u32::from(f.backend_id)) else {
            return orphan();
        };
        (f.snat_addr, f.backend_addr, backend.mac, backend.ifindex)
    } else {
        (
            first.client.dst_addr,
            first.client.src_addr,
            f.client_mac,
            f.ifindex,
        )
    };
    if mac == [0; 6] {
        return (xdp_action::XDP_DROP, Counter::NeighbourMiss);
    }
    let bytes = frame_len(ctx) as u64;
    if nat::rewrite_ip(ctx, ip, src, dst).is_none() {
        return (xdp_action::XDP_DROP, Counter::TtlExceeded);
    }
    match nat::send(ctx, mac, ifindex) {
        Ok(verdict) => {
            stats::traffic(
                u32::from(f.service_id),
                u32::from(f.backend_id),
                bytes,
                false,
            );
            (verdict, Counter::FragmentTranslated)
        }
        Err(reason) => (xdp_action::XDP_DROP, reason),
    }
}
