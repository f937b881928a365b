//! Reading a raw frame as the specification reads it: Ethernet, IPv4
//! (IHL, fragments, total length), TCP (data offset, options, the
//! timestamp option) and UDP, with their checksums; what a frame that does
//! not parse should get.

use kube_xdp_common::{
    maps::{PROTO_TCP, PROTO_UDP},
    stats::Counter,
};

use crate::{
    checksum,
    harness::{XDP_DROP, XDP_PASS},
};

use super::expect::decision;
use super::{Decision, ETH, ETHERTYPE_IPV4, L4, Model, PROTO_ICMP, Parsed, Tcp, Tuple, Udp};

impl Parsed {
    pub(super) fn sport(&self) -> u16 {
        match &self.l4 {
            L4::Tcp(t) => t.sport,
            L4::Udp(u) => u.sport,
        }
    }
    pub(super) fn dport(&self) -> u16 {
        match &self.l4 {
            L4::Tcp(t) => t.dport,
            L4::Udp(u) => u.dport,
        }
    }
    pub(super) fn proto(&self) -> u8 {
        match &self.l4 {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp(_) => PROTO_UDP,
        }
    }
    pub(super) fn tuple(&self) -> Tuple {
        Tuple {
            src: self.src,
            dst: self.dst,
            sport: self.sport(),
            dport: self.dport(),
            proto: self.proto(),
        }
    }
}

pub(super) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(super) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub(super) fn addr(b: &[u8], at: usize) -> [u8; 4] {
    b[at..at + 4].try_into().unwrap()
}

/// Where a TCP timestamp option's TSval is, walking the options
/// (`opts` = the bytes between the fixed header and the data offset).
pub(super) fn find_timestamp(opts: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == 8 && len == 10 {
                    return Some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The checksum a TCP segment or UDP datagram of `len` bytes at `at`
/// should carry, over the frame's IPv4 pseudo-header.
pub(super) fn l4_checksum(frame: &[u8], at: usize, len: usize, proto: u8) -> u16 {
    let (src, dst) = checksum::addresses(frame);
    checksum::transport(src, dst, proto, &frame[at..at + len])
}

/// True if the checksum in the frame verifies.
fn l4_checksum_ok(frame: &[u8], at: usize, len: usize, proto: u8) -> bool {
    let (src, dst) = checksum::addresses(frame);
    checksum::transport_ok(src, dst, proto, &frame[at..at + len])
}

impl Model {
    /// Parses per the specification, or decides (malformed, not IPv4, …).
    pub(super) fn parse(&self, f: &[u8]) -> Result<Parsed, Box<Decision>> {
        if f.len() < ETH || be16(f, 12) != ETHERTYPE_IPV4 {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::PassNotIpv4,
                "not IPv4",
            )));
        }
        if f.len() < ETH + 20 {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::Malformed,
                "IPv4 header cut",
            )));
        }
        let dst = addr(f, ETH + 16);
        let malformed = |why: &str| -> Box<Decision> {
            Box::new(if self.is_vip(dst) {
                decision(
                    XDP_DROP,
                    Counter::Malformed,
                    format!("malformed ({why}) to a VIP"),
                )
            } else {
                decision(
                    XDP_PASS,
                    Counter::Malformed,
                    format!("malformed ({why}), no VIP"),
                )
            })
        };
        let version = f[ETH] >> 4;
        let ihl = usize::from(f[ETH] & 0x0f) * 4;
        let total = usize::from(be16(f, ETH + 2));
        if version != 4 {
            return Err(malformed("version"));
        }
        if ihl < 20 {
            return Err(malformed("IHL < 5"));
        }
        if total < ihl {
            return Err(malformed("total length < IHL"));
        }
        if total > f.len() - ETH {
            return Err(malformed("total length > frame"));
        }
        let proto = f[ETH + 9];
        assert_ne!(proto, PROTO_ICMP, "ICMP is not modelled");
        if proto != PROTO_TCP && proto != PROTO_UDP {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::PassOtherProtocol,
                "other protocol",
            )));
        }
        let fragment = be16(f, ETH + 6) & 0x3fff;
        assert_eq!(fragment, 0, "fragments are not modelled");
        let t = ETH + ihl;
        let plen = total - ihl;
        let ip_sum_ok = checksum::inet(&f[ETH..t]) == 0;
        let l4 = if proto == PROTO_TCP {
            if f.len() - t < 20 {
                return Err(malformed("TCP header cut"));
            }
            let doff = usize::from(f[t + 12] >> 4) * 4;
            if doff < 20 {
                return Err(malformed("TCP data offset < 5"));
            }
            if t + doff > f.len() {
                return Err(malformed("TCP data offset beyond the frame"));
            }
            if doff > plen {
                return Err(malformed("TCP data offset beyond the IP payload"));
            }
            L4::Tcp(Tcp {
                sport: be16(f, t),
                dport: be16(f, t + 2),
                seq: be32(f, t + 4),
                ack: be32(f, t + 8),
                flags: f[t + 13],
                doff,
                ts_at: find_timestamp(&f[t + 20..t + doff]).map(|at| t + 20 + at),
                sum_ok: l4_checksum_ok(f, t, plen, PROTO_TCP),
            })
        } else {
            if f.len() - t < 8 {
                return Err(malformed("UDP header cut"));
            }
            let ulen = usize::from(be16(f, t + 4));
            if ulen < 8 {
                return Err(malformed("UDP length < 8"));
            }
            if ulen > plen {
                return Err(malformed("UDP length beyond the IP payload"));
            }
            let sum = be16(f, t + 6);
            L4::Udp(Udp {
                sport: be16(f, t),
                dport: be16(f, t + 2),
                ulen,
                sum,
                sum_ok: sum != 0 && l4_checksum_ok(f, t, ulen, PROTO_UDP),
            })
        };
        Ok(Parsed {
            ttl: f[ETH + 8],
            src: addr(f, ETH + 12),
            dst,
            t,
            plen,
            ip_sum_ok,
            l4,
        })
    }
}
