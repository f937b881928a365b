//! The flow table and each flow's state machine, for both directions.
//!
//! A flow is a forward entry (client 5-tuple → [`Flow`]) and a reverse
//! entry (the backend's reply 5-tuple → client 5-tuple); the rules that
//! judge them are `kube_xdp_common::flow`'s, shared with the daemon. Nothing
//! deletes an entry when its flow ends: each is judged when a packet finds
//! it, so expiry needs no daemon, and a dead flow's entries are overwritten
//! or left to the LRU.
//!
//! TCP states: a SYN opens a flow in `FLOW_SYN_SENT`; the client's first
//! segment without SYN (the handshake's ACK) makes it `FLOW_ESTABLISHED`; a
//! FIN or RST from either side makes it `FLOW_CLOSING`, and the flags keep
//! who said what ([`finished`]). A SYN on a closing flow is the client
//! re-using its 5-tuple: the old flow is over. UDP flows stay `FLOW_UDP`.

use kube_xdp_common::{
    flow::{expired, forward_agrees, reverse_agrees, reverse_key},
    maps::{
        FLOW_CLOSING, FLOW_COOKIE_WAIT, FLOW_ESTABLISHED, FLOW_FIN_BACKEND, FLOW_FIN_CLIENT,
        FLOW_REPLIED, FLOW_RST, FLOW_SYN_ACK_AGAIN, FLOW_SYN_SENT, FLOW_UDP, FRAGMENT_TO_BACKEND,
        FRAGMENT_TO_CLIENT, Flow, FlowKey, PROTO_TCP, Settings,
    },
    stats::Counter,
};

use crate::{
    FLOWS, REVERSE, cookie,
    parse::{TCP_FIN, TCP_RST, TCP_SYN},
};

/// Which way a packet of a flow goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client → VIP, sent on to the backend.
    ToBackend,
    /// Backend → SNAT address, sent back to the client.
    ToClient,
}

impl Direction {
    /// The `FRAGMENT_TO_*` value a first fragment going this way is
    /// remembered with.
    #[inline(always)]
    pub fn fragment(self) -> u32 {
        match self {
            Direction::ToBackend => FRAGMENT_TO_BACKEND,
            Direction::ToClient => FRAGMENT_TO_CLIENT,
        }
    }
}

/// A flow found for a packet: its forward entry as found, and where it is
/// to update it.
pub struct Tracked {
    entry: *mut Flow,
    pub flow: Flow,
}

/// The state a new flow of `protocol` opens in.
#[inline(always)]
pub fn opening_state(protocol: u8) -> u8 {
    if protocol == PROTO_TCP {
        FLOW_SYN_SENT
    } else {
        FLOW_UDP
    }
}

/// The live flow of a client's packet (`key`, its 5-tuple; `syn`: a TCP
/// SYN without ACK), if there is one.
#[inline(always)]
pub fn lookup_client(settings: &Settings, key: &FlowKey, syn: bool, now: u64) -> Option<Tracked> {
    let entry = FLOWS.get_ptr_mut(key)?;
    // SAFETY: a pointer from the lookup, valid for this run.
    let flow = unsafe { *entry };
    if syn && flow.state == FLOW_CLOSING {
        // The client re-uses its 5-tuple: the SYN opens a new flow.
        return None;
    }
    alive_established(settings, key, &flow, now).then_some(Tracked { entry, flow })
}

/// The client 5-tuple whose flow the backend's reply `key` belongs to, as
/// the reverse entry says.
#[inline(always)]
pub fn client_of(key: &FlowKey) -> Option<FlowKey> {
    // SAFETY: copied out at once.
    unsafe { REVERSE.get(key) }.map(|rev| rev.client)
}

