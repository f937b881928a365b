//! The half-open limit and SYN cookies.
//!
//! A SYN that opens a flow takes one flow's worth from this CPU's
//! `HALF_OPEN` bucket; a handshake that provably ended (the client's ACK
//! of the backend's ISN) gives it back (`give_back_tcp`), and time gives
//! back what flows that never completed would have held
//! (they expire after `tcp_syn`). Over the limit, under
//! `syn_cookies = "auto"` (or for every SYN under `"always"`), the SYN is
//! answered here with a SYN-ACK whose sequence number is a cookie
//! (`kube_xdp_common::cookie`) and a zero window, and nothing is kept
//! (`answer_syn`). The client's ACK of a valid cookie opens the flow and
//! goes to the backend as the client's SYN, with the options the cookie
//! kept (`open_from_ack`). The backend's SYN-ACK becomes the ACK that opens
//! the client's window (`from_backend`) and makes it answer at once; that
//! answer, or its first data, completes the backend's handshake (should
//! it be lost, the backend's retransmitted SYN-ACK is answered with the
//! ACK it waits for). For the rest of the flow the backend's sequence numbers,
//! TSvals and windows are translated to what the client was told, and the
//! client's ACK numbers, SACK blocks and TSecrs back (`to_client`,
//! `to_backend`).

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_tail_call, programs::XdpContext};
use kube_xdp_common::{
    cookie::{self as rules, CookieOptions, CookieTuple, NO_WSCALE},
    maps::{
        BUDGET_TCP, BUDGET_UDP, FLOW_COOKIE_WAIT, FLOW_UDP, Flow, FlowKey, SYN_COOKIES_ALWAYS,
        SYN_COOKIES_AUTO, Service, Settings,
    },
    stats::Counter,
};

use crate::{
    COOKIE_CLOCK, HALF_OPEN, PROGRAM_COOKIES, PROGRAMS, SETTINGS,
    conntrack::{self, Tracked},
    csum,
    field::{read16, read32, write16, write32},
    forward, ingress,
    parse::{self, Ip, L4, TCP_ACK, TCP_RST, TCP_SYN},
    reset::refuse,
    segment::{self, BARE, Segment},
    stats, sync, tcpopt,
    verdict::Verdict,
};

/// The window the ACK answering a backend's retransmitted SYN-ACK
/// announces (in the client's scale): the client's real window reaches
/// the backend with its first segment.
const BACKEND_ACK_WINDOW: u16 = 512;
/// How long after the last cookie a stray ACK with no flow is still
/// checked as one: two cookie periods.
const COOKIES_RECENT_NS: u64 = 2 << rules::COOKIE_PERIOD_SHIFT;

/// Hands the packet to the cookie program (`kube_xdp_cookie`, slot
/// [`PROGRAM_COOKIES`] of `PROGRAMS`), which takes it from the top; returns
/// only if that program is missing (`cookie_program_missing`).
#[inline(always)]
pub fn hand_over(ctx: &XdpContext) -> Verdict {
    // The helper itself, not `ProgramArray::tail_call`, which may stay a
    // function of its own: the kernel refuses a tail call from a
    // subprogram without BTF.
    // SAFETY: a tail call into an XDP program of the same object, through
    // the map's definition (`ProgramArray` is a transparent wrapper of
    // it); it does not return when it succeeds.
    unsafe {
        bpf_tail_call(
            ctx.ctx.cast(),
            (&raw const PROGRAMS).cast_mut().cast(),
            PROGRAM_COOKIES,
        )
    };
    (xdp_action::XDP_DROP, Counter::CookieProgramMissing)
}

/// What becomes of a SYN to a service.
pub enum Admit {
    /// It opens a flow (and took its place in the half-open budget).
    Flow,
    /// It is answered with a cookie.
    Cookie,
    /// Over the limit with cookies off: dropped.
    Drop,
}

