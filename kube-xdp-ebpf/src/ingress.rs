//! The packet's path, top to bottom: parse (later fragments and ICMP
//! errors turn aside to `frag` and `icmp`) → the flow table for a live
//! flow (`conntrack`), else the service lookup and the backend pick for a
//! new one (`service`, `snat`) → NAT rewrite and checksums (`nat`) →
//! forward and count (`forward`). Client → service packets first, backend
//! → client replies (to a SNAT address) last. Wherever a packet turns out
//! to be service traffic, before anything changes, `l2` checks that its
//! frame was sent to us; if not, the kernel has it.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use kube_xdp_common::{
    hash::flow_hash,
    maps::{
        BACKEND_UP, BUDGET_UDP, Backend, FLOW_CLOSING, FLOW_COOKIE, FLOW_COOKIE_WAIT, FLOW_REPLIED,
        FLOW_SYN_SENT, FLOW_TS_REWRITE, Flow, FlowKey, PROTO_TCP, PROTO_UDP, SERVICE_RESET_ON_DOWN,
        Service, Settings,
    },
    stats::Counter,
};

use crate::{
    SETTINGS,
    conntrack::{self, Direction, Tracked},
    cookie::{self, Admit},
    field::read32,
    forward::{self, Owner, Route},
    frag, icmp,
    l2::{self, NOT_FOR_US},
    nat,
    parse::{self, Frame, IPPROTO_ICMP, Ip, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    reset::refuse,
    service, snat, sync, tcpopt,
    verdict::Verdict,
};

/// The packet's path. `COOKIES`: this is the cookie program (`kube_xdp_cookie`), which
/// handles what the load balancer's program hands it by tail call: SYNs
/// over the half-open limit, ACKs that may carry a cookie, and the packets
/// of cookie flows. (The same path twice, so that each program has its own
/// 512-byte stack and the established path of ordinary flows carries none
/// of the cookie paths' code.)
#[inline(always)]
pub fn process<const COOKIES: bool>(ctx: &XdpContext) -> Verdict {
    let Some(frame) = parse::parse_ip(ctx) else {
        return (xdp_action::XDP_PASS, Counter::Malformed);
    };
    let ip = match frame {
        Frame::NotIpv4 => return (xdp_action::XDP_PASS, Counter::PassNotIpv4),
        Frame::BadIpv4(dst) => return malformed(dst),
        Frame::Ipv4(ip) => ip,
    };
    if ip.is_later_fragment() {
        return match frag::later(&ip) {
            Ok(_) if !l2::addressed_to_us(ctx) => NOT_FOR_US,
            Ok((route, owner)) => {
                forward::forward(ctx, &ip, None, &route, &owner, Counter::FragmentTranslated)
            }
            Err(verdict) => verdict,
        };
    }
    match ip.protocol {
        PROTO_TCP | PROTO_UDP => transport::<COOKIES>(ctx, &ip),
        IPPROTO_ICMP => icmp::handle(ctx, &ip),
        _ => (xdp_action::XDP_PASS, Counter::PassOtherProtocol),
    }
}

/// Malformed headers: dropped when sent to a VIP, the kernel's business
/// otherwise.
#[inline(always)]
fn malformed(dst: Option<u32>) -> Verdict {
    match dst {
        Some(dst) if service::is_vip(dst) => (xdp_action::XDP_DROP, Counter::Malformed),
        _ => (xdp_action::XDP_PASS, Counter::Malformed),
    }
}

/// The coarse clock: idle timeouts are seconds to hours, so its tick (a
/// few ms) is enough, and it is cheaper than the fine one.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The packet's 5-tuple. (The padding from `Default`: a `[0; 3]` literal
/// compiles to a BPF-to-BPF call to `memset` on every packet.)
#[inline(always)]
fn flow_key(ip: &Ip, l4: &L4) -> FlowKey {
    FlowKey {
        src_addr: ip.src,
        dst_addr: ip.dst,
        src_port: l4.sport,
        dst_port: l4.dport,
        protocol: ip.protocol,
        ..FlowKey::default()
    }
}

/// How long a cookie flow waits for its backend's SYN-ACK before a
/// segment of its client sends the backend its SYN again: more than a
/// round trip here, less than Linux's shortest retransmission timeout
/// (200 ms), which paces the client's zero-window probes.
const COOKIE_SYN_AGAIN_NS: u64 = 100_000_000;

#[inline(always)]
fn transport<const COOKIES: bool>(ctx: &XdpContext, ip: &Ip) -> Verdict {
    let Some(l4) = parse::parse_l4(ctx, ip) else {
        return malformed(Some(ip.dst));
    };
    let key = flow_key(ip, &l4);
    let Some(settings) = SETTINGS.get(0) else {
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    };
    // Replies come back to a SNAT address, which is never a VIP (the
    // configuration refuses that): one lookup sorts them out.
    if snat::is_snat_addr(settings, ip.dst) {
        return from_backend::<COOKIES>(ctx, ip, &l4, &key, settings);
    }
    // A packet we would forward but whose TTL runs out here changes no
    // state.
    let expiring = ip.ttl <= 1;
    let now = coarse_now();
    let syn = l4.is_syn();
    // The client's SYN goes to the backend again (see below).
    let mut again = false;
    // An established flow first: its service's flags are in the pool (an
    // array slot), so the service map is only looked up for new flows.
    if let Some(tracked) = conntrack::lookup_client(settings, &key, syn, now)
        && let Some(service_flags) = service::flags(tracked.flow.service_id)
    {
        if !l2::addressed_to_us(ctx) {
            return NOT_FOR_US;
        }
        if expiring {
            return (xdp_action::XDP_DROP, Counter::TtlExceeded);
        }
        // A client that re-used its 5-tuple while its last flow is closing
        // got a cookie for its new SYN: its ACK opens the new flow (below,
        // as for an ACK of no flow). And a cookie flow whose backend has
        // not answered for a while: its SYN to the backend, or the
        // backend's SYN-ACK, was lost, and nothing else sends that SYN
        // again. The client's zero-window probe (or its ACK again) carries
        // the cookie: the flow opens anew (on the same port: its 5-tuple
        // hashes the same), which sends the backend the client's SYN again.
        let f = &tracked.flow;
        again = f.flags & FLOW_COOKIE_WAIT != 0
            && now.saturating_sub(f.created_ns) >= COOKIE_SYN_AGAIN_NS;
        let reopened = (f.state == FLOW_CLOSING || again)
            && cookie::candidate(&l4)
            && cookie::recent(now)
            && (!COOKIES || cookie::valid(ctx, ip, &l4, settings, now));
        if !reopened {
            return established::<COOKIES>(ctx, ip, &l4, &key, service_flags, &tracked, now);
        }
        if COOKIES && again {
            conntrack::forget(&key, f);
        }
    }
    let Some(svc) = service::lookup(ip.dst, l4.dport, ip.protocol) else {
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    };
    if !l2::addressed_to_us(ctx) {
        return NOT_FOR_US;
    }
    if expiring {
        return (xdp_action::XDP_DROP, Counter::TtlExceeded);
    }
    if ip.protocol == PROTO_TCP && !syn {
        if !service::has_backends(&svc) {
            // Nothing to reconnect to: the SYN that follows would be
            // refused too.
            return (xdp_action::XDP_DROP, Counter::NoBackend);
        }
        if cookie::candidate(&l4) {
            if !COOKIES {
                return cookie::hand_over(ctx);
            }
            return cookie::open_from_ack(ctx, ip, &l4, &key, &svc, settings, now, again);
        }
        // Not a SYN and no flow: a RST makes the client reconnect at once.
        return refuse(ctx, ip, &l4, Counter::NoFlow);
    }
    if ip.protocol == PROTO_UDP
        && !cookie::take(
            BUDGET_UDP,
            settings.unanswered_cost_ns,
            cookie::udp_cap(settings),
            now,
        )
    {
        return (xdp_action::XDP_DROP, Counter::UdpUnansweredLimited);
    }
    if ip.protocol == PROTO_TCP && l4.flags & (TCP_FIN | TCP_RST) != 0 {
        // A SYN with FIN or RST: no client sends one.
        return (xdp_action::XDP_DROP, Counter::Malformed);
    }
    if ip.protocol == PROTO_TCP && service::has_backends(&svc) {
        match cookie::admit(settings, now) {
            Admit::Flow => {}
            Admit::Cookie if !COOKIES => return cookie::hand_over(ctx),
            Admit::Cookie => return cookie::answer_syn(ctx, ip, &l4, settings, now),
            Admit::Drop => return (xdp_action::XDP_DROP, Counter::HalfOpenLimited),
        }
    }
    new_flow(ctx, ip, &l4, &key, &svc, settings, now)
}

/// A client's packet of a live flow: on to its backend.
#[inline(always)]
fn established<const COOKIES: bool>(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    service_flags: u32,
    tracked: &Tracked,
    now: u64,
) -> Verdict {
    let f = &tracked.flow;
    let Some(backend) = service::backend(u32::from(f.backend_id)) else {
        // Its backend is gone for good (drained out of the config).
        return refuse(ctx, ip, l4, Counter::NoFlow);
    };
    if backend.state != BACKEND_UP && service_flags & SERVICE_RESET_ON_DOWN != 0 {
        if conntrack::reset(tracked, now) {
            sync::report(key, &tracked.current());
        }
        return refuse(ctx, ip, l4, Counter::BackendDownReset);
    }
    if f.flags & FLOW_COOKIE != 0 {
        if !COOKIES {
            return cookie::hand_over(ctx);
        }
        if f.flags & FLOW_COOKIE_WAIT != 0 {
            // Its backend has not answered: the client was told a zero
            // window, and sends this again.
            return (xdp_action::XDP_DROP, Counter::CookieEarly);
        }
        if cookie::to_backend(ctx, ip, l4, f).is_none() {
            return (xdp_action::XDP_DROP, Counter::Malformed);
        }
    }
    // The handshake's end, proven by the ACK of the backend's ISN (which
    // a spoofed source never saw): the half-open flow's place is free.
    if f.state == FLOW_SYN_SENT
        && f.flags & (FLOW_COOKIE | FLOW_REPLIED) == FLOW_REPLIED
        && l4.flags & (TCP_SYN | TCP_RST | TCP_FIN | TCP_ACK) == TCP_ACK
        && read32(ctx, ip.l4 + 8).map(u32::from_be) == Some(f.seq_delta)
    {
        cookie::give_back_tcp();
    }
    if conntrack::update(tracked, Direction::ToBackend, l4.flags, now) {
        sync::report(key, &tracked.current());
    }
    let route = Route {
        nat: nat::translation(f, key, Direction::ToBackend),
        ts: nat::timestamp(ctx, ip, l4, f, Direction::ToBackend),
        mac: backend.mac,
        ifindex: backend.ifindex,
    };
    let owner = Owner {
        client: *key,
        direction: Direction::ToBackend,
        service_id: u32::from(f.service_id),
        backend_id: u32::from(f.backend_id),
    };
    forward::forward(ctx, ip, Some(l4), &route, &owner, Counter::ToBackend)
}

/// What a flow opened by a cookie starts with (see `Flow::seq_delta`).
pub struct CookieInit {
    pub seq_delta: u32,
    pub ts_peer_offset: u32,
    pub win_scale_client_view: u8,
}

/// A flow just opened: its entry as written, and its backend.
pub struct Opened {
    pub flow: Flow,
    pub backend: Backend,
    pub backend_id: u32,
}

/// Opens a flow for the client's packet (`key`): a backend from the
/// pool's Maglev table, a SNAT port, the flow's entries. `ts_at`: where the
/// packet's TSval is (the client's timestamps are rewritten from it on);
/// `cookie`: the flow is opened by the client's ACK of a cookie.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the packet's parts, each needed")]
pub fn open_flow(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    svc: &Service,
    settings: &Settings,
    now: u64,
    ts_at: Option<usize>,
    cookie: Option<&CookieInit>,
) -> Result<Opened, Counter> {
    let hash = flow_hash(
        key.src_addr,
        key.dst_addr,
        key.src_port,
        key.dst_port,
        key.protocol,
    );
    let (backend_id, backend) = service::pick(svc, hash)?;
    let backend_port = if backend.port == 0 {
        l4.dport
    } else {
        backend.port
    };
    let ts_offset = nat::ts_offset(ctx, ts_at, settings.ts_clock_offset_ns);
    let (snat_addr, snat_port) = snat::allocate(
        settings,
        key,
        hash,
        backend.addr,
        backend_port,
        ts_at.is_some(),
        now,
    )
    .ok_or(Counter::SnatExhausted)?;
    let mut flags = if ts_at.is_some() { FLOW_TS_REWRITE } else { 0 };
    if cookie.is_some() {
        flags |= FLOW_COOKIE | FLOW_COOKIE_WAIT;
    }
    let f = Flow {
        backend_addr: backend.addr,
        snat_addr,
        backend_port,
        snat_port,
        backend_id: backend_id as u16,
        service_id: svc.id as u16,
        client_mac: parse::eth_src(ctx),
        state: conntrack::opening_state(ip.protocol),
        flags,
        ifindex: ctx.ingress_ifindex() as u32,
        ts_offset,
        created_ns: now,
        last_seen_ns: now,
        seq_delta: cookie.map_or(0, |c| c.seq_delta),
        ts_peer_offset: cookie.map_or(0, |c| c.ts_peer_offset),
        win_scale_backend: 0,
        win_scale_client_view: cookie.map_or(0, |c| c.win_scale_client_view),
        ..Flow::default()
    };
    conntrack::open(key, &f)?;
    Ok(Opened {
        flow: f,
        backend,
        backend_id,
    })
}

/// A client's packet that opens a flow (a SYN, or a UDP datagram): the
/// flow's entries, then on to the backend.
#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    svc: &Service,
    settings: &Settings,
    now: u64,
) -> Verdict {
    let ts_at = if ip.protocol == PROTO_TCP {
        tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len)
    } else {
        None
    };
    let opened = match open_flow(ctx, ip, l4, key, svc, settings, now, ts_at, None) {
        Ok(opened) => opened,
        Err(reason) => return refuse(ctx, ip, l4, reason),
    };
    let f = &opened.flow;
    sync::report(key, f);
    let route = Route {
        nat: nat::translation(f, key, Direction::ToBackend),
        ts: ts_at.map(|at| nat::TsEdit {
            at,
            add: f.ts_offset,
        }),
        mac: opened.backend.mac,
        ifindex: opened.backend.ifindex,
    };
    let owner = Owner {
        client: *key,
        direction: Direction::ToBackend,
        service_id: svc.id,
        backend_id: opened.backend_id,
    };
    forward::forward(ctx, ip, Some(l4), &route, &owner, Counter::NewFlow)
}

