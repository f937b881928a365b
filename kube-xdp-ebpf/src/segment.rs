//! Segments the datapath writes whole, in place of the frame it received:
//! the SYN-cookie paths' SYN-ACK to a client, SYN and ACK to a backend and
//! window-opening ACK to a client. Options come ready-made; checksums are
//! computed from scratch.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use kube_xdp_common::maps::PROTO_TCP;

use crate::{
    csum,
    parse::{ETH_LEN, frame_len, ptr_at},
};

const IP_LEN: usize = 20;
/// Ethernet + IPv4 without options + TCP without options.
pub const BARE: usize = ETH_LEN + IP_LEN + 20;

/// A segment's headers (addresses and ports in network order, as in the
/// maps; sequence numbers and window in host order).
pub struct Segment {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

/// Replaces the frame with `seg`, its options `opts` (a multiple of 4
/// bytes) and `zeros` bytes of zeros as payload, `N` bytes in all: the
/// frame grows at its head (XDP leaves headroom for that) or shrinks at its
/// tail (any payload it had is dropped). `None` if the frame cannot be
/// resized.
#[inline(always)]
pub fn emit<const N: usize>(
    ctx: &XdpContext,
    seg: &Segment,
    opts: &[u8],
    zeros: usize,
) -> Option<()> {
    let mut out = [0u8; N];
    out[0..6].copy_from_slice(&seg.dst_mac);
    out[6..12].copy_from_slice(&seg.src_mac);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let h = ETH_LEN;
    out[h] = 0x45;
    out[h + 2..h + 4].copy_from_slice(&((N - ETH_LEN) as u16).to_be_bytes());
    out[h + 6] = 0x40; // DF
    out[h + 8] = 64;
    out[h + 9] = PROTO_TCP;
    out[h + 12..h + 16].copy_from_slice(&seg.src.to_ne_bytes());
    out[h + 16..h + 20].copy_from_slice(&seg.dst.to_ne_bytes());
    let t = h + IP_LEN;
    out[t..t + 2].copy_from_slice(&seg.sport.to_ne_bytes());
    out[t + 2..t + 4].copy_from_slice(&seg.dport.to_ne_bytes());
    out[t + 4..t + 8].copy_from_slice(&seg.seq.to_be_bytes());
    out[t + 8..t + 12].copy_from_slice(&seg.ack.to_be_bytes());
    out[t + 12] = (((N - zeros - t) / 4) as u8) << 4;
    out[t + 13] = seg.flags;
    out[t + 14..t + 16].copy_from_slice(&seg.window.to_be_bytes());
    out[BARE..N - zeros].copy_from_slice(opts);
    let ip_check = !csum::fold(csum::sum_bytes(&out[h..t]));
    out[h + 10..h + 12].copy_from_slice(&ip_check.to_ne_bytes());
    let pseudo = csum::sum32(seg.src)
        + csum::sum32(seg.dst)
        + u32::from(u16::from_ne_bytes([0, PROTO_TCP]))
        + u32::from(u16::from_ne_bytes(((N - t) as u16).to_be_bytes()));
    // (`sum_bytes` leaves out an odd last byte: a zero, which adds
    // nothing.)
    let tcp_check = !csum::fold(pseudo + csum::sum_bytes(&out[t..]));
    out[t + 16..t + 18].copy_from_slice(&tcp_check.to_ne_bytes());

    let delta = N as i32 - frame_len(ctx) as i32;
    // SAFETY: the helpers only move data or data_end; nothing points into
    // the frame across them.
    let rc = if delta > 0 {
        unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) }
    } else if delta < 0 {
        unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) }
    } else {
        0
    };
    if rc != 0 {
        return None;
    }
    let frame: *mut [u8; N] = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked that the frame holds all of it.
    unsafe { *frame = out };
    Some(())
}