/// Takes one flow's worth (`cost`) from this CPU's budget `slot`, which
/// refills with time up to `cap`; whether it held that much. A cost of 0:
/// no limit.
#[inline(always)]
pub fn take(slot: u32, cost: u64, cap: u64, now: u64) -> bool {
    if cost == 0 {
        return true;
    }
    let Some(bucket) = HALF_OPEN.get_ptr_mut(slot) else {
        return true;
    };
    // SAFETY: a pointer from the lookup; the CPUs share the slot and may
    // race on it (see `HALF_OPEN`): a lost update is a small error.
    unsafe {
        let elapsed = now.saturating_sub((*bucket).refilled_ns);
        let credit = (*bucket).credit_ns.saturating_add(elapsed).min(cap);
        (*bucket).refilled_ns = now;
        if credit >= cost {
            (*bucket).credit_ns = credit - cost;
            return true;
        }
        (*bucket).credit_ns = credit;
    }
    false
}

/// Gives one flow's worth (`cost`) back to this CPU's budget `slot`.
#[inline(always)]
pub fn give(slot: u32, cost: u64, cap: u64) {
    if let Some(bucket) = HALF_OPEN.get_ptr_mut(slot) {
        // SAFETY: as in `take`.
        unsafe { (*bucket).credit_ns = (*bucket).credit_ns.saturating_add(cost).min(cap) };
    }
}

/// Decides a SYN's fate by the half-open budget and `syn_cookies`.
#[inline(always)]
pub fn admit(settings: &Settings, now: u64) -> Admit {
    if settings.syn_cookies == SYN_COOKIES_ALWAYS {
        return Admit::Cookie;
    }
    if take(
        BUDGET_TCP,
        settings.half_open_cost_ns,
        settings.tcp_syn_ns,
        now,
    ) {
        Admit::Flow
    } else if settings.syn_cookies == SYN_COOKIES_AUTO {
        Admit::Cookie
    } else {
        Admit::Drop
    }
}

/// The span over which the UDP budget refills: the timeout of an
/// unanswered UDP flow.
#[inline(always)]
pub fn udp_cap(settings: &Settings) -> u64 {
    settings.idle_timeout_ns(FLOW_UDP, 0)
}

/// Gives a half-open TCP flow's place back: the client acknowledged the
/// backend's ISN (`ingress::established` checks it), so the handshake is
/// real. Nothing else gives it back early (a spoofed ACK or RST would):
/// time does.
#[inline(always)]
pub fn give_back_tcp() {
    if let Some(settings) = SETTINGS.get(0) {
        give(BUDGET_TCP, settings.half_open_cost_ns, settings.tcp_syn_ns);
    }
}

/// Gives an unanswered UDP flow's place back: its backend answered.
#[inline(always)]
pub fn give_back_udp() {
    if let Some(settings) = SETTINGS.get(0) {
        give(BUDGET_UDP, settings.unanswered_cost_ns, udp_cap(settings));
    }
}

/// The cookies' clock: realtime, so the pair's boxes agree on the period.
#[inline(always)]
fn period(settings: &Settings, now: u64) -> u64 {
    rules::period(now.wrapping_add(settings.cookie_clock_offset_ns))
}

/// Whether a cookie was sent lately (by any CPU): only then is an ACK with
/// no flow checked as one.
#[inline(always)]
pub fn recent(now: u64) -> bool {
    COOKIE_CLOCK.get(0).is_some_and(|c| {
        c.last_sent_ns != 0 && now.saturating_sub(c.last_sent_ns) < COOKIES_RECENT_NS
    })
}

/// Notes that a cookie went out, at most once a second (a shared line).
#[inline(always)]
fn mark_sent(now: u64) {
    if let Some(clock) = COOKIE_CLOCK.get_ptr_mut(0) {
        // SAFETY: a pointer from the lookup; a racy store of a time is
        // harmless (any CPU's is as good).
        unsafe {
            if now.saturating_sub((*clock).last_sent_ns) > 1_000_000_000 {
                (*clock).last_sent_ns = now;
            }
        }
    }
}

#[inline(always)]
fn tuple(ip: &Ip, l4: &L4) -> CookieTuple {
    CookieTuple {
        src_addr: ip.src,
        dst_addr: ip.dst,
        src_port: l4.sport,
        dst_port: l4.dport,
    }
}

