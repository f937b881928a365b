//! Packet fixtures, built and checked with `etherparse` — independently of
//! the eBPF parser, so the two cannot agree by construction. Every address
//! is from 198.18.0.0/15.
//!
//! Frames are built here; what the program sent out is checked in
//! `seen.rs`.

mod seen;

pub use seen::{IcmpSeen, Seen};

use crate::checksum;
use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader, TcpOptionElement, UdpHeader,
};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_IP: [u8; 4] = [198, 18, 0, 1];
/// The LB's own address, which is also the SNAT address in fixtures.
pub const LB_IP: [u8; 4] = [198, 18, 0, 2];
pub const VIP: [u8; 4] = [198, 18, 0, 10];
pub const BACKEND_IPS: [[u8; 4]; 3] = [[198, 18, 0, 11], [198, 18, 0, 12], [198, 18, 0, 13]];
/// Another backend, for tests that add one.
pub const EXTRA_BACKEND_IP: [u8; 4] = [198, 18, 0, 14];

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The fixture MAC of a backend: 02:00:00:00:00:<last octet>.
pub fn backend_mac(addr: [u8; 4]) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, addr[3]]
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        /// (TSval, TSecr) in a NOP, NOP, TIMESTAMP option.
        ts: Option<(u32, u32)>,
    },
    Udp {
        sport: u16,
        dport: u16,
        /// Send without a checksum (0).
        no_checksum: bool,
    },
}

/// An Ethernet/IPv4 packet to build.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub id: u16,
    pub ip_options: Vec<u8>,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

impl Pkt {
    /// A TCP segment from the client to `dst:dport`.
    pub fn tcp(sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Pkt {
        Pkt {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            src: CLIENT_IP,
            dst,
            ttl: 64,
            id: 0x1234,
            ip_options: Vec::new(),
            transport: Transport::Tcp {
                sport,
                dport,
                seq: 1000,
                ack: if flags & ACK != 0 { 5000 } else { 0 },
                flags,
                ts: Some((100_000, if flags & ACK != 0 { 7_000 } else { 0 })),
            },
            payload: Vec::new(),
        }
    }

    /// A UDP datagram from the client to `dst:dport`.
    pub fn udp(sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Pkt {
        Pkt {
            transport: Transport::Udp {
                sport,
                dport,
                no_checksum: false,
            },
            payload: payload.to_vec(),
            ..Pkt::tcp(sport, dst, dport, 0)
        }
    }

    /// Sent by `src` (a backend, say) with its fixture MAC.
    pub fn from(mut self, src: [u8; 4], src_mac: [u8; 6]) -> Pkt {
        self.src = src;
        self.src_mac = src_mac;
        self
    }

    pub fn ts(mut self, value: Option<(u32, u32)>) -> Pkt {
        if let Transport::Tcp { ts, .. } = &mut self.transport {
            *ts = value;
        }
        self
    }

    pub fn seq_ack(mut self, s: u32, a: u32) -> Pkt {
        if let Transport::Tcp { seq, ack, .. } = &mut self.transport {
            *seq = s;
            *ack = a;
        }
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Pkt {
        self.payload = payload.to_vec();
        self
    }

    fn ip_header(&self, payload_len: usize, protocol: IpNumber) -> Ipv4Header {
        let mut ip =
            Ipv4Header::new(payload_len as u16, self.ttl, protocol, self.src, self.dst).unwrap();
        ip.identification = self.id;
        ip.options = self.ip_options.as_slice().try_into().unwrap();
        ip.total_len = (ip.header_len() + payload_len) as u16;
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }

    /// The bytes on the wire, every checksum right.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: EtherType::IPV4,
        }
        .write(&mut out)
        .unwrap();
        match &self.transport {
            Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                ts,
            } => {
                let mut tcp = TcpHeader::new(*sport, *dport, *seq, 64240);
                tcp.fin = flags & FIN != 0;
                tcp.syn = flags & SYN != 0;
                tcp.rst = flags & RST != 0;
                tcp.psh = flags & PSH != 0;
                tcp.ack = flags & ACK != 0;
                tcp.acknowledgment_number = *ack;
                if let Some((val, ecr)) = ts {
                    tcp.set_options(&[
                        TcpOptionElement::Noop,
                        TcpOptionElement::Noop,
                        TcpOptionElement::Timestamp(*val, *ecr),
                    ])
                    .unwrap();
                }
                let ip = self.ip_header(tcp.header_len() + self.payload.len(), IpNumber::TCP);
                tcp.checksum = tcp.calc_checksum_ipv4(&ip, &self.payload).unwrap();
                ip.write(&mut out).unwrap();
                tcp.write(&mut out).unwrap();
            }
            Transport::Udp {
                sport,
                dport,
                no_checksum,
            } => {
                let ip = self.ip_header(8 + self.payload.len(), IpNumber::UDP);
                let mut udp =
                    UdpHeader::with_ipv4_checksum(*sport, *dport, &ip, &self.payload).unwrap();
                if *no_checksum {
                    udp.checksum = 0;
                }
                ip.write(&mut out).unwrap();
                udp.write(&mut out).unwrap();
            }
        }
        out.extend_from_slice(&self.payload);
        out
    }
}

/// A TCP SYN from the client to `dst:port` (the bytes).
pub fn tcp_syn(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    Pkt::tcp(sport, dst, dport, SYN).build()
}

/// A UDP datagram from the client (the bytes).
pub fn udp(dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    Pkt::udp(sport, dst, dport, payload).build()
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

/// Splits an unfragmented Ethernet/IPv4 frame (no IP options) into two
/// fragments, the first carrying `first_len` bytes of IP payload (a
/// multiple of 8).
pub fn fragment(frame: &[u8], first_len: usize) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(first_len % 8, 0);
    let (head, data) = frame.split_at(34);
    let build = |flags_offset: u16, part: &[u8]| {
        let mut f = head.to_vec();
        f[16..18].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
        f[20..22].copy_from_slice(&flags_offset.to_be_bytes());
        f.extend_from_slice(part);
        checksum::set_ipv4(&mut f);
        f
    };
    (
        build(0x2000, &data[..first_len]),
        build((first_len / 8) as u16, &data[first_len..]),
    )
}

/// Joins two fragments (as the program sent them) back into one frame.
pub fn reassemble(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut f = first.to_vec();
    f.extend_from_slice(&second[34..]);
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[20..22].copy_from_slice(&[0, 0]);
    checksum::set_ipv4(&mut f);
    f
}

/// An ICMP error (`kind`, `code`, and the 4 type-specific bytes `rest`)
/// from `src` to `dst`, quoting `quoted` (an IPv4 header and at least 8
/// bytes of what followed it).
pub fn icmp_error(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    kind: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let c = checksum::inet(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = Ipv4Header::new(icmp.len() as u16, 64, IpNumber::ICMP, src, dst).unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    Ethernet2Header {
        source: macs.0,
        destination: macs.1,
        ether_type: EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(&icmp);
    out
}
