//! Address translation: what a packet of a flow is rewritten to, and the
//! rewrite itself — IPv4 addresses, ports, TTL and TCP timestamps, with
//! incremental checksum updates.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use kube_xdp_common::{
    maps::{FLOW_TS_REWRITE, Flow, FlowKey, PROTO_TCP},
    stats::Counter,
};

use crate::{
    conntrack::Direction,
    csum,
    field::{read16, read32, write_addr, write16, write32},
    parse::{ETH_LEN, Ip, L4, TCP_ACK},
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

/// What a packet of the flow `flow` of `client` going `direction` becomes:
/// SNAT address → backend on the way out, VIP → client on the way back.
#[inline(always)]
pub fn translation(flow: &Flow, client: &FlowKey, direction: Direction) -> Translation {
    match direction {
        Direction::ToBackend => Translation {
            src: flow.snat_addr,
            dst: flow.backend_addr,
            sport: flow.snat_port,
            dport: flow.backend_port,
        },
        Direction::ToClient => Translation {
            src: client.dst_addr,
            dst: client.src_addr,
            sport: client.dst_port,
            dport: client.src_port,
        },
    }
}

/// [`ts_clock`] ticks every `1 << TS_CLOCK_SHIFT` ns.
pub const TS_CLOCK_SHIFT: u32 = 10;

/// The clock the rewritten TCP timestamps run on: 0.977 MHz (ns / 1024).
/// A flow's TSvals start on it and then tick with its client's clock, so a
/// new flow's first TSval is above anything an earlier flow on the same
/// SNAT 4-tuple sent if that flow's client ticks slower (1 kHz, the common
/// stacks' default), or once this clock has caught up with a faster one
/// (Linux's microsecond timestamps, `tcp_usec_ts`: 1 MHz), which
/// `snat::reusable` waits for. Not made faster instead: the comparison
/// (PAWS, modulo 2^32) would wrap sooner, so fewer flows' ports could be
/// re-used on timestamps at all, and a box would disagree with its pair
/// peer, or with its own program before an upgrade, about the timestamps
/// of the flows they hand over.
#[inline(always)]
fn ts_clock(now: u64) -> u32 {
    (now >> TS_CLOCK_SHIFT) as u32
}

/// The offset a new flow adds to its client's timestamps: the SYN's TSval
/// (at `at`) onto [`ts_clock`], moved by the pair's `clock_offset_ns`
/// (`Settings::ts_clock_offset_ns`). 0 when the SYN has none.
#[inline(always)]
pub fn ts_offset(ctx: &XdpContext, at: Option<usize>, clock_offset_ns: u64) -> u32 {
    // The timestamp clock must move between two flows on one port, however
    // close together: the fine clock.
    match at.and_then(|at| read32(ctx, at)) {
        Some(tsval) => {
            // SAFETY: a helper without arguments.
            let now = unsafe { bpf_ktime_get_ns() };
            ts_clock(now.wrapping_add(clock_offset_ns)).wrapping_sub(u32::from_be(tsval))
        }
        None => 0,
    }
}

/// The timestamp edit of a packet of `flow` going `direction`: the client's
/// TSval moves onto the flow's clock on the way out, the backend's TSecr
/// (an echo of that clock, valid with ACK) back on the way in.
#[inline(always)]
pub fn timestamp(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    flow: &Flow,
    direction: Direction,
) -> Option<TsEdit> {
    if flow.flags & FLOW_TS_REWRITE == 0 {
        return None;
    }
    match direction {
        Direction::ToBackend => tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len).map(|at| TsEdit {
            at,
            add: flow.ts_offset,
        }),
        Direction::ToClient if l4.flags & TCP_ACK != 0 => {
            tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len).map(|at| TsEdit {
                at: at + 4,
                add: 0u32.wrapping_sub(flow.ts_offset),
            })
        }
        Direction::ToClient => None,
    }
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
    write_addr(ctx, IP_SRC, src)?;
    write_addr(ctx, IP_DST, dst)?;
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
        let before = read32(ctx, edit.at).ok_or(Counter::Malformed)?;
        let after = u32::from_be(before).wrapping_add(edit.add).to_be();
        write32(ctx, edit.at, after).ok_or(Counter::Malformed)?;
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
