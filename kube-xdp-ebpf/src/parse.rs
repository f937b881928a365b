//! Parsing: Ethernet → IPv4 (IHL honoured) → TCP/UDP, every access bounds
//! checked against `data_end` so the verifier accepts it.

use core::mem;

use aya_ebpf::programs::XdpContext;
use kube_xdp_common::stats::Counter;
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

const ETH_P_IPV4: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// A pointer to a `T` at `offset` bytes into the frame, if the frame holds
/// all of it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// The transport header of an IPv4 TCP or UDP packet.
#[derive(Clone, Copy)]
#[expect(dead_code, reason = "read by the service lookup, which comes next")]
pub struct L4 {
    pub l3_off: usize,
    pub l4_off: usize,
    pub protocol: u8,
}

#[expect(
    dead_code,
    reason = "the service lookup, which comes next, reads the L4 offsets"
)]
pub enum Parsed {
    NotIpv4,
    /// IPv4 but neither TCP nor UDP.
    Ipv4Other,
    Ipv4L4(L4),
}

/// Parses the headers; `Err` names the counter of a malformed frame.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::Malformed)?;
    // SAFETY: `ptr_at` checked that the whole header is inside the frame.
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IPV4 {
        return Ok(Parsed::NotIpv4);
    }
    let l3_off = EthHdr::LEN;
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off).ok_or(Counter::Malformed)?;
    // SAFETY: as above.
    let (vihl, protocol) = unsafe { ((*ip).vihl, (*ip).proto) };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Counter::Malformed);
    }
    let l4_off = l3_off + ihl;
    match protocol {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_off).ok_or(Counter::Malformed)?;
            // SAFETY: as above.
            let doff = usize::from(unsafe { (*tcp).doff() }) * 4;
            if doff < TcpHdr::LEN || ctx.data() + l4_off + doff > ctx.data_end() {
                return Err(Counter::Malformed);
            }
        }
        IPPROTO_UDP => {
            ptr_at::<UdpHdr>(ctx, l4_off).ok_or(Counter::Malformed)?;
        }
        _ => return Ok(Parsed::Ipv4Other),
    }
    Ok(Parsed::Ipv4L4(L4 {
        l3_off,
        l4_off,
        protocol,
    }))
}

/// Swaps source and destination MAC; `None` if the frame is too short.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the bounds; the frame is writable in XDP.
    unsafe { core::mem::swap(&mut (*eth).src_addr, &mut (*eth).dst_addr) };
    Some(())
}
