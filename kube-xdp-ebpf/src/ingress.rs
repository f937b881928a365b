//! The packet's path: what kind of frame, then client → service or
//! backend → client.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    programs::XdpContext,
};
use kube_xdp_common::{
    hash::flow_hash,
    maps::{
        BACKEND_UP, FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_FIN_BACKEND, FLOW_FIN_CLIENT, FLOW_RST,
        FLOW_SYN_SENT, FLOW_TS_REWRITE, FLOW_UDP, FRAGMENT_TO_BACKEND, FRAGMENT_TO_CLIENT, Flow,
        FlowKey, POOL_REMOVED, PROTO_TCP, PROTO_UDP, SERVICE_RESET_ON_DOWN, Service, Settings,
    },
    stats::Counter,
};
use network_types::eth::EthHdr;

use crate::{
    FLOWS, POOLS, REVERSE, SETTINGS, flow, frag, icmp,
    nat::{self, Translation, TsEdit},
    parse::{
        self, Frame, IPPROTO_ICMP, Ip, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, frame_len, ptr_at,
    },
    reset, service, stats, tcpopt,
};

pub type Verdict = (u32, Counter);

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Verdict {
    let Some(frame) = parse::parse_ip(ctx) else {
        return (xdp_action::XDP_PASS, Counter::Malformed);
    };
    let ip = match frame {
        Frame::NotIpv4 => return (xdp_action::XDP_PASS, Counter::PassNotIpv4),
        Frame::BadIpv4(dst) => return malformed(dst),
        Frame::Ipv4(ip) => ip,
    };
    if ip.is_later_fragment() {
        return frag::later(ctx, &ip);
    }
    match ip.protocol {
        PROTO_TCP | PROTO_UDP => transport(ctx, &ip),
        IPPROTO_ICMP => icmp::handle(ctx, &ip),
        _ => (xdp_action::XDP_PASS, Counter::PassOtherProtocol),
    }
}

/// Malformed headers: dropped when sent to a VIP, the kernel's business
/// otherwise.
#[inline(always)]
pub fn malformed(dst: Option<u32>) -> Verdict {
    match dst {
        Some(dst) if service::is_vip(dst) => (xdp_action::XDP_DROP, Counter::Malformed),
        _ => (xdp_action::XDP_PASS, Counter::Malformed),
    }
}

#[inline(always)]
fn transport(ctx: &XdpContext, ip: &Ip) -> Verdict {
    let Some(l4) = parse::parse_l4(ctx, ip) else {
        return malformed(Some(ip.dst));
    };
    let key = FlowKey {
        src_addr: ip.src,
        dst_addr: ip.dst,
        src_port: l4.sport,
        dst_port: l4.dport,
        protocol: ip.protocol,
        _pad: [0; 3],
    };
    let Some(settings) = SETTINGS.get(0) else {
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    };
    // A packet we would forward but whose TTL runs out here changes no
    // state.
    let expiring = ip.ttl <= 1;
    // Replies come back to a SNAT address, which is never a VIP (the
    // configuration refuses that): one lookup sorts them out.
    if flow::is_snat_addr(settings, ip.dst) {
        // SAFETY: copied out at once.
        if let Some(rev) = unsafe { REVERSE.get(key) } {
            let client = rev.client;
            return from_backend(ctx, ip, &l4, &key, &client, settings);
        }
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    }
    // Idle timeouts are seconds to hours: the coarse clock (a tick of a
    // few ms) is enough, and cheaper than the fine one.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let tcp = ip.protocol == PROTO_TCP;
    let syn = tcp && l4.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // An established flow first: its service's flags are in the pool (an
    // array slot), so the service map is only looked up for new flows.
    if let Some(fp) = FLOWS.get_ptr_mut(key) {
        // SAFETY: a pointer from the lookup, valid for this run.
        let f = unsafe { *fp };
        if let Some(pool) = POOLS.get(u32::from(f.service_id))
            && pool.flags & POOL_REMOVED == 0
            // A SYN on a closing flow is the client re-using its 5-tuple.
            && !(syn && f.state == FLOW_CLOSING)
            && flow::alive_established(settings, &key, &f, now)
        {
            if expiring {
                return (xdp_action::XDP_DROP, Counter::TtlExceeded);
            }
            return established(ctx, ip, &l4, &key, pool.flags, fp, now);
        }
    }
    let Some(svc) = service::lookup(ip.dst, l4.dport, ip.protocol) else {
        return (xdp_action::XDP_PASS, Counter::PassNoService);
    };
    if expiring {
        return (xdp_action::XDP_DROP, Counter::TtlExceeded);
    }
    if tcp && !syn {
        if !service::has_backends(&svc) {
            // Nothing to reconnect to: the SYN that follows would be
            // refused too.
            return (xdp_action::XDP_DROP, Counter::NoBackend);
        }
        // Not a SYN and no flow: a RST makes the client reconnect at once.
        return refuse(ctx, ip, &l4, true, Counter::NoFlow);
    }
    new_flow(ctx, ip, &l4, &key, &svc, settings, now)
}

