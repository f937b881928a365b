//! The frame fuzzer of the test crate: damage done to a frame
//! ([`Mutation`], [`mutate`]), driven by proptest in the differential test
//! ([`mutation`]) and by a seeded generator of garbage frames in the
//! end-to-end test ([`garbage_frame`]). After a damage to a header the
//! checksums are set right again (over what the damaged header claims), so
//! the frame is wrong in that one way only.

use proptest::prelude::*;

use crate::checksum;

const PROTO_TCP: u8 = 6;

/// A malformation applied to a built Ethernet/IPv4 frame. The `usize`s
/// pick a value within what the frame allows (modulo its size).
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Cut the frame after the Ethernet header and `pick % (len - 14)`
    /// bytes.
    Truncate(usize),
    /// Set the IHL (header length in 32-bit words).
    Ihl(u8),
    /// Set the IP version.
    Version(u8),
    /// Total length below IHL * 4 (`false`) or beyond the frame (`true`,
    /// by 1 to 64 bytes).
    TotalLength(bool, usize),
    /// TCP data offset (in words), or UDP length (`pick % (plen + 9)`).
    L4Length(u8, usize),
}

/// One [`Mutation`], weighted towards the damage that reaches furthest into
/// the parser.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (0u8..16).prop_map(Mutation::Ihl),
        1 => (0u8..16).prop_filter("not 4", |v| *v != 4).prop_map(Mutation::Version),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(b, i)| Mutation::TotalLength(b, i)),
        3 => (0u8..16, any::<usize>()).prop_map(|(d, i)| Mutation::L4Length(d, i)),
    ]
}

/// Damages `frame` (Ethernet/IPv4, with a whole TCP or UDP header) as `m`
/// says, then sets the checksums the damage touched.
pub fn mutate(frame: &mut Vec<u8>, m: &Mutation) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    match m {
        Mutation::Truncate(pick) => frame.truncate(14 + pick % (frame.len() - 14)),
        Mutation::Ihl(v) => {
            frame[14] = 0x40 | v;
            checksum::set_ipv4(frame);
        }
        Mutation::Version(v) => {
            frame[14] = v << 4 | (frame[14] & 0x0f);
            checksum::set_ipv4(frame);
        }
        Mutation::TotalLength(big, pick) => {
            let room = frame.len() - 14;
            let total = if *big {
                room + 1 + pick % 64
            } else {
                pick % ihl
            };
            frame[16..18].copy_from_slice(&(total as u16).to_be_bytes());
            checksum::set_ipv4(frame);
        }
        Mutation::L4Length(doff, pick) => {
            let t = 14 + ihl;
            let plen = frame.len() - t;
            if frame[23] == PROTO_TCP {
                frame[t + 12] = doff << 4 | (frame[t + 12] & 0x0f);
            } else {
                let len = (pick % (plen + 9)) as u16;
                frame[t + 4..t + 6].copy_from_slice(&len.to_be_bytes());
            }
            checksum::set_transport(frame);
        }
    }
}

/// xorshift64*: a seeded generator, so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn u8(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

/// What kind of garbage a frame is, for the report (`kind` of
/// [`garbage_frame`] indexes it).
pub const GARBAGE_KINDS: [&str; 12] = [
    "truncated",
    "bad IHL",
    "bad TCP data offset",
    "random TCP flags",
    "UDP with random lengths",
    "fragment",
    "random protocol",
    "ICMP",
    "bad total length",
    "IP options",
    "random bytes",
    "not IPv4",
];

/// Where garbage goes: from the client to a TCP and a UDP service of one
/// VIP, through the load balancer's MAC.
#[derive(Clone, Copy, Debug)]
pub struct GarbageAim {
    pub lb_mac: [u8; 6],
    pub client_mac: [u8; 6],
    pub client: [u8; 4],
    pub vip: [u8; 4],
    pub tcp_port: u16,
    pub udp_port: u16,
}

