//! The SYN synflood sends: Ethernet + IPv4 + TCP with the options a Linux
//! client puts on its SYN (MSS, SACK permitted, timestamps, window scale,
//! in Linux's order and layout: `tcp_options_write` in
//! net/ipv4/tcp_output.c), so that a datapath sees what a real client's
//! SYN looks like.
//!
//! A [`SynTemplate`] holds the frame with what every SYN shares and the
//! checksum sums of those parts; [`SynTemplate::write`] fills in one SYN's
//! own fields (source address and port, ISN, IP ID, TSval) and finishes
//! both checksums from those sums, so a SYN costs a few dozen additions.

use std::net::Ipv4Addr;

/// Ethernet (14) + IPv4 without options (20) + TCP with 20 bytes of
/// options (40).
pub const FRAME_LEN: usize = 74;
const ETH: usize = 14;
const IP: usize = ETH;
const TCP: usize = ETH + 20;
const TCP_LEN: usize = 40;

/// The MSS a client on an Ethernet link announces.
pub const MSS: u16 = 1460;
/// The window scale Linux announces with its default buffers.
pub const WINDOW_SCALE: u8 = 7;
/// The window of a Linux SYN: 44 segments of the MSS (64,240).
pub const WINDOW: u16 = 44 * MSS;
pub const TTL: u8 = 64;

/// One SYN's own fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynFields {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub isn: u32,
    pub ip_id: u16,
    pub tsval: u32,
}

/// What every SYN of a run shares, and the checksum sums of it.
#[derive(Clone, Debug)]
pub struct SynTemplate {
    frame: [u8; FRAME_LEN],
    /// The one's-complement sum (unfolded) of the IPv4 header with ID,
    /// source and checksum zero.
    ip_sum: u32,
    /// The same for the TCP pseudo-header and header with source
    /// address, source port, sequence number, TSval and checksum zero.
    tcp_sum: u32,
}