/// Answers with a RST when `answer` (and the segment is TCP and not itself
/// a RST), drops otherwise; counted under `reason` either way.
#[inline(always)]
fn refuse(ctx: &XdpContext, ip: &Ip, l4: &L4, answer: bool, reason: Counter) -> Verdict {
    if answer
        && ip.protocol == PROTO_TCP
        && let Some(verdict) = reset::reply_rst(ctx, ip, l4)
    {
        return (verdict, reason);
    }
    (xdp_action::XDP_DROP, reason)
}

/// The clock the rewritten TCP timestamps run on: about 1 MHz (ns / 1024),
/// faster than any client's timestamp clock, so a new flow's first TSval
/// is above anything an earlier flow on the same SNAT 4-tuple sent.
#[inline(always)]
fn ts_clock(now: u64) -> u32 {
    (now >> 10) as u32
}

#[inline(always)]
fn eth_src(ctx: &XdpContext) -> [u8; 6] {
    match ptr_at::<EthHdr>(ctx, 0) {
        // SAFETY: `ptr_at` checked the bounds.
        Some(eth) => unsafe { (*eth).src_addr },
        None => [0; 6],
    }
}

#[inline(always)]
fn established(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    service_flags: u32,
    fp: *mut Flow,
    now: u64,
) -> Verdict {
    // SAFETY: a pointer from the lookup, valid for this run.
    let f = unsafe { *fp };
    let Some(backend) = service::backend(u32::from(f.backend_id)) else {
        // Its backend is gone for good (drained out of the config).
        return refuse(ctx, ip, l4, true, Counter::NoFlow);
    };
    if backend.state != BACKEND_UP && service_flags & SERVICE_RESET_ON_DOWN != 0 {
        // SAFETY: as in `to_service`.
        unsafe {
            (*fp).state = FLOW_CLOSING;
            (*fp).flags |= FLOW_RST;
            (*fp).last_seen_ns = now;
        }
        return refuse(ctx, ip, l4, true, Counter::BackendDownReset);
    }
    let mut flags = f.flags;
    let mut state = f.state;
    if ip.protocol == PROTO_TCP {
        if l4.flags & TCP_RST != 0 {
            flags |= FLOW_RST;
        }
        if l4.flags & TCP_FIN != 0 {
            flags |= FLOW_FIN_CLIENT;
        }
        if l4.flags & (TCP_RST | TCP_FIN) != 0 {
            state = FLOW_CLOSING;
        } else if state == FLOW_SYN_SENT && l4.flags & TCP_SYN == 0 {
            state = FLOW_ESTABLISHED;
        }
    }
    // SAFETY: as in `to_service`.
    unsafe {
        (*fp).state = state;
        (*fp).flags = flags;
        (*fp).last_seen_ns = now;
    }
    let ts = if f.flags & FLOW_TS_REWRITE != 0 {
        tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len).map(|at| TsEdit {
            at,
            add: f.ts_offset,
        })
    } else {
        None
    };
    let t = Translation {
        src: f.snat_addr,
        dst: f.backend_addr,
        sport: f.snat_port,
        dport: f.backend_port,
    };
    let bytes = frame_len(ctx) as u64;
    forward(ctx, ip, l4, &t, ts, backend.mac, backend.ifindex)
        .map(|verdict| {
            if ip.is_first_fragment() {
                frag::remember(ip, key, FRAGMENT_TO_BACKEND, now);
            }
            stats::traffic(
                u32::from(f.service_id),
                u32::from(f.backend_id),
                bytes,
                false,
            );
            (verdict, Counter::ToBackend)
        })
        .unwrap_or_else(|reason| (xdp_action::XDP_DROP, reason))
}

