//! SNAT: which address the backend sees a flow come from, and the port a
//! new flow gets there (its reverse entry's key).

use core::intrinsics::{AtomicOrdering, atomic_cxchg};

use kube_xdp_common::{
    flow::forward_agrees,
    hash::fmix32,
    maps::{
        FLOW_SYN_ACK_AGAIN, FLOW_SYN_SENT, FLOW_TS_REWRITE, FLOW_UDP, Flow, FlowKey, PROTO_TCP,
        ReverseFlow, Settings,
    },
};

use crate::{FLOWS, REVERSE, conntrack, nat};

/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;
/// How long a finished flow's port rests before another flow may take it.
const REUSE_GRACE_NS: u64 = 1_000_000_000;
/// How long after a flow opened its rewritten timestamps are still
/// certainly older than a new flow's (see `reusable`).
const TS_COMPARABLE_NS: u64 = 30 * 60 * 1_000_000_000;
/// A flow's port rests at least its length / `TS_CATCH_UP` after its last
/// packet when its timestamps were rewritten: the most by which its
/// client's TSvals can have run ahead of `nat::ts_clock` if that client
/// ticks at up to 1.007 MHz — Linux's microsecond timestamps (1 MHz, 2.4 %
/// faster than the clock) with room for any oscillator's error.
const TS_CATCH_UP: u64 = 32;
// A 1 MHz clock gains at most 1/TS_CATCH_UP of the flow's length on it.
const _: () = assert!(
    1_000_000 * (1 << nat::TS_CLOCK_SHIFT) * TS_CATCH_UP < 1_000_000_000 * (TS_CATCH_UP + 1)
);
/// How long a backend may keep a half-open connection of a flow that
/// expired here (Linux: SYN-ACK retransmits after 1, 3, 7, 15 and 31 s,
/// given up at 63 s), when no refused SYN-ACK told us it is gone.
const SYN_RECV_HOLD_NS: u64 = 65 * 1_000_000_000;
/// Candidate SNAT ports tried for one new flow before giving up.
const PORT_PROBES: u32 = 32;

