//! Forwarding a packet of a flow: rewrite it, set its Ethernet header and
//! send it (`XDP_TX` out of the interface it came in on, a devmap redirect
//! otherwise), then remember it if it is a first fragment (for `frag`) and
//! count it.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use kube_xdp_common::{
    maps::{FlowKey, Fragment},
    stats::Counter,
};
use network_types::eth::EthHdr;

use crate::{
    FRAGMENTS, INTERFACES, TX_PORTS,
    conntrack::Direction,
    nat::{self, Translation, TsEdit},
    parse::{Ip, L4, frame_len, ptr_at},
    stats,
    verdict::Verdict,
};

/// Where a packet goes and as what.
pub struct Route {
    pub nat: Translation,
    pub ts: Option<TsEdit>,
    /// The next hop's MAC; all zero: not resolved yet.
    pub mac: [u8; 6],
    /// The interface the next hop is on; 0: the one the frame came in on.
    pub ifindex: u32,
}

/// The flow a forwarded packet belongs to: a first fragment is remembered
/// under it (so the later ones follow), the packet is counted for its
/// service and backend.
pub struct Owner {
    pub client: FlowKey,
    pub direction: Direction,
    pub service_id: u32,
    pub backend_id: u32,
}

/// Forwards a packet of `owner`'s flow along `route`: rewritten (its
/// transport header too when `l4` is given; a later fragment has none),
/// sent, remembered if a first fragment, and counted — under `reason`, and
/// as a new flow of its service and backend when `reason` is `NewFlow`.
/// A packet that cannot be sent is dropped and counted under why.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    ip: &Ip,
    l4: Option<&L4>,
    route: &Route,
    owner: &Owner,
    reason: Counter,
) -> Verdict {
    let bytes = frame_len(ctx) as u64;
    if route.mac == [0; 6] {
        return (xdp_action::XDP_DROP, Counter::NeighbourMiss);
    }
    let rewritten = match l4 {
        Some(l4) => nat::rewrite_l4(ctx, ip, l4.sport, l4.dport, &route.nat, route.ts),
        None => nat::rewrite_ip(ctx, ip, route.nat.src, route.nat.dst)
            .map(|_| ())
            .ok_or(Counter::TtlExceeded),
    };
    match rewritten.and_then(|()| send(ctx, route.mac, route.ifindex)) {
        Ok(verdict) => {
            // (Without `l4`, a later fragment: never a first.)
            if l4.is_some() && ip.is_first_fragment() {
                remember(ip, owner);
            }
            let new_flow = reason == Counter::NewFlow;
            stats::traffic(owner.service_id, owner.backend_id, bytes, new_flow);
            (verdict, reason)
        }
        Err(why) => (xdp_action::XDP_DROP, why),
    }
}

/// Remembers a translated first fragment (`ip` as it arrived), so that
/// `frag` sends the later ones the same way for a few seconds.
#[inline(always)]
fn remember(ip: &Ip, owner: &Owner) {
    let value = Fragment {
        client: owner.client,
        direction: owner.direction.fragment(),
        _pad: 0,
        // SAFETY: a helper without arguments.
        seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
    };
    let _ = FRAGMENTS.insert(ip.fragment_key(), value, 0);
}

/// Sets the Ethernet header towards `dst_mac` on `ifindex` (0: the
/// interface the frame came in on) and sends the frame: `XDP_TX` out of the
/// ingress interface, a devmap redirect otherwise.
#[inline(always)]
pub fn send(ctx: &XdpContext, dst_mac: [u8; 6], ifindex: u32) -> Result<u32, Counter> {
    if dst_mac == [0; 6] {
        return Err(Counter::NeighbourMiss);
    }
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(Counter::Malformed)?;
    let ingress = ctx.ingress_ifindex() as u32;
    if ifindex == 0 || ifindex == ingress {
        // The frame was addressed to the ingress interface's own MAC
        // (`l2`): it leaves from that MAC, never from a group address.
        // SAFETY: `ptr_at` checked the bounds; XDP frames are writable.
        unsafe {
            (*eth).src_addr = (*eth).dst_addr;
            (*eth).dst_addr = dst_mac;
        }
        return Ok(xdp_action::XDP_TX);
    }
    // SAFETY: copied out at once.
    let src = unsafe { INTERFACES.get(ifindex) }
        .map(|i| i.mac)
        .ok_or(Counter::NeighbourMiss)?;
    // SAFETY: as above.
    unsafe {
        (*eth).src_addr = src;
        (*eth).dst_addr = dst_mac;
    }
    TX_PORTS
        .redirect(ifindex, 0)
        .map_err(|_| Counter::NeighbourMiss)
}