#[inline(always)]
fn seq_ack(ctx: &XdpContext, ip: &Ip) -> Option<(u32, u32)> {
    Some((
        u32::from_be(read32(ctx, ip.l4 + 4)?),
        u32::from_be(read32(ctx, ip.l4 + 8)?),
    ))
}

#[inline(always)]
fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// The options of a SYN or SYN-ACK written here: MSS, SACK permitted,
/// timestamps (`ts`: TSval, TSecr) and window scale, each only if given;
/// 20 bytes with timestamps, 12 without (NOPs where one is left out).
#[inline(always)]
fn syn_options(mss: u16, sack: bool, wscale: Option<u8>, ts: (u32, u32)) -> [u8; 20] {
    let m = mss.to_be_bytes();
    let (k, l) = if sack { (4, 2) } else { (1, 1) };
    let ws = match wscale {
        Some(w) => [1, 3, 3, w],
        None => [1, 1, 1, 1],
    };
    let v = be32(ts.0);
    let e = be32(ts.1);
    [
        2, 4, m[0], m[1], k, l, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3], ws[0],
        ws[1], ws[2], ws[3],
    ]
}

#[inline(always)]
fn syn_options_no_ts(mss: u16, sack: bool, wscale: Option<u8>) -> [u8; 12] {
    let m = mss.to_be_bytes();
    let ws = match wscale {
        Some(w) => [1, 3, 3, w],
        None => [1, 1, 1, 1],
    };
    let sp = if sack { [1, 1, 4, 2] } else { [1, 1, 1, 1] };
    [
        2, 4, m[0], m[1], ws[0], ws[1], ws[2], ws[3], sp[0], sp[1], sp[2], sp[3],
    ]
}

#[inline(always)]
fn ts_option(tsval: u32, tsecr: u32) -> [u8; 12] {
    let v = be32(tsval);
    let e = be32(tsecr);
    [1, 1, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3]]
}

/// Writes `seg` with SYN options: with timestamps if `ts` is given.
#[inline(always)]
fn emit_syn(
    ctx: &XdpContext,
    seg: &Segment,
    mss: u16,
    sack: bool,
    wscale: Option<u8>,
    ts: Option<(u32, u32)>,
) -> Option<()> {
    match ts {
        Some(ts) => {
            segment::emit::<{ BARE + 20 }>(ctx, seg, &syn_options(mss, sack, wscale, ts), 0)
        }
        None => segment::emit::<{ BARE + 12 }>(ctx, seg, &syn_options_no_ts(mss, sack, wscale), 0),
    }
}

/// Writes `seg` as a plain ACK, with a timestamp option if `ts` is given.
#[inline(always)]
fn emit_ack(ctx: &XdpContext, seg: &Segment, ts: Option<(u32, u32)>) -> Option<()> {
    match ts {
        Some((v, e)) => segment::emit::<{ BARE + 12 }>(ctx, seg, &ts_option(v, e), 0),
        None => segment::emit::<BARE>(ctx, seg, &[], 0),
    }
}

/// Writes `seg` as an ACK carrying one byte (a zero) again: the one
/// before the client's next expected (see `open_window`).
#[inline(always)]
fn emit_ack_again(ctx: &XdpContext, seg: &Segment, ts: Option<(u32, u32)>) -> Option<()> {
    match ts {
        Some((v, e)) => segment::emit::<{ BARE + 12 + 1 }>(ctx, seg, &ts_option(v, e), 1),
        None => segment::emit::<{ BARE + 1 }>(ctx, seg, &[], 1),
    }
}

/// Our own MAC on the ingress interface (the frame was addressed to it,
/// `l2` checked): `forward::send` takes the source from there.
#[inline(always)]
fn own_mac(ctx: &XdpContext) -> [u8; 6] {
    parse::eth_dst(ctx).unwrap_or([0; 6])
}

