//! SNAT: which address the backend sees a flow come from, and the port a
//! new flow gets there (its reverse entry's key).

use kube_xdp_common::{
    flow::forward_agrees,
    hash::fmix32,
    maps::{FLOW_TS_REWRITE, Flow, FlowKey, PROTO_TCP, ReverseFlow, Settings},
};

use crate::{FLOWS, REVERSE, conntrack};

/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;
/// How long a finished flow's port rests before another flow may take it.
const REUSE_GRACE_NS: u64 = 1_000_000_000;
/// How long after a flow opened its rewritten timestamps are still
/// certainly older than a new flow's (see `reusable`).
const TS_COMPARABLE_NS: u64 = 30 * 60 * 1_000_000_000;
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
/// rewritten onto the same growing clock, a finished flow's port is free at
/// once; otherwise it is held for `tcp_time_wait` past the flow's end.
///
/// The rewritten timestamps run on `nat::ts_clock`, whose signed
/// comparison (PAWS) wraps after 2^31 ticks, about 36.6 minutes: a flow
/// opened longer ago than [`TS_COMPARABLE_NS`] may have sent the backend a
/// timestamp that looks newer than the next flow's, so its port is held as
/// if it had none.
#[inline(always)]
fn reusable(settings: &Settings, old: &Flow, new_ts: bool, now: u64) -> bool {
    let idle = now.saturating_sub(old.last_seen_ns);
    let both_ts = new_ts
        && old.flags & FLOW_TS_REWRITE != 0
        && now.saturating_sub(old.created_ns) < TS_COMPARABLE_NS;
    if both_ts && conntrack::finished(old) {
        // The last ACK of the close (and a retransmitted FIN) may still be
        // on the way: give them a moment before the 4-tuple means another
        // connection. The backend's TIME_WAIT accepts the new SYN then.
        return idle > REUSE_GRACE_NS;
    }
    let hold = if both_ts {
        0
    } else {
        settings.tcp_time_wait_ns
    };
    idle > settings.idle_timeout_ns(old.state).saturating_add(hold)
}

/// Whether the reverse 5-tuple `rkey` is free for a new flow: `None` if
/// not, else the flags to claim it with — `BPF_NOEXIST` for an empty slot
/// (so that no other CPU claimed it meanwhile), 0 to replace a stale entry.
#[inline(always)]
fn reverse_free(settings: &Settings, rkey: &FlowKey, new_ts: bool, now: u64) -> Option<u64> {
    // SAFETY: values are copied out at once.
    let Some(rev) = (unsafe { REVERSE.get(rkey) }) else {
        return Some(BPF_NOEXIST);
    };
    let client = rev.client;
    let Some(old) = (unsafe { FLOWS.get(client) }) else {
        return Some(0);
    };
    let old = *old;
    if forward_agrees(&old, rkey) {
        return reusable(settings, &old, new_ts, now).then_some(0);
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
    let since = now.saturating_sub(old.created_ns);
    (rkey.protocol != PROTO_TCP || new_ts || since > settings.tcp_time_wait_ns).then_some(0)
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
    let value = ReverseFlow { client: *client };
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
        if let Some(flags) = reverse_free(settings, &rkey, new_ts, now)
            && REVERSE.insert(rkey, value, flags).is_ok()
        {
            return Some((snat_addr, port.to_be()));
        }
        candidate = (candidate + step) % span;
    }
    None
}
