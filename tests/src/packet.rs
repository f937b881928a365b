//! Packet fixtures, built with `etherparse` (independently of the eBPF
//! parser, so the two cannot agree by construction).

use etherparse::PacketBuilder;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_IP: [u8; 4] = [198, 18, 0, 1];
pub const LB_IP: [u8; 4] = [198, 18, 0, 2];

/// An Ethernet/IPv4/TCP SYN from the client to `dst:port`.
pub fn tcp_syn(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT_IP, dst, 64)
        .tcp(sport, dport, 1000, 64240)
        .syn();
    let mut out = Vec::with_capacity(builder.size(0));
    builder.write(&mut out, &[]).unwrap();
    out
}

/// An Ethernet/IPv4/UDP datagram from the client.
pub fn udp(dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
        .ipv4(CLIENT_IP, dst, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

/// An ARP request from the client for `target`.
pub fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&[0x08, 0x06]); // ARP
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&CLIENT_IP);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target);
    out
}