/// Answers a client's SYN to a service with a cookie SYN-ACK (zero
/// window), keeping nothing.
#[inline(always)]
pub fn answer_syn(ctx: &XdpContext, ip: &Ip, l4: &L4, settings: &Settings, now: u64) -> Verdict {
    let Some((isn, _)) = seq_ack(ctx, ip) else {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    };
    let opts = tcpopt::scan(ctx, ip.l4, l4.tcp_len);
    let offered = CookieOptions::of_syn(opts.mss, opts.wscale, opts.sack_perm);
    let cookie = rules::make(
        &settings.cookie_key,
        &tuple(ip, l4),
        isn,
        &offered,
        period(settings, now),
    );
    let client_tsval = opts.ts.and_then(|at| read32(ctx, at)).map(u32::from_be);
    let seg = Segment {
        src_mac: own_mac(ctx),
        dst_mac: own_mac(ctx),
        src: ip.dst,
        dst: ip.src,
        sport: l4.dport,
        dport: l4.sport,
        seq: cookie,
        ack: isn.wrapping_add(1),
        flags: TCP_SYN | TCP_ACK,
        window: 0,
    };
    let client_mac = parse::eth_src(ctx);
    let mss = if settings.cookie_mss == 0 {
        1460
    } else {
        settings.cookie_mss
    };
    let wscale = (offered.wscale != NO_WSCALE).then_some(settings.cookie_wscale);
    // Our TSval: any value will do (the backend's are translated onto it
    // later); the coarse clock in µs.
    let ts = client_tsval.map(|tsecr| ((now >> 10) as u32, tsecr));
    if emit_syn(ctx, &seg, mss, offered.sack, wscale, ts).is_none() {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    }
    mark_sent(now);
    match forward::send(ctx, client_mac, 0) {
        Ok(verdict) => (verdict, Counter::CookieSent),
        Err(why) => (xdp_action::XDP_DROP, why),
    }
}

/// Whether a segment may be a client's ACK of a cookie: ACK without SYN,
/// RST or FIN. Checked whenever such a segment has no flow (after a
/// failover or a restart this box may not have sent the cookies it gets),
/// and for a closing flow of the same 5-tuple while cookies are in use
/// (`recent`: a client re-using its 5-tuple).
#[inline(always)]
pub fn candidate(l4: &L4) -> bool {
    l4.flags & (TCP_SYN | TCP_RST | TCP_ACK | 0x01) == TCP_ACK
}

/// The client ISN and the options a client's ACK of a cookie carries, if
/// its cookie is valid. A segment without data may also be a zero-window
/// probe (Linux sends the one before its next: the ISN itself, when its
/// ACK of the cookie was lost).
#[inline(always)]
fn cookie_of(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    settings: &Settings,
    now: u64,
) -> Option<(u32, u32, CookieOptions)> {
    let (seq, ack) = seq_ack(ctx, ip)?;
    let cookie = ack.wrapping_sub(1);
    let period = period(settings, now);
    let t = tuple(ip, l4);
    let isn = seq.wrapping_sub(1);
    if let Some(offered) = rules::check(&settings.cookie_key, &t, isn, cookie, period) {
        return Some((isn, cookie, offered));
    }
    let payload = usize::from(ip.tot_len) - (ip.l4 - parse::ETH_LEN) - l4.tcp_len;
    if payload == 0 {
        let offered = rules::check(&settings.cookie_key, &t, seq, cookie, period)?;
        return Some((seq, cookie, offered));
    }
    None
}

/// Whether a client's segment carries a valid cookie (see `cookie_of`).
#[inline(always)]
pub fn valid(ctx: &XdpContext, ip: &Ip, l4: &L4, settings: &Settings, now: u64) -> bool {
    cookie_of(ctx, ip, l4, settings, now).is_some()
}