/// Whether `addr` is one of the SNAT addresses (where replies come back).
#[inline(always)]
pub fn is_snat_addr(settings: &Settings, addr: u32) -> bool {
    let count = settings.snat_count as usize;
    let mut i = 0;
    while i < settings.snat_addrs.len() {
        if i < count && settings.snat_addrs[i] == addr {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether the SNAT port of `old` (a flow to the same backend) may go to a
/// new flow. The backend may hold the old 4-tuple in TIME_WAIT and reject a
/// SYN whose timestamp is not newer (PAWS): when both flows' timestamps are
/// rewritten onto the same growing clock, a finished flow's port is free
/// once that clock has passed the old flow's last TSval; otherwise it is
/// held for `tcp_time_wait` past the flow's end.
///
/// The old flow's TSvals started on `nat::ts_clock` and ticked with its
/// client's clock, which may be faster (1 MHz): they can be ahead of the
/// clock by up to the flow's length / [`TS_CATCH_UP`], so the port rests
/// that long — at least [`REUSE_GRACE_NS`], and never longer than without
/// timestamps. The rewritten timestamps' signed comparison (PAWS) wraps
/// after 2^31 ticks, about 36.6 minutes: a flow opened longer ago than
/// [`TS_COMPARABLE_NS`] may have sent the backend a timestamp that looks
/// newer than the next flow's, so its port is held as if it had none.
#[inline(always)]
fn reusable(settings: &Settings, old: &Flow, new_ts: bool, now: u64) -> bool {
    let idle = now.saturating_sub(old.last_seen_ns);
    let timeout = settings.idle_timeout_ns(old.state, old.flags);
    // UDP has no TIME_WAIT: an expired UDP flow's port is free at once.
    if old.state == FLOW_UDP {
        return idle > timeout;
    }
    let held = idle > timeout.saturating_add(settings.tcp_time_wait_ns);
    if old.state == FLOW_SYN_SENT
        && old.flags & FLOW_SYN_ACK_AGAIN != 0
        && !conntrack::finished(old)
    {
        // A half-open flow the backend answered (and again: it keeps
        // state; a backend answering with a SYN cookie of its own keeps
        // none) and the client never did (a spoofed SYN): it expired here,
        // but the backend still holds the connection in SYN-RECV,
        // retransmitting its SYN-ACK, and would take a new SYN on this
        // 4-tuple for a duplicate. Its next SYN-ACK
        // meets the expired flow and is refused (`conntrack::refused`),
        // which marks the flow reset: the port follows the closed rules
        // from then on. Until then it waits out the backend's retries.
        return idle > timeout && now.saturating_sub(old.created_ns) > SYN_RECV_HOLD_NS;
    }
    let both_ts = new_ts
        && old.flags & FLOW_TS_REWRITE != 0
        && now.saturating_sub(old.created_ns) < TS_COMPARABLE_NS;
    if !both_ts {
        return held;
    }
    // The last ACK of the close (and a retransmitted FIN) may still be on
    // the way: give them a moment before the 4-tuple means another
    // connection. The backend's TIME_WAIT accepts the new SYN then.
    let over = if conntrack::finished(old) {
        idle > REUSE_GRACE_NS
    } else {
        idle > timeout
    };
    let caught_up = idle > old.last_seen_ns.saturating_sub(old.created_ns) / TS_CATCH_UP;
    held || (over && caught_up)
}

/// How long a claimed reverse entry is never judged stale: the claiming
/// CPU inserts the flow's forward entry just after, and until it does the
/// entry looks abandoned (no forward entry). Several ticks of the coarse
/// clock (1-4 ms).
const CLAIM_SETTLE_NS: u64 = 50_000_000;

/// Whether the stale-looking entry of `old`'s reverse 5-tuple `rkey` may
/// go to a new flow (the entry's client is `old`'s forward key, `None`
/// when that has no forward entry).
#[inline(always)]
fn stale(settings: &Settings, rkey: &FlowKey, old: Option<&Flow>, new_ts: bool, now: u64) -> bool {
    let Some(old) = old else {
        return true;
    };
    if forward_agrees(old, rkey) {
        return reusable(settings, old, new_ts, now);
    }
    // The client re-used its 5-tuple for a newer flow, so the one that
    // held this port is over: the client's side of it is gone, and the
    // backend's TIME_WAIT accepts a SYN with a newer timestamp. Without
    // timestamps the port is held for `tcp_time_wait` from when the
    // client's newer flow began (the old one ended before that).
    //
    // No rest here with timestamps: a client that opens many
    // connections re-uses each of its ports about once a second (Linux's
    // `tcp_tw_reuse` waits one second), so a rest counted from its newest
    // flow would keep the old port taken for as long as the client is
    // busy, and the SNAT ports would run out (measured: more than half of
    // the connections of `cargo xtask bench`'s short-connection run
    // refused).
    //
    // Nor the catch-up of `reusable`: the old flow's times went with its
    // forward entry. So this is where issue #18's cases stay bounded (see
    // README, SNAT capacity): a backend in LAST_ACK whose client's last ACK
    // was lost, or the last TSval of a client faster than `nat::ts_clock`,
    // meets the next flow's SYN on this port — only if the client picked
    // the same source port again within the old flow's rest.
    let since = now.saturating_sub(old.created_ns);
    rkey.protocol != PROTO_TCP || new_ts || since > settings.tcp_time_wait_ns
}

/// Claims the reverse 5-tuple `rkey` for the new flow of `client` if it is
/// free: an empty slot by an insert that fails if another CPU filled it
/// meanwhile, a stale entry by compare-and-swap of its `claimed_ns`, so
/// that of two CPUs that judged the same entry stale at once only one
/// takes it (the other's flow would otherwise get replies steered to the
/// winner's client).
#[inline(always)]
fn claim(settings: &Settings, rkey: &FlowKey, client: &FlowKey, new_ts: bool, now: u64) -> bool {
    let Some(entry) = REVERSE.get_ptr_mut(rkey) else {
        let value = ReverseFlow {
            client: *client,
            claimed_ns: now,
        };
        return REVERSE.insert(rkey, value, BPF_NOEXIST).is_ok();
    };
    // SAFETY: `entry` points into the map value, which stays allocated
    // (RCU) while the program runs; `claimed_ns` is 8-byte aligned and only
    // ever changed atomically.
    let claimed = unsafe { &raw mut (*entry).claimed_ns };
    // An aligned 8-byte load is single-copy atomic (BPF has no atomic load
    // before ISA v4); the swap below re-checks it.
    // SAFETY: as above.
    let seen = unsafe { core::ptr::read_volatile(claimed) };
    // SAFETY: as above; a copy, judged below.
    let owner = unsafe { (*entry).client };
    // SAFETY: values are copied out at once.
    let old = unsafe { FLOWS.get(owner) }.copied();
    // Claimed a moment ago and its owner's forward entry not (yet) the
    // claiming flow's (none, or another flow of the same 5-tuple): another
    // CPU may be between the claim and the forward entry — or between its
    // compare-and-swap and its write of `client`, so that `owner` is still
    // the previous one. Left alone until it settles, whatever that forward
    // entry's age.
    let settling = now.saturating_sub(seen) < CLAIM_SETTLE_NS
        && !old.is_some_and(|flow| forward_agrees(&flow, rkey));
    if settling || !stale(settings, rkey, old.as_ref(), new_ts, now) {
        return false;
    }
    // BPF_CMPXCHG (kernel 5.12+): of the CPUs that read `seen`, one swaps.
    // SAFETY: as above.
    let (_, swapped) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::Relaxed }>(
            claimed, seen, now,
        )
    };
    if !swapped {
        return false;
    }
    // Ours now: every other CPU sees a fresh claim and leaves it alone.
    // SAFETY: as above.
    unsafe { (*entry).client = *client };
    true
}

/// Picks a SNAT address and port for a new flow to `backend_addr:port` and
/// claims its reverse entry. `None` when every probed port is taken.
#[inline(always)]
pub fn allocate(
    settings: &Settings,
    client: &FlowKey,
    hash: u32,
    backend_addr: u32,
    backend_port: u16,
    new_ts: bool,
    now: u64,
) -> Option<(u32, u16)> {
    let count = settings.snat_count;
    if count == 0 || settings.snat_port_max < settings.snat_port_min {
        return None;
    }
    let snat_addr = settings.snat_addrs[((hash >> 24) % count) as usize & 3];
    let span = u32::from(settings.snat_port_max - settings.snat_port_min) + 1;
    let mut candidate = hash % span;
    // An odd step in 1..span: it visits every port of an even span of a
    // power of two, and many of any other (the step is never a multiple
    // of the span, which would probe one port 32 times).
    let step = match ((fmix32(hash) % span) | 1) % span {
        0 => 1,
        s => s,
    };
    for _ in 0..PORT_PROBES {
        let port = (settings.snat_port_min as u32 + candidate) as u16;
        let rkey = FlowKey {
            src_addr: backend_addr,
            dst_addr: snat_addr,
            src_port: backend_port,
            dst_port: port.to_be(),
            protocol: client.protocol,
            _pad: [0; 3],
        };
        if claim(settings, &rkey, client, new_ts, now) {
            return Some((snat_addr, port.to_be()));
        }
        candidate = (candidate + step) % span;
    }
    None
}
