//! Address translation and sending: rewrite IPv4 addresses, ports, TTL and
//! TCP timestamps with incremental checksum updates, then the Ethernet
//! header, then `XDP_TX` or a devmap redirect.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use kube_xdp_common::{maps::PROTO_TCP, stats::Counter};
use network_types::eth::EthHdr;

use crate::{
    INTERFACES, TX_PORTS, csum,
    parse::{ETH_LEN, Ip, ptr_at},
    tcpopt,
};

/// Offsets into the IPv4 header.
const IP_TTL: usize = ETH_LEN + 8;
const IP_CHECK: usize = ETH_LEN + 10;
const IP_SRC: usize = ETH_LEN + 12;
const IP_DST: usize = ETH_LEN + 16;

/// A new 5-tuple for a packet (addresses and ports in network order).
#[derive(Clone, Copy)]
pub struct Translation {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

/// A change to a TCP timestamp field: `add` (wrapping, host order) is
/// added to the 32-bit field at frame offset `at`.
#[derive(Clone, Copy)]
pub struct TsEdit {
    pub at: usize,
    pub add: u32,
}

#[inline(always)]
fn read16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p: *const [u8; 2] = ptr_at(ctx, off)?;
    // SAFETY: `ptr_at` checked the bounds.
    Some(u16::from_ne_bytes(unsafe { *p }))
}

#[inline(always)]
fn write16(ctx: &XdpContext, off: usize, v: u16) -> Option<()> {
    let p: *mut [u8; 2] = ptr_at(ctx, off)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable.
    unsafe { *p = v.to_ne_bytes() };
    Some(())
}

/// Rewrites the IPv4 addresses and decrements the TTL (the header
/// checksum follows). Returns the sum of the old and the new address words
/// for the transport checksum's pseudo-header. `None` if the TTL ran out.
#[inline(always)]
pub fn rewrite_ip(ctx: &XdpContext, ip: &Ip, src: u32, dst: u32) -> Option<(u32, u32)> {
    let ttl_word = read16(ctx, IP_TTL)?;
    let ttl = ttl_word.to_ne_bytes()[0];
    if ttl <= 1 {
        return None;
    }
    let new_ttl_word = u16::from_ne_bytes([ttl - 1, ttl_word.to_ne_bytes()[1]]);
    let old = csum::sum32(ip.src) + csum::sum32(ip.dst);
    let new = csum::sum32(src) + csum::sum32(dst);
    let check = read16(ctx, IP_CHECK)?;
    let check = csum::update(
        check,
        old + u32::from(ttl_word),
        new + u32::from(new_ttl_word),
    );
    write16(ctx, IP_TTL, new_ttl_word)?;
    write16(ctx, IP_CHECK, check)?;
    tcpopt::write_u32(ctx, IP_SRC, src)?;
    tcpopt::write_u32(ctx, IP_DST, dst)?;
    Some((old, new))
}

/// Rewrites a TCP or UDP packet (not a later fragment) to `t`, and a TCP
/// timestamp if asked, keeping both checksums right. `Err` names why the
/// packet cannot be sent.
#[inline(always)]
pub fn rewrite_l4(
    ctx: &XdpContext,
    ip: &Ip,
    sport: u16,
    dport: u16,
    t: &Translation,
    ts: Option<TsEdit>,
) -> Result<(), Counter> {
    let (old_addrs, new_addrs) = rewrite_ip(ctx, ip, t.src, t.dst).ok_or(Counter::TtlExceeded)?;
    let mut old = old_addrs + u32::from(sport) + u32::from(dport);
    let mut new = new_addrs + u32::from(t.sport) + u32::from(t.dport);
    if let Some(edit) = ts {
        let before = tcpopt::read_u32(ctx, edit.at).ok_or(Counter::Malformed)?;
        let after = u32::from_be(before).wrapping_add(edit.add).to_be();
        tcpopt::write_u32(ctx, edit.at, after).ok_or(Counter::Malformed)?;
        old += csum::sum32(before);
        new += csum::sum32(after);
    }
    let check_at = ip.l4 + if ip.protocol == PROTO_TCP { 16 } else { 6 };
    let check = read16(ctx, check_at).ok_or(Counter::Malformed)?;
    let check = if ip.protocol == PROTO_TCP {
        csum::update(check, old, new)
    } else {
        csum::udp_update(check, old, new)
    };
    write16(ctx, check_at, check).ok_or(Counter::Malformed)?;
    write16(ctx, ip.l4, t.sport).ok_or(Counter::Malformed)?;
    write16(ctx, ip.l4 + 2, t.dport).ok_or(Counter::Malformed)?;
    Ok(())
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