/// The flow of `client` that the backend's reply `key` belongs to: `None`
/// when it is gone, expired, or no longer holds this SNAT port.
#[inline(always)]
pub fn lookup_backend(
    settings: &Settings,
    key: &FlowKey,
    client: &FlowKey,
    now: u64,
) -> Option<Tracked> {
    let entry = FLOWS.get_ptr_mut(client)?;
    // SAFETY: a pointer from the lookup, valid for this run.
    let flow = unsafe { *entry };
    (forward_agrees(&flow, key) && !expired(settings, &flow, now))
        .then_some(Tracked { entry, flow })
}

/// The flow of `client` if it is alive (the full check, for packets off the
/// fast path such as ICMP errors).
#[inline(always)]
pub fn lookup_alive(settings: &Settings, client: &FlowKey, now: u64) -> Option<Flow> {
    // SAFETY: copied out at once.
    let flow = unsafe { FLOWS.get(client) }.copied()?;
    (!expired(settings, &flow, now) && partner_agrees(client, &flow)).then_some(flow)
}

/// Whether the reverse entry of `flow` exists and points back to `client`.
#[inline(always)]
fn partner_agrees(client: &FlowKey, flow: &Flow) -> bool {
    // SAFETY: the value is copied out at once.
    match unsafe { REVERSE.get(reverse_key(client, flow)) } {
        Some(rev) => reverse_agrees(client, rev),
        None => false,
    }
}

/// 2^30 ns (about 1.07 s): an active flow's reverse entry is confirmed at
/// least once per epoch of this length.
const PARTNER_EPOCH_SHIFT: u32 = 30;

/// Whether `flow` (the forward entry of `client`) is alive, for the
/// client's packets, with the reverse lookup (a fifth of the established
/// path's cost) skipped where it cannot matter. A settled flow's reverse
/// entry changes hands only (a) once the flow finished or expired —
/// `snat::allocate` hands a port over on nothing else — or (b) when the LRU
/// evicted it, which takes a table full beyond its size. So the check runs
/// on every packet of a flow
/// - that is not settled yet: a TCP flow before its handshake's ACK (which
///   is checked), a UDP flow in the epoch it was created in. While a new
///   flow is being created, another CPU may find its claimed reverse entry
///   without a forward entry and take it over; the flow's first check after
///   its creation finds that out;
/// - that is closing or has seen a FIN or RST (a), whatever its state says
///   (two CPUs updating one flow at once may leave a stale state);
/// - whose last packet was in an earlier epoch (b): a packet either way
///   during the epoch (a reply is forwarded only after the same agreement
///   check from the other side) keeps `last_seen_ns` in it, so an active
///   flow is confirmed at least once per epoch. This also keeps the reverse
///   entry recently used in the LRU's eyes, so the LRU evicts dead flows'
///   entries first.
#[inline(always)]
fn alive_established(settings: &Settings, client: &FlowKey, flow: &Flow, now: u64) -> bool {
    if expired(settings, flow, now) {
        return false;
    }
    let epoch = now >> PARTNER_EPOCH_SHIFT;
    let settled = match flow.state {
        FLOW_ESTABLISHED => true,
        FLOW_UDP => flow.created_ns >> PARTNER_EPOCH_SHIFT != epoch,
        _ => false,
    };
    let confirmed = settled
        && flow.flags & (FLOW_FIN_CLIENT | FLOW_FIN_BACKEND | FLOW_RST) == 0
        && flow.last_seen_ns >> PARTNER_EPOCH_SHIFT == epoch;
    confirmed || partner_agrees(client, flow)
}

impl Tracked {
    /// The forward entry as it stands now (after an update).
    #[inline(always)]
    pub fn current(&self) -> Flow {
        // SAFETY: a pointer from the lookup, valid for this run.
        unsafe { *self.entry }
    }
}