/// A packet to a SNAT address: a backend's reply, back to its client.
#[inline(always)]
fn from_backend<const COOKIES: bool>(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    settings: &Settings,
) -> Verdict {
    let Some(client) = conntrack::client_of(key) else {
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    };
    let now = coarse_now();
    let Some(tracked) = conntrack::lookup_backend(settings, key, &client, now) else {
        // The flow is gone: the kernel answers (a RST to the backend).
        if ip.protocol == PROTO_TCP && l2::addressed_to_us(ctx) {
            conntrack::refused(settings, key, &client, l4.flags, now);
        }
        return (xdp_action::XDP_PASS, Counter::NoFlow);
    };
    if !l2::addressed_to_us(ctx) {
        return NOT_FOR_US;
    }
    // A reply we would forward but whose TTL runs out here changes no
    // state.
    if ip.ttl <= 1 {
        return (xdp_action::XDP_DROP, Counter::TtlExceeded);
    }
    let f = &tracked.flow;
    if f.flags & FLOW_COOKIE != 0 {
        if !COOKIES {
            return cookie::hand_over(ctx);
        }
        if let Some(verdict) = cookie::from_backend(ctx, ip, l4, &client, &tracked, settings, now) {
            return verdict;
        }
        if cookie::to_client(ctx, ip, l4, f).is_none() {
            return (xdp_action::XDP_DROP, Counter::Malformed);
        }
    }
    if f.state == FLOW_SYN_SENT
        && f.flags & FLOW_COOKIE == 0
        && l4.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
        && let Some(seq) = read32(ctx, ip.l4 + 4)
    {
        conntrack::note_syn_ack(&tracked, u32::from_be(seq));
    }
    if conntrack::update(&tracked, Direction::ToClient, l4.flags, now) {
        sync::report(&client, &tracked.current());
    }
    let route = Route {
        nat: nat::translation(f, &client, Direction::ToClient),
        ts: nat::timestamp(ctx, ip, l4, f, Direction::ToClient),
        mac: f.client_mac,
        ifindex: f.ifindex,
    };
    let owner = Owner {
        client,
        direction: Direction::ToClient,
        service_id: u32::from(f.service_id),
        backend_id: u32::from(f.backend_id),
    };
    forward::forward(ctx, ip, Some(l4), &route, &owner, Counter::ToClient)
}