/// Rewrites to `t` and sends towards `mac` on `ifindex`.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    t: &Translation,
    ts: Option<TsEdit>,
    mac: [u8; 6],
    ifindex: u32,
) -> Result<u32, Counter> {
    if mac == [0; 6] {
        return Err(Counter::NeighbourMiss);
    }
    nat::rewrite_l4(ctx, ip, l4.sport, l4.dport, t, ts)?;
    nat::send(ctx, mac, ifindex)
}

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
    let tcp = ip.protocol == PROTO_TCP;
    let hash = flow_hash(
        key.src_addr,
        key.dst_addr,
        key.src_port,
        key.dst_port,
        key.protocol,
    );
    let (backend_id, backend) = match service::pick(svc, hash) {
        Ok(picked) => picked,
        Err(reason) => return refuse(ctx, ip, l4, true, reason),
    };
    let backend_port = if backend.port == 0 {
        l4.dport
    } else {
        backend.port
    };
    let ts_at = if tcp {
        tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len)
    } else {
        None
    };
    // The timestamp clock must move between two flows on one port, however
    // close together: the fine clock.
    let ts_offset = match ts_at.and_then(|at| tcpopt::read_u32(ctx, at)) {
        Some(tsval) => ts_clock(unsafe { bpf_ktime_get_ns() }).wrapping_sub(u32::from_be(tsval)),
        None => 0,
    };
    let Some((snat_addr, snat_port)) = flow::allocate(
        settings,
        key,
        hash,
        backend.addr,
        backend_port,
        ts_at.is_some(),
        now,
    ) else {
        return refuse(ctx, ip, l4, true, Counter::SnatExhausted);
    };
    let f = Flow {
        backend_addr: backend.addr,
        snat_addr,
        backend_port,
        snat_port,
        backend_id: backend_id as u16,
        service_id: svc.id as u16,
        client_mac: eth_src(ctx),
        state: if tcp { FLOW_SYN_SENT } else { FLOW_UDP },
        flags: if ts_at.is_some() { FLOW_TS_REWRITE } else { 0 },
        ifindex: ctx.ingress_ifindex() as u32,
        ts_offset,
        created_ns: now,
        last_seen_ns: now,
    };
    if FLOWS.insert(key, f, 0).is_err() {
        let _ = REVERSE.remove(flow::reverse_key(&f, ip.protocol));
        return refuse(ctx, ip, l4, true, Counter::FlowTableFull);
    }
    let t = Translation {
        src: snat_addr,
        dst: backend.addr,
        sport: snat_port,
        dport: backend_port,
    };
    let ts = ts_at.map(|at| TsEdit { at, add: ts_offset });
    let bytes = frame_len(ctx) as u64;
    match forward(ctx, ip, l4, &t, ts, backend.mac, backend.ifindex) {
        Ok(verdict) => {
            if ip.is_first_fragment() {
                frag::remember(ip, key, FRAGMENT_TO_BACKEND, now);
            }
            stats::traffic(svc.id, backend_id, bytes, true);
            (verdict, Counter::NewFlow)
        }
        Err(reason) => (xdp_action::XDP_DROP, reason),
    }
}

#[inline(always)]
fn from_backend(
    ctx: &XdpContext,
    ip: &Ip,
    l4: &L4,
    key: &FlowKey,
    client: &FlowKey,
    settings: &Settings,
) -> Verdict {
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(fp) = FLOWS.get_ptr_mut(client) else {
        // The flow is gone: the kernel answers (a RST to the backend).
        return (xdp_action::XDP_PASS, Counter::NoFlow);
    };
    // SAFETY: a pointer from the lookup, valid for this run.
    let f = unsafe { *fp };
    let agrees = f.snat_addr == key.dst_addr
        && f.snat_port == key.dst_port
        && f.backend_addr == key.src_addr
        && f.backend_port == key.src_port;
    if !agrees || flow::expired(settings, &f, now) {
        return (xdp_action::XDP_PASS, Counter::NoFlow);
    }
    // A reply we would forward but whose TTL runs out here changes no
    // state.
    if ip.ttl <= 1 {
        return (xdp_action::XDP_DROP, Counter::TtlExceeded);
    }
    if ip.protocol == PROTO_TCP {
        let mut flags = f.flags;
        if l4.flags & TCP_RST != 0 {
            flags |= FLOW_RST;
        }
        if l4.flags & TCP_FIN != 0 {
            flags |= FLOW_FIN_BACKEND;
        }
        // SAFETY: as above.
        unsafe {
            if l4.flags & (TCP_RST | TCP_FIN) != 0 {
                (*fp).state = FLOW_CLOSING;
            }
            (*fp).flags = flags;
        }
    }
    // SAFETY: as above.
    unsafe { (*fp).last_seen_ns = now };
    let ts = if f.flags & FLOW_TS_REWRITE != 0 && l4.flags & TCP_ACK != 0 {
        tcpopt::find_timestamp(ctx, ip.l4, l4.tcp_len).map(|at| TsEdit {
            at: at + 4,
            add: 0u32.wrapping_sub(f.ts_offset),
        })
    } else {
        None
    };
    let t = Translation {
        src: client.dst_addr,
        dst: client.src_addr,
        sport: client.dst_port,
        dport: client.src_port,
    };
    let bytes = frame_len(ctx) as u64;
    match forward(ctx, ip, l4, &t, ts, f.client_mac, f.ifindex) {
        Ok(verdict) => {
            if ip.is_first_fragment() {
                frag::remember(ip, client, FRAGMENT_TO_CLIENT, now);
            }
            stats::traffic(
                u32::from(f.service_id),
                u32::from(f.backend_id),
                bytes,
                false,
            );
            (verdict, Counter::ToClient)
        }
        Err(reason) => (xdp_action::XDP_DROP, reason),
    }
}