/// One random frame for the VIP: an Ethernet header to the LB's MAC, an
/// IPv4 header to the VIP mostly from the client's address (else from
/// 198.19.0.0/16), and a kind of damage picked by `kind` (an index of
/// [`GARBAGE_KINDS`]). The damage a [`Mutation`] knows how to do is done
/// by [`mutate`].
pub fn garbage_frame(rng: &mut Rng, kind: usize, aim: &GarbageAim) -> Vec<u8> {
    let GarbageAim {
        lb_mac,
        client_mac,
        client,
        vip,
        tcp_port,
        udp_port,
    } = *aim;
    let src: [u8; 4] = if rng.chance(1, 2) {
        client
    } else {
        [198, 19, rng.u8(), rng.u8()]
    };
    // Source ports below the client's ephemeral range, so no garbage flow
    // shares a 5-tuple with a later real connection.
    let sport = 1024 + rng.below(31_000) as u16;
    let mut frame = Vec::with_capacity(1514);
    frame.extend_from_slice(&lb_mac);
    frame.extend_from_slice(&client_mac);
    if kind == 11 {
        let ethertype = match rng.below(4) {
            0 => 0x86dd,
            1 => 0x0806,
            2 => 0x8100,
            _ => rng.u16(),
        };
        frame.extend_from_slice(&u16::to_be_bytes(ethertype));
        let n = rng.below(200) as usize;
        frame.extend(rng.bytes(n));
        return frame;
    }
    frame.extend_from_slice(&[0x08, 0x00]);
    if kind == 10 {
        let n = 1 + rng.below(200) as usize;
        let mut body = rng.bytes(n.max(20));
        body[0] = 0x40 | (body[0] & 0x0f);
        body[16..20].copy_from_slice(&vip);
        body.truncate(n);
        frame.extend(body);
        return frame;
    }

    // The transport part.
    let proto: u8 = match kind {
        4 => 17,
        5 => {
            if rng.chance(1, 2) {
                6
            } else {
                17
            }
        }
        6 => loop {
            let p = rng.u8();
            if p != 6 && p != 17 {
                break p;
            }
        },
        7 => 1,
        _ => 6,
    };
    let payload_len = if rng.chance(1, 2) {
        0
    } else {
        rng.below(300) as usize
    };
    let mut l4 = match proto {
        6 => {
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&sport.to_be_bytes());
            let dport: u16 = if rng.chance(7, 8) {
                tcp_port
            } else {
                rng.u16()
            };
            tcp[2..4].copy_from_slice(&dport.to_be_bytes());
            tcp[4..12].copy_from_slice(&rng.bytes(8));
            let flags = match kind {
                2 | 3 => rng.u8(),
                _ => 0x02, // SYN
            };
            let mut offset_words = 5u8;
            if rng.chance(1, 3) {
                // MSS, SACK permitted, timestamps, window scale: like Linux.
                tcp.extend_from_slice(&[2, 4, 0x05, 0xb4, 4, 2, 8, 10]);
                tcp.extend_from_slice(&rng.bytes(8));
                tcp.extend_from_slice(&[1, 3, 3, 7]);
                offset_words = 10;
            }
            tcp[12] = offset_words << 4;
            tcp[13] = flags;
            tcp[14..16].copy_from_slice(&rng.u16().to_be_bytes());
            tcp.extend(rng.bytes(payload_len));
            if rng.chance(3, 4) {
                let sum = checksum::transport(src, vip, 6, &tcp);
                tcp[16..18].copy_from_slice(&sum.to_be_bytes());
            } else {
                tcp[16..18].copy_from_slice(&rng.u16().to_be_bytes());
            }
            tcp
        }
        17 => {
            let mut udp = vec![0u8; 8];
            udp[0..2].copy_from_slice(&sport.to_be_bytes());
            let dport: u16 = if rng.chance(3, 4) {
                udp_port
            } else {
                rng.u16()
            };
            udp[2..4].copy_from_slice(&dport.to_be_bytes());
            udp.extend(rng.bytes(payload_len));
            let len = udp.len() as u16;
            udp[4..6].copy_from_slice(&len.to_be_bytes());
            match rng.below(3) {
                0 => {} // no checksum
                1 => {
                    let sum = checksum::transport(src, vip, 17, &udp);
                    udp[6..8].copy_from_slice(&sum.to_be_bytes());
                }
                _ => udp[6..8].copy_from_slice(&rng.u16().to_be_bytes()),
            }
            udp
        }
        1 => {
            // An ICMP error (or echo) with a random or plausible quote.
            let t = [3u8, 11, 12, 0, 8, 5][rng.below(6) as usize];
            let mut icmp = vec![t, rng.below(16) as u8, 0, 0, 0, 0, 0, 0];
            if rng.chance(1, 2) {
                // Quote a packet "VIP:tcp_port → client", the reply path.
                let mut quoted = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
                quoted.extend_from_slice(&vip);
                quoted.extend_from_slice(&src);
                quoted.extend_from_slice(&tcp_port.to_be_bytes());
                quoted.extend_from_slice(&sport.to_be_bytes());
                quoted.extend(rng.bytes(4));
                let cut = rng.below(quoted.len() as u64 + 1) as usize;
                quoted.truncate(cut);
                icmp.extend(quoted);
            } else {
                icmp.extend(rng.bytes(payload_len.min(64)));
            }
            let sum = checksum::inet(&icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            icmp
        }
        _ => rng.bytes(payload_len),
    };

    // The IPv4 header.
    let options_words: u8 = if kind == 9 {
        1 + rng.below(10) as u8
    } else {
        0
    };
    let mut ip = vec![0u8; 20];
    ip.extend(match rng.below(3) {
        0 => vec![1u8; usize::from(options_words) * 4], // NOPs
        _ => rng.bytes(usize::from(options_words) * 4),
    });
    ip[0] = 0x40 | (5 + options_words);
    ip[1] = rng.u8() & 0xfc;
    let total = (ip.len() + l4.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&rng.u16().to_be_bytes());
    let frag: u16 = if kind == 5 {
        match rng.below(3) {
            0 => 0x2000,                                  // MF, offset 0: a first fragment
            1 => 0x2000 | (1 + rng.below(0x1fff) as u16), // a middle fragment
            _ => 1 + rng.below(0x1fff) as u16,            // a last fragment
        }
    } else if rng.chance(1, 4) {
        0x4000 // DF, like Linux
    } else {
        0
    };
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = if rng.chance(1, 16) {
        rng.below(2) as u8
    } else {
        64
    };
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&vip);
    if rng.chance(7, 8) {
        let sum = checksum::inet(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        ip[10..12].copy_from_slice(&rng.u16().to_be_bytes());
    }
    if kind == 5 && frag & 0x1fff != 0 {
        // A later fragment carries no transport header: random data.
        let n = l4.len();
        l4 = rng.bytes(n);
    }
    frame.extend(ip);
    frame.extend(l4);
    if kind != 0 && rng.chance(1, 10) {
        // Trailing bytes past the IPv4 total length (like Ethernet padding).
        let n = rng.below(64) as usize;
        frame.extend(rng.bytes(n));
    }
    let damage = match kind {
        0 => Some(Mutation::Truncate(rng.next_u64() as usize)),
        1 => Some(Mutation::Ihl(loop {
            let i = rng.below(16) as u8;
            if i != 5 {
                break i;
            }
        })),
        2 => {
            let now = frame[14 + 20 + 12] >> 4;
            Some(Mutation::L4Length(
                loop {
                    let o = rng.below(16) as u8;
                    if o != now {
                        break o;
                    }
                },
                0,
            ))
        }
        4 => Some(Mutation::L4Length(0, rng.next_u64() as usize)),
        8 => Some(Mutation::TotalLength(
            rng.chance(1, 2),
            rng.next_u64() as usize,
        )),
        _ => None,
    };
    if let Some(m) = damage {
        mutate(&mut frame, &m);
    }
    frame.truncate(1514);
    frame
}
