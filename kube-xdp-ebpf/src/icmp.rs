//! ICMP errors (destination unreachable — fragmentation needed among
//! them —, time exceeded, parameter problem) about a translated flow are
//! translated like the flow, both ways, so path MTU discovery and fast
//! failure work through the load balancer. Everything else ICMP (echo to
//! the VIP among it) is the kernel's.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use kube_xdp_common::{
    maps::{Flow, FlowKey, PROTO_TCP, PROTO_UDP},
    stats::Counter,
};
use network_types::ip::Ipv4Hdr;

use crate::{
    FLOWS, REVERSE, SETTINGS, csum, flow,
    ingress::Verdict,
    nat,
    parse::{Ip, ptr_at},
    service, tcpopt,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
/// ICMP header: type, code, checksum, 4 bytes that depend on the type.
const ICMP_LEN: usize = 8;

/// The packet quoted in an ICMP error: its IPv4 header (without options)
/// and the first 8 bytes of its transport header.
struct Quoted {
    /// Offset of the quoted IPv4 header.
    ip: usize,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    protocol: u8,
}

#[inline(always)]
fn quoted(ctx: &XdpContext, ip: &Ip) -> Option<Quoted> {
    let header: *const [u8; ICMP_LEN] = ptr_at(ctx, ip.l4)?;
    // SAFETY: `ptr_at` checked the bounds.
    let kind = unsafe { (*header)[0] };
    if !matches!(
        kind,
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB
    ) {
        return None;
    }
    let at = ip.l4 + ICMP_LEN;
    let inner: *const Ipv4Hdr = ptr_at(ctx, at)?;
    // SAFETY: as above.
    let inner = unsafe { &*inner };
    if inner.vihl != 0x45 || !matches!(inner.proto, PROTO_TCP | PROTO_UDP) {
        return None;
    }
    let ports: *const [u8; 4] = ptr_at(ctx, at + Ipv4Hdr::LEN)?;
    // 8 bytes of the transport header must be there (RFC 792).
    ptr_at::<[u8; 8]>(ctx, at + Ipv4Hdr::LEN)?;
    // SAFETY: as above.
    let ports = unsafe { *ports };
    Some(Quoted {
        ip: at,
        src: u32::from_ne_bytes(inner.src_addr),
        dst: u32::from_ne_bytes(inner.dst_addr),
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        protocol: inner.proto,
    })
}

#[inline(always)]
pub fn handle(ctx: &XdpContext, ip: &Ip) -> Verdict {
    let pass = (xdp_action::XDP_PASS, Counter::PassOtherProtocol);
    let Some(q) = quoted(ctx, ip) else {
        return pass;
    };
    let Some(settings) = SETTINGS.get(0) else {
        return pass;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // The quoted packet went out from us; its answer's 5-tuple is the key
    // of the flow it belongs to: the client's (forward) or the backend's
    // (reverse), depending on which side complains.
    let answer = FlowKey {
        src_addr: q.dst,
        dst_addr: q.src,
        src_port: q.dport,
        dst_port: q.sport,
        protocol: q.protocol,
        _pad: [0; 3],
    };
    if service::is_vip(ip.dst) {
        // About a reply we sent the client (VIP → client).
        let client = answer;
        // SAFETY: copied out at once.
        let Some(f) = (unsafe { FLOWS.get(client) }).copied() else {
            return pass;
        };
        if !flow::alive(settings, &client, &f, now) {
            return pass;
        }
        let Some(backend) = service::backend(u32::from(f.backend_id)) else {
            return pass;
        };
        // The quoted packet becomes backend → SNAT, as the backend sent it.
        let inner = (f.backend_addr, f.snat_addr, f.backend_port, f.snat_port);
        translate(ctx, ip, &q, inner, (f.snat_addr, f.backend_addr))
            .and_then(|()| nat::send(ctx, backend.mac, backend.ifindex))
            .map(|v| (v, Counter::IcmpToBackend))
            .unwrap_or_else(|reason| (xdp_action::XDP_DROP, reason))
    } else {
        // About a packet we sent a backend (SNAT → backend).
        let rkey = answer;
        // SAFETY: copied out at once.
        let Some(rev) = (unsafe { REVERSE.get(rkey) }).copied() else {
            return pass;
        };
        let client = rev.client;
        // SAFETY: copied out at once.
        let Some(f) = (unsafe { FLOWS.get(client) }).copied() else {
            return pass;
        };
        if !agrees(&f, &rkey) || flow::expired(settings, &f, now) {
            return pass;
        }
        // The quoted packet becomes client → VIP, as the client sent it.
        let inner = (
            client.src_addr,
            client.dst_addr,
            client.src_port,
            client.dst_port,
        );
        translate(ctx, ip, &q, inner, (client.dst_addr, client.src_addr))
            .and_then(|()| nat::send(ctx, f.client_mac, f.ifindex))
            .map(|v| (v, Counter::IcmpToClient))
            .unwrap_or_else(|reason| (xdp_action::XDP_DROP, reason))
    }
}

#[inline(always)]
fn agrees(f: &Flow, rkey: &FlowKey) -> bool {
    f.snat_addr == rkey.dst_addr
        && f.snat_port == rkey.dst_port
        && f.backend_addr == rkey.src_addr
        && f.backend_port == rkey.src_port
}

#[inline(always)]
fn read16(ctx: &XdpContext, off: usize) -> Result<u16, Counter> {
    let p: *const [u8; 2] = ptr_at(ctx, off).ok_or(Counter::Malformed)?;
    // SAFETY: `ptr_at` checked the bounds.
    Ok(u16::from_ne_bytes(unsafe { *p }))
}

#[inline(always)]
fn write16(ctx: &XdpContext, off: usize, v: u16) -> Result<(), Counter> {
    let p: *mut [u8; 2] = ptr_at(ctx, off).ok_or(Counter::Malformed)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable.
    unsafe { *p = v.to_ne_bytes() };
    Ok(())
}

/// Rewrites the quoted packet to `inner` = (src, dst, sport, dport) and the
/// outer header to `outer` = (src, dst), keeping the quoted IPv4 and
/// transport checksums and the ICMP checksum right.
#[inline(always)]
fn translate(
    ctx: &XdpContext,
    ip: &Ip,
    q: &Quoted,
    inner: (u32, u32, u16, u16),
    outer: (u32, u32),
) -> Result<(), Counter> {
    let (src, dst, sport, dport) = inner;
    let l4 = q.ip + Ipv4Hdr::LEN;
    let addr_old = csum::sum32(q.src) + csum::sum32(q.dst);
    let addr_new = csum::sum32(src) + csum::sum32(dst);
    let port_old = u32::from(q.sport) + u32::from(q.dport);
    let port_new = u32::from(sport) + u32::from(dport);

    // The quoted IPv4 header's own checksum.
    let ip_check_old = read16(ctx, q.ip + 10)?;
    let ip_check_new = csum::update(ip_check_old, addr_old, addr_new);
    // The quoted transport checksum, when it is among the quoted bytes
    // (UDP's always is; TCP's when more than 8 bytes were quoted).
    let check_at = l4 + if q.protocol == PROTO_TCP { 16 } else { 6 };
    let l4_check = match ptr_at::<[u8; 2]>(ctx, check_at) {
        Some(_) => {
            let old = read16(ctx, check_at)?;
            let new = if q.protocol == PROTO_TCP {
                csum::update(old, addr_old + port_old, addr_new + port_new)
            } else {
                csum::udp_update(old, addr_old + port_old, addr_new + port_new)
            };
            Some((old, new))
        }
        None => None,
    };

    // The ICMP checksum covers every quoted byte that changes.
    let mut icmp_old = addr_old + port_old + u32::from(ip_check_old);
    let mut icmp_new = addr_new + port_new + u32::from(ip_check_new);
    if let Some((old, new)) = l4_check {
        icmp_old += u32::from(old);
        icmp_new += u32::from(new);
        write16(ctx, check_at, new)?;
    }
    let icmp_check = read16(ctx, ip.l4 + 2)?;
    write16(ctx, ip.l4 + 2, csum::update(icmp_check, icmp_old, icmp_new))?;
    write16(ctx, q.ip + 10, ip_check_new)?;
    tcpopt::write_u32(ctx, q.ip + 12, src).ok_or(Counter::Malformed)?;
    tcpopt::write_u32(ctx, q.ip + 16, dst).ok_or(Counter::Malformed)?;
    write16(ctx, l4, sport)?;
    write16(ctx, l4 + 2, dport)?;

    nat::rewrite_ip(ctx, ip, outer.0, outer.1).ok_or(Counter::TtlExceeded)?;
    Ok(())
}
