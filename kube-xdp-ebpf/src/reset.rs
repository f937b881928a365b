//! Answering a TCP segment with a RST from the address it was sent to, so
//! the client fails fast (no backend, no flow, SNAT exhausted) instead of
//! retransmitting into silence — at most `RST_RATE_PER_CPU` a second per
//! CPU (a token bucket), so segments from spoofed sources are not turned
//! into a flood of RSTs at whoever owns those addresses.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use kube_xdp_common::{
    maps::{PROTO_TCP, RST_BURST, RST_RATE_PER_CPU},
    stats::Counter,
};

use crate::{
    RST_BUDGET, csum,
    parse::{ETH_LEN, Ip, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, frame_len, ptr_at},
    verdict::Verdict,
};

const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;
/// Ethernet + IPv4 without options + TCP without options.
const RST_FRAME: usize = ETH_LEN + IP_LEN + TCP_LEN;

/// One RST's cost in the bucket, in nanoseconds of credit.
const RST_COST_NS: u64 = 1_000_000_000 / RST_RATE_PER_CPU;
/// The bucket's depth.
const RST_BURST_NS: u64 = RST_BURST * RST_COST_NS;

/// Refuses a packet to a service: answered with a RST when it is a TCP
/// segment (and not itself a RST: that could loop), dropped otherwise;
/// counted under `reason` either way — but under `RstLimited`, dropped,
/// when this CPU is out of RSTs.
#[inline(always)]
pub fn refuse(ctx: &XdpContext, ip: &Ip, l4: &L4, reason: Counter) -> Verdict {
    if ip.protocol != PROTO_TCP || l4.flags & TCP_RST != 0 {
        return (xdp_action::XDP_DROP, reason);
    }
    if !take_rst() {
        return (xdp_action::XDP_DROP, Counter::RstLimited);
    }
    match reply_rst(ctx, ip, l4) {
        Some(verdict) => (verdict, reason),
        None => (xdp_action::XDP_DROP, reason),
    }
}

/// Takes one RST from this CPU's bucket, if it holds one. The bucket
/// fills with time at `RST_RATE_PER_CPU` up to `RST_BURST`; a per-CPU
/// value touched only by this CPU while the program runs, so no atomics.
#[inline(always)]
fn take_rst() -> bool {
    let Some(bucket) = RST_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: a pointer from the lookup, valid for this run; this CPU's.
    unsafe {
        let elapsed = now.saturating_sub((*bucket).refilled_ns);
        let credit = (*bucket)
            .credit_ns
            .saturating_add(elapsed)
            .min(RST_BURST_NS);
        (*bucket).refilled_ns = now;
        if credit < RST_COST_NS {
            (*bucket).credit_ns = credit;
            return false;
        }
        (*bucket).credit_ns = credit - RST_COST_NS;
    }
    true
}

/// Turns the segment (not a RST) into a RST back to its sender (RFC 9293
/// §3.10.7.1: if the segment has ACK, `seq = SEG.ACK`; otherwise
/// `seq = 0`, `ack = SEG.SEQ + SEG.LEN`, with ACK set) and returns
/// `XDP_TX`; `None` when the frame cannot be reshaped, and the caller
/// drops.
#[inline(always)]
fn reply_rst(ctx: &XdpContext, ip: &Ip, l4: &L4) -> Option<u32> {
    let seq: *const [u8; 4] = ptr_at(ctx, ip.l4 + 4)?;
    let ack: *const [u8; 4] = ptr_at(ctx, ip.l4 + 8)?;
    // SAFETY: `ptr_at` checked the bounds.
    let (seg_seq, seg_ack) = unsafe { (u32::from_be_bytes(*seq), u32::from_be_bytes(*ack)) };
    let ip_hdr_len = ip.l4 - ETH_LEN;
    let payload = usize::from(ip.tot_len) - ip_hdr_len - l4.tcp_len;
    let seg_len =
        payload as u32 + u32::from(l4.flags & TCP_SYN != 0) + u32::from(l4.flags & TCP_FIN != 0);
    let (seq, ack, flags) = if l4.flags & TCP_ACK != 0 {
        (seg_ack, 0, TCP_RST)
    } else {
        (0, seg_seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };

    // One bounds check for everything written: the verifier does not
    // carry a check over to another pointer into the same frame.
    let frame: *mut [u8; RST_FRAME] = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked that the frame holds all of it.
    let mut out = unsafe { *frame };
    out.copy_within(0..6, 12); // scratch: dst MAC
    out.copy_within(6..12, 0); // src MAC → dst
    // old dst MAC → src: our own (`l2` checked), never a group address.
    out.copy_within(12..18, 6);
    let mut h = [0u8; IP_LEN + TCP_LEN];
    h[0] = 0x45;
    h[3] = (IP_LEN + TCP_LEN) as u8;
    h[6] = 0x40; // DF
    h[8] = 64;
    h[9] = PROTO_TCP;
    h[12..16].copy_from_slice(&ip.dst.to_ne_bytes());
    h[16..20].copy_from_slice(&ip.src.to_ne_bytes());
    h[20..22].copy_from_slice(&l4.dport.to_ne_bytes());
    h[22..24].copy_from_slice(&l4.sport.to_ne_bytes());
    h[24..28].copy_from_slice(&seq.to_be_bytes());
    h[28..32].copy_from_slice(&ack.to_be_bytes());
    h[32] = (TCP_LEN as u8 / 4) << 4;
    h[33] = flags;
    let ip_check = !csum::fold(csum::sum_bytes(&h[..IP_LEN]));
    h[10..12].copy_from_slice(&ip_check.to_ne_bytes());
    // The pseudo-header: both addresses, zero + protocol, TCP length.
    let pseudo = csum::sum32(ip.src)
        + csum::sum32(ip.dst)
        + u32::from(u16::from_ne_bytes([0, PROTO_TCP]))
        + u32::from(u16::from_ne_bytes((TCP_LEN as u16).to_be_bytes()));
    let tcp_check = !csum::fold(pseudo + csum::sum_bytes(&h[IP_LEN..]));
    h[36..38].copy_from_slice(&tcp_check.to_ne_bytes());
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    out[ETH_LEN..].copy_from_slice(&h);
    // SAFETY: as above.
    unsafe { *frame = out };

    let shrink = RST_FRAME as i32 - frame_len(ctx) as i32;
    // SAFETY: the helper only moves data_end; nothing points past it after.
    if shrink != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, shrink) } != 0 {
        return None;
    }
    Some(xdp_action::XDP_TX)
}
