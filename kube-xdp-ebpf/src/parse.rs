//! Parsing: Ethernet → IPv4 (IHL honoured, options allowed) → TCP/UDP/ICMP,
//! every access bounds-checked against `data_end` so the verifier accepts
//! it.

use core::mem;

use aya_ebpf::programs::XdpContext;
use kube_xdp_common::maps::{FragmentKey, PROTO_TCP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

pub const ETH_LEN: usize = EthHdr::LEN;
const ETH_P_IPV4: u16 = 0x0800;
pub const IPPROTO_ICMP: u8 = 1;
/// More-fragments bit of the IPv4 flags/offset field (host order).
const IP_MF: u16 = 0x2000;
const IP_OFFSET_MASK: u16 = 0x1fff;

/// TCP flag bits (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

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

/// The frame's length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// A parsed IPv4 header.
#[derive(Clone, Copy)]
pub struct Ip {
    /// Offset of the transport header (14 + IHL × 4).
    pub l4: usize,
    pub src: u32,
    pub dst: u32,
    pub protocol: u8,
    pub ttl: u8,
    /// Identification, as in the packet.
    pub id: u16,
    /// Flags and fragment offset, host order.
    pub frag: u16,
    /// Total length, host order.
    pub tot_len: u16,
}

impl Ip {
    /// A fragment other than the first: no transport header.
    #[inline(always)]
    pub fn is_later_fragment(&self) -> bool {
        self.frag & IP_OFFSET_MASK != 0
    }

    /// The first fragment of a fragmented datagram.
    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        self.frag & IP_MF != 0 && self.frag & IP_OFFSET_MASK == 0
    }

    /// What the fragments of this datagram share: its key in `FRAGMENTS`.
    #[inline(always)]
    pub fn fragment_key(&self) -> FragmentKey {
        FragmentKey {
            src_addr: self.src,
            dst_addr: self.dst,
            id: self.id,
            protocol: self.protocol,
            _pad: 0,
        }
    }
}

/// What the frame is.
pub enum Frame {
    NotIpv4,
    Ipv4(Ip),
    /// Too short for the IPv4 header it announces, or IHL < 5, or a total
    /// length that does not fit; `Some(dst)` when the destination could be
    /// read.
    BadIpv4(Option<u32>),
}

/// Parses Ethernet and IPv4.
#[inline(always)]
pub fn parse_ip(ctx: &XdpContext) -> Option<Frame> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked that the whole header is inside the frame.
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IPV4 {
        return Some(Frame::NotIpv4);
    }
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return Some(Frame::BadIpv4(None));
    };
    // SAFETY: as above.
    let ip = unsafe { &*ip };
    let dst = u32::from_ne_bytes(ip.dst_addr);
    let ihl = usize::from(ip.vihl & 0x0f) * 4;
    let tot_len = u16::from_be_bytes(ip.tot_len);
    if ip.vihl >> 4 != 4
        || ihl < Ipv4Hdr::LEN
        || usize::from(tot_len) < ihl
        || usize::from(tot_len) > frame_len(ctx) - ETH_LEN
    {
        return Some(Frame::BadIpv4(Some(dst)));
    }
    Some(Frame::Ipv4(Ip {
        l4: ETH_LEN + ihl,
        src: u32::from_ne_bytes(ip.src_addr),
        dst,
        protocol: ip.proto,
        ttl: ip.ttl,
        id: u16::from_ne_bytes(ip.id),
        frag: u16::from_be_bytes(ip.frags),
        tot_len,
    }))
}

/// The ports and flags of a TCP or UDP header.
#[derive(Clone, Copy)]
pub struct L4 {
    /// Network order, as in the packet.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// TCP header length in bytes (0 for UDP).
    pub tcp_len: usize,
}

impl L4 {
    /// A TCP SYN without ACK: a client opening a connection (never UDP,
    /// whose flags are 0).
    #[inline(always)]
    pub fn is_syn(&self) -> bool {
        self.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
}

/// Parses the TCP or UDP header at `ip.l4`; `None` if it is truncated or
/// inconsistent (TCP data offset < 5 or past the end, UDP length < 8 or
/// past the IP payload).
#[inline(always)]
pub fn parse_l4(ctx: &XdpContext, ip: &Ip) -> Option<L4> {
    if ip.protocol == PROTO_TCP {
        let tcp: *const TcpHdr = ptr_at(ctx, ip.l4)?;
        // SAFETY: `ptr_at` checked the bounds.
        let tcp = unsafe { &*tcp };
        let doff = usize::from(tcp.doff()) * 4;
        let payload = usize::from(ip.tot_len) - (ip.l4 - ETH_LEN);
        if doff < TcpHdr::LEN || ip.l4 + doff > frame_len(ctx) || doff > payload {
            return None;
        }
        // SAFETY: byte 13 is inside the header checked above.
        let flags = unsafe { *((tcp as *const TcpHdr as *const u8).add(13)) };
        Some(L4 {
            sport: u16::from_ne_bytes(tcp.source),
            dport: u16::from_ne_bytes(tcp.dest),
            flags,
            tcp_len: doff,
        })
    } else {
        let udp: *const UdpHdr = ptr_at(ctx, ip.l4)?;
        // SAFETY: `ptr_at` checked the bounds.
        let udp = unsafe { &*udp };
        let len = usize::from(u16::from_be_bytes(udp.len));
        // A first fragment carries only part of the datagram.
        let payload = usize::from(ip.tot_len) - (ip.l4 - ETH_LEN);
        if len < UdpHdr::LEN || (!ip.is_first_fragment() && len > payload) {
            return None;
        }
        Some(L4 {
            sport: u16::from_ne_bytes(udp.src),
            dport: u16::from_ne_bytes(udp.dst),
            flags: 0,
            tcp_len: 0,
        })
    }
}

/// Swaps source and destination MAC; `None` if the frame is too short.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> Option<()> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the bounds; the frame is writable in XDP.
    unsafe { core::mem::swap(&mut (*eth).src_addr, &mut (*eth).dst_addr) };
    Some(())
}

/// The frame's Ethernet source: where a client's frames come from.
#[inline(always)]
pub fn eth_src(ctx: &XdpContext) -> [u8; 6] {
    match ptr_at::<EthHdr>(ctx, 0) {
        // SAFETY: `ptr_at` checked the bounds.
        Some(eth) => unsafe { (*eth).src_addr },
        None => [0; 6],
    }
}

/// The frame's Ethernet destination; `None` if the frame is too short.
#[inline(always)]
pub fn eth_dst(ctx: &XdpContext) -> Option<[u8; 6]> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the bounds.
    Some(unsafe { (*eth).dst_addr })
}
