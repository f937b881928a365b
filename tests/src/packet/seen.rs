//! What a test sees of a frame the program sent out: every checksum
//! checked from scratch, the fields read back.

use super::{ACK, FIN, PSH, RST, SYN, Transport};
use crate::checksum;
use etherparse::{Ipv4Header, PacketHeaders, TcpOptionElement, TransportHeader};

/// What a test sees of a frame the program sent out, after checking every
/// checksum from scratch (the IPv4 header's, and the transport's over the
/// pseudo-header and payload; a UDP checksum of 0 is accepted as "none").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
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

impl Seen {
    pub fn parse(frame: &[u8]) -> Seen {
        let headers = PacketHeaders::from_ethernet_slice(frame).expect("a parseable frame");
        let eth = headers.link.unwrap().ethernet2().unwrap();
        let Some(etherparse::NetHeaders::Ipv4(ip, _)) = headers.net else {
            panic!("not IPv4: {frame:02x?}");
        };
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "IPv4 header checksum"
        );
        let payload = headers.payload.slice().to_vec();
        let transport = match headers.transport.expect("a transport header") {
            TransportHeader::Tcp(tcp) => {
                assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(&ip, &payload).unwrap(),
                    "TCP checksum"
                );
                let ts = tcp.options_iterator().find_map(|o| match o {
                    Ok(TcpOptionElement::Timestamp(v, e)) => Some((v, e)),
                    _ => None,
                });
                let flags = [
                    (tcp.fin, FIN),
                    (tcp.syn, SYN),
                    (tcp.rst, RST),
                    (tcp.psh, PSH),
                    (tcp.ack, ACK),
                ]
                .iter()
                .filter(|(set, _)| *set)
                .fold(0, |acc, (_, bit)| acc | bit);
                Transport::Tcp {
                    sport: tcp.source_port,
                    dport: tcp.destination_port,
                    seq: tcp.sequence_number,
                    ack: tcp.acknowledgment_number,
                    flags,
                    ts,
                }
            }
            TransportHeader::Udp(udp) => {
                if udp.checksum != 0 {
                    assert_eq!(
                        udp.checksum,
                        udp.calc_checksum_ipv4(&ip, &payload).unwrap(),
                        "UDP checksum"
                    );
                }
                Transport::Udp {
                    sport: udp.source_port,
                    dport: udp.destination_port,
                    no_checksum: udp.checksum == 0,
                }
            }
            other => panic!("unexpected transport {other:?}"),
        };
        Seen {
            src_mac: eth.source,
            dst_mac: eth.destination,
            src: ip.source,
            dst: ip.destination,
            ttl: ip.time_to_live,
            id: ip.identification,
            ip_options: ip.options.as_slice().to_vec(),
            transport,
            payload,
        }
    }

    pub fn ports(&self) -> (u16, u16) {
        match self.transport {
            Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport, .. } => {
                (sport, dport)
            }
        }
    }

    pub fn tcp_flags(&self) -> u8 {
        match self.transport {
            Transport::Tcp { flags, .. } => flags,
            Transport::Udp { .. } => panic!("not TCP"),
        }
    }

    pub fn ts(&self) -> Option<(u32, u32)> {
        match self.transport {
            Transport::Tcp { ts, .. } => ts,
            Transport::Udp { .. } => None,
        }
    }
}

/// An ICMP error as the program sent it, every checksum checked: the
/// outer IPv4 header's, the ICMP message's, the quoted IPv4 header's.
#[derive(Debug)]
pub struct IcmpSeen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub kind: u8,
    pub code: u8,
    pub quoted_src: [u8; 4],
    pub quoted_dst: [u8; 4],
    pub quoted_sport: u16,
    pub quoted_dport: u16,
    /// The quoted transport header bytes.
    pub quoted_l4: Vec<u8>,
}

impl IcmpSeen {
    pub fn parse(frame: &[u8]) -> IcmpSeen {
        let (ip, rest) = Ipv4Header::from_slice(&frame[14..]).expect("outer IPv4");
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "outer IPv4 checksum"
        );
        let icmp = &rest[..usize::from(ip.total_len) - ip.header_len()];
        assert_eq!(checksum::inet(icmp), 0, "ICMP checksum");
        let (quoted, l4) = Ipv4Header::from_slice(&icmp[8..]).expect("quoted IPv4");
        assert_eq!(
            quoted.header_checksum,
            quoted.calc_header_checksum(),
            "quoted IPv4 checksum"
        );
        IcmpSeen {
            src_mac: frame[6..12].try_into().unwrap(),
            dst_mac: frame[0..6].try_into().unwrap(),
            src: ip.source,
            dst: ip.destination,
            ttl: ip.time_to_live,
            kind: icmp[0],
            code: icmp[1],
            quoted_src: quoted.source,
            quoted_dst: quoted.destination,
            quoted_sport: u16::from_be_bytes([l4[0], l4[1]]),
            quoted_dport: u16::from_be_bytes([l4[2], l4[3]]),
            quoted_l4: l4.to_vec(),
        }
    }
}