/// Steps the flow's state machine for a packet going `direction` with TCP
/// flags `tcp_flags` (0 for UDP, which has no states to step), and marks
/// the flow seen at `now`. Returns whether its state or flags changed
/// (what flow sync reports).
#[inline(always)]
pub fn update(tracked: &Tracked, direction: Direction, tcp_flags: u8, now: u64) -> bool {
    let old = &tracked.flow;
    let mut state = old.state;
    let mut flags = old.flags;
    if tcp_flags & TCP_RST != 0 {
        flags |= FLOW_RST;
    }
    if direction == Direction::ToClient
        && state == FLOW_SYN_SENT
        && tcp_flags & TCP_SYN != 0
        && old.flags & FLOW_REPLIED != 0
    {
        flags |= FLOW_SYN_ACK_AGAIN;
    }
    if direction == Direction::ToClient && (state == FLOW_UDP || state == FLOW_SYN_SENT) {
        // The backend answered: a UDP flow is a real exchange; a half-open
        // TCP flow's backend holds a connection in SYN-RECV (see
        // `snat::reusable`).
        flags |= FLOW_REPLIED;
    }
    if tcp_flags & TCP_FIN != 0 {
        flags |= match direction {
            Direction::ToBackend => FLOW_FIN_CLIENT,
            Direction::ToClient => FLOW_FIN_BACKEND,
        };
    }
    if tcp_flags & (TCP_RST | TCP_FIN) != 0 {
        state = FLOW_CLOSING;
    } else if direction == Direction::ToBackend
        && state == FLOW_SYN_SENT
        && tcp_flags & TCP_SYN == 0
    {
        // The client's ACK of the backend's SYN-ACK ends the handshake.
        state = FLOW_ESTABLISHED;
    }
    // A reply writes the state only when it closes the flow: its copy may
    // predate the ESTABLISHED the client's ACK just wrote on another CPU,
    // and writing it back would put the flow under the SYN timeout. Nothing
    // is written that did not change: a write takes the entry's cache line
    // from the other CPU, which handles the flow's other direction.
    // SAFETY: a pointer from the lookup, valid for this run.
    unsafe {
        if (*tracked.entry).state != state
            && (direction == Direction::ToBackend || state != old.state)
        {
            (*tracked.entry).state = state;
        }
        if (*tracked.entry).flags != flags {
            (*tracked.entry).flags = flags;
        }
        // A half-open flow lives `tcp_syn` from its SYN, an unanswered UDP
        // flow `udp_unanswered` from its first datagram: neither the
        // backend retransmitting its SYN-ACK to a client that never answers
        // (a spoofed source), nor the client repeating its SYN or its
        // datagrams, keeps it.
        let half_open = (state == FLOW_SYN_SENT
            && (direction == Direction::ToClient || tcp_flags & TCP_SYN != 0))
            || (state == FLOW_UDP && flags & FLOW_REPLIED == 0);
        // The clock is coarse (a tick of 1-4 ms): most packets of a busy
        // flow find their time already there.
        if !half_open && (*tracked.entry).last_seen_ns != now {
            (*tracked.entry).last_seen_ns = now;
        }
    }
    if old.state == FLOW_UDP && old.flags & FLOW_REPLIED == 0 && flags & FLOW_REPLIED != 0 {
        cookie::give_back_udp();
    }
    state != old.state || flags != old.flags
}

/// Notes the backend's ISN (`seq`, from its SYN-ACK) in a half-open
/// flow's `seq_delta` (unused by flows without cookies), so that only the
/// client's ACK of it counts as the handshake's end (`ingress::established`).
#[inline(always)]
pub fn note_syn_ack(tracked: &Tracked, seq: u32) {
    // SAFETY: a pointer from the lookup, valid for this run.
    unsafe { (*tracked.entry).seq_delta = seq.wrapping_add(1) };
}

/// What the backend's SYN-ACK of a cookie flow tells it (see
/// `Flow::seq_delta`, `Flow::ts_peer_offset`, `Flow::win_scale_backend`).
pub struct CookieAnswer {
    pub seq_delta: u32,
    pub ts_peer_offset: u32,
    pub win_scale_backend: u8,
}