/// A client's ACK with no flow while cookies are in use: if it carries a
/// valid cookie, the flow opens and the ACK goes to the backend as the
/// client's SYN (its data, if any, is dropped: the client sends it again
/// once its window opens); if not, a RST as for any segment of no flow.
/// `again`: the client's SYN goes to the backend again (its cookie flow,
/// which the backend never answered, was let go: `conntrack::forget`); the
/// flow opens as before, on the same port unless another flow took it.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the packet's parts, each needed")]
pub fn open_from_ack(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    svc: &Service,
    settings: &Settings,
    now: u64,
    again: bool,
) -> Verdict {
    let Some((isn, cookie, offered)) = cookie_of(ctx, ip, l4, settings, now) else {
        // Counted as a cookie only while cookies are in use; otherwise a
        // segment of a flow gone.
        let reason = if recent(now) {
            Counter::CookieInvalid
        } else {
            Counter::NoFlow
        };
        return refuse(ctx, ip, l4, reason);
    };
    let Some(window) = read16(ctx, ip.l4 + 14).map(u16::from_be) else {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    };
    let opts = tcpopt::scan(ctx, ip.l4, l4.tcp_len);
    let ts = match opts.ts {
        Some(at) => match (read32(ctx, at), read32(ctx, at + 4)) {
            (Some(v), Some(e)) => Some((u32::from_be(v), u32::from_be(e))),
            _ => return (xdp_action::XDP_DROP, Counter::Malformed),
        },
        None => None,
    };
    let wscale = (offered.wscale != NO_WSCALE).then_some(offered.wscale);
    let init = ingress::CookieInit {
        seq_delta: cookie,
        // The TSval of our SYN-ACK, which the client echoes.
        ts_peer_offset: ts.map_or(0, |(_, ecr)| ecr),
        win_scale_client_view: if wscale.is_some() {
            settings.cookie_wscale
        } else {
            0
        },
    };
    let opened =
        match ingress::open_flow(ctx, ip, l4, key, svc, settings, now, opts.ts, Some(&init)) {
            Ok(opened) => opened,
            Err(reason) => return refuse(ctx, ip, l4, reason),
        };
    let f = &opened.flow;
    sync::report(key, f);
    // The client's window in bytes, as a SYN's (unscaled) field holds it.
    let syn_window = match wscale {
        Some(w) => (u32::from(window) << (w & 15)).min(65_535) as u16,
        None => window,
    };
    let seg = Segment {
        src_mac: own_mac(ctx),
        dst_mac: own_mac(ctx),
        src: f.snat_addr,
        dst: f.backend_addr,
        sport: f.snat_port,
        dport: f.backend_port,
        seq: isn,
        ack: 0,
        flags: TCP_SYN,
        window: syn_window,
    };
    let ts = ts.map(|(val, _)| (val.wrapping_add(f.ts_offset), 0));
    if emit_syn(ctx, &seg, offered.mss(), offered.sack, wscale, ts).is_none() {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    }
    let bytes = parse::frame_len(ctx) as u64;
    match forward::send(ctx, opened.backend.mac, opened.backend.ifindex) {
        Ok(verdict) => {
            stats::traffic(u32::from(f.service_id), opened.backend_id, bytes, true);
            let counter = if again {
                Counter::CookieSynAgain
            } else {
                Counter::CookieValid
            };
            (verdict, counter)
        }
        Err(why) => (xdp_action::XDP_DROP, why),
    }
}

/// A backend's packet of a cookie flow that is not a plain translation:
/// its SYN-ACK, or anything before it. `None`: translate it
/// (`to_client`) and forward it as usual.
#[inline(always)]
pub fn from_backend(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    client: &FlowKey,
    tracked: &Tracked,
    settings: &Settings,
    now: u64,
) -> Option<Verdict> {
    let f = &tracked.flow;
    let synack = l4.flags & (TCP_SYN | TCP_ACK | TCP_RST | 0x01) == TCP_SYN | TCP_ACK;
    if f.flags & FLOW_COOKIE_WAIT != 0 {
        // Only an answer to our SYN: its ACK number is the client's ISN + 1,
        // which the cookie (still in `seq_delta`) vouches for. A stale
        // SYN-ACK of an earlier connection, or a blind RST, is dropped.
        let Some((_, ack)) = seq_ack(ctx, ip) else {
            return Some((xdp_action::XDP_DROP, Counter::Malformed));
        };
        let answers = l4.flags & TCP_ACK != 0
            && rules::check(
                &settings.cookie_key,
                &client_tuple(client),
                ack.wrapping_sub(1),
                f.seq_delta,
                period(settings, now),
            )
            .is_some();
        if !answers {
            return Some((xdp_action::XDP_DROP, Counter::CookieInvalid));
        }
        if synack {
            return Some(open_window(ctx, ip, l4, client, tracked, now));
        }
        if l4.flags & TCP_RST != 0 {
            // The backend refused the SYN: `to_client` gives the RST the
            // sequence number the client expects.
            return None;
        }
        return Some((xdp_action::XDP_DROP, Counter::CookieEarly));
    }
    if synack {
        return Some(ack_backend(ctx, ip, l4));
    }
    None
}

