//! Whose frame it is: the program acts only on frames sent to the MAC of
//! the interface they came in on (`INTERFACES`). A frame to another host's
//! MAC (a switch flooding towards the other box of a pair, a promiscuous
//! interface) or to a group address (broadcast, multicast) is the kernel's,
//! which drops what is not for this host (`PACKET_OTHERHOST`) — so nothing
//! is answered from a group address, and the backup of a pair never
//! forwards nor resets the master's traffic.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use kube_xdp_common::stats::Counter;

use crate::{INTERFACES, parse::eth_dst, verdict::Verdict};

/// What a frame that is not addressed to us gets.
pub const NOT_FOR_US: Verdict = (xdp_action::XDP_PASS, Counter::PassNotForUs);

/// Whether the frame is addressed to the receiving interface's own MAC.
/// One map lookup: called once per packet, where the packet turns out to
/// be service traffic, before anything is changed or sent. An interface
/// the daemon did not record is nobody's: nothing is handled there.
#[inline(always)]
pub fn addressed_to_us(ctx: &XdpContext) -> bool {
    let Some(dst) = eth_dst(ctx) else {
        return false;
    };
    // The group bit (IEEE 802 §8.2): broadcast and multicast.
    if dst[0] & 1 != 0 {
        return false;
    }
    // SAFETY: read at once.
    match unsafe { INTERFACES.get(ctx.ingress_ifindex() as u32) } {
        Some(iface) => iface.mac == dst,
        None => false,
    }
}