/// The sum of `bytes` as big-endian 16-bit words (an even length).
fn words(bytes: &[u8]) -> u32 {
    bytes
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn halves(v: u32) -> u32 {
    (v >> 16) + (v & 0xffff)
}

impl SynTemplate {
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], dst: Ipv4Addr, dport: u16) -> Self {
        let mut f = [0u8; FRAME_LEN];
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        // IPv4: version 4, IHL 5, no TOS; DF like every Linux TCP segment
        // (path MTU discovery); ID, source and checksum per SYN.
        f[IP] = 0x45;
        f[IP + 2..IP + 4].copy_from_slice(&((20 + TCP_LEN) as u16).to_be_bytes());
        f[IP + 6] = 0x40;
        f[IP + 8] = TTL;
        f[IP + 9] = 6;
        f[IP + 16..IP + 20].copy_from_slice(&dst.octets());
        // TCP: ports, ISN, data offset 10 words, SYN, window; the options
        // as Linux writes them: MSS, SACK permitted + timestamps in one
        // 12-byte block, NOP, window scale.
        f[TCP + 2..TCP + 4].copy_from_slice(&dport.to_be_bytes());
        f[TCP + 12] = ((TCP_LEN / 4) as u8) << 4;
        f[TCP + 13] = 0x02;
        f[TCP + 14..TCP + 16].copy_from_slice(&WINDOW.to_be_bytes());
        let mss = MSS.to_be_bytes();
        let options: [u8; 20] = [
            2,
            4,
            mss[0],
            mss[1], // MSS
            4,
            2, // SACK permitted
            8,
            10,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0, // timestamps: TSval per SYN, TSecr 0
            1, // NOP
            3,
            3,
            WINDOW_SCALE,
        ];
        f[TCP + 20..TCP + 40].copy_from_slice(&options);
        let ip_sum = words(&f[IP..IP + 20]);
        // The pseudo-header's constant part: the destination, the
        // protocol and the TCP length.
        let tcp_sum = words(&dst.octets()) + 6 + TCP_LEN as u32 + words(&f[TCP..TCP + TCP_LEN]);
        SynTemplate {
            frame: f,
            ip_sum,
            tcp_sum,
        }
    }

    /// Writes one SYN into `out` (at least [`FRAME_LEN`] bytes).
    pub fn write(&self, out: &mut [u8], s: &SynFields) {
        let out = &mut out[..FRAME_LEN];
        out.copy_from_slice(&self.frame);
        let src = u32::from(s.src);
        out[IP + 4..IP + 6].copy_from_slice(&s.ip_id.to_be_bytes());
        out[IP + 12..IP + 16].copy_from_slice(&src.to_be_bytes());
        let ip = fold(self.ip_sum + u32::from(s.ip_id) + halves(src));
        out[IP + 10..IP + 12].copy_from_slice(&ip.to_be_bytes());
        out[TCP..TCP + 2].copy_from_slice(&s.sport.to_be_bytes());
        out[TCP + 4..TCP + 8].copy_from_slice(&s.isn.to_be_bytes());
        out[TCP + 28..TCP + 32].copy_from_slice(&s.tsval.to_be_bytes());
        // The source address counts twice: in the pseudo-header only.
        let tcp =
            fold(self.tcp_sum + halves(src) + u32::from(s.sport) + halves(s.isn) + halves(s.tsval));
        out[TCP + 16..TCP + 18].copy_from_slice(&tcp.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use etherparse::{
        EtherType, LinkSlice, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice,
    };

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x30];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    fn syn(fields: &SynFields) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        SynTemplate::new(SRC_MAC, DST_MAC, DST, 6443).write(&mut out, fields);
        out
    }

    /// Parses with etherparse and checks every field and both checksums,
    /// recomputed from scratch by etherparse and by `crate::checksum`.
    fn check(frame: &[u8], s: &SynFields) {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the SYN");
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("not Ethernet II")
        };
        let eth = eth.to_header();
        assert_eq!(eth.ether_type, EtherType::IPV4);
        assert_eq!(eth.destination, DST_MAC);
        assert_eq!(eth.source, SRC_MAC);
        let Some(NetSlice::Ipv4(ipv4)) = &p.net else {
            panic!("not IPv4")
        };
        let ip = ipv4.header().to_header();
        assert_eq!(ip.source, s.src.octets());
        assert_eq!(ip.destination, DST.octets());
        assert_eq!(ip.identification, s.ip_id);
        assert!(ip.dont_fragment && !ip.more_fragments);
        assert_eq!(ip.time_to_live, TTL);
        assert_eq!(ip.total_len, 60);
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "{s:?}");
        assert_eq!(checksum::inet(&frame[IP..IP + 20]), 0);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not TCP")
        };
        let h = tcp.to_header();
        assert_eq!((h.source_port, h.destination_port), (s.sport, 6443));
        assert_eq!((h.sequence_number, h.acknowledgment_number), (s.isn, 0));
        assert!(h.syn && !h.ack && !h.rst && !h.fin && !h.psh);
        assert_eq!(h.window_size, WINDOW);
        assert_eq!(
            h.checksum,
            h.calc_checksum_ipv4(&ip, tcp.payload()).unwrap(),
            "{s:?}"
        );
        assert!(checksum::transport_ok(
            s.src.octets(),
            DST.octets(),
            6,
            &frame[TCP..]
        ));
        let options: Vec<TcpOptionElement> = h.options_iterator().map(Result::unwrap).collect();
        assert_eq!(
            options,
            [
                TcpOptionElement::MaximumSegmentSize(MSS),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(s.tsval, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(WINDOW_SCALE),
            ]
        );
        assert!(tcp.payload().is_empty());
    }

    #[test]
    fn a_syn_carries_linux_options_and_right_checksums() {
        let s = SynFields {
            src: Ipv4Addr::new(198, 19, 12, 34),
            sport: 40_000,
            isn: 0xdead_beef,
            ip_id: 0x1234,
            tsval: 123_456_789,
        };
        check(&syn(&s), &s);
    }

    #[test]
    fn checksums_are_right_for_extreme_and_random_fields() {
        let mut rng = crate::synflood::Rng::new(7);
        let mut cases = vec![
            SynFields {
                src: Ipv4Addr::new(198, 19, 255, 255),
                sport: u16::MAX,
                isn: u32::MAX,
                ip_id: u16::MAX,
                tsval: u32::MAX,
            },
            SynFields {
                src: Ipv4Addr::new(198, 18, 0, 0),
                sport: 0,
                isn: 0,
                ip_id: 0,
                tsval: 0,
            },
        ];
        for _ in 0..5_000 {
            let r = rng.next_u64();
            let r2 = rng.next_u64();
            cases.push(SynFields {
                src: Ipv4Addr::from(0xc612_0000 | (r as u32 & 0x1_ffff)),
                sport: (r >> 32) as u16,
                isn: r2 as u32,
                ip_id: (r >> 48) as u16,
                tsval: (r2 >> 32) as u32,
            });
        }
        let template = SynTemplate::new(SRC_MAC, DST_MAC, DST, 6443);
        let mut out = [0u8; FRAME_LEN];
        for s in &cases {
            template.write(&mut out, s);
            check(&out, s);
        }
    }
}