/// The cookie tuple of a client's flow key (its SYN's 5-tuple).
#[inline(always)]
fn client_tuple(client: &FlowKey) -> CookieTuple {
    CookieTuple {
        src_addr: client.src_addr,
        dst_addr: client.dst_addr,
        src_port: client.src_port,
        dst_port: client.dst_port,
    }
}

/// The backend's SYN-ACK to the SYN sent on the client's behalf: the flow
/// learns the backend's ISN, TSval and window scale, and the SYN-ACK
/// becomes the ACK that opens the client's window.
///
/// That ACK also makes the client answer at once, so the backend's
/// handshake completes whether or not the client has anything to say
/// (a protocol where the server speaks first): it carries one byte at the
/// cookie's own sequence number, just before what the client expects.
/// The client takes the segment (it ends where the client's window
/// begins), its window with it, finds the byte a duplicate — never
/// delivered — and acknowledges at once (RFC 9293 §3.10.7.4; Linux:
/// `tcp_data_queue`, with a D-SACK of that byte, which reaches the backend
/// as one of its ISN: older than anything it sent, ignored). Its ACK, or
/// its first data, completes the backend's handshake.
#[inline(always)]
fn open_window(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    client: &FlowKey,
    tracked: &Tracked,
    now: u64,
) -> Verdict {
    let f = &tracked.flow;
    let (Some((backend_isn, ack)), Some(window)) =
        (seq_ack(ctx, ip), read16(ctx, ip.l4 + 14).map(u16::from_be))
    else {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    };
    let opts = tcpopt::scan(ctx, ip.l4, l4.tcp_len);
    let ts = match opts.ts {
        Some(at) => match (read32(ctx, at), read32(ctx, at + 4)) {
            (Some(v), Some(e)) => Some((u32::from_be(v), u32::from_be(e))),
            _ => return (xdp_action::XDP_DROP, Counter::Malformed),
        },
        None => None,
    };
    let cookie = f.seq_delta;
    let our_tsval = f.ts_peer_offset;
    let answered = conntrack::CookieAnswer {
        seq_delta: cookie.wrapping_sub(backend_isn),
        ts_peer_offset: ts.map_or(0, |(val, _)| our_tsval.wrapping_sub(val)),
        win_scale_backend: opts.wscale.unwrap_or(0).min(14),
    };
    conntrack::cookie_answered(tracked, &answered, now);
    sync::report(client, &tracked.current());
    let seg = Segment {
        src_mac: own_mac(ctx),
        dst_mac: own_mac(ctx),
        src: client.dst_addr,
        dst: client.src_addr,
        sport: client.dst_port,
        dport: client.src_port,
        seq: cookie,
        ack,
        flags: TCP_ACK,
        // A SYN-ACK's window is never scaled.
        window: window >> (f.win_scale_client_view & 15),
    };
    let ts = ts.map(|(_, ecr)| (our_tsval, ecr.wrapping_sub(f.ts_offset)));
    if emit_ack_again(ctx, &seg, ts).is_none() {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    }
    match forward::send(ctx, f.client_mac, f.ifindex) {
        Ok(verdict) => (verdict, Counter::CookieBackendAnswered),
        Err(why) => (xdp_action::XDP_DROP, why),
    }
}

/// The backend's SYN-ACK again (the client has sent nothing to complete
/// its handshake): answered with the ACK it waits for, back the way it
/// came. Its timestamp echoes the backend's and repeats the SYN's.
#[inline(always)]
fn ack_backend(ctx: &XdpContext, ip: &Ip, l4: &L4) -> Verdict {
    let Some((seq, ack)) = seq_ack(ctx, ip) else {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    };
    let ts = tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len).and_then(|at| {
        Some((
            u32::from_be(read32(ctx, at)?),
            u32::from_be(read32(ctx, at + 4)?),
        ))
    });
    let backend_mac = parse::eth_src(ctx);
    let seg = Segment {
        src_mac: own_mac(ctx),
        dst_mac: own_mac(ctx),
        src: ip.dst,
        dst: ip.src,
        sport: l4.dport,
        dport: l4.sport,
        seq: ack,
        ack: seq.wrapping_add(1),
        flags: TCP_ACK,
        window: BACKEND_ACK_WINDOW,
    };
    if emit_ack(ctx, &seg, ts.map(|(val, ecr)| (ecr, val))).is_none() {
        return (xdp_action::XDP_DROP, Counter::Malformed);
    }
    match forward::send(ctx, backend_mac, 0) {
        Ok(verdict) => (verdict, Counter::CookieBackendAck),
        Err(why) => (xdp_action::XDP_DROP, why),
    }
}