/// Records the backend's answer to a cookie flow's SYN: the flow leaves
/// `FLOW_COOKIE_WAIT` and translates from now on.
#[inline(always)]
pub fn cookie_answered(tracked: &Tracked, answer: &CookieAnswer, now: u64) {
    // SAFETY: a pointer from the lookup, valid for this run.
    unsafe {
        (*tracked.entry).seq_delta = answer.seq_delta;
        (*tracked.entry).ts_peer_offset = answer.ts_peer_offset;
        (*tracked.entry).win_scale_backend = answer.win_scale_backend;
        (*tracked.entry).flags = (tracked.flow.flags & !FLOW_COOKIE_WAIT) | FLOW_REPLIED;
        (*tracked.entry).last_seen_ns = now;
    }
}

/// Closes the flow as if it had seen a RST: its backend is down and the
/// client is answered with one (`on_backend_down = "reset"`). Returns
/// whether that changed its state or flags (the first time only).
#[inline(always)]
pub fn reset(tracked: &Tracked, now: u64) -> bool {
    let old = &tracked.flow;
    let changed = old.state != FLOW_CLOSING || old.flags & FLOW_RST == 0;
    // SAFETY: a pointer from the lookup, valid for this run.
    unsafe {
        (*tracked.entry).state = FLOW_CLOSING;
        (*tracked.entry).flags |= FLOW_RST;
        (*tracked.entry).last_seen_ns = now;
    }
    changed
}

/// Opens the flow `flow` of `key`: its forward entry, after
/// `snat::allocate` claimed the reverse one, which is given back if the
/// table refuses the forward entry.
#[inline(always)]
pub fn open(key: &FlowKey, flow: &Flow) -> Result<(), Counter> {
    if FLOWS.insert(key, flow, 0).is_err() {
        let _ = REVERSE.remove(reverse_key(key, flow));
        return Err(Counter::FlowTableFull);
    }
    Ok(())
}

/// Lets go of the flow of `key` (`flow`, its entry): its reverse entry,
/// then its forward one. For a cookie flow whose backend never answered,
/// opened again at once (`ingress::transport`): the same 5-tuple hashes to
/// the same backend and SNAT port.
#[inline(always)]
pub fn forget(key: &FlowKey, flow: &Flow) {
    let _ = REVERSE.remove(reverse_key(key, flow));
    let _ = FLOWS.remove(key);
}

/// A backend's SYN-ACK that found its flow expired half-open (the client
/// never completed the handshake): the kernel answers it with a RST, which
/// ends the backend's half-open connection, so the flow is marked as reset
/// and its SNAT port follows the closed rules (`snat::reusable`).
#[inline(always)]
pub fn refused(settings: &Settings, key: &FlowKey, client: &FlowKey, tcp_flags: u8, now: u64) {
    if tcp_flags & (TCP_SYN | TCP_RST) != TCP_SYN {
        return;
    }
    let Some(entry) = FLOWS.get_ptr_mut(client) else {
        return;
    };
    // SAFETY: a pointer from the lookup, valid for this run.
    let flow = unsafe { *entry };
    if flow.state == FLOW_SYN_SENT && forward_agrees(&flow, key) && expired(settings, &flow, now) {
        // Only the flag: the flow stays expired (its times are not
        // refreshed, so it is not brought back to life for `tcp_closing`).
        // SAFETY: as above.
        unsafe { (*entry).flags = flow.flags | FLOW_RST };
    }
}

/// A TCP flow both of whose sides said goodbye (FIN each way, or a RST).
#[inline(always)]
pub fn finished(flow: &Flow) -> bool {
    flow.flags & FLOW_RST != 0
        || flow.flags & (FLOW_FIN_CLIENT | FLOW_FIN_BACKEND) == (FLOW_FIN_CLIENT | FLOW_FIN_BACKEND)
}
