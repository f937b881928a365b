//! ICMP errors (destination unreachable — fragmentation needed among
//! them —, time exceeded, parameter problem) about a translated flow are
//! translated like the flow, both ways, so path MTU discovery and fast
//! failure work through the load balancer. Everything else ICMP (echo to
//! the VIP among it) is the kernel's. A "fragmentation needed" from a
//! flow's client about the packets sent to that very client is a lie (a
//! host reports that only about packets it forwards, RFC 1191 §4) and
//! would lower the backend's path MTU towards the SNAT address, which all
//! clients share: it is dropped.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use kube_xdp_common::{
    maps::{FlowKey, PROTO_TCP, PROTO_UDP},
    stats::Counter,
};
use network_types::ip::Ipv4Hdr;

use crate::{
    SETTINGS, conntrack, csum,
    field::{read16, write_addr, write16},
    forward::send,
    l2::{self, NOT_FOR_US},
    nat,
    parse::{Ip, ptr_at},
    service,
    verdict::Verdict,
};

const ICMP_DEST_UNREACH: u8 = 3;
/// Destination unreachable's code "fragmentation needed and DF set".
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
/// ICMP header: type, code, checksum, 4 bytes that depend on the type.
const ICMP_LEN: usize = 8;

/// The packet quoted in an ICMP error: its IPv4 header (without options)
/// and the first 8 bytes of its transport header.
struct Quoted {
    /// The error's ICMP type and code.
    kind: u8,
    code: u8,
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
    let (kind, code) = unsafe { ((*header)[0], (*header)[1]) };
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
        kind,
        code,
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
        // Not a `[0; 3]` literal, which compiles to a call to `memset`.
        ..FlowKey::default()
    };
    if service::is_vip(ip.dst) {
        // About a reply we sent the client (VIP → client).
        let client = answer;
        let Some(f) = conntrack::lookup_alive(settings, &client, now) else {
            return pass;
        };
        let Some(backend) = service::backend(u32::from(f.backend_id)) else {
            return pass;
        };
        if !l2::addressed_to_us(ctx) {
            return NOT_FOR_US;
        }
        if q.kind == ICMP_DEST_UNREACH && q.code == ICMP_FRAG_NEEDED && ip.src == client.src_addr {
            return (xdp_action::XDP_DROP, Counter::IcmpSpoofed);
        }
        // The quoted packet becomes backend → SNAT, as the backend sent it.
        let inner = (f.backend_addr, f.snat_addr, f.backend_port, f.snat_port);
        translate(ctx, ip, &q, inner, (f.snat_addr, f.backend_addr))
            .and_then(|()| send(ctx, backend.mac, backend.ifindex))
            .map(|v| (v, Counter::IcmpToBackend))
            .unwrap_or_else(|reason| (xdp_action::XDP_DROP, reason))
    } else {
        // About a packet we sent a backend (SNAT → backend).
        let rkey = answer;
        let Some(client) = conntrack::client_of(&rkey) else {
            return pass;
        };
        let Some(t) = conntrack::lookup_backend(settings, &rkey, &client, now) else {
            return pass;
        };
        if !l2::addressed_to_us(ctx) {
            return NOT_FOR_US;
        }
        // The quoted packet becomes client → VIP, as the client sent it.
        let inner = (
            client.src_addr,
            client.dst_addr,
            client.src_port,
            client.dst_port,
        );
        translate(ctx, ip, &q, inner, (client.dst_addr, client.src_addr))
            .and_then(|()| send(ctx, t.flow.client_mac, t.flow.ifindex))
            .map(|v| (v, Counter::IcmpToClient))
            .unwrap_or_else(|reason| (xdp_action::XDP_DROP, reason))
    }
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
    let ip_check_old = read16(ctx, q.ip + 10).ok_or(Counter::Malformed)?;
    let ip_check_new = csum::update(ip_check_old, addr_old, addr_new);
    // The quoted transport checksum, when it is among the quoted bytes
    // (UDP's always is; TCP's when more than 8 bytes were quoted).
    let check_at = l4 + if q.protocol == PROTO_TCP { 16 } else { 6 };
    let l4_check = match ptr_at::<[u8; 2]>(ctx, check_at) {
        Some(_) => {
            let old = read16(ctx, check_at).ok_or(Counter::Malformed)?;
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
        write16(ctx, check_at, new).ok_or(Counter::Malformed)?;
    }
    let icmp_check = read16(ctx, ip.l4 + 2).ok_or(Counter::Malformed)?;
    let icmp_check = csum::update(icmp_check, icmp_old, icmp_new);
    write16(ctx, ip.l4 + 2, icmp_check).ok_or(Counter::Malformed)?;
    write16(ctx, q.ip + 10, ip_check_new).ok_or(Counter::Malformed)?;
    write_addr(ctx, q.ip + 12, src).ok_or(Counter::Malformed)?;
    write_addr(ctx, q.ip + 16, dst).ok_or(Counter::Malformed)?;
    write16(ctx, l4, sport).ok_or(Counter::Malformed)?;
    write16(ctx, l4 + 2, dport).ok_or(Counter::Malformed)?;

    nat::rewrite_ip(ctx, ip, outer.0, outer.1).ok_or(Counter::TtlExceeded)?;
    Ok(())
}