/// Adds `add` to the 32-bit field at `at`, accumulating the checksum
/// change in `sums` (old, new).
#[inline(always)]
fn add32(ctx: &XdpContext, at: usize, add: u32, sums: &mut (u32, u32)) -> Option<()> {
    let before = read32(ctx, at)?;
    let after = u32::from_be(before).wrapping_add(add).to_be();
    write32(ctx, at, after)?;
    sums.0 += csum::sum32(before);
    sums.1 += csum::sum32(after);
    Some(())
}

#[inline(always)]
fn finish(ctx: &XdpContext, ip: &Ip, sums: (u32, u32)) -> Option<()> {
    let at = ip.l4 + 16;
    let check = read16(ctx, at)?;
    write16(ctx, at, csum::update(check, sums.0, sums.1))
}

/// A backend's segment of a cookie flow, before the usual rewrite: its
/// sequence number and TSval onto what the client was told, its window
/// into the scale the client was told. (A RST refusing the SYN gets the
/// sequence number the client expects.)
#[inline(always)]
pub fn to_client(ctx: &XdpContext, ip: &Ip, l4: &L4, f: &Flow) -> Option<()> {
    let mut sums = (0u32, 0u32);
    let seq_add = if f.flags & FLOW_COOKIE_WAIT != 0 {
        // seq_delta still holds the cookie.
        let seq = u32::from_be(read32(ctx, ip.l4 + 4)?);
        f.seq_delta.wrapping_add(1).wrapping_sub(seq)
    } else {
        f.seq_delta
    };
    add32(ctx, ip.l4 + 4, seq_add, &mut sums)?;
    if f.flags & FLOW_COOKIE_WAIT == 0 {
        if let Some(at) = tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len) {
            add32(ctx, at, f.ts_peer_offset, &mut sums)?;
        }
        let (from, to) = (f.win_scale_backend & 15, f.win_scale_client_view & 15);
        if from != to {
            let before = read16(ctx, ip.l4 + 14)?;
            let bytes = u32::from(u16::from_be(before)) << from;
            let after = ((bytes >> to).min(65_535) as u16).to_be();
            write16(ctx, ip.l4 + 14, after)?;
            sums.0 += u32::from(before);
            sums.1 += u32::from(after);
        }
    }
    finish(ctx, ip, sums)
}

/// The most SACK blocks an option holds.
const MAX_SACK_BLOCKS: usize = 4;

/// A client's segment of a cookie flow, before the usual rewrite: its ACK
/// number, SACK blocks and TSecr back onto the backend's numbers.
#[inline(always)]
pub fn to_backend(ctx: &XdpContext, ip: &Ip, l4: &L4, f: &Flow) -> Option<()> {
    let mut sums = (0u32, 0u32);
    let back = 0u32.wrapping_sub(f.seq_delta);
    if l4.flags & TCP_ACK != 0 {
        add32(ctx, ip.l4 + 8, back, &mut sums)?;
    }
    let opts = tcpopt::scan(ctx, ip.l4, l4.tcp_len);
    if let Some(at) = opts.ts {
        add32(ctx, at + 4, 0u32.wrapping_sub(f.ts_peer_offset), &mut sums)?;
    }
    if let Some((at, blocks)) = opts.sack {
        for i in 0..MAX_SACK_BLOCKS {
            if i < blocks {
                add32(ctx, at + i * 8, back, &mut sums)?;
                add32(ctx, at + i * 8 + 4, back, &mut sums)?;
            }
        }
    }
    finish(ctx, ip, sums)
}
